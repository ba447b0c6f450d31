"""`caption` and `vqa`: generators that look at the query image itself, with the models trained in
rsrag (`rsrag.models.captioner`, `rsrag.models.vqa`), for image-only questions that the knowledge
base cannot answer ("what is in this image?", "are there boats?", "how many tanks?").

Both load their model once per generator instance, lazily, so registering them costs nothing.
`vqa` answers only inside its answer space: when the VQA model flags the question as unknown or its
answer as low-confidence, it hands the request to a `fallback` generator (default `extractive`, over
the retrieved evidence) instead of stating a guess.
"""

from __future__ import annotations

from functools import cached_property

import rsrag.models  # noqa: F401  (the registry treats this module as optional: without the models, no caption/vqa)
from rsrag.generators.base import Generation, GenerationRequest, Generator, GeneratorError, create_generator, register_generator


def _require_image(request: GenerationRequest, name: str) -> None:
    if request.image is None:
        raise GeneratorError(f"the {name!r} generator answers from the query image; none was given")


@register_generator("caption")
class CaptionGenerator(Generator):
    """Describes the query image with the trained captioner (beam search)."""

    name = "caption"

    def __init__(self, model: str | None = None, beam_size: int = 3, captioner=None) -> None:
        self.model_name, self.beam_size = model, beam_size
        if captioner is not None:  # given (tests, a shared model); else loaded on first use
            self.__dict__["captioner"] = captioner

    @cached_property
    def captioner(self):
        from rsrag.models.captioner import load_captioner

        return load_captioner(self.model_name)

    def generate(self, request: GenerationRequest) -> Generation:
        _require_image(request, self.name)
        text = self.captioner.caption([request.image], beam_size=self.beam_size)[0]
        return Generation(text, [], {"source": "captioner"})


@register_generator("vqa")
class VQAGenerator(Generator):
    """Answers a question about the query image with the trained VQA classifier; outside its answer
    space (`unknown`) the `fallback` generator answers from the evidence instead."""

    name = "vqa"

    def __init__(self, model: str | None = None, fallback: str | Generator | None = "extractive", vqa=None) -> None:
        self.model_name = model
        if vqa is not None:  # given (tests, a shared model); else loaded on first use
            self.__dict__["vqa"] = vqa
        self.fallback = create_generator(fallback) if fallback is not None else None

    @cached_property
    def vqa(self):
        from rsrag.models.vqa import load_vqa

        return load_vqa(self.model_name)

    def generate(self, request: GenerationRequest) -> Generation:
        _require_image(request, self.name)
        question = (request.question or "").strip()
        if not question:
            raise GeneratorError("the 'vqa' generator needs a question about the image")
        result = self.vqa.answer(request.image, question)
        extra = {"source": "vqa", "vqa": result.to_dict()}
        if result.unknown and self.fallback is not None:
            generation = self.fallback.generate(request)
            generation.extra = {**generation.extra, **extra, "source": f"vqa-unknown->{self.fallback.name}"}
            return generation
        return Generation(result.answer, [], extra)
