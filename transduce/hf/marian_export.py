"""Export a transduce Transformer as a Hugging Face MarianMT directory.

    transduce export MODEL_DIR OUT --format hf

`MarianMTModel.from_pretrained(OUT)` and `MarianTokenizer.from_pretrained(OUT)` load it
unchanged and compute what transduce computes. Written without `transformers`: config.json,
generation_config.json, model.safetensors, source.spm, target.spm, vocab.json (and
target_vocab.json for separate vocabularies), tokenizer_config.json.

MarianMT is post-norm with sinusoidal positions, all sines before all cosines. transduce's
own sinusoids interleave them: such a model is exported with its hidden features reordered
(every tensor's D-wide dimension permuted the same way), which computes the same function.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from transduce.config import Config
from transduce.hf.names import (
    LM_HEAD,
    LOGITS_BIAS,
    SHARED,
    SRC_EMBED,
    TGT_EMBED,
    hidden_dims,
    layer_names,
)
from transduce.models.seq2seq import Seq2Seq
from transduce.text import Codec, SentencePieceTokenizer
from transduce.training.checkpoint import MODEL_FILE
from transduce.translator import load_model

MARKER = "source.spm"  # with config.json: a MarianMT directory


def exportable(cfg: Config, src: Codec, tgt: Codec) -> None:
    """ValueError saying why this model cannot be a MarianMT model, if it cannot."""
    m = cfg.model
    why = None
    if m.arch != "transformer":
        why = f"model.arch is {m.arch}; MarianMT is a Transformer"
    elif m.pre_norm:
        why = ("model.pre_norm is true; MarianMT's layers are post-norm (LayerNorm after "
               "the residual sum), which computes something else, and no pre-norm "
               "architecture of transformers computes what transduce's does (see "
               "docs/marian.md); train with model.pre_norm=false to export")
    elif m.positions == "learned":
        why = "model.positions is learned; MarianMT has sinusoidal positions only"
    elif m.hidden_size % 2:
        why = f"model.hidden_size {m.hidden_size} is odd; MarianMT's sinusoids need it even"
    elif not (isinstance(src.tokenizer, SentencePieceTokenizer)
              and isinstance(tgt.tokenizer, SentencePieceTokenizer)):
        why = (f"the tokenizers are {src.tokenizer.kind}/{tgt.tokenizer.kind}; "
               "MarianTokenizer needs SentencePiece models")
    elif src.lowercase:
        why = "data.lowercase is true; MarianTokenizer does not lowercase its input"
    elif m.share_embeddings and src.vocab is not tgt.vocab:
        why = "source and target embeddings are shared but the vocabularies differ"
    elif src.vocab.pad_id != tgt.vocab.pad_id:
        why = "the source and target <pad> ids differ; MarianMT has one pad_token_id"
    if why:
        raise ValueError(f"cannot export to the Hugging Face MarianMT format: {why}")


def export_marian(model_dir: str | Path, out_dir: str | Path, force: bool = False,
                  weights: str = MODEL_FILE) -> Path:
    """Write a MarianMT directory for the post-norm Transformer in `model_dir`."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if out_dir.exists() and not force:
        raise FileExistsError(f"{out_dir} already exists; pass --force to overwrite it")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MARKER).is_file():
        raise FileExistsError(f"{out_dir} is not empty and not a MarianMT directory; not "
                              "overwriting it, even with --force")
    if out_dir.resolve() == model_dir.resolve():
        raise ValueError("the export directory must differ from the model directory")
    cfg, model, src, tgt = load_model(model_dir, weights)
    exportable(cfg, src, tgt)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    tensors = marian_tensors(cfg, model)
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    write_json(out_dir / "config.json", marian_config(cfg, src, tgt))
    write_json(out_dir / "generation_config.json", generation_config(cfg, tgt))
    write_tokenizer(out_dir, cfg, src, tgt)
    return out_dir


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def marian_tensors(cfg: Config, model: Seq2Seq) -> dict[str, torch.Tensor]:
    """MarianMTModel's state dict (positions left out, as it saves them)."""
    m, state = cfg.model, model.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for ours, theirs in layer_names(m.encoder_layers, m.decoder_layers):
        for name, part in zip(theirs, state[ours].chunk(len(theirs))):
            tensors[name] = part
    src, tgt = state["src_embed.weight"], state["tgt_embed.weight"]
    if m.share_embeddings:
        tensors[SHARED] = src
    tensors[SRC_EMBED], tensors[TGT_EMBED] = src, tgt
    tensors[LM_HEAD] = model.output_weight.detach()
    bias = model.final_logits_bias
    tensors[LOGITS_BIAS] = (torch.zeros(tgt.size(0)) if bias is None else bias).reshape(1, -1)
    if m.positions == "sinusoidal":  # interleaved sin/cos -> MarianMT's halves
        perm = torch.cat([torch.arange(0, m.hidden_size, 2), torch.arange(1, m.hidden_size, 2)])
        tensors = {k: _permute(v, hidden_dims(k), perm) for k, v in tensors.items()}
    return {k: v.detach().float().contiguous().clone() for k, v in tensors.items()}


