"""Decoding engines: what runs the search behind a `Translator`.

A `Translator` turns text into token ids, sorts and batches them, and turns hypotheses back
into text; an engine decodes batches of source ids into hypotheses. Two engines exist:
`TorchEngine` (this module: transduce's own searches over a PyTorch model or an ensemble)
and `CTranslate2Engine` (ct2.py: a CTranslate2 export). Both take the same frozen
`SearchOptions` and per-sentence `Constraints`, and report the same `Hypothesis` records, so
any model directory decodes through either with no special case.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import torch

from transduce.config import DecodeConfig
from transduce.data.batching import collate
from transduce.models import Seq2Seq
from transduce.models.ensemble import Ensemble
from transduce.models.quantize import quantize_int8
from transduce.search import (
    Constraints,
    Hypothesis,
    beam_search,
    greedy_search,
    max_lengths,
    sample,
)
from transduce.search.options import SearchOptions
from transduce.text import Vocab


class Engine(Protocol):
    """Decodes batches of source ids (without </s>: the engine adds what its model needs)."""

    decode: DecodeConfig  # length limits and penalties (the Translator's defaults too)
    quantize: str  # "none" or "int8": how the weights are held
    max_positions: int | None  # the longest sequence the model takes; None: no limit

    def decode_batches(self, batches: list[list[list[int]]], options: SearchOptions,
                       constraints: list[list[Constraints]]
                       ) -> Iterator[list[list[Hypothesis]]]:
        """For every batch, in order, each sentence's hypotheses, best first."""
        ...


class TorchEngine:
    """transduce's searches (greedy, beam, constrained beam, sampling) over a PyTorch model.

    `quantize` ("none" or "int8", default: decode.quantize) decodes with a copy of the model
    whose linear layers are int8 (CPU only); the model passed in is left as it is.
    """

    def __init__(self, model: Seq2Seq | Ensemble, src_vocab: Vocab, tgt_vocab: Vocab,
                 decode: DecodeConfig, device: str | torch.device = "cpu",
                 quantize: str | None = None):
        self.decode, self.device = decode, torch.device(device)
        self.quantize = quantize if quantize is not None else decode.quantize
        if self.quantize not in ("none", "int8"):
            raise ValueError(f"quantize must be 'none' or 'int8', got {self.quantize!r}")
        if self.quantize == "int8" and self.device.type != "cpu":
            raise ValueError(f"int8 decoding runs on CPU only, not on {self.device}; "
                             f"use --device cpu or quantize: none")
        self.model = model.to(self.device).eval()
        if self.quantize == "int8":
            self.model = quantize_int8(self.model)
        self.src_vocab, self.tgt_vocab = src_vocab, tgt_vocab
        self.max_positions: int | None = getattr(self.model, "max_positions", None)

    def decode_batches(self, batches: list[list[list[int]]], options: SearchOptions,
                       constraints: list[list[Constraints]]
                       ) -> Iterator[list[list[Hypothesis]]]:
        for src_ids, cons in zip(batches, constraints):
            yield self.decode_batch(src_ids, options, cons)

    @torch.no_grad()
    def decode_batch(self, src_ids: list[list[int]], o: SearchOptions,
                     constraints: list[Constraints] | None = None) -> list[list[Hypothesis]]:
        """One padded batch. Sentences with constraints take beam search with at least one
        beam per bank (constraint tokens + 1, up to 10)."""
        v, d = self.src_vocab, self.decode
        batch = collate(src_ids, None, v.pad_id, v.start_id, v.eos_id).to(self.device)
        limit = max_lengths(batch.src_mask, d.max_len_ratio, d.max_len_offset, self.max_positions)
        if o.max_len is not None:  # the limit counts </s>
            limit = limit.clamp(max=o.max_len + 1)
        bos, eos = self.tgt_vocab.start_id, self.tgt_vocab.eos_id
        args = (self.model, batch.src_ids, batch.src_mask, bos, eos, limit)
        if o.sampling:
            return [[h] for h in sample(*args, o.temperature, o.top_k, o.top_p, o.generator,
                                        o.controls)]
        if constraints and any(c.phrases for c in constraints):
            beam = max(o.beam, min(max(c.total for c in constraints) + 1, 10))
            return beam_search(*args, beam_size=beam, n_best=o.nbest, alpha=d.length_penalty,
                               return_attention=o.return_attention, controls=o.controls,
                               beta=o.coverage_penalty, constraints=constraints)
        if o.beam == 1 and o.nbest == 1:
            return [[h] for h in greedy_search(*args, return_attention=o.return_attention,
                                               controls=o.controls)]
        return beam_search(*args, beam_size=o.beam, n_best=o.nbest, alpha=d.length_penalty,
                           return_attention=o.return_attention, controls=o.controls,
                           beta=o.coverage_penalty)
