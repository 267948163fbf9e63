"""Attention over encoder states: Bahdanau (additive) and Luong (dot, general).

All modules score queries (B, T, Q) against keys (B, S, *) and return the context
(B, T, K) and weights (B, T, S); `mask` (B, S) is True at real source tokens.
Keys are projected once per sentence by `project_keys`, not at every decoder step.
"""

from __future__ import annotations

import torch
from torch import nn


def _attend(scores: torch.Tensor, values: torch.Tensor,
            mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))  # (B, T, S)
    weights = torch.softmax(scores, dim=-1)
    return torch.bmm(weights, values), weights  # (B, T, K), (B, T, S)


class BahdanauAttention(nn.Module):
    """score(q, k) = v^T tanh(W_q q + W_k k)  (Bahdanau et al. 2015)."""

    def __init__(self, query_dim: int, key_dim: int, attn_dim: int):
        super().__init__()
        self.key_layer = nn.Linear(key_dim, attn_dim, bias=False)
        self.query_layer = nn.Linear(query_dim, attn_dim, bias=False)
        self.energy = nn.Linear(attn_dim, 1, bias=False)

    def project_keys(self, memory: torch.Tensor) -> torch.Tensor:
        return self.key_layer(memory)  # (B, S, A)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.query_layer(query).unsqueeze(2)  # (B, T, 1, A)
        scores = self.energy(torch.tanh(q + keys.unsqueeze(1))).squeeze(-1)  # (B, T, S)
        return _attend(scores, values, mask)


class LuongAttention(nn.Module):
    """score(q, k) = q^T k ('dot') or q^T W k ('general')  (Luong et al. 2015)."""

    def __init__(self, query_dim: int, key_dim: int, kind: str = "general"):
        super().__init__()
        if kind not in ("dot", "general"):
            raise ValueError(f"Luong attention kind must be 'dot' or 'general', got {kind!r}")
        if kind == "dot" and query_dim != key_dim:
            raise ValueError(f"dot attention needs equal query and key sizes "
                             f"({query_dim} != {key_dim}); use 'general'")
        self.key_layer = nn.Linear(key_dim, query_dim, bias=False) if kind == "general" else None

    def project_keys(self, memory: torch.Tensor) -> torch.Tensor:
        return memory if self.key_layer is None else self.key_layer(memory)  # (B, S, Q)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = torch.bmm(query, keys.transpose(1, 2))  # (B, T, S)
        return _attend(scores, values, mask)
