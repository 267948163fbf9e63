"""Learning-rate schedules: constant, reduce-on-plateau, Noam and inverse square root."""

from __future__ import annotations

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


def make_scheduler(cfg: SchedulerConfig, optimizer: torch.optim.Optimizer,
                   d_model: int) -> LRScheduler | ReduceLROnPlateau | None:
    """Per-step schedulers step after each update; plateau steps after each validation."""
    if cfg.kind == "plateau":
        return ReduceLROnPlateau(optimizer, mode="max", factor=cfg.factor,
                                 patience=cfg.patience, min_lr=cfg.min_lr)
    if cfg.kind == "noam":
        return LambdaLR(optimizer, lambda s: noam_factor(s, cfg.warmup, d_model))
    if cfg.kind == "inverse_sqrt":
        return LambdaLR(optimizer, lambda s: inverse_sqrt_factor(s, cfg.warmup))
    return None
