"""Learning-rate schedules: constant, reduce-on-plateau, Noam, inverse square root, and linear
decay to zero over the training budget."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, ReduceLROnPlateau

from transduce.config import SchedulerConfig


def noam_factor(step: int, warmup: int, d_model: int) -> float:
    """d^-0.5 * min(step^-0.5, step * warmup^-1.5)  (Vaswani et al. 2017), times the base lr."""
    step = max(step, 1)
    return d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)


def inverse_sqrt_factor(step: int, warmup: int) -> float:
    """Linear warmup to the base lr, then decay with 1/sqrt(step)  (fairseq's inverse_sqrt)."""
    step = max(step, 1)
    return step / warmup if step < warmup else (warmup / step) ** 0.5


def linear_factor(step: int, warmup: int, used: float) -> float:
    """Linear warmup to the base lr, then linear decay to 0 when the training budget is spent.

    `used` is the fraction of the budget spent after `step` updates. The budget's total number
    of updates is extrapolated from the pace so far, step / used: exact for a budget of
    updates, and for a time budget it follows the clock. Decaying to zero at the end of a
    fixed budget beats schedules that do not know the budget (Li et al. 2020, "Budgeted
    training").
    """
    step = max(step, 1)
    if step < warmup:
        return step / warmup
    total = step / max(used, 1e-12)
    return max(0.0, (total - step) / max(total - warmup, 1e-12))


def make_scheduler(cfg: SchedulerConfig, optimizer: torch.optim.Optimizer, d_model: int,
                   budget_used: Callable[[int], float] | None = None,
                   ) -> LRScheduler | ReduceLROnPlateau | None:
    """Per-step schedulers step after each update; plateau steps after each validation.
    `budget_used(step)` is the fraction of the training budget spent (for kind `linear`)."""
    if cfg.kind == "plateau":
        return ReduceLROnPlateau(optimizer, mode="max", factor=cfg.factor,
                                 patience=cfg.patience, min_lr=cfg.min_lr)
    if cfg.kind == "noam":
        return LambdaLR(optimizer, lambda s: noam_factor(s, cfg.warmup, d_model))
    if cfg.kind == "inverse_sqrt":
        return LambdaLR(optimizer, lambda s: inverse_sqrt_factor(s, cfg.warmup))
    if cfg.kind == "linear":
        if budget_used is None:
            raise ValueError("scheduler kind 'linear' needs the training budget (budget_used)")
        used = budget_used
        return LambdaLR(optimizer, lambda s: linear_factor(s, cfg.warmup, used(s)))
    return None
