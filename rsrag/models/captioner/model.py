"""The caption decoder: a small transformer over rs-lite's spatial features.

Memory the decoder cross-attends to:

* one global token (the image's 512-d shared-space embedding) and the 7x7 cells of the tuned tail's
  1280-channel map, each projected to `d_model` with a learned position per cell;
* retrieval-augmented variant only (`neighbours` > 0): one caption of each of the k nearest training
  images, as word tokens with a position and a neighbour-rank embedding. Word embeddings are shared
  with the decoder, so copying a neighbour's word is easy to learn.

Optionally (`encoder_layers`) a transformer encoder mixes the image tokens first; the committed models
skip it, as on a shared 2-core CPU every layer counts. A pre-norm decoder predicts the next word. The decoder is
written out (rather than `nn.TransformerDecoder`) so decoding can cache the memory's keys/values and
the self-attention keys/values of earlier words: each step then costs one token, not the whole prefix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class CaptionerConfig:
    """Architecture; stored in the weights card."""

    vocab_size: int
    feat_dim: int = 1280  # channels of rs-lite's tail map
    global_dim: int = 512  # rs-lite's shared embedding
    grid: int = 7  # cells per side of the tail map at 224 px
    d_model: int = 256
    heads: int = 4
    encoder_layers: int = 0  # transformer layers mixing the image tokens before the decoder (0: none)
    decoder_layers: int = 3
    ff_dim: int = 1024
    dropout: float = 0.1
    max_len: int = 24  # caption ids, <bos> and <eos> included
    neighbours: int = 0  # k nearest training images whose captions join the memory; 0 = plain model
    neighbour_len: int = 20  # ids kept per neighbour caption


class Attention(nn.Module):
    """Multi-head attention over keys/values that the caller may precompute and cache."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, d)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        return x.view(b, t, self.heads, d // self.heads).transpose(1, 2)

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.kv(x).chunk(2, dim=-1)
        return self._split(k), self._split(v)

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
        """`allowed`: bool mask broadcastable to (B, heads, T, S), True where a query may attend."""
        o = F.scaled_dot_product_attention(self._split(self.q(x)), k, v, attn_mask=allowed,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(o.transpose(1, 2).reshape(x.shape))


class DecoderLayer(nn.Module):
    """Pre-norm: causal self-attention, cross-attention to the memory, GELU feed-forward."""

    def __init__(self, d: int, heads: int, ff_dim: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.self_attn = Attention(d, heads, dropout)
        self.cross_attn = Attention(d, heads, dropout)
        self.ff = nn.Sequential(nn.Linear(d, ff_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_dim, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, memory_kv: tuple[torch.Tensor, torch.Tensor], memory_allowed: torch.Tensor,
                self_allowed: torch.Tensor | None, cache: list[torch.Tensor] | None = None) -> torch.Tensor:
        h = self.norm1(x)
        k, v = self.self_attn.keys_values(h)
        if cache is not None:  # incremental decoding: x holds only the newest token
            if cache:
                k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
            cache[:] = [k, v]
        x = x + self.drop(self.self_attn(h, k, v, self_allowed))
        x = x + self.drop(self.cross_attn(self.norm2(x), *memory_kv, memory_allowed))
        return x + self.drop(self.ff(self.norm3(x)))


@dataclass
class DecodeState:
    """What incremental decoding carries between steps, one row per hypothesis."""

    memory_kv: list[tuple[torch.Tensor, torch.Tensor]]  # per layer, the memory's keys and values
    memory_allowed: torch.Tensor  # (B, 1, 1, M)
    caches: list[list[torch.Tensor]] = field(default_factory=list)  # per layer, self-attention keys/values
    step: int = 0

    def select(self, rows: torch.Tensor) -> None:
        """Keep / reorder hypotheses (beam search)."""
        self.memory_kv = [(k[rows], v[rows]) for k, v in self.memory_kv]
        self.memory_allowed = self.memory_allowed[rows]
        self.caches = [[t[rows] for t in c] for c in self.caches]


class CaptionModel(nn.Module):
    def __init__(self, cfg: CaptionerConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.visual_in = nn.Sequential(nn.Linear(cfg.feat_dim, d), nn.LayerNorm(d))
        self.global_in = nn.Sequential(nn.Linear(cfg.global_dim, d), nn.LayerNorm(d))
        self.cell_pos = nn.Parameter(torch.randn(1, cfg.grid * cfg.grid + 1, d) * 0.02)
        self.embed = nn.Embedding(cfg.vocab_size, d, padding_idx=0)
        nn.init.normal_(self.embed.weight, std=d ** -0.5)
        self.pos = nn.Embedding(max(cfg.max_len, cfg.neighbour_len), d)
        nn.init.normal_(self.pos.weight, std=0.02)
        if cfg.neighbours:
            self.rank = nn.Embedding(cfg.neighbours, d)
            nn.init.normal_(self.rank.weight, std=0.02)
            self.text_norm = nn.LayerNorm(d)
        self.drop = nn.Dropout(cfg.dropout)
        self.encoder: nn.Module = nn.Identity()
        if cfg.encoder_layers:
            layer = nn.TransformerEncoderLayer(d, cfg.heads, cfg.ff_dim, cfg.dropout, activation="gelu",
                                               batch_first=True, norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, cfg.encoder_layers, norm=nn.LayerNorm(d),
                                                 enable_nested_tensor=False)
        self.layers = nn.ModuleList(DecoderLayer(d, cfg.heads, cfg.ff_dim, cfg.dropout)
                                    for _ in range(cfg.decoder_layers))
        self.out_norm = nn.LayerNorm(d)
        # untied: with tied weights the residual copy of the input word makes it the top prediction at init
        self.out = nn.Linear(d, cfg.vocab_size)
        self.register_buffer("causal", torch.ones(cfg.max_len, cfg.max_len, dtype=torch.bool).tril(),
                             persistent=False)

    def _words(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embed(ids) * math.sqrt(self.cfg.d_model)

    def encode(self, spatial: torch.Tensor, global_emb: torch.Tensor,
               neighbour_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) map, (B, 512) embedding, (B, k, L) neighbour caption ids -> memory (B, M, d) and
        its padding mask (B, M), True where a position is padding."""
        cells = self.visual_in(spatial.flatten(2).transpose(1, 2))
        tokens = torch.cat([self.global_in(global_emb)[:, None], cells], 1) + self.cell_pos
        memory = self.encoder(self.drop(tokens))
        pad = torch.zeros(memory.shape[:2], dtype=torch.bool, device=memory.device)
        if self.cfg.neighbours:
            if neighbour_ids is None:
                raise ValueError("this captioner is retrieval-augmented: it needs neighbour captions")
            b, k, length = neighbour_ids.shape
            pos = self.pos.weight[:length][None, None]
            rank = self.rank.weight[:k][None, :, None]
            words = self.text_norm((self._words(neighbour_ids) + pos + rank).reshape(b, k * length, -1))
            memory = torch.cat([memory, self.drop(words)], 1)
            pad = torch.cat([pad, neighbour_ids.reshape(b, -1) == 0], 1)
        return memory, pad

    def start(self, memory: torch.Tensor, pad: torch.Tensor) -> DecodeState:
        """Project the memory's keys/values once per layer for incremental decoding."""
        return DecodeState([layer.cross_attn.keys_values(memory) for layer in self.layers], ~pad[:, None, None],
                           [[] for _ in self.layers])

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(self.out_norm(h))

    def step(self, state: DecodeState, word: torch.Tensor) -> torch.Tensor:
        """Feed the newest word (B,) of every hypothesis; returns next-word logits (B, V)."""
        x = self._words(word[:, None]) + self.pos.weight[state.step]
        for layer, kv, cache in zip(self.layers, state.memory_kv, state.caches):
            x = layer(x, kv, state.memory_allowed, None, cache)
        state.step += 1
        return self._logits(x[:, 0])

    def decode(self, memory: torch.Tensor, memory_pad: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Next-word logits (B, T, V) for whole caption prefixes `ids` (B, T) (teacher forcing)."""
        t = ids.shape[1]
        x = self.drop(self._words(ids) + self.pos.weight[:t])
        self_allowed = self.causal[:t, :t][None, None] & (ids != 0)[:, None, None]
        memory_allowed = ~memory_pad[:, None, None]
        for layer in self.layers:
            x = layer(x, layer.cross_attn.keys_values(memory), memory_allowed, self_allowed)
        return self._logits(x)

    def forward(self, spatial: torch.Tensor, global_emb: torch.Tensor, ids: torch.Tensor,
                neighbour_ids: torch.Tensor | None = None) -> torch.Tensor:
        memory, pad = self.encode(spatial, global_emb, neighbour_ids)
        return self.decode(memory, pad, ids)
