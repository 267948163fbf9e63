"""Several models decoding as one: at every step their log-probabilities are averaged
(and renormalized: a product of experts, as Marian and Sockeye's default ensembles do).
An `Ensemble` follows the model contract of seq2seq.py, so every search decodes it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from transduce.models.seq2seq import EncoderOutput, Seq2Seq


@dataclass
class EnsembleEncoding:
    """Each member's encoder output."""

    parts: list[EncoderOutput]

    @property
    def src_mask(self) -> torch.Tensor:
        return self.parts[0].src_mask

    def select(self, index: torch.Tensor) -> EnsembleEncoding:
        return EnsembleEncoding([p.select(index) for p in self.parts])


@dataclass
class EnsembleState:
    """Each member's decoder state."""

    parts: list[Any]

    def select(self, index: torch.Tensor) -> EnsembleState:
        return EnsembleState([p.select(index) for p in self.parts])

    def expand(self, beams: int) -> EnsembleState:
        return EnsembleState([p.expand(beams) for p in self.parts])


class Ensemble(nn.Module):
    """Models with the same target vocabulary (the caller checks) decoding together."""

    def __init__(self, models: list[Seq2Seq]):
        super().__init__()
        if len(models) < 2:
            raise ValueError("an ensemble needs at least two models")
        self._members = nn.ModuleList(models)
        limits = [int(getattr(m, "max_positions", 0) or 0) for m in models]
        self.max_positions = min((n for n in limits if n), default=None)

    @property
    def members(self) -> list[Seq2Seq]:
        return [cast(Seq2Seq, m) for m in self._members]

    def encode(self, src_ids: torch.Tensor, src_mask: torch.Tensor) -> EnsembleEncoding:
        return EnsembleEncoding([m.encode(src_ids, src_mask) for m in self.members])

    def start(self, enc: EnsembleEncoding) -> EnsembleState:
        return EnsembleState([m.start(e) for m, e in zip(self.members, enc.parts)])

    def step(self, prev_ids: torch.Tensor, state: EnsembleState, enc: EnsembleEncoding,
             attention: bool = True) -> tuple[torch.Tensor, EnsembleState, torch.Tensor | None]:
        """prev_ids (B,) -> the members' mean log-probs, renormalized (B, V); new state;
        their mean attention (B, S) where every member has one, else None."""
        outs = [m.step(prev_ids, s, e, attention)
                for m, s, e in zip(self.members, state.parts, enc.parts)]
        mean = torch.stack([o[0] for o in outs]).mean(0)  # (B, V)
        attns = [o[2] for o in outs]
        attn = None if any(a is None for a in attns) else \
            torch.stack([a.float() for a in attns if a is not None]).mean(0)
        return torch.log_softmax(mean, dim=-1), EnsembleState([o[1] for o in outs]), attn
