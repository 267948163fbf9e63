"""Encoder-decoder Transformer (Vaswani et al. 2017), with pre-norm (Xiong et al. 2020) or
post-norm layers, sinusoidal or learned positions, and a decoder that caches keys and values
so that each search step costs one position, not the whole prefix. The variants that other
toolkits' models need (MarianMT: SiLU, sinusoids in halves, a logits bias) are options.

Masks: `src_mask` (B, S) is True at real tokens; a boolean attention mask is True where a
query may look. Shape letters: B batch, S source, T target, D d_model, H heads, Dh = D / H.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

from transduce.config import ModelConfig
from transduce.models.build import make_generator
from transduce.models.dropout import Dropout
from transduce.models.dropout import dropout as fast_dropout
from transduce.models.seq2seq import EncoderOutput, Seq2Seq

KV = tuple[torch.Tensor, torch.Tensor]  # keys, values, each (B, H, L, Dh)


@dataclass(frozen=True)
class LayerSpec:
    """Sizes and regularisation shared by every encoder and decoder layer."""

    d_model: int
    heads: int
    ff_size: int
    dropout: float  # on embeddings and on every sub-layer's output before the residual sum
    attention_dropout: float  # on attention weights
    activation_dropout: float  # inside the feed-forward block, after the activation
    pre_norm: bool  # LayerNorm before each sub-layer (True) or after the residual sum
    activation: str = "relu"  # of the feed-forward block: relu, gelu or swish


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,  # x * Phi(x), the exact (erf) form
    "swish": F.silu,  # x * sigmoid(x) (SiLU), Marian's and Hugging Face's "swish"
}


def sinusoidal_table(length: int, dim: int, layout: str = "interleaved") -> torch.Tensor:
    """Sinusoids of frequencies w_i = 1 / 10000^(2i/D) (Vaswani et al. 2017), (L, D).

    interleaved: PE[p, 2i] = sin(p w_i), PE[p, 2i+1] = cos(p w_i).
    halves: sin(p w_i) in the first D/2 columns, cos(p w_i) in the rest, computed in
    float64 as Hugging Face's MarianSinusoidalPositionalEmbedding does.
    """
    if layout == "halves":
        pos = torch.arange(length, dtype=torch.float64).unsqueeze(1)  # (L, 1)
        angles = pos / torch.pow(10000.0, 2 * (torch.arange(dim, dtype=torch.float64) // 2) / dim)
        return torch.cat([torch.sin(angles[:, 0::2]), torch.cos(angles[:, 1::2])], 1).float()
    pos = torch.arange(length, dtype=torch.float32).unsqueeze(1)  # (L, 1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table


class PositionalEmbedding(nn.Module):
    """Scales token embeddings by sqrt(D) (unless `scale` is False), adds positions from
    `offset` on, applies dropout."""

    table: torch.Tensor  # (max_positions, D) sinusoids, a buffer (not saved: recomputed)

    def __init__(self, d_model: int, max_positions: int, learned: bool, dropout: float,
                 scale: bool = True, layout: str = "interleaved"):
        super().__init__()
        self.scale = math.sqrt(d_model) if scale else 1.0
        self.max_positions, self.layout = max_positions, layout
        self.learned = nn.Embedding(max_positions, d_model) if learned else None
        self.register_buffer("table", sinusoidal_table(max_positions, d_model, layout),
                             persistent=False)
        self.dropout = Dropout(dropout)

    def forward(self, emb: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """emb (B, T, D) -> (B, T, D)."""
        end = offset + emb.size(1)
        if end > self.max_positions:
            if self.learned is not None:
                raise ValueError(f"sequence of {end} tokens is longer than model.max_positions "
                                 f"({self.max_positions}) of this model's learned positions")
            pos = sinusoidal_table(end, emb.size(-1), self.layout).to(emb.device)[offset:]
        elif self.learned is not None:
            pos = self.learned(torch.arange(offset, end, device=emb.device))
        else:
            pos = self.table[offset:end]
        return self.dropout(emb * self.scale + pos.to(emb.dtype))  # (B, T, D)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
           causal: bool, dropout: float,
           need_weights: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Scaled dot-product attention: q (B, H, T, Dh), k/v (B, H, L, Dh) -> (B, H, T, Dh) and,
    if asked, the weights (B, H, T, L) before dropout. `mask` broadcasts to (B, H, T, L);
    `causal` lets query t see keys up to t (T == L). With dropout on CPU, the weights are
    computed here so that the dropout mask comes from the fast `dropout`."""
    if not need_weights and (dropout == 0.0 or q.device.type != "cpu"):
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout,
                                             is_causal=causal)
        return out, None
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, H, T, L)
    if causal:
        T, L = scores.shape[-2:]
        mask = torch.ones(T, L, dtype=torch.bool, device=q.device).tril()
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores.float(), dim=-1)
    out = fast_dropout(weights, dropout, dropout > 0).to(v.dtype) @ v
    return out, weights if need_weights else None


