"""Batches of padded id tensors, grouped by length under a token budget."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass
class Batch:
    """A padded batch. Masks are True at real tokens; pad positions hold `pad_id`."""

    src_ids: torch.Tensor  # (B, S)
    src_mask: torch.Tensor  # (B, S) bool
    tgt_in: torch.Tensor | None  # (B, T): <s> y1 .. y_{n}
    tgt_out: torch.Tensor | None  # (B, T): y1 .. y_{n} </s>
    n_tgt_tokens: int

    def to(self, device: torch.device) -> "Batch":
        move = (lambda t: None if t is None else t.to(device, non_blocking=True))
        return Batch(move(self.src_ids), move(self.src_mask), move(self.tgt_in),
                     move(self.tgt_out), self.n_tgt_tokens)

    @property
    def size(self) -> int:
        return self.src_ids.size(0)


def pad(seqs: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    width = max((len(s) for s in seqs), default=0)
    out = torch.full((len(seqs), max(width, 1)), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out


def collate(src: Sequence[Sequence[int]], tgt: Sequence[Sequence[int]] | None, pad_id: int,
            bos_id: int, eos_id: int) -> Batch:
    """Pad source ids (with </s> appended) and build decoder input/output from target ids."""
    src_ids = pad([list(s) + [eos_id] for s in src], pad_id)
    if tgt is None:
        return Batch(src_ids, src_ids != pad_id, None, None, 0)
    tgt_in = pad([[bos_id] + list(t) for t in tgt], pad_id)
    tgt_out = pad([list(t) + [eos_id] for t in tgt], pad_id)
    return Batch(src_ids, src_ids != pad_id, tgt_in, tgt_out, int((tgt_out != pad_id).sum()))


def make_batches(src_lens: Sequence[int], tgt_lens: Sequence[int], batch_tokens: int,
                 seed: int | None = None, max_sentences: int | None = None) -> list[list[int]]:
    """Group example indices into batches of about `batch_tokens` padded tokens.

    Examples are sorted by (tgt, src) length, with random tie-breaking when `seed` is
    given, so each batch holds similar lengths and padding stays small; then the order
    of batches is shuffled. The same seed gives the same batches (resumable epochs).
    """
    rng = random.Random(seed) if seed is not None else None
    order = list(range(len(src_lens)))
    if rng is not None:
        rng.shuffle(order)
    order.sort(key=lambda i: (tgt_lens[i], src_lens[i]))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        length = max(src_lens[i], tgt_lens[i]) + 1
        too_many = max_sentences is not None and len(current) >= max_sentences
        if current and (max(longest, length) * (len(current) + 1) > batch_tokens or too_many):
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, length)
    if current:
        batches.append(current)
    if rng is not None:
        rng.shuffle(batches)
    return batches