def _permute(t: torch.Tensor, dims: tuple[int, ...], perm: torch.Tensor) -> torch.Tensor:
    for d in dims:
        t = t.index_select(d, perm)
    return t


def marian_config(cfg: Config, src: Codec, tgt: Codec) -> dict[str, Any]:
    """config.json for MarianMTModel (docs/marian.md has the mapping)."""
    m, v = cfg.model, tgt.vocab
    return {
        "architectures": ["MarianMTModel"], "model_type": "marian",
        "vocab_size": len(src.vocab), "decoder_vocab_size": len(v), "d_model": m.hidden_size,
        "encoder_layers": m.encoder_layers, "decoder_layers": m.decoder_layers,
        "encoder_attention_heads": m.heads, "decoder_attention_heads": m.heads,
        "encoder_ffn_dim": m.ff_size, "decoder_ffn_dim": m.ff_size,
        "activation_function": m.activation, "scale_embedding": m.scale_embeddings,
        "dropout": m.dropout, "attention_dropout": m.attention_dropout,
        "activation_dropout": m.activation_dropout,
        "max_position_embeddings": m.max_positions,
        "share_encoder_decoder_embeddings": m.share_embeddings,
        "tie_word_embeddings": m.tie_embeddings,
        "pad_token_id": v.pad_id, "eos_token_id": v.eos_id, "bos_token_id": v.bos_id,
        "decoder_start_token_id": v.start_id, "forced_eos_token_id": v.eos_id,
        "is_encoder_decoder": True, "encoder_layerdrop": 0.0, "decoder_layerdrop": 0.0,
        "init_std": 0.02, "use_cache": True,
    }


def generation_config(cfg: Config, tgt: Codec) -> dict[str, Any]:
    """Decoding defaults: the model's beam size and length limit; MarianMT's length
    penalty (log P / |y| ** alpha) is not transduce's (GNMT's), so its default stays."""
    v = tgt.vocab
    return {"decoder_start_token_id": v.start_id, "bos_token_id": v.bos_id,
            "eos_token_id": v.eos_id, "forced_eos_token_id": v.eos_id, "pad_token_id": v.pad_id,
            "num_beams": cfg.decode.beam_size, "max_length": cfg.model.max_positions}


def write_tokenizer(out: Path, cfg: Config, src: Codec, tgt: Codec) -> None:
    """source.spm, target.spm, vocab.json (+ target_vocab.json), tokenizer_config.json."""
    for name, codec in (("source.spm", src), ("target.spm", tgt)):
        assert isinstance(codec.tokenizer, SentencePieceTokenizer)
        (out / name).write_bytes(codec.tokenizer.model_proto)
    separate = src.vocab is not tgt.vocab
    write_json(out / "vocab.json", src.vocab.stoi)
    if separate:
        write_json(out / "target_vocab.json", tgt.vocab.stoi)
    v = tgt.vocab
    config = {
        "tokenizer_class": "MarianTokenizer", "separate_vocabs": separate,
        "source_lang": cfg.data.src_lang, "target_lang": cfg.data.tgt_lang,
        "unk_token": v.itos[v.unk_id], "eos_token": v.itos[v.eos_id],
        "pad_token": v.itos[v.pad_id], "model_max_length": cfg.model.max_positions}
    if v.bos_id is not None:  # the decoder's start token: generate's outputs begin with it,
        config["bos_token"] = v.itos[v.bos_id]  # and decode(skip_special_tokens) drops it
    write_json(out / "tokenizer_config.json", config)
