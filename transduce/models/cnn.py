"""Convolutional encoder: gated convolutions with residual connections (Gehring et al. 2017)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from transduce.models.dropout import Dropout
from transduce.models.seq2seq import EncoderOutput


class CNNEncoder(nn.Module):
    """Embedded source (B, S, E) -> states (B, S, H).

    Pads are zeroed before every convolution, so they look exactly like the zero padding
    past a sentence's end: the encoding does not depend on batch-mates.
    """

    def __init__(self, emb_dim: int, hidden: int, layers: int, kernel_size: int,
                 dropout: float, max_positions: int = 1024):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"model.cnn_kernel_size must be odd, got {kernel_size}")
        self.positions = nn.Embedding(max_positions, emb_dim)
        self.proj_in = nn.Linear(emb_dim, hidden)
        self.convs = nn.ModuleList(
            nn.Conv1d(hidden, 2 * hidden, kernel_size, padding=kernel_size // 2)
            for _ in range(layers))
        self.dropout = Dropout(dropout)
        self.out_dim = hidden

    def forward(self, emb: torch.Tensor, src_mask: torch.Tensor) -> EncoderOutput:
        pos = torch.arange(emb.size(1), device=emb.device)
        x = self.proj_in(self.dropout(emb + self.positions(pos)))  # (B, S, H)
        keep = src_mask.unsqueeze(-1).to(x.dtype)  # (B, S, 1)
        for conv in self.convs:
            y = conv(self.dropout(x * keep).transpose(1, 2))  # (B, 2H, S)
            x = (F.glu(y, dim=1).transpose(1, 2) + x) * math.sqrt(0.5)
        x = x * keep
        final = x.sum(1) / keep.sum(1).clamp(min=1)  # (B, H) mean over real tokens
        return EncoderOutput(x, src_mask, final)
