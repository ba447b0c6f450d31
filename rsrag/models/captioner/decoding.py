"""Greedy and beam-search decoding, batched over images.

Beam search keeps `beam_size` hypotheses per image; a finished hypothesis stays in its beam and can
only be extended by padding at no cost. The winner is chosen by log-probability divided by
length ** `alpha` (length normalisation), so short generic captions do not win by default. alpha = 1
(the mean word log-probability) was chosen on the RSICD and UCM val splits over 0.3 and 0.7.
`<unk>`, `<pad>` and `<bos>` are never generated.
"""

from __future__ import annotations

import torch

from rsrag.models.captioner.model import CaptionModel, DecodeState
from rsrag.models.captioner.vocab import Vocab


def _next_logp(model: CaptionModel, state: DecodeState, word: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(model.step(state, word).float(), dim=-1)
    logp[:, [Vocab.pad_id, Vocab.bos_id, Vocab.unk_id]] = float("-inf")
    return logp


@torch.inference_mode()
def greedy_decode(model: CaptionModel, memory: torch.Tensor, pad: torch.Tensor) -> list[list[int]]:
    """Most likely next word at each step; returns word ids without <bos>, cut at <eos>."""
    b = memory.shape[0]
    state = model.start(memory, pad)
    word = torch.full((b,), Vocab.bos_id, dtype=torch.long, device=memory.device)
    done = torch.zeros(b, dtype=torch.bool, device=memory.device)
    out = []
    for _ in range(model.cfg.max_len - 1):
        word = _next_logp(model, state, word).argmax(-1).masked_fill(done, Vocab.pad_id)
        out.append(word)
        done |= word == Vocab.eos_id
        if done.all():
            break
    return [_strip(row) for row in torch.stack(out, 1).tolist()]


@torch.inference_mode()
def beam_decode(model: CaptionModel, memory: torch.Tensor, pad: torch.Tensor, beam_size: int = 3,
                alpha: float = 1.0) -> list[list[int]]:
    """Beam search with length normalisation; `beam_size` 1 is greedy decoding."""
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, not {beam_size}")
    if beam_size == 1:
        return greedy_decode(model, memory, pad)
    b, k, dev = memory.shape[0], beam_size, memory.device
    state = model.start(memory.repeat_interleave(k, 0), pad.repeat_interleave(k, 0))
    word = torch.full((b * k,), Vocab.bos_id, dtype=torch.long, device=dev)
    ids = torch.zeros((b * k, 0), dtype=torch.long, device=dev)
    scores = torch.full((b, k), float("-inf"), device=dev)
    scores[:, 0] = 0.0  # all beams start identical: expand only the first
    done = torch.zeros(b * k, dtype=torch.bool, device=dev)
    lengths = torch.zeros(b * k, device=dev)
    for _ in range(model.cfg.max_len - 1):
        logp = _next_logp(model, state, word)
        logp[done] = float("-inf")
        logp[done, Vocab.pad_id] = 0.0  # a finished hypothesis only pads, at no cost
        vocab = logp.shape[1]
        scores, flat = (scores.reshape(-1, 1) + logp).reshape(b, k * vocab).topk(k, dim=1)
        src = (torch.arange(b, device=dev)[:, None] * k + flat // vocab).reshape(-1)
        word = (flat % vocab).reshape(-1)
        state.select(src)
        ids = torch.cat([ids[src], word[:, None]], 1)
        lengths = lengths[src] + (~done[src]).float()
        done = done[src] | (word == Vocab.eos_id)
        if done.all():
            break
    best = (scores / lengths.reshape(b, k).clamp(min=1) ** alpha).argmax(1)
    return [_strip(row) for row in ids[torch.arange(b, device=dev) * k + best].tolist()]


def _strip(row: list[int]) -> list[int]:
    out = []
    for i in row:
        if i == Vocab.eos_id:
            break
        out.append(i)
    return out
