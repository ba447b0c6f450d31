"""Training the VQA classifier on the generated RSICD + UCM question set, in minutes on a CPU.

Image features come from the cached trunk activations (`features.py`) and question embeddings from
rs-lite's text tower (the few hundred distinct questions are embedded once), so training only runs
the small fusion MLP. Early stopping and calibration (`Calibration`) use the val split.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from rsrag.encoders.rs_lite import DEFAULT_WEIGHTS
from rsrag.encoders.weights import run_card
from rsrag.models.fitting import EarlyStopping
from rsrag.models.vqa.dataset import DATASETS, VQAItem, build_vqa, counts_by_type
from rsrag.models.vqa.features import dataset_image_features
from rsrag.models.vqa.model import Calibration, VQAConfig, VQAModel, VQANet, save_vqa
from rsrag.models.vqa.questions import QUESTION_TYPES, answer_vocabulary

log = logging.getLogger(__name__)

#: Questions the templates do not contain, in and out of the answer space: they set the rejection threshold.
PARAPHRASES = (
    "What is this place?", "What does this image show?", "Is there any car?", "Do you see a bridge?",
    "How many tanks are in the picture?", "Are boats present?", "Which type of area is it?",
    "Are there more trees than houses?", "Is there a river in this picture?", "How many planes?",
)
OUT_OF_SCOPE = (
    "What is the capital of France?", "Who painted the Mona Lisa?", "What is the weather like today?",
    "When was this photo taken?", "What is your name?", "How do I cook pasta?",
    "What is the population of this city?", "Who is the mayor?", "What time is it?", "Translate hello into German.",
)


@dataclass
class VQATrainConfig:
    """Everything that determines a training run; written into the weights card."""

    encoder: str = DEFAULT_WEIGHTS
    datasets: tuple[str, ...] = DATASETS
    hidden: int = 512
    dropout: float = 0.3
    epochs: int = 12
    patience: int = 4  # early stopping on val accuracy
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    views: tuple[int, ...] = (0,)  # dihedral transforms of train images sampled as augmentation
    seed: int = 0
    limit: int | None = None  # images per dataset and split, for quick runs and tests


@dataclass
class SplitTensors:
    """A split as index arrays into its image-feature and question-embedding tables."""

    items: list[VQAItem]
    images: torch.Tensor  # (n_views, n_images, image_dim)
    questions: torch.Tensor  # (n_questions, question_dim)
    image_idx: torch.Tensor  # (n_items,)
    question_idx: torch.Tensor
    answer_idx: torch.Tensor
    type_idx: torch.Tensor


def answer_space() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(answers, answer_types): one class per (type, answer), so yes/no exist once per yes/no type."""
    pairs = [(t, a) for t, answers in answer_vocabulary().items() for a in answers]
    return tuple(a for _, a in pairs), tuple(t for t, _ in pairs)


def prepare_split(split: str, cfg: VQATrainConfig, encoder, views: Sequence[int] = (0,)) -> SplitTensors:
    items, records = build_vqa(split, cfg.seed, cfg.datasets, cfg.limit)
    feats = dataset_image_features(encoder, records, cfg.limit, views)
    image_ids = sorted({i.image_id for i in items})
    texts = sorted({i.question for i in items})
    answers, answer_types = answer_space()
    answer_index = {(t, a): j for j, (a, t) in enumerate(zip(answers, answer_types))}
    row = {image_id: k for k, image_id in enumerate(image_ids)}
    qrow = {q: k for k, q in enumerate(texts)}
    return SplitTensors(
        items=items,
        images=torch.from_numpy(np.stack([feats[i] for i in image_ids], axis=1)),
        questions=torch.from_numpy(encoder.encode_texts(texts)),
        image_idx=torch.tensor([row[i.image_id] for i in items]),
        question_idx=torch.tensor([qrow[i.question] for i in items]),
        answer_idx=torch.tensor([answer_index[(i.question_type, i.answer)] for i in items]),
        type_idx=torch.tensor([QUESTION_TYPES.index(i.question_type) for i in items]),
    )


def predict_logits(net: VQANet, data: SplitTensors, gold_types: bool = False, batch_size: int = 4096):
    """Masked answer logits and type logits for every item of a split (eval mode, view 0)."""
    net.eval()
    out, tout = [], []
    with torch.inference_mode():
        for s in range(0, len(data.items), batch_size):
            sl = slice(s, s + batch_size)
            types = data.type_idx[sl] if gold_types else None
            logits, type_logits = net(data.images[0, data.image_idx[sl]], data.questions[data.question_idx[sl]], types)
            out.append(logits)
            tout.append(type_logits)
    return torch.cat(out), torch.cat(tout)


def accuracy_by_type(correct: np.ndarray, items: Sequence[VQAItem]) -> dict[str, float]:
    """Overall and per-question-type accuracy in %."""
    types = np.array([i.question_type for i in items])
    out = {"overall": float(100 * correct.mean()) if len(correct) else 0.0}
    for t in QUESTION_TYPES:
        mask = types == t
        if mask.any():
            out[t] = float(100 * correct[mask].mean())
    return out


