"""Records and small helpers shared by the search strategies."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Hypothesis:
    ids: list[int]  # target ids without <s> and </s>
    score: float  # search score (length-penalised log-probability for beam search)
    log_prob: float  # sum of token log-probabilities, </s> included
    attention: torch.Tensor | None = None  # (len(ids) + 1, S): one row per output incl. </s>


@dataclass
class StepChoice:
    """What a beam search step chose, for sentences a < A with K beams each."""

    ended: list[tuple[int, int, float, bool]]  # (a, parent row, log-prob, constraints met)
    scores: torch.Tensor  # (A, K) cumulative log-probs of the hypotheses that go on
    order: torch.Tensor  # (A*K,) the parent row of each
    tokens: torch.Tensor  # (A*K,) the token each adds
    top_ended: list[bool]  # per sentence: its best candidate ended in </s>


def max_lengths(src_mask: torch.Tensor, ratio: float, offset: int,
                cap: int | None = None) -> torch.Tensor:
    """Per-sentence maximum output length: ratio * source length + offset, (B,)."""
    lengths = (src_mask.sum(1).float() * ratio).long() + offset
    return lengths.clamp(max=cap) if cap is not None else lengths


def length_penalty(lengths: torch.Tensor, alpha: float) -> torch.Tensor:
    """GNMT length penalty ((5 + |Y|) / 6) ** alpha (Wu et al. 2016); 1 when alpha = 0."""
    return ((5.0 + lengths.float()) / 6.0) ** alpha


def coverage_penalty(attention: torch.Tensor, src_len: int, beta: float) -> float:
    """GNMT's coverage penalty (Wu et al. 2016): beta * sum_i log(min(sum_j a_ij, 1)) over
    the `src_len` real source positions i (</s> included) of attention (T, S); 0 for a
    source fully attended to, negative otherwise."""
    if beta == 0.0:
        return 0.0
    covered = attention[:, :src_len].float().sum(0).clamp(min=1e-6, max=1.0)  # (S',)
    return beta * float(covered.log().sum())


def force_eos(log_probs: torch.Tensor, done: torch.Tensor, eos_id: int) -> torch.Tensor:
    """Rows where `done` (B,) is True may only produce </s>."""
    if bool(done.any()):
        forced = torch.full_like(log_probs[0], float("-inf"))
        forced[eos_id] = 0.0
        log_probs = torch.where(done.unsqueeze(1), forced, log_probs)
    return log_probs
