"""Visual question answering on remote-sensing images (scene, presence, counting, comparison).

Public API: `load_vqa(name=None) -> VQAModel`; `VQAModel.answer(image, question) -> VQAAnswer`
(`.answer`, `.confidence` in 0..1, `.question_type`, `.unknown`, `.to_dict()`). An empty question
raises ValueError, an undecodable image `rsrag.imageio.ImageLoadError`, missing weights
FileNotFoundError. As a generator for image-only questions in a RAG pipeline::

    vqa = load_vqa(encoder=pipeline_encoder)  # optional: share an already loaded rs-lite encoder
    result = vqa.answer(image, question)
    if not result.unknown:                      # else: outside the VQA answer space, or unsure
        text, details = result.answer, result.to_dict()

The question set is generated from RSICD / UCM annotations (`dataset.py`, `questions.py`), the model
is trained by `rsrag train vqa` (`train.py`) and evaluated by `rsrag eval vqa` (`rsrag.eval.vqa`).
"""

from rsrag.models.vqa.model import DEFAULT_VQA, UNKNOWN, VQAAnswer, VQAModel, load_vqa

__all__ = ["DEFAULT_VQA", "UNKNOWN", "VQAAnswer", "VQAModel", "load_vqa"]
