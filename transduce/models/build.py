"""Build a Seq2Seq model from the model section of a config, and describe it."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from transduce.config import ModelConfig
from transduce.models.cnn import CNNEncoder
from transduce.models.rnn import RNNDecoder, RNNEncoder
from transduce.models.seq2seq import Seq2Seq


def build_model(cfg: ModelConfig, src_vocab: int, tgt_vocab: int, pad_id: int = 0,
                tgt_pad_id: int | None = None) -> Seq2Seq:
    """A freshly initialised model for vocabularies of the given sizes; `pad_id` is the
    source vocabulary's <pad>, `tgt_pad_id` the target's (default: the same)."""
    tgt_pad = pad_id if tgt_pad_id is None else tgt_pad_id
    if cfg.arch == "transformer":
        from transduce.models.transformer import build_transformer

        return build_transformer(cfg, src_vocab, tgt_vocab, pad_id, tgt_pad)
    src_embed = nn.Embedding(src_vocab, cfg.emb_dim, padding_idx=pad_id)
    tgt_embed = src_embed if cfg.share_embeddings else nn.Embedding(tgt_vocab, cfg.emb_dim,
                                                                    padding_idx=tgt_pad)
    encoder: nn.Module
    if cfg.encoder == "cnn":
        encoder = CNNEncoder(cfg.emb_dim, cfg.hidden_size, cfg.encoder_layers,
                             cfg.cnn_kernel_size, cfg.dropout, cfg.max_positions)
    else:
        encoder = RNNEncoder(cfg.rnn_type, cfg.emb_dim, cfg.hidden_size, cfg.encoder_layers,
                             cfg.bidirectional, cfg.dropout)
    decoder = RNNDecoder(cfg.rnn_type, cfg.emb_dim, cfg.hidden_size, cfg.decoder_layers,
                         encoder.out_dim, cfg.attention, cfg.input_feeding, cfg.dropout)
    model = Seq2Seq(src_embed, tgt_embed, encoder, decoder,
                    make_generator(decoder.out_dim, tgt_embed, cfg.tie_embeddings))
    for p in model.parameters():
        nn.init.uniform_(p, -0.1, 0.1)
    with torch.no_grad():
        model.src_embed.weight[pad_id].zero_()
        model.tgt_embed.weight[tgt_pad].zero_()
    return model


def make_generator(out_dim: int, tgt_embed: nn.Embedding, tie: bool) -> nn.Module:
    """Output layer over the target vocabulary; tied to the target embeddings if asked
    (with a projection when the decoder's size differs from the embedding size)."""
    vocab, emb_dim = tgt_embed.weight.shape
    linear = nn.Linear(emb_dim if tie else out_dim, vocab, bias=False)
    if not tie:
        return linear
    linear.weight = tgt_embed.weight
    if out_dim == emb_dim:
        return linear
    return nn.Sequential(nn.Linear(out_dim, emb_dim, bias=False), linear)


def load_pretrained_embeddings(embedding: nn.Embedding, path: str | Path, itos: list[str],
                               freeze: bool) -> int:
    """Copy vectors from a word2vec/GloVe text file for tokens in `itos`; returns how many.

    Raises ValueError naming the file and line if a vector has the wrong size.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained embeddings file not found: {path}")
    index = {t: i for i, t in enumerate(itos)}
    dim, found = embedding.weight.size(1), 0
    with open(path, encoding="utf-8", errors="replace") as f, torch.no_grad():
        for number, line in enumerate(f, start=1):
            parts = line.rstrip().split(" ")
            if number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # word2vec header: "<count> <dim>"
            if parts[0] not in index:
                continue
            if len(parts) - 1 != dim:
                raise ValueError(f"{path}, line {number}: vector has {len(parts) - 1} values "
                                 f"but model.emb_dim is {dim}")
            embedding.weight[index[parts[0]]] = torch.tensor([float(x) for x in parts[1:]])
            found += 1
    embedding.weight.requires_grad_(not freeze)
    return found


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Unique parameters (tied weights counted once)."""
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total


def layer_table(model: nn.Module, max_depth: int = 2) -> str:
    """A Keras-style summary: one row per module down to `max_depth`, with parameter counts."""
    rows = [("layer", "type", "params")]
    seen: set[int] = set()

    def own(module: nn.Module) -> int:
        n = 0
        for p in module.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                n += p.numel()
        return n

    for name, module in model.named_modules():
        depth = 0 if not name else name.count(".") + 1
        if depth == 0 or depth > max_depth:
            continue
        children_shown = depth < max_depth and any(True for _ in module.children())
        n = sum(p.numel() for p in module.parameters() if id(p) not in seen) \
            if children_shown else own(module)
        rows.append(("  " * (depth - 1) + name.split(".")[-1], type(module).__name__,
                     f"{n:,}" if not children_shown else ""))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    line = "-" * (sum(widths) + 4)
    out = [line] + [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}"
                    for r in rows[:1]] + [line]
    out += [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}" for r in rows[1:]]
    total, trainable = count_parameters(model), count_parameters(model, trainable_only=True)
    out += [line, f"total parameters: {total:,} (trainable: {trainable:,})", line]
    return "\n".join(out)
