"""The pieces every rsrag training loop shares (rs-lite encoder, captioner, VQA): early stopping on
a validation score that keeps the best epoch's weights, and the warm-up + cosine learning-rate schedule."""

from __future__ import annotations

import math

import torch


class EarlyStopping:
    """Tracks a validation score (higher is better) epoch by epoch; keeps a copy of the weights of
    the best epoch and says when `patience` epochs in a row brought no gain."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best = float("-inf")
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad = 0

    def improved(self, score: float, module: torch.nn.Module) -> bool:
        """Record an epoch's score; True (and its weights kept) when it beats every earlier epoch."""
        if score > self.best:
            self.best, self.bad = score, 0
            self.best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            return True
        self.bad += 1
        return False

    @property
    def stop(self) -> bool:
        return self.bad >= self.patience

    def restore(self, module: torch.nn.Module) -> None:
        """Load the best epoch's weights back into `module`."""
        if self.best_state is None:
            raise RuntimeError("no epoch has been scored yet")
        module.load_state_dict(self.best_state)


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int
                  ) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over `warmup_steps`, then cosine decay to 0 at `total_steps` (step once per batch)."""

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / warmup_steps)
        return warm * 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
