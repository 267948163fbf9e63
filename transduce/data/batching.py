"""Batches of padded id tensors, grouped by length under a token budget."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch


@dataclass
class Batch:
    """A padded batch. Masks are True at real tokens; pad positions hold `pad_id`."""

    src_ids: torch.Tensor  # (B, S)
    src_mask: torch.Tensor  # (B, S) bool
    tgt_in: torch.Tensor | None  # (B, T): <s> y1 .. y_{n} (<s>: the decoder's start id)
    tgt_out: torch.Tensor | None  # (B, T): y1 .. y_{n} </s>
    n_tgt_tokens: int

    def to(self, device: torch.device) -> Batch:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=True)

        return Batch(self.src_ids.to(device, non_blocking=True),
                     self.src_mask.to(device, non_blocking=True), move(self.tgt_in),
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
            bos_id: int, eos_id: int, src_pad_id: int | None = None,
            src_eos_id: int | None = None) -> Batch:
    """Pad source ids (with </s> appended) and build decoder input/output from target ids.
    `pad_id`, `bos_id` (the decoder's start id) and `eos_id` are the target vocabulary's;
    the source side uses `src_pad_id` and `src_eos_id` where its vocabulary differs."""
    s_pad = pad_id if src_pad_id is None else src_pad_id
    s_eos = eos_id if src_eos_id is None else src_eos_id
    src_ids = pad([list(s) + [s_eos] for s in src], s_pad)
    if tgt is None:
        return Batch(src_ids, src_ids != s_pad, None, None, 0)
    tgt_in = pad([[bos_id] + list(t) for t in tgt], pad_id)
    tgt_out = pad([list(t) + [eos_id] for t in tgt], pad_id)
    return Batch(src_ids, src_ids != s_pad, tgt_in, tgt_out, int((tgt_out != pad_id).sum()))


def make_batches(src_lens: Sequence[int], tgt_lens: Sequence[int], batch_tokens: int,
                 seed: int | None = None, max_sentences: int | None = None) -> list[list[int]]:
    """Group example indices into batches of about `batch_tokens` padded tokens.

    Examples are sorted by (tgt, src) length, with random tie-breaking when `seed` is
    given, so each batch holds similar lengths and padding stays small; then the order
    of batches is shuffled. The same seed gives the same batches (resumable epochs).
    """
    rng = np.random.default_rng(seed) if seed is not None else None
    batches = plan_batches(np.asarray(src_lens, dtype=np.int64),
                           np.asarray(tgt_lens, dtype=np.int64), np.arange(len(src_lens)),
                           batch_tokens, rng, max_sentences=max_sentences)
    return [b.tolist() for b in batches]


def plan_batches(src_lens: np.ndarray, tgt_lens: np.ndarray, examples: np.ndarray,
                 batch_tokens: int, rng: np.random.Generator | None,
                 window: int | None = None, max_sentences: int | None = None) -> list[np.ndarray]:
    """Batches of `examples` (indices into the length arrays), length-bucketed within
    shuffled windows.

    With `rng`, the examples are shuffled, then each window of `window` examples (all of
    them when None) is sorted by (tgt, src) length, the shuffle breaking ties, and cut
    into batches whose padded size, (longest side + 1) x sentences, stays within
    `batch_tokens`; finally the order of all batches is shuffled. Without `rng`, the
    examples are sorted as they come and the batches keep their order.
    """
    order = rng.permutation(examples) if rng is not None else np.asarray(examples)
    window = window or max(len(order), 1)
    batches: list[np.ndarray] = []
    for start in range(0, len(order), window):
        part = order[start:start + window]
        part = part[np.lexsort((src_lens[part], tgt_lens[part]))]  # stable: ties stay shuffled
        longest = np.maximum(src_lens[part], tgt_lens[part]) + 1
        bounds = _cut(longest, batch_tokens, max_sentences)
        batches += [part[a:b] for a, b in pairwise(bounds)]
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def _cut(longest: np.ndarray, batch_tokens: int, max_sentences: int | None) -> list[int]:
    """Boundaries of greedy batches along `longest` (each example's padded length): a batch
    grows while max(longest) x size <= batch_tokens; it holds at least one example."""
    bounds, i, n = [0], 0, len(longest)
    while i < n:
        cap = max(1, batch_tokens // int(longest[i]))  # no batch can hold more
        if max_sentences is not None:
            cap = min(cap, max_sentences)
        widest = np.maximum.accumulate(longest[i:i + cap])
        over = np.flatnonzero(widest * np.arange(1, len(widest) + 1) > batch_tokens)
        i += max(int(over[0]) if len(over) else len(widest), 1)
        bounds.append(i)
    return bounds