def calibrate(net: VQANet, val: SplitTensors, question_bank: np.ndarray, encoder) -> Calibration:
    """Temperature (val NLL), confidence threshold (val answers below it are wrong more often than
    right) and question-similarity threshold (between held-out paraphrases and off-topic questions)."""
    logits, _ = predict_logits(net, val, gold_types=True)
    temps = np.exp(np.linspace(np.log(0.25), np.log(4.0), 41))
    nll = [float(F.cross_entropy(logits / t, val.answer_idx)) for t in temps]
    temperature = float(temps[int(np.argmin(nll))])
    pred_logits, _ = predict_logits(net, val)
    probs = torch.softmax(pred_logits / temperature, -1)
    conf, pred = probs.max(-1)
    correct = (pred == val.answer_idx).numpy()
    conf = conf.numpy()
    min_confidence = 0.0
    for tau in np.arange(0.30, 0.951, 0.025):
        below = conf < tau
        if below.sum() >= 20 and correct[below].mean() <= 0.5:
            min_confidence = float(round(tau, 3))
    para = (encoder.encode_texts(list(PARAPHRASES)) @ question_bank.T).max(-1)
    off = (encoder.encode_texts(list(OUT_OF_SCOPE)) @ question_bank.T).max(-1)
    # keep every paraphrase answerable (with a margin); reject as much off-topic text as that allows
    threshold = float(para.min() - 0.02)
    if off.max() < para.min():
        threshold = min(threshold, float(para.min() + off.max()) / 2)
    log.info("question similarity: paraphrases >= %.3f, off-topic <= %.3f -> threshold %.3f",
             para.min(), off.max(), threshold)
    return Calibration(temperature=temperature, min_confidence=min_confidence,
                       min_question_similarity=round(threshold, 4))


def train_vqa(cfg: VQATrainConfig, name: str | None = "vqa-rs-lite", command: str = "", encoder=None) -> dict:
    """Train, calibrate and (with `name`) save the VQA model; returns history and val metrics."""
    from rsrag.encoders.rs_lite import RSLiteEncoder

    t0 = time.time()
    encoder = encoder or RSLiteEncoder(cfg.encoder, runtime="torch", device="cpu")
    train = prepare_split("train", cfg, encoder, cfg.views)
    val = prepare_split("val", cfg, encoder)
    feature_s = time.time() - t0
    # seeded here, after the encoder is built (which draws from torch's RNG), so a run does not
    # depend on whether the caller passed an encoder
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    answers, answer_types = answer_space()
    model_cfg = VQAConfig(answers=answers, answer_types=answer_types, hidden=cfg.hidden, dropout=cfg.dropout,
                          image_dim=train.images.shape[-1], question_dim=train.questions.shape[-1], encoder=cfg.encoder)
    net = VQANet(model_cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = len(train.items)
    steps = cfg.epochs * -(-n // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.1)
    history, stopping = [], EarlyStopping(cfg.patience)
    t1 = time.time()
    for epoch in range(cfg.epochs):
        net.train()
        order = torch.randperm(n, generator=gen)
        losses = []
        for s in range(0, n, cfg.batch_size):
            idx = order[s : s + cfg.batch_size]
            view = torch.randint(train.images.shape[0], (len(idx),), generator=gen)
            image = train.images[view, train.image_idx[idx]]
            logits, type_logits = net(image, train.questions[train.question_idx[idx]], train.type_idx[idx])
            loss = F.cross_entropy(logits, train.answer_idx[idx]) + F.cross_entropy(type_logits, train.type_idx[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        logits, _ = predict_logits(net, val)
        val_acc = accuracy_by_type((logits.argmax(-1) == val.answer_idx).numpy(), val.items)
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "val": val_acc})
        log.info("epoch %d loss %.4f val %s", epoch + 1, np.mean(losses), {k: round(v, 1) for k, v in val_acc.items()})
        if not stopping.improved(val_acc["overall"], net) and stopping.stop:
            break
    stopping.restore(net)
    train_s = time.time() - t1
    bank = train.questions.numpy()
    calibration = calibrate(net, val, bank, encoder)
    result = {
        "history": history,
        "best_val": history[int(np.argmax([h["val"]["overall"] for h in history]))]["val"],
        "questions": {"train": counts_by_type(train.items), "val": counts_by_type(val.items)},
        "distinct_train_questions": len(bank),
        "feature_seconds": round(feature_s, 1),
        "train_seconds": round(train_s, 1),
        "parameters": int(sum(p.numel() for p in net.parameters())),
    }
    model = VQAModel(net, model_cfg, calibration, bank, encoder=encoder, name=name or "vqa", encoder_id=encoder.id)
    if name:
        card = run_card(cfg, command, result, encoder_id=encoder.id)
        path = save_vqa(net, model_cfg, calibration, bank, name, card)
        result["weights"] = str(path)
        result["weights_bytes"] = path.stat().st_size
    result["calibration"] = asdict(calibration)
    result["model"] = model
    return result
