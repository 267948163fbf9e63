"""LSTM/GRU encoder and decoder, with no attention (Sutskever et al. 2014),
Bahdanau attention (Bahdanau et al. 2015) or Luong attention with input feeding
(Luong et al. 2015)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from transduce.models.attention import BahdanauAttention, LuongAttention
from transduce.models.dropout import Dropout
from transduce.models.seq2seq import EncoderOutput

# One entry per layer: (h, c) for LSTM, h for GRU; each (B, H).
Hidden = tuple


def make_rnn(rnn_type: str, input_size: int, hidden: int, layers: int, dropout: float,
             bidirectional: bool = False) -> nn.RNNBase:
    cls = {"lstm": nn.LSTM, "gru": nn.GRU}[rnn_type]
    return cls(input_size, hidden, layers, batch_first=True, bidirectional=bidirectional,
               dropout=dropout if layers > 1 else 0.0)


@dataclass
class StepWeights:
    static: tuple[torch.Tensor, torch.Tensor]  # layer 0's static-input weight and biases
    layers: list[tuple[torch.Tensor, ...]]  # per layer, what one step multiplies


class StackedCell(nn.Module):
    """A stack of LSTM/GRU cells, run one decoder step at a time.

    Layer 0's input has a static part known for all steps in advance (the target
    embedding), which `project` multiplies for a whole sentence in one matrix product, and a
    dynamic part that depends on the previous step (attention context, input feeding), which
    is multiplied at each step together with the hidden state: one matrix product per layer
    and step, where nn.LSTMCell does two, and the embedding's share in one large product
    (with one weight-gradient product in backward, not one per step). nn.LSTM called one
    step at a time goes through oneDNN on CPU and is several times slower.

    The parameters are those of nn.LSTMCell/nn.GRUCell. Hidden state: a tuple with one entry
    per layer, (h, c) for LSTM and h for GRU, each (B, H).
    """

    def __init__(self, rnn_type: str, static_size: int, dynamic_size: int, hidden: int,
                 layers: int, dropout: float):
        super().__init__()
        cell = {"lstm": nn.LSTMCell, "gru": nn.GRUCell}[rnn_type]
        self.cells = nn.ModuleList(cell(static_size + dynamic_size if i == 0 else hidden, hidden)
                                   for i in range(layers))
        self.lstm = rnn_type == "lstm"
        self.static_size = static_size
        self.dropout = Dropout(dropout)

    def initial(self, h0: torch.Tensor) -> Hidden:
        """The same h0 (B, H) for every layer; LSTM cells start at zero."""
        return tuple((h0, torch.zeros_like(h0)) if self.lstm else h0 for _ in self.cells)

    def step_weights(self) -> StepWeights:
        """The matrices a step multiplies, computed once per batch of sentences (not per
        step): layer 0's static projection, and per layer one matrix for [input; h]."""
        cells = cast(list[nn.RNNCellBase], list(self.cells))
        first = cells[0]
        static = (first.weight_ih[:, : self.static_size].contiguous(),
                  first.bias_ih + first.bias_hh if self.lstm else first.bias_ih)
        layers: list[tuple[torch.Tensor, ...]] = []
        for i, cell in enumerate(cells):
            w_in = cell.weight_ih[:, self.static_size:] if i == 0 else cell.weight_ih
            if self.lstm:  # one product of [input; h] per step
                bias = cell.bias_ih + cell.bias_hh if i else cell.bias_ih.new_zeros(0)
                layers.append((torch.cat([w_in, cell.weight_hh], 1), bias))
            else:  # GRU keeps W_hn h separate: the reset gate scales it
                layers.append((w_in, cell.bias_ih, cell.weight_hh, cell.bias_hh))
        return StepWeights(static, layers)

    @staticmethod
    def project(static: torch.Tensor, weights: StepWeights) -> torch.Tensor:
        """Layer 0's static input (..., E) -> its share of the gates (..., G*H), with biases."""
        return F.linear(static, *weights.static)

    def forward(self, pre: torch.Tensor, dynamic: torch.Tensor | None, hidden: Hidden,
                weights: StepWeights) -> tuple[torch.Tensor, Hidden]:
        """pre (B, G*H) from `project`, dynamic input (B, D) or None -> top h (B, H), hidden."""
        x, new = dynamic, []
        for i, (state, w) in enumerate(zip(hidden, weights.layers)):
            if self.lstm:
                h, c = state
                inp = h if x is None else torch.cat([x, h], -1)
                gates = torch.addmm(pre, inp, w[0].t()) if i == 0 else F.linear(inp, *w)
                in_gate, forget, cand, out_gate = gates.chunk(4, -1)
                c = torch.sigmoid(forget) * c + torch.sigmoid(in_gate) * torch.tanh(cand)
                h = torch.sigmoid(out_gate) * torch.tanh(c)
                new.append((h, c))
            else:
                h = state
                w_in, b_in, w_hh, b_hh = w
                if i == 0:
                    gi = pre if x is None else torch.addmm(pre, x, w_in.t())
                else:
                    assert x is not None
                    gi = F.linear(x, w_in, b_in)
                reset_i, update_i, cand_i = gi.chunk(3, -1)
                reset_h, update_h, cand_h = F.linear(h, w_hh, b_hh).chunk(3, -1)
                reset = torch.sigmoid(reset_i + reset_h)
                update = torch.sigmoid(update_i + update_h)
                cand = torch.tanh(cand_i + reset * cand_h)
                h = cand + update * (h - cand)
                new.append(h)
            x = self.dropout(h) if i + 1 < len(self.cells) else h
        assert x is not None
        return x, tuple(new)


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
        self.dropout = Dropout(dropout)
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
    hidden: Hidden
    input_feed: torch.Tensor | None  # (B, H) previous attentional vector (Luong input feeding)
    keys: torch.Tensor | None  # (B, S, A) projected encoder states, computed once
    weights: StepWeights  # StackedCell.step_weights(), shared by all rows

    def select(self, index: torch.Tensor) -> RNNState:
        pick = (lambda t: None if t is None else t.index_select(0, index))
        hidden = tuple(tuple(map(pick, s)) if isinstance(s, tuple) else pick(s)
                       for s in self.hidden)
        return RNNState(hidden, pick(self.input_feed), pick(self.keys), self.weights)

    def expand(self, beams: int) -> RNNState:
        """Each row repeated `beams` times, consecutively (the start of beam search)."""
        first = self.hidden[0][0] if isinstance(self.hidden[0], tuple) else self.hidden[0]
        rows = torch.arange(first.size(0), device=first.device).repeat_interleave(beams)
        return self.select(rows)


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
        self.attn: BahdanauAttention | LuongAttention | None = None
        if attention == "bahdanau":
            self.attn = BahdanauAttention(hidden, enc_dim, hidden)
        elif attention.startswith("luong"):
            self.attn = LuongAttention(hidden, enc_dim, attention.split("_")[1])
        self.input_feeding = input_feeding and attention.startswith("luong")
        dynamic = (hidden if self.input_feeding else 0) + (enc_dim if attention == "bahdanau"
                                                           else 0)
        self.rnn = StackedCell(rnn_type, emb_dim, dynamic, hidden, layers, dropout)
        self.bridge = nn.Linear(enc_dim, hidden)
        combine_in = {"none": 0, "bahdanau": hidden + enc_dim + emb_dim}.get(
            attention, hidden + enc_dim)
        self.combine = nn.Linear(combine_in, hidden, bias=False) if combine_in else None
        self.dropout = Dropout(dropout)
        self.hidden_size = hidden
        self.out_dim = hidden

    def start(self, enc: EncoderOutput) -> RNNState:
        assert enc.final is not None, "RNN decoders need the encoder's final state"
        hidden = self.rnn.initial(torch.tanh(self.bridge(enc.final)))
        feed = enc.memory.new_zeros(enc.memory.size(0), self.hidden_size) \
            if self.input_feeding else None
        keys = self.attn.project_keys(enc.memory) if self.attn is not None else None
        return RNNState(hidden, feed, keys, self.rnn.step_weights())

    def _step(self, emb: torch.Tensor, pre: torch.Tensor, state: RNNState,
              enc: EncoderOutput) -> tuple[torch.Tensor, RNNState, torch.Tensor | None]:
        """One step from the (dropped-out) embedding and its projection `pre`."""
        dynamic, ctx, weights = None, None, None
        if self.kind == "bahdanau":
            assert self.attn is not None and state.keys is not None
            top = state.hidden[-1]
            top = top[0] if isinstance(top, tuple) else top
            ctx, weights = self.attn(top.unsqueeze(1), state.keys, enc.memory, enc.src_mask)
            dynamic = ctx = ctx.squeeze(1)
        if self.input_feeding:
            dynamic = state.input_feed
        out, hidden = self.rnn(pre, dynamic, state.hidden, state.weights)  # (B, H)
        if self.kind == "bahdanau":
            assert self.combine is not None and ctx is not None
            out = torch.tanh(self.combine(torch.cat([out, ctx, emb], -1)))
        elif self.attn is not None:
            assert self.combine is not None and state.keys is not None
            ctx, weights = self.attn(out.unsqueeze(1), state.keys, enc.memory, enc.src_mask)
            out = torch.tanh(self.combine(torch.cat([ctx.squeeze(1), out], -1)))
        out = self.dropout(out)
        feed = out if self.input_feeding else None
        attn = None if weights is None else weights.squeeze(1)
        return out, RNNState(hidden, feed, state.keys, state.weights), attn

    def step(self, emb: torch.Tensor, state: RNNState, enc: EncoderOutput,
             attention: bool = True) -> tuple[torch.Tensor, RNNState, torch.Tensor | None]:
        """emb (B, E) -> output (B, H), state, attention (B, S) or None. The weights are a
        by-product of the step, so they are returned whatever `attention` asks."""
        emb = self.dropout(emb)
        return self._step(emb, self.rnn.project(emb, state.weights), state, enc)

    def forward(self, emb: torch.Tensor,
                enc: EncoderOutput) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher forcing: emb (B, T, E) -> outputs (B, T, H), attention (B, T, S) or None."""
        state = self.start(enc)
        emb = self.dropout(emb)
        pre = self.rnn.project(emb, state.weights)  # (B, T, G*H): all steps at once
        if self.kind in ("luong_dot", "luong_general", "none") and not self.input_feeding:
            # No recurrence through the output: run the RNN first, then attend for all steps.
            hidden, outs = state.hidden, []
            for pre_t in pre.unbind(1):
                h, hidden = self.rnn(pre_t, None, hidden, state.weights)
                outs.append(h)
            out = torch.stack(outs, 1)  # (B, T, H)
            if self.attn is None:
                return self.dropout(out), None
            assert self.combine is not None and state.keys is not None
            ctx, weights = self.attn(out, state.keys, enc.memory, enc.src_mask)
            return self.dropout(torch.tanh(self.combine(torch.cat([ctx, out], -1)))), weights
        outs, attns = [], []
        # unbind, not emb[:, t]: one backward copy, not T
        for emb_t, pre_t in zip(emb.unbind(1), pre.unbind(1)):
            out, state, attn = self._step(emb_t, pre_t, state, enc)
            outs.append(out)
            attns.append(attn)
        weights = None if attns[0] is None else torch.stack(attns, 1)  # type: ignore[arg-type]
        return torch.stack(outs, 1), weights
