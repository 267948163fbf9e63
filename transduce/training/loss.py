"""Token-level cross-entropy with label smoothing (Szegedy et al. 2016) that ignores padding."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def sequence_loss(logits: torch.Tensor, targets: torch.Tensor, pad_id: int,
                  label_smoothing: float = 0.0) -> torch.Tensor:
    """Summed loss over real target tokens. logits (B, T, V), targets (B, T) -> scalar."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1),
                           ignore_index=pad_id, label_smoothing=label_smoothing,
                           reduction="sum")
