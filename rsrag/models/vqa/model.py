"""The VQA model (RSVQA-style answer classifier) and its inference API.

Architecture (`VQANet`): the rs-lite image features (the tuned tower's 7x7x1280 activation map,
mean- and max-pooled, and its 512-d shared-space embedding; max pooling keeps small objects such as
planes or tanks visible) and the rs-lite text embedding of the question are each projected
to `hidden` units, fused by element-wise product (RSVQA, Lobry et al. 2020) and classified by an MLP
over the closed answer vocabulary. A second head predicts the question type from the question
alone; answers outside the predicted type's vocabulary are masked out, so a yes/no question can only
be answered yes or no.

Calibration (fit on the val split by `rsrag train vqa`): a temperature on the masked logits; the
answer is flagged `unknown` when the calibrated confidence is below a threshold chosen on val
(answers below it are wrong more often than right), and the question is rejected outright
(answer "unknown") when its embedding is far from every training question (cosine similarity
below `min_question_similarity`) or when it does not have the form of its predicted type (a "who" or
"when" question is no yes/no question), since such a question asks for something outside the answer
space.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rsrag.encoders import weights as store
from rsrag.encoders.base import ImageInput
from rsrag.encoders.rs_lite import DEFAULT_WEIGHTS
from rsrag.imageio import load_image
from rsrag.models.vqa.questions import QUESTION_TYPES, question_fits_type

log = logging.getLogger(__name__)

DEFAULT_VQA = "vqa-rs-lite"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class VQAConfig:
    """Architecture and answer space of a VQA model; stored in its weights card."""

    answers: tuple[str, ...]
    answer_types: tuple[str, ...]  # question type of each answer (yes/no are listed per type)
    question_types: tuple[str, ...] = QUESTION_TYPES
    image_dim: int = 512 + 2 * 1280  # shared-space embedding + mean- and max-pooled tail activation map
    question_dim: int = 512
    hidden: int = 512
    dropout: float = 0.3
    encoder: str = DEFAULT_WEIGHTS


@dataclass
class Calibration:
    """Inference-time decision rules, fit on val."""

    temperature: float = 1.0
    min_confidence: float = 0.0
    min_question_similarity: float = 0.0


class VQANet(nn.Module):
    """(image features, question embedding) -> (answer logits, question-type logits)."""

    def __init__(self, cfg: VQAConfig):
        super().__init__()
        self.image = nn.Sequential(nn.Linear(cfg.image_dim, cfg.hidden), nn.Tanh(), nn.Dropout(cfg.dropout))
        self.question = nn.Sequential(nn.Linear(cfg.question_dim, cfg.hidden), nn.Tanh())
        self.classifier = nn.Sequential(
            nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU(), nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, len(cfg.answers)),
        )
        self.type_head = nn.Linear(cfg.question_dim, len(cfg.question_types))
        # (n_types, n_answers): 0 where the answer belongs to the type, -inf elsewhere
        mask = torch.full((len(cfg.question_types), len(cfg.answers)), float("-inf"))
        for j, t in enumerate(cfg.answer_types):
            mask[cfg.question_types.index(t), j] = 0.0
        self.register_buffer("type_mask", mask, persistent=False)

    def forward(self, image: torch.Tensor, question: torch.Tensor, types: torch.Tensor | None = None):
        """Masked answer logits (by `types`, else by the predicted type) and type logits."""
        type_logits = self.type_head(question)
        if types is None:
            types = type_logits.argmax(-1)
        logits = self.classifier(self.image(image) * self.question(question)) + self.type_mask[types]
        return logits, type_logits


@dataclass
class VQAAnswer:
    """An answer with its calibrated confidence; `unknown` flags answers not to trust.

    A question outside the answer space gets answer and question_type "unknown" and confidence 0;
    an in-scope answer below the calibrated confidence threshold keeps its answer with `unknown` set.
    """

    answer: str
    confidence: float
    question_type: str
    unknown: bool
    question: str = ""
    alternatives: list[tuple[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "question": self.question,
            "answer": self.answer,
            "confidence": round(self.confidence, 4),
            "question_type": self.question_type,
            "unknown": self.unknown,
            "alternatives": [{"answer": a, "confidence": round(p, 4)} for a, p in self.alternatives],
        }


MISSING_FIX = "train it with `rsrag train vqa` (see rsrag/weights/README.md), or pass the name of an existing model"


def save_vqa(net: VQANet, cfg: VQAConfig, calibration: Calibration, question_bank: np.ndarray,
             name: str | Path, card: dict) -> Path:
    """Weights (fp16) plus the training-question embeddings (for rejection) and a JSON card."""
    state = {**net.state_dict(), "question_bank": torch.from_numpy(np.asarray(question_bank, np.float32))}
    card = {**card, "config": asdict(cfg), "calibration": asdict(calibration)}
    return store.save(name, store.fp16(state), card)


class VQAModel:
    """Answers questions about an image. Build it with `load_vqa`.

    `answer_features` works on precomputed features, so a pipeline that already holds an image's
    features (or the evaluation, over a whole split) does not decode the image again.
    """

    def __init__(self, net: VQANet, cfg: VQAConfig, calibration: Calibration, question_bank: np.ndarray,
                 encoder=None, name: str = DEFAULT_VQA, encoder_id: str | None = None):
        self.net = net.eval()
        self.cfg = cfg
        self.calibration = calibration
        self.question_bank = np.asarray(question_bank, np.float32)
        self.name = name
        self.encoder_id = encoder_id  # the exact encoder version it was trained on
        self._encoder = None
        if encoder is not None:
            self._set_encoder(encoder)

    def _set_encoder(self, encoder) -> None:
        if self.encoder_id and encoder.id != self.encoder_id:
            log.warning("VQA model %s was trained on encoder %s, not %s: retrain it with `rsrag train vqa`",
                        self.name, self.encoder_id, encoder.id)
        self._encoder = encoder

    @property
    def encoder(self):
        """The rs-lite encoder the model was trained on (loaded on first use)."""
        if self._encoder is None:
            from rsrag.encoders.rs_lite import RSLiteEncoder

            self._set_encoder(RSLiteEncoder(self.cfg.encoder, runtime="torch", device="cpu"))
        return self._encoder

    def image_features(self, images: Sequence[ImageInput]) -> np.ndarray:
        """(n, image_dim) features; raises `rsrag.imageio.ImageLoadError` for an undecodable image."""
        decoded = [load_image(img) for img in images]  # bad input fails before the encoder loads
        enc = self.encoder
        arrays = np.stack([enc.preprocess.to_array(img) for img in decoded])
        model = enc.image_model
        device = next(model.parameters()).device
        with torch.inference_mode():
            spatial = model.tail.spatial(model.trunk(torch.from_numpy(arrays).to(device)))
            return image_features_from_map(spatial, model.proj).cpu().numpy()

    def question_features(self, questions: Sequence[str]) -> np.ndarray:
        return self.encoder.encode_texts(list(questions))

    def answer(self, image: ImageInput, question: str) -> VQAAnswer:
        """Answer one question about one image (path, bytes, PIL image or array)."""
        question = _check_question(question)
        return self.answer_features(self.image_features([image]), self.question_features([question]), [question])[0]

    def answer_features(self, image_feats: np.ndarray, question_feats: np.ndarray,
                        questions: Sequence[str] | None = None, top_k: int = 3) -> list[VQAAnswer]:
        """Answers for aligned rows of image features and question embeddings."""
        cal = self.calibration
        with torch.inference_mode():
            logits, type_logits = self.net(torch.as_tensor(image_feats, dtype=torch.float32),
                                           torch.as_tensor(question_feats, dtype=torch.float32))
            probs = torch.softmax(logits / cal.temperature, -1).numpy()
        types = type_logits.argmax(-1).numpy()
        similarity = (np.asarray(question_feats, np.float32) @ self.question_bank.T).max(-1)
        out = []
        for i, p in enumerate(probs):
            order = np.argsort(-p)[:top_k]
            best = int(order[0])
            conf = float(p[best])
            answer = self.cfg.answers[best]
            alternatives = [(self.cfg.answers[j], float(p[j])) for j in order if p[j] > 0]
            unknown = conf < cal.min_confidence
            qtype = self.cfg.question_types[int(types[i])]
            off_form = questions is not None and not question_fits_type(questions[i], qtype)
            if similarity[i] < cal.min_question_similarity or off_form:  # outside the answer space
                answer, conf, unknown, alternatives, qtype = UNKNOWN, 0.0, True, [], UNKNOWN
            out.append(VQAAnswer(answer, conf, qtype, unknown,
                                 questions[i] if questions is not None else "", alternatives))
        return out


def image_features_from_map(spatial: torch.Tensor, proj: nn.Module) -> torch.Tensor:
    """The VQA image features from the tuned tail's (B, C, H, W) activation map:
    [L2-normalised rs-lite embedding, mean-pooled map, max-pooled map]."""
    mean = spatial.mean(dim=(2, 3))
    emb = torch.nn.functional.normalize(proj(mean), dim=-1)
    return torch.cat([emb, mean, spatial.amax(dim=(2, 3))], dim=-1).float()


def _check_question(question: str) -> str:
    if not isinstance(question, str) or not question.strip():
        raise ValueError("the question is empty: ask something about the image, e.g. 'What kind of place is shown?'")
    return question.strip()


def load_vqa(name: str | None = None, *, encoder=None) -> VQAModel:
    """The VQA model `name` (default: the committed `vqa-rs-lite`), or a path to a .safetensors file.

    `encoder`: an already loaded rs-lite encoder of the same weights, to share with the caller.
    Raises FileNotFoundError naming the file and the command that trains it if the weights are missing.
    """
    name = name or DEFAULT_VQA
    state, card = store.load(name, what="VQA model", fix=MISSING_FIX)
    raw = card["config"]
    cfg = VQAConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
    state = store.fp32(state)
    bank = state.pop("question_bank").numpy()
    net = VQANet(cfg)
    net.load_state_dict(state)
    return VQAModel(net, cfg, Calibration(**card["calibration"]), bank, encoder=encoder,
                    name=store.weights_path(name).stem, encoder_id=card.get("encoder_id"))
