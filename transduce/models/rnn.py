"""LSTM/GRU encoder and decoder, with no attention (Sutskever et al. 2014),
Bahdanau attention (Bahdanau et al. 2015) or Luong attention with input feeding
(Luong et al. 2015)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from transduce.models.attention import BahdanauAttention, LuongAttention
from transduce.models.seq2seq import EncoderOutput

Hidden = torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # GRU h, or LSTM (h, c); (L, B, H)


def make_rnn(rnn_type: str, input_size: int, hidden: int, layers: int, dropout: float,
             bidirectional: bool = False) -> nn.RNNBase:
    cls = {"lstm": nn.LSTM, "gru": nn.GRU}[rnn_type]
    return cls(input_size, hidden, layers, batch_first=True, bidirectional=bidirectional,
               dropout=dropout if layers > 1 else 0.0)


class StackedCell(nn.Module):
    """A stack of LSTM/GRU cells for one decoder step at a time.

    On CPU, per-step calls of nn.LSTM go through a oneDNN path that is several times slower
    than plain cells for sequences of length 1, so decoders use cells.
    Hidden state: h (L, B, H), or (h, c) for LSTM, as nn.LSTM/nn.GRU keep it.
    """

    def __init__(self, rnn_type: str, input_size: int, hidden: int, layers: int,
                 dropout: float):
        super().__init__()
        cell = {"lstm": nn.LSTMCell, "gru": nn.GRUCell}[rnn_type]
        self.cells = nn.ModuleList(cell(input_size if i == 0 else hidden, hidden)
                                   for i in range(layers))
        self.lstm = rnn_type == "lstm"
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, hidden: Hidden) -> tuple[torch.Tensor, Hidden]:
        """x (B, I) -> top output (B, H), new hidden."""
        hs, cs = [], []
        for i, cell in enumerate(self.cells):
            if i:
                x = self.dropout(x)
            if self.lstm:
                h, c = cell(x, (hidden[0][i], hidden[1][i]))
                cs.append(c)
            else:
                h = cell(x, hidden[i])  # type: ignore[index]
            hs.append(h)
            x = h
        return x, ((torch.stack(hs), torch.stack(cs)) if self.lstm else torch.stack(hs))


class RNNEncoder(nn.Module):
    """Embedded source (B, S, E) -> states (B, S, H); bidirectional halves are concatenated.

    Sequences are packed, so padding never reaches the recurrence: a sentence's
    encoding does not depend on its batch-mates.
    """

    def __init__(self, rnn_type: str, emb_dim: int, hidden: int, layers: int,
                 bidirectional: bool, dropout: float):
        super().__init__()
        directions = 2 if bidirectional else 1
        self.rnn = make_rnn(rnn_type, emb_dim, hidden // directions, layers, dropout,
                            bidirectional)
        self.dropout = nn.Dropout(dropout)
        self.out_dim = hidden

    def forward(self, emb: torch.Tensor, src_mask: torch.Tensor) -> EncoderOutput:
        lengths = src_mask.sum(1).clamp(min=1).cpu()
        packed = pack_padded_sequence(self.dropout(emb), lengths, batch_first=True,
                                      enforce_sorted=False)
        out, hidden = self.rnn(packed)
        memory, _ = pad_packed_sequence(out, batch_first=True, total_length=emb.size(1))
        h = hidden[0] if isinstance(hidden, tuple) else hidden  # (L * dirs, B, h)
        dirs = 2 if self.rnn.bidirectional else 1
        final = torch.cat([h[-dirs + d] for d in range(dirs)], dim=-1)  # (B, H) top layer
        return EncoderOutput(self.dropout(memory), src_mask, final)


@dataclass
class RNNState:
    hidden: Hidden  # (L, B, H)
    input_feed: torch.Tensor | None  # (B, H) previous attentional vector (Luong input feeding)
    keys: torch.Tensor | None  # (B, S, A) projected encoder states, computed once

    def select(self, index: torch.Tensor) -> "RNNState":
        if isinstance(self.hidden, tuple):
            hidden: Hidden = tuple(h.index_select(1, index) for h in self.hidden)  # type: ignore
        else:
            hidden = self.hidden.index_select(1, index)
        pick = (lambda t: None if t is None else t.index_select(0, index))
        return RNNState(hidden, pick(self.input_feed), pick(self.keys))


class RNNDecoder(nn.Module):
    """One decoder for the three classic variants, chosen by `attention`:

    - "none": the encoder's final state seeds the decoder; output = RNN state.
    - "bahdanau": context from the previous state is fed into the RNN with the word;
      output = tanh(W [s_t; c_t; e_t]).
    - "luong_dot" / "luong_general": context from the current state;
      output h~_t = tanh(W [c_t; h_t]), fed to the next step when `input_feeding`.
    """

    def __init__(self, rnn_type: str, emb_dim: int, hidden: int, layers: int,
                 enc_dim: int, attention: str, input_feeding: bool, dropout: float):
        super().__init__()
        self.kind = attention
        self.layers = layers
        self.rnn_type = rnn_type
        self.attn: BahdanauAttention | LuongAttention | None = None
        if attention == "bahdanau":
            self.attn = BahdanauAttention(hidden, enc_dim, hidden)
        elif attention.startswith("luong"):
            self.attn = LuongAttention(hidden, enc_dim, attention.split("_")[1])
        self.input_feeding = input_feeding and attention.startswith("luong")
        rnn_in = emb_dim + (hidden if self.input_feeding else 0)
        rnn_in += enc_dim if attention == "bahdanau" else 0
        self.rnn = StackedCell(rnn_type, rnn_in, hidden, layers, dropout)
        self.bridge = nn.Linear(enc_dim, hidden)
        combine_in = {"none": 0, "bahdanau": hidden + enc_dim + emb_dim}.get(
            attention, hidden + enc_dim)
        self.combine = nn.Linear(combine_in, hidden, bias=False) if combine_in else None
        self.dropout = nn.Dropout(dropout)
        self.hidden_size = hidden
        self.out_dim = hidden

    def start(self, enc: EncoderOutput) -> RNNState:
        assert enc.final is not None, "RNN decoders need the encoder's final state"
        h0 = torch.tanh(self.bridge(enc.final)).unsqueeze(0).repeat(self.layers, 1, 1)
        hidden: Hidden = (h0, torch.zeros_like(h0)) if self.rnn_type == "lstm" else h0
        feed = enc.memory.new_zeros(enc.memory.size(0), self.hidden_size) \
            if self.input_feeding else None
        keys = self.attn.project_keys(enc.memory) if self.attn is not None else None
        return RNNState(hidden, feed, keys)

    def _top(self, hidden: Hidden) -> torch.Tensor:
        return (hidden[0] if isinstance(hidden, tuple) else hidden)[-1]  # (B, H)

    def step(self, emb: torch.Tensor, state: RNNState,
             enc: EncoderOutput) -> tuple[torch.Tensor, RNNState, torch.Tensor | None]:
        """emb (B, E) -> output (B, H), state, attention (B, S) or None."""
        emb = self.dropout(emb)
        parts, weights = [emb], None
        if self.kind == "bahdanau":
            assert self.attn is not None and state.keys is not None
            ctx, weights = self.attn(self._top(state.hidden).unsqueeze(1), state.keys,
                                     enc.memory, enc.src_mask)
            parts.append(ctx.squeeze(1))
        if self.input_feeding:
            assert state.input_feed is not None
            parts.append(state.input_feed)
        out, hidden = self.rnn(torch.cat(parts, -1), state.hidden)  # (B, H)
        if self.kind == "bahdanau":
            assert self.combine is not None
            out = torch.tanh(self.combine(torch.cat([out, parts[1], emb], -1)))
        elif self.attn is not None:
            assert self.combine is not None and state.keys is not None
            ctx, weights = self.attn(out.unsqueeze(1), state.keys, enc.memory, enc.src_mask)
            out = torch.tanh(self.combine(torch.cat([ctx.squeeze(1), out], -1)))
        out = self.dropout(out)
        feed = out if self.input_feeding else None
        attn = None if weights is None else weights.squeeze(1)
        return out, RNNState(hidden, feed, state.keys), attn

    def forward(self, emb: torch.Tensor,
                enc: EncoderOutput) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher forcing: emb (B, T, E) -> outputs (B, T, H), attention (B, T, S) or None."""
        state = self.start(enc)
        if self.kind in ("luong_dot", "luong_general", "none") and not self.input_feeding:
            # No recurrence through the output: run the RNN first, then attend for all steps.
            emb, hidden, outs = self.dropout(emb), state.hidden, []
            for emb_t in emb.unbind(1):
                h, hidden = self.rnn(emb_t, hidden)
                outs.append(h)
            out = torch.stack(outs, 1)  # (B, T, H)
            if self.attn is None:
                return self.dropout(out), None
            assert self.combine is not None and state.keys is not None
            ctx, weights = self.attn(out, state.keys, enc.memory, enc.src_mask)
            return self.dropout(torch.tanh(self.combine(torch.cat([ctx, out], -1)))), weights
        outs, attns = [], []
        for emb_t in emb.unbind(1):  # unbind, not emb[:, t]: one backward copy, not T
            out, state, attn = self.step(emb_t, state, enc)
            outs.append(out)
            attns.append(attn)
        weights = None if attns[0] is None else torch.stack(attns, 1)  # type: ignore[arg-type]
        return torch.stack(outs, 1), weights
