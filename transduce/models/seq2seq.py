"""The encoder-decoder, and the contract between models and search.

Search drives any model through four calls, so one beam search serves every architecture:
    enc = model.encode(src_ids, src_mask)            # once per batch
    state = model.start(enc)                           # decoder state for step 0
    log_probs, state, attn = model.step(prev_ids, state, enc)   # one target position
    state, enc = state.select(index), enc.select(index)         # reorder/drop hypotheses
    state = state.expand(k)                 # each row k times, for beam search (may share)
Training uses `forward` (teacher forcing over the whole target at once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, cast

import torch
from torch import nn


@dataclass
class EncoderOutput:
    memory: torch.Tensor  # (B, S, H) encoder states
    src_mask: torch.Tensor  # (B, S) True at real tokens
    final: torch.Tensor | None = None  # (B, H) sentence summary that seeds RNN decoders

    def select(self, index: torch.Tensor) -> EncoderOutput:
        final = None if self.final is None else self.final.index_select(0, index)
        return EncoderOutput(self.memory.index_select(0, index),
                             self.src_mask.index_select(0, index), final)


class DecoderState(Protocol):
    def select(self, index: torch.Tensor) -> DecoderState: ...

    def expand(self, beams: int) -> DecoderState: ...


class Decoder(Protocol):
    out_dim: int

    def start(self, enc: EncoderOutput) -> Any: ...

    def step(self, emb: torch.Tensor, state: Any, enc: EncoderOutput,
             attention: bool = True) -> tuple[torch.Tensor, Any, torch.Tensor | None]: ...

    def __call__(self, emb: torch.Tensor,
                 enc: EncoderOutput) -> tuple[torch.Tensor, torch.Tensor | None]: ...


class Seq2Seq(nn.Module):
    """Embeddings -> encoder -> decoder -> generator (a linear layer over the target vocabulary)."""

    decoder: Any  # a module with forward, start(enc) and step(...): rnn.py, transformer.py

    final_logits_bias: torch.Tensor | None  # (V,) a fixed buffer, or None

    def __init__(self, src_embed: nn.Embedding, tgt_embed: nn.Embedding, encoder: nn.Module,
                 decoder: nn.Module, generator: nn.Module, logits_bias: bool = False):
        """`logits_bias`: a fixed (not trained) bias added to the output logits, saved with
        the weights (Hugging Face MarianMT's `final_logits_bias`), zero until loaded."""
        super().__init__()
        self.src_embed, self.tgt_embed = src_embed, tgt_embed
        self.encoder, self.decoder, self.generator = encoder, decoder, generator
        vocab = tgt_embed.weight.size(0)
        self.register_buffer("final_logits_bias", torch.zeros(vocab) if logits_bias else None)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Decoder states (..., H) -> output logits (..., V)."""
        out = self.generator(hidden)
        return out if self.final_logits_bias is None else out + self.final_logits_bias

    def encode(self, src_ids: torch.Tensor, src_mask: torch.Tensor) -> EncoderOutput:
        return self.encoder(self.src_embed(src_ids), src_mask)

    def forward(self, src_ids: torch.Tensor, src_mask: torch.Tensor,
                tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: (B, S), (B, S), (B, T) -> logits (B, T, V)."""
        hidden, _ = self.decoder(self.tgt_embed(tgt_in), self.encode(src_ids, src_mask))
        return self.logits(hidden)

    def features(self, src_ids: torch.Tensor, src_mask: torch.Tensor,
                 tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher forcing up to the output layer: logits = features @ output_weight.T
        (+ final_logits_bias where the model has one).

        Training uses this with a loss that fuses the output layer (training/loss.py).
        """
        hidden, _ = self.decoder(self.tgt_embed(tgt_in), self.encode(src_ids, src_mask))
        if isinstance(self.generator, nn.Linear):
            return hidden
        return cast(nn.Sequential, self.generator)[:-1](hidden)

    @property
    def output_weight(self) -> torch.Tensor:
        """The (V, H) weight of the output layer (the generator's last, bias-free, linear map)."""
        last = self.generator if isinstance(self.generator, nn.Linear) \
            else cast(nn.Sequential, self.generator)[-1]
        assert isinstance(last, nn.Linear) and last.bias is None, \
            "the fused loss expects a bias-free linear output layer"
        return last.weight

    def start(self, enc: EncoderOutput) -> Any:
        return self.decoder.start(enc)

    def step(self, prev_ids: torch.Tensor, state: Any, enc: EncoderOutput,
             attention: bool = True) -> tuple[torch.Tensor, Any, torch.Tensor | None]:
        """prev_ids (B,) -> log-probs (B, V) float32, new state, attention (B, S) or None
        (decoders may skip computing it when `attention` is False)."""
        hidden, state, attn = self.decoder.step(self.tgt_embed(prev_ids), state, enc,
                                                attention)
        return torch.log_softmax(self.logits(hidden).float(), dim=-1), state, attn

    def attention(self, src_ids: torch.Tensor, src_mask: torch.Tensor,
                  tgt_in: torch.Tensor) -> torch.Tensor | None:
        """Cross-attention weights (B, T, S) under teacher forcing, for visualisation."""
        _, attn = self.decoder(self.tgt_embed(tgt_in), self.encode(src_ids, src_mask))
        return attn
