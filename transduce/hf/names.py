"""Which MarianMT tensor is which transduce tensor, and MarianMT's fixed settings.

transduce keeps an attention's key and value projections as one (2D, D) matrix; MarianMT
has k_proj and v_proj: the transduce tensor is the MarianMT ones stacked on dim 0.
"""

from __future__ import annotations

# transduce name (in a layer) -> MarianMT names (in the same layer), stacked on dim 0
_ENCODER_LAYER = {
    "attn.query": ("self_attn.q_proj",),
    "attn.key_value": ("self_attn.k_proj", "self_attn.v_proj"),
    "attn.out": ("self_attn.out_proj",),
    "res_attn.norm": ("self_attn_layer_norm",),
    "ff.inner": ("fc1",),
    "ff.outer": ("fc2",),
    "res_ff.norm": ("final_layer_norm",),
}
_DECODER_LAYER = {
    "self_attn.query": ("self_attn.q_proj",),
    "self_attn.key_value": ("self_attn.k_proj", "self_attn.v_proj"),
    "self_attn.out": ("self_attn.out_proj",),
    "res_self.norm": ("self_attn_layer_norm",),
    "cross_attn.query": ("encoder_attn.q_proj",),
    "cross_attn.key_value": ("encoder_attn.k_proj", "encoder_attn.v_proj"),
    "cross_attn.out": ("encoder_attn.out_proj",),
    "res_cross.norm": ("encoder_attn_layer_norm",),
    "ff.inner": ("fc1",),
    "ff.outer": ("fc2",),
    "res_ff.norm": ("final_layer_norm",),
}

# MarianMT's names of the token embeddings and output layer
SHARED = "model.shared.weight"
SRC_EMBED = "model.encoder.embed_tokens.weight"
TGT_EMBED = "model.decoder.embed_tokens.weight"
LM_HEAD = "lm_head.weight"
LOGITS_BIAS = "final_logits_bias"  # (1, V)

ACTIVATIONS = {"relu": "relu", "gelu": "gelu", "swish": "swish", "silu": "swish"}  # HF -> ours


def layer_names(encoder_layers: int, decoder_layers: int) -> list[tuple[str, tuple[str, ...]]]:
    """(transduce name, MarianMT names) of every layer tensor (weights and biases)."""
    pairs = []
    for side, count, table in (("encoder", encoder_layers, _ENCODER_LAYER),
                               ("decoder", decoder_layers, _DECODER_LAYER)):
        for i in range(count):
            for ours, theirs in table.items():
                for kind in ("weight", "bias"):
                    pairs.append((f"{side}.layers.{i}.{ours}.{kind}",
                                  tuple(f"model.{side}.layers.{i}.{t}.{kind}" for t in theirs)))
    return pairs


def hidden_dims(name: str) -> tuple[int, ...]:
    """The dimensions of MarianMT tensor `name` that run over the model's width D (its
    hidden features), to permute when the hidden features are reordered."""
    if name in (SHARED, SRC_EMBED, TGT_EMBED, LM_HEAD):
        return (1,)
    if name.count(".") < 1:
        return ()  # final_logits_bias runs over the vocabulary
    module, kind = name.rsplit(".", 2)[-2:]
    if module in ("q_proj", "k_proj", "v_proj", "fc1"):
        return (1,) if kind == "weight" else ()
    if module in ("out_proj", "fc2") or module.endswith("layer_norm"):
        return (0,)
    return ()
