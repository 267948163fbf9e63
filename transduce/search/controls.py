"""Per-step controls over the next token's log-probabilities, shared by every search:
a minimum length, no repeated n-grams, and a repetition penalty.

Each search calls `Controls.apply(log_probs, history, t)` before choosing tokens, with the
tokens each row has produced so far.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Controls:
    min_len: int = 0  # tokens before </s> may be produced
    no_repeat_ngram_size: int = 0  # n: no n-gram occurs twice in an output (0: off)
    # theta > 1: the log-probability of a token already in the output is multiplied by
    # theta (it is negative, so the token becomes less likely), then the row is
    # renormalized; the CTRL penalty (Keskar et al. 2019) on log-probabilities instead of
    # logits. 1: off.
    repetition_penalty: float = 1.0

    def __post_init__(self) -> None:
        if self.min_len < 0 or self.no_repeat_ngram_size < 0:
            raise ValueError("min_len and no_repeat_ngram_size must be >= 0")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")

    @property
    def active(self) -> bool:
        return bool(self.min_len or self.no_repeat_ngram_size or self.repetition_penalty != 1.0)

    def apply(self, log_probs: torch.Tensor, history: torch.Tensor, eos_id: int) -> torch.Tensor:
        """log_probs (N, V) of the next token after `history` (N, t), the tokens produced
        so far (without <s>) -> controlled log-probs (N, V)."""
        if not self.active:
            return log_probs
        t = history.size(1)
        if self.repetition_penalty != 1.0 and t:
            seen = torch.zeros_like(log_probs, dtype=torch.bool).scatter_(1, history, True)
            scaled = torch.where(seen, log_probs * self.repetition_penalty, log_probs)
            log_probs = torch.log_softmax(scaled, dim=-1)
        if self.no_repeat_ngram_size:
            log_probs = ban_repeated_ngrams(log_probs, history, self.no_repeat_ngram_size)
        if t < self.min_len:
            log_probs = log_probs.clone()
            log_probs[:, eos_id] = float("-inf")
        stuck = torch.isinf(log_probs).all(-1)  # everything banned: let the row end
        if bool(stuck.any()):
            log_probs[stuck, eos_id] = 0.0
        return log_probs


def ban_repeated_ngrams(log_probs: torch.Tensor, history: torch.Tensor, n: int) -> torch.Tensor:
    """-inf for every token that would complete an n-gram already in its row's history."""
    t = history.size(1)
    if t < n:  # no complete n-gram yet
        return log_probs
    if n == 1:
        return log_probs.scatter(1, history, float("-inf"))
    grams = history.unfold(1, n, 1)  # (N, t-n+1, n)
    tail = history[:, t - n + 1:]  # (N, n-1): the last n-1 tokens
    match = (grams[:, :, :-1] == tail.unsqueeze(1)).all(-1)  # (N, t-n+1)
    rows, cols = match.nonzero(as_tuple=True)
    if rows.numel() == 0:
        return log_probs
    log_probs = log_probs.clone()
    log_probs[rows, grams[rows, cols, -1]] = float("-inf")
    return log_probs


NO_CONTROLS = Controls()
