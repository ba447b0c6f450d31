"""Visual question answering on remote-sensing images (scene, presence, counting, comparison).

Public API: `load_vqa(name=None) -> VQAModel`; `VQAModel.answer(image, question) -> VQAAnswer`.
The question set is generated from RSICD / UCM annotations (`dataset.py`, `questions.py`), the model
is trained by `rsrag train vqa` (`train.py`) and evaluated by `rsrag eval vqa` (`rsrag.eval.vqa`).
"""

from rsrag.models.vqa.model import DEFAULT_VQA, UNKNOWN, VQAAnswer, VQAModel, load_vqa

__all__ = ["DEFAULT_VQA", "UNKNOWN", "VQAAnswer", "VQAModel", "load_vqa"]
