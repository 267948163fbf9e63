"""Id pairs for training: encoded in memory (small sets) or memory-mapped from a cache."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from transduce.data.batching import Batch
from transduce.text import Codec


@dataclass
class EncodedCorpus:
    src: list[list[int]]
    tgt: list[list[int]]
    n_empty: int = 0  # pairs dropped because a side was empty
    n_too_long: int = 0  # pairs dropped because a side exceeded max_len tokens

    def __len__(self) -> int:
        return len(self.src)

    @property
    def n_tgt_tokens(self) -> int:
        return sum(len(t) + 1 for t in self.tgt)


def encode_pairs(src_texts: list[str], tgt_texts: list[str], src: Codec, tgt: Codec,
                 max_len: int | None = None) -> EncodedCorpus:
    out = EncodedCorpus([], [])
    for s, t in zip(src_texts, tgt_texts):
        s_ids, t_ids = src.encode(s), tgt.encode(t)
        if not s_ids or not t_ids:
            out.n_empty += 1
        elif max_len is not None and (len(s_ids) > max_len or len(t_ids) > max_len):
            out.n_too_long += 1
        else:
            out.src.append(s_ids)
            out.tgt.append(t_ids)
    return out


class PreparedCorpus:
    """A prepared cache (data/prepare.py), memory-mapped: ids are read from the files only
    for the batch at hand, so memory does not grow with the corpus. Lengths (8 bytes a
    pair) and the corpus of each pair stay in memory for batching."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        meta = json.loads((self.path / "meta.json").read_text(encoding="utf-8"))
        dtype = np.dtype(meta["dtype"])
        self.src_ids = np.memmap(self.path / "src.ids", dtype=dtype, mode="r")
        self.tgt_ids = np.memmap(self.path / "tgt.ids", dtype=dtype, mode="r")
        self.index = np.load(self.path / "index.npy", mmap_mode="r")
        self.src_len = np.array(self.index["src_len"], dtype=np.int32)
        self.tgt_len = np.array(self.index["tgt_len"], dtype=np.int32)
        self.per_corpus: list[int] = meta["counts"]["per_corpus"]

    def __len__(self) -> int:
        return len(self.src_len)

    def epoch_examples(self, weights: Sequence[float], rng: np.random.Generator) -> np.ndarray:
        """The pairs of one epoch: corpus c contributes weights[c] x its size, i.e. every
        pair int(w) times plus a random fraction w - int(w) of its pairs once more."""
        dtype = np.int32 if len(self) < 2**31 else np.int64  # half the memory of int64
        if len(self.per_corpus) == 1 and weights[0] == 1.0:
            return np.arange(len(self), dtype=dtype)
        corpus = np.asarray(self.index["corpus"])
        parts = []
        for c, w in enumerate(weights):
            rows = np.flatnonzero(corpus == c).astype(dtype)
            parts += [rows] * int(w)
            extra = round((w - int(w)) * len(rows))
            if extra:
                parts.append(rng.choice(rows, extra, replace=False))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def ids(self, rows: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The source and target ids of `rows` (views of the memory map)."""
        idx = self.index[np.asarray(rows)]
        src = [self.src_ids[o:o + n] for o, n in zip(idx["src_off"], idx["src_len"])]
        tgt = [self.tgt_ids[o:o + n] for o, n in zip(idx["tgt_off"], idx["tgt_len"])]
        return src, tgt

    def collate(self, rows: np.ndarray, pad_id: int, bos_id: int, eos_id: int,
                src_pad_id: int | None = None, src_eos_id: int | None = None) -> Batch:
        """The batch of `rows`, as `batching.collate` pads it, built with array gathers."""
        idx = self.index[np.asarray(rows)]
        s_pad = pad_id if src_pad_id is None else src_pad_id
        s_eos = eos_id if src_eos_id is None else src_eos_id
        src = _padded(self.src_ids, idx["src_off"], idx["src_len"], s_pad, None, s_eos)
        tgt_in = _padded(self.tgt_ids, idx["tgt_off"], idx["tgt_len"], pad_id, bos_id, None)
        tgt_out = _padded(self.tgt_ids, idx["tgt_off"], idx["tgt_len"], pad_id, None, eos_id)
        src_t = torch.from_numpy(src)
        return Batch(src_t, src_t != s_pad, torch.from_numpy(tgt_in), torch.from_numpy(tgt_out),
                     int(idx["tgt_len"].sum()) + len(idx))


def _padded(ids: np.ndarray, offsets: np.ndarray, lengths: np.ndarray, pad_id: int,
            first: int | None, last: int | None) -> np.ndarray:
    """(B, W) int64: row i is [first] + ids[offsets[i]:offsets[i] + lengths[i]] + [last]
    (either optional), padded with pad_id."""
    lengths = lengths.astype(np.int64)
    lead = 0 if first is None else 1
    width = max(int(lengths.max(initial=0)) + lead + (last is not None), 1)
    out = np.full((len(lengths), width), pad_id, dtype=np.int64)
    if first is not None:
        out[:, 0] = first
    cols = np.arange(int(lengths.max(initial=0)))
    real = cols[None, :] < lengths[:, None]  # (B, L)
    positions = offsets.astype(np.int64)[:, None] + cols[None, :]
    out[:, lead:lead + len(cols)][real] = ids[positions[real]]
    if last is not None:
        out[np.arange(len(lengths)), lengths + lead] = last
    return out
