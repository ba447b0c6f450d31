"""The `caption` and `vqa` generators: image-only questions answered by the models trained in rsrag."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from rsrag.generators import (
    Evidence,
    Generation,
    GenerationRequest,
    Generator,
    GeneratorError,
    create_generator,
    list_generators,
)


@dataclass
class FakeVQAAnswer:
    answer: str
    confidence: float
    unknown: bool
    question_type: str = "scene"

    def to_dict(self) -> dict:
        return {"answer": self.answer, "confidence": self.confidence, "unknown": self.unknown,
                "question_type": self.question_type}


class FakeVQA:
    def __init__(self, result: FakeVQAAnswer) -> None:
        self.result, self.calls = result, []

    def answer(self, image, question):
        self.calls.append((image, question))
        return self.result


class FakeCaptioner:
    def caption(self, images, *, beam_size=3):
        return [f"caption of {img} (beam {beam_size})" for img in images]


class EchoFallback(Generator):
    name = "echo"

    def generate(self, request: GenerationRequest) -> Generation:
        return Generation(f"from evidence: {request.evidence[0].text}", [request.evidence[0].id])


def test_registered():
    assert {"caption", "vqa", "extractive"} <= set(list_generators())


def test_image_generators_are_optional():
    """Without rsrag.models the registry still works and simply has no caption/vqa (they were listed
    as built-in as well as optional, so the optional path never ran)."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['rsrag.models'] = None\n"
            "from rsrag.generators import list_generators; print(','.join(list_generators()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "extractive,hf,ollama,openai"


def test_vqa_answers_inside_its_answer_space():
    vqa = FakeVQA(FakeVQAAnswer("airport", 0.97, False))
    gen = create_generator("vqa", vqa=vqa, fallback=EchoFallback())
    out = gen.generate(GenerationRequest("What kind of place is shown?", image="img.jpg"))
    assert out.text == "airport" and out.extra["vqa"]["confidence"] == 0.97
    assert vqa.calls == [("img.jpg", "What kind of place is shown?")]


def test_vqa_unknown_falls_back_to_the_evidence():
    gen = create_generator("vqa", vqa=FakeVQA(FakeVQAAnswer("unknown", 0.0, True)), fallback=EchoFallback())
    request = GenerationRequest("Who built this bridge?", evidence=[Evidence("k1#history", "Built in 1890.")],
                                image="img.jpg")
    out = gen.generate(request)
    assert out.text == "from evidence: Built in 1890." and out.cited == ["k1#history"]
    assert out.extra["source"] == "vqa-unknown->echo" and out.extra["vqa"]["unknown"] is True


def test_image_generators_need_an_image_and_a_question():
    with pytest.raises(GeneratorError, match="query image"):
        create_generator("caption", captioner=FakeCaptioner()).generate(GenerationRequest("describe"))
    gen = create_generator("vqa", vqa=FakeVQA(FakeVQAAnswer("yes", 1.0, False)))
    with pytest.raises(GeneratorError, match="needs a question"):
        gen.generate(GenerationRequest("  ", image="img.jpg"))


def test_caption_generator_uses_the_captioner():
    out = create_generator("caption", captioner=FakeCaptioner(), beam_size=2).generate(
        GenerationRequest(None, task="caption", image="a.jpg"))
    assert out.text == "caption of a.jpg (beam 2)"


def test_real_vqa_generator_on_an_airport(data_root):
    pytest.importorskip("rsrag.models.vqa")
    gen = create_generator("vqa")
    out = gen.generate(GenerationRequest("What kind of place is shown?", image=data_root / "rsicd/images/airport_1.jpg"))
    assert out.text == "airport"