class MultiHeadAttention(nn.Module):
    """Multi-head attention whose key/value projection is a separate call, so that keys and
    values of the encoder memory (or of past target positions) can be computed once."""

    def __init__(self, d_model: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.query = nn.Linear(d_model, d_model)
        self.key_value = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        return x.view(B, L, self.heads, D // self.heads).transpose(1, 2)  # (B, H, L, Dh)

    def project_kv(self, x: torch.Tensor) -> KV:
        """x (B, L, D) -> keys, values (B, H, L, Dh)."""
        k, v = self.key_value(x).chunk(2, dim=-1)
        return self._split(k), self._split(v)

    def forward(self, x: torch.Tensor, kv: KV, mask: torch.Tensor | None = None,
                causal: bool = False,
                need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Queries from x (B, T, D) -> (B, T, D), weights (B, H, T, L) or None."""
        q = self._split(self.query(x))  # (B, H, T, Dh)
        p = self.dropout if self.training else 0.0
        out, weights = attend(q, kv[0], kv[1], mask, causal, p, need_weights)
        B, H, T, Dh = out.shape
        return self.out(out.transpose(1, 2).reshape(B, T, H * Dh)), weights


class FeedForward(nn.Module):
    """Position-wise Linear -> activation (ReLU, GELU or SiLU) -> dropout -> Linear."""

    def __init__(self, d_model: int, ff_size: int, activation_dropout: float,
                 activation: str = "relu"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"model.activation must be one of {', '.join(ACTIVATIONS)}, "
                             f"got {activation!r}")
        self.inner, self.outer = nn.Linear(d_model, ff_size), nn.Linear(ff_size, d_model)
        self.dropout = Dropout(activation_dropout)
        self.activation = activation
        self.act = ACTIVATIONS[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer(self.dropout(self.act(self.inner(x))))  # (B, T, D)


class Residual(nn.Module):
    """Wraps a sub-layer: pre-norm x + drop(f(LN(x))), or post-norm LN(x + drop(f(x))).
    `enter` gives the sub-layer's input, `leave` adds its output back."""

    def __init__(self, d_model: int, dropout: float, pre_norm: bool):
        super().__init__()
        self.norm, self.dropout = nn.LayerNorm(d_model), Dropout(dropout)
        self.pre_norm = pre_norm

    def enter(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x) if self.pre_norm else x

    def leave(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(y)
        return x if self.pre_norm else self.norm(x)


class EncoderLayer(nn.Module):
    def __init__(self, spec: LayerSpec):
        super().__init__()
        self.attn = MultiHeadAttention(spec.d_model, spec.heads, spec.attention_dropout)
        self.ff = FeedForward(spec.d_model, spec.ff_size, spec.activation_dropout,
                              spec.activation)
        self.res_attn = Residual(spec.d_model, spec.dropout, spec.pre_norm)
        self.res_ff = Residual(spec.d_model, spec.dropout, spec.pre_norm)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, S, D), mask (B, 1, 1, S) -> (B, S, D)."""
        h = self.res_attn.enter(x)
        x = self.res_attn.leave(x, self.attn(h, self.attn.project_kv(h), mask)[0])
        return self.res_ff.leave(x, self.ff(self.res_ff.enter(x)))


class TransformerEncoder(nn.Module):
    """Embedded source (B, S, D) -> memory (B, S, D); pads are masked out as keys, so a
    sentence's encoding does not depend on its batch-mates."""

    def __init__(self, spec: LayerSpec, layers: int, positions: PositionalEmbedding):
        super().__init__()
        self.positions = positions
        self.layers = nn.ModuleList(EncoderLayer(spec) for _ in range(layers))
        self.final_norm = nn.LayerNorm(spec.d_model) if spec.pre_norm else nn.Identity()
        self.out_dim = spec.d_model

    def forward(self, emb: torch.Tensor, src_mask: torch.Tensor) -> EncoderOutput:
        x = self.positions(emb)  # (B, S, D)
        mask = src_mask[:, None, None, :]  # (B, 1, 1, S)
        for layer in self.layers:
            x = layer(x, mask)
        return EncoderOutput(self.final_norm(x), src_mask, None)


class DecoderLayer(nn.Module):
    def __init__(self, spec: LayerSpec):
        super().__init__()
        self.self_attn = MultiHeadAttention(spec.d_model, spec.heads, spec.attention_dropout)
        self.cross_attn = MultiHeadAttention(spec.d_model, spec.heads, spec.attention_dropout)
        self.ff = FeedForward(spec.d_model, spec.ff_size, spec.activation_dropout,
                              spec.activation)
        self.res_self, self.res_cross, self.res_ff = (
            Residual(spec.d_model, spec.dropout, spec.pre_norm) for _ in range(3))

    def forward(self, x: torch.Tensor, past: KV | None, memory: KV, mask: torch.Tensor,
                need_weights: bool, beams: int = 1,
                length: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, T, D) new positions; past self-attention key/value buffers (B, capacity, H,
        Dh) holding `length` positions, or None for a whole sequence (then attention is
        causal); memory keys/values (B / beams, H, S, Dh) and mask (B / beams, 1, 1, S), each
        shared by `beams` consecutive rows of x. The new positions' keys/values are written
        into `past` in place. Returns (B, T, D) and weights (B, H, T, S) or None."""
        h = self.res_self.enter(x)
        k, v = self.self_attn.project_kv(h)  # (B, H, T, Dh)
        if past is not None:  # one step at a time: the new position sees all of the past
            end = length + k.size(2)
            past[0][:, length:end] = k.transpose(1, 2)
            past[1][:, length:end] = v.transpose(1, 2)
            k, v = past[0][:, :end].transpose(1, 2), past[1][:, :end].transpose(1, 2)
        x = self.res_self.leave(x, self.self_attn(h, (k, v), causal=past is None)[0])
        # The beams of a sentence query its memory together, as beams * T positions.
        B, T, D = x.shape
        y, weights = self.cross_attn(self.res_cross.enter(x).reshape(B // beams, beams * T, D),
                                     memory, mask, need_weights=need_weights)
        if weights is not None:  # (B / beams, H, beams * T, S) -> (B, H, T, S)
            S = weights.size(-1)
            weights = weights.view(B // beams, -1, beams, T, S).transpose(1, 2) \
                .reshape(B, -1, T, S)
        x = self.res_cross.leave(x, y.reshape(B, T, D))
        return self.res_ff.leave(x, self.ff(self.res_ff.enter(x))), weights


def take_rows(buffer: torch.Tensor, rows: torch.Tensor, length: int,
              out: torch.Tensor | None = None, capacity: int | None = None) -> torch.Tensor:
    """A cache buffer (rows, capacity, H, Dh) whose first `length` positions are those of
    `buffer`'s rows `rows`; only those positions are copied (one block per row). `out` is a
    buffer of the same capacity with at least that many rows to reuse, else a new one."""
    if out is None:
        out = buffer.new_empty((rows.numel(), capacity or buffer.size(1)) + buffer.shape[2:])
    out = out[:rows.numel()]
    torch.index_select(buffer[:, :length], 0, rows, out=out[:, :length])
    return out


@dataclass
class TransformerState:
    """Per-layer caches for incremental decoding; every tensor is batch-first.

    The self-attention caches are buffers with room for more positions than decoded so far
    (`length`): each step writes its position into them in place; a reordering that moves
    few rows copies just those, in place, and any other `select` copies the rows it keeps
    into the spare buffers of the previous copy, so that a step allocates (and the OS
    zeroes) no new cache memory. A state is therefore used once: go on
    from the state that `step`, `select` or `expand` returns, as every search does. Beam
    search (`expand`) keeps one copy of the encoder memory per sentence, shared by that
    sentence's `beams` consecutive hypothesis rows: reordering hypotheses within their
    sentences then moves only the self-attention caches.
    """

    past: list[KV]  # self-attention key/value buffers (N, capacity, H, Dh), [:length] filled
    memory: list[KV]  # cross-attention keys/values of the encoder memory (N / beams, H, S, Dh)
    src_mask: torch.Tensor  # (N / beams, S) True at real source tokens
    prefix: torch.Tensor | None = None  # (N, t, D) raw embeddings, only when not caching
    length: int = 0  # positions decoded so far (t)
    beams: int = 1  # hypothesis rows per memory row
    spare: list[KV] | None = None  # free buffers of the same capacity as `past`

    def _moved(self, rows: torch.Tensor, capacity: int | None = None) -> dict:
        """`past` and `spare` after taking rows `rows` (into a larger capacity if given)."""
        t, n = self.length, rows.numel()
        if capacity is None and n == self.past[0][0].size(0):  # a reordering, in place
            moved = (rows != torch.arange(n, device=rows.device)).nonzero().squeeze(1)
            if moved.numel() < n // 2:  # beams mostly keep their own row: copy the others
                sources = rows.index_select(0, moved)
                for buffer in (b for kv in self.past for b in kv):
                    buffer[:, :t].index_copy_(0, moved, buffer[:, :t].index_select(0, sources))
                return {"past": self.past, "spare": self.spare}
        spare = self.spare if capacity is None else None
        if spare is not None and spare[0][0].size(0) < n:
            spare = None
        past = [(take_rows(k, rows, t, None if spare is None else spare[i][0], capacity),
                 take_rows(v, rows, t, None if spare is None else spare[i][1], capacity))
                for i, (k, v) in enumerate(self.past)]
        return {"past": past, "spare": None if capacity is not None else self.past}

    def reserve(self, positions: int) -> TransformerState:
        """Room for `positions` in the caches (doubling the capacity when it grows)."""
        capacity = self.past[0][0].size(1) if self.past else positions
        if positions <= capacity:
            return self
        rows = torch.arange(self.past[0][0].size(0), device=self.src_mask.device)
        return replace(self, **self._moved(rows, max(positions, 2 * capacity)))

    def select(self, index: torch.Tensor) -> TransformerState:
        """Rows `index` (N',). With beams > 1 the rows must come in blocks of `beams` from
        one sentence each, as beam search keeps them."""
        prefix = None if self.prefix is None else self.prefix.index_select(0, index)
        sentences = index.view(-1, self.beams) // self.beams  # (N' / beams, beams)
        if self.beams > 1 and not bool((sentences == sentences[:, :1]).all()):
            raise ValueError(f"rows of a beam state must be selected in blocks of "
                             f"{self.beams} from one sentence")
        rows = sentences[:, 0]
        memory, src_mask = self.memory, self.src_mask
        if rows.numel() != src_mask.size(0) or not torch.equal(
                rows, torch.arange(rows.numel(), device=rows.device)):
            memory = [(k.index_select(0, rows), v.index_select(0, rows)) for k, v in memory]
            src_mask = src_mask.index_select(0, rows)
        return replace(self, memory=memory, src_mask=src_mask, prefix=prefix,
                       **self._moved(index))

    def expand(self, beams: int) -> TransformerState:
        """Each hypothesis row repeated `beams` times (consecutively); memory stays shared."""
        rows = torch.arange(self.src_mask.size(0) * self.beams,
                            device=self.src_mask.device).repeat_interleave(beams)
        prefix = None if self.prefix is None else self.prefix.index_select(0, rows)
        return replace(self, prefix=prefix, beams=self.beams * beams, **self._moved(rows))


class TransformerDecoder(nn.Module):
    """Causal self-attention over the target, cross-attention over the encoder memory.

    The attention returned for visualisation is the cross-attention of layer
    `attention_layer` (negative counts from the top), averaged over heads or of head
    `attention_head`. With `use_cache` False, `step` recomputes the whole prefix (slow;
    a reference for tests of the cache).
    """

    def __init__(self, spec: LayerSpec, layers: int, positions: PositionalEmbedding,
                 attention_layer: int = -1, attention_head: int | None = None):
        super().__init__()
        if not -layers <= attention_layer < layers:
            raise ValueError(f"model.attention_layer must be in [{-layers}, {layers - 1}] "
                             f"for {layers} decoder layers, got {attention_layer}")
        if attention_head is not None and not 0 <= attention_head < spec.heads:
            raise ValueError(f"model.attention_head must be in [0, {spec.heads - 1}] or null, "
                             f"got {attention_head}")
        self.positions = positions
        self.layers = nn.ModuleList(DecoderLayer(spec) for _ in range(layers))
        self.final_norm = nn.LayerNorm(spec.d_model) if spec.pre_norm else nn.Identity()
        self.shown_layer = attention_layer % layers
        self.shown_head = attention_head
        self.heads, self.out_dim = spec.heads, spec.d_model
        self.use_cache = True

    def _shown(self, weights: torch.Tensor | None) -> torch.Tensor | None:
        if weights is None:
            return None
        return weights.mean(1) if self.shown_head is None else weights[:, self.shown_head]

    def _run(self, x: torch.Tensor, past: list[KV] | None, memory: list[KV],
             src_mask: torch.Tensor, attention: bool = True, beams: int = 1,
             length: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, T, D) with positions added -> hidden (B, T, D), attn (B, T, S) (None unless
        `attention`). Memory and src_mask (B / beams, S) are per sentence; `past` (caches
        holding `length` positions, written in place) or None for a whole sequence."""
        mask = src_mask[:, None, None, :]  # (B / beams, 1, 1, S)
        shown: torch.Tensor | None = None
        for i, layer in enumerate(self.layers):
            x, weights = layer(x, None if past is None else past[i], memory[i], mask,
                               need_weights=attention and i == self.shown_layer, beams=beams,
                               length=length)
            shown = self._shown(weights) if i == self.shown_layer else shown
        return self.final_norm(x), shown

    def _memory(self, enc: EncoderOutput) -> list[KV]:
        """Cross-attention keys/values of the encoder memory, per layer (B, H, S, Dh)."""
        layers = cast(list[DecoderLayer], list(self.layers))
        return [layer.cross_attn.project_kv(enc.memory) for layer in layers]

    def forward(self, emb: torch.Tensor,
                enc: EncoderOutput) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher forcing: emb (B, T, D) -> hidden (B, T, D), attention (B, T, S)."""
        return self._run(self.positions(emb), None, self._memory(enc), enc.src_mask)

    def start(self, enc: EncoderOutput, capacity: int = 16) -> TransformerState:
        """The state before the first step, with cache room for `capacity` positions (it
        grows as needed)."""
        B, D = enc.memory.size(0), self.out_dim
        capacity = capacity if self.use_cache else 0  # without the cache: empty buffers
        past = [tuple(enc.memory.new_empty(B, capacity, self.heads, D // self.heads)
                      for _ in "kv") for _ in self.layers]  # (B, capacity, H, Dh)
        prefix = None if self.use_cache else enc.memory.new_zeros(B, 0, D)
        return TransformerState(cast(list[KV], past), self._memory(enc), enc.src_mask, prefix)

    def step(self, emb: torch.Tensor, state: TransformerState, enc: EncoderOutput,
             attention: bool = True) -> tuple[torch.Tensor, TransformerState,
                                              torch.Tensor | None]:
        """emb (B, D) of the previous token -> hidden (B, D), state, attention (B, S) or None.
        The memory comes from `state` (computed once by `start`), not from `enc`."""
        if state.prefix is not None:  # no cache: rerun the whole prefix, keep the last position
            prefix = torch.cat([state.prefix, emb.unsqueeze(1)], 1)  # (B, t + 1, D)
            hidden, attn = self._run(self.positions(prefix), None, state.memory,
                                     state.src_mask, attention, state.beams)
            new = replace(state, prefix=prefix, length=state.length + 1)
            return hidden[:, -1], new, None if attn is None else attn[:, -1]
        state = state.reserve(state.length + 1)
        x = self.positions(emb.unsqueeze(1), offset=state.length)  # (B, 1, D)
        hidden, attn = self._run(x, state.past, state.memory, state.src_mask, attention,
                                 state.beams, state.length)
        new = replace(state, length=state.length + 1)
        return hidden[:, 0], new, None if attn is None else attn[:, 0]


def init_weights(model: Seq2Seq, d_model: int, pad_id: int, tgt_pad_id: int | None = None) -> None:
    """Xavier-uniform matrices (keys and values as two D x D matrices), zero biases;
    embeddings N(0, 1/D), so that after the sqrt(D) scaling tokens have unit variance
    (and tied output logits start near unit scale)."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        if isinstance(module, MultiHeadAttention):
            for half in module.key_value.weight.chunk(2):  # views: initialised in place
                nn.init.xavier_uniform_(half)
    for module in model.modules():  # after the Linears: a tied output layer is an embedding
        if isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=d_model ** -0.5)
    with torch.no_grad():
        model.src_embed.weight[pad_id].zero_()
        model.tgt_embed.weight[pad_id if tgt_pad_id is None else tgt_pad_id].zero_()


def build_transformer(cfg: ModelConfig, src_vocab: int, tgt_vocab: int, pad_id: int,
                      tgt_pad_id: int | None = None) -> Seq2Seq:
    """A freshly initialised Transformer; embeddings are d_model (= model.hidden_size) wide.
    `pad_id` and `tgt_pad_id` (default: the same) are the source and target <pad> ids."""
    D = cfg.hidden_size
    if cfg.emb_dim != D:
        raise ValueError(f"model.emb_dim ({cfg.emb_dim}) must equal model.hidden_size ({D}) "
                         f"for arch: transformer")
    if cfg.share_embeddings and src_vocab != tgt_vocab:
        raise ValueError(f"model.share_embeddings needs one vocabulary for both sides "
                         f"(got {src_vocab} and {tgt_vocab} entries)")
    spec = LayerSpec(D, cfg.heads, cfg.ff_size, cfg.dropout, cfg.attention_dropout,
                     cfg.activation_dropout, cfg.pre_norm, cfg.activation)
    tgt_pad = pad_id if tgt_pad_id is None else tgt_pad_id
    layout = "halves" if cfg.positions == "sinusoidal_halves" else "interleaved"

    def positions() -> PositionalEmbedding:
        return PositionalEmbedding(D, cfg.max_positions, cfg.positions == "learned", cfg.dropout,
                                   cfg.scale_embeddings, layout)

    src_embed = nn.Embedding(src_vocab, D, padding_idx=pad_id)
    tgt_embed = src_embed if cfg.share_embeddings else nn.Embedding(tgt_vocab, D,
                                                                    padding_idx=tgt_pad)
    encoder = TransformerEncoder(spec, cfg.encoder_layers, positions())
    decoder = TransformerDecoder(spec, cfg.decoder_layers, positions(), cfg.attention_layer,
                                 cfg.attention_head)
    model = Seq2Seq(src_embed, tgt_embed, encoder, decoder,
                    make_generator(D, tgt_embed, cfg.tie_embeddings), cfg.final_logits_bias)
    init_weights(model, D, pad_id, tgt_pad)
    model.max_positions = cfg.max_positions  # type: ignore[assignment]  # caps output length
    return model
