"""Import a local Hugging Face MarianMT directory (OPUS-MT models) as a transduce model
directory that every command takes.

    transduce import DIR OUT

Reads config.json, tokenizer_config.json, source.spm, target.spm, vocab.json (and
target_vocab.json with separate vocabularies) and the weights (model.safetensors, or
pytorch_model.bin through torch.load(weights_only=True)); writes config.yaml, the
tokenizer files and model.safetensors. Nothing is downloaded and `transformers` is not
needed. What is unsupported is one ValueError naming the file and field (docs/marian.md).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from transduce.config import Config, ConfigError, config_from_dict, save_config
from transduce.hf.names import (
    ACTIVATIONS,
    LM_HEAD,
    LOGITS_BIAS,
    SHARED,
    SRC_EMBED,
    TGT_EMBED,
    layer_names,
)
from transduce.models import build_model
from transduce.text import Codec, SentencePieceTokenizer, save_codecs
from transduce.text.vocab import SpecialIds, Vocab
from transduce.training.checkpoint import MODEL_FILE, save_weights

LANGUAGE_TOKEN = re.compile(r"^>>.+<<$")  # target-language tokens of multilingual models
# config.json fields whose other values MarianMTModel does not compute (transduce follows
# MarianMTModel, which ignores them: a checkpoint that sets them was not made for it)
_FIXED = {"normalize_before": False, "normalize_embedding": False, "layernorm_embedding": False,
          "add_final_layer_norm": False, "static_position_embeddings": True,
          "add_bias_logits": False}


def import_marian(src_dir: str | Path, out_dir: str | Path, force: bool = False) -> Path:
    """Write a transduce model directory from the MarianMT directory `src_dir`."""
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    if not src_dir.is_dir():
        raise FileNotFoundError(f"{src_dir} is not a directory (a MarianMT model directory "
                                "with config.json, source.spm, target.spm, vocab.json)")
    if out_dir.exists() and not force:
        raise FileExistsError(f"{out_dir} already exists; pass --force to overwrite it")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "config.yaml").is_file():
        raise FileExistsError(f"{out_dir} is not empty and not a model directory; not "
                              "overwriting it, even with --force")
    hf = read_json(src_dir / "config.json")
    tok_cfg = read_json(src_dir / "tokenizer_config.json") \
        if (src_dir / "tokenizer_config.json").is_file() else {}
    src, tgt = marian_codecs(src_dir, hf, tok_cfg)
    cfg = transduce_config(hf, tok_cfg, src_dir)
    model = build_model(cfg.model, len(src.vocab), len(tgt.vocab), src.vocab.pad_id,
                        tgt.vocab.pad_id)
    tensors, path = read_weights(src_dir)
    state = transduce_state(tensors, path, cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:  # a shape that config.json does not announce
        raise ValueError(f"{path} does not match {src_dir / 'config.json'}: "
                         f"{' '.join(str(e).split())[:300]}") from None
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    save_config(cfg, out_dir / "config.yaml")
    save_codecs(src, tgt, out_dir)
    save_weights(model, out_dir / MODEL_FILE)
    return out_dir


def read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (a MarianMT directory has config.json, "
                                "source.spm, target.spm and vocab.json)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def _field(hf: dict[str, Any], key: str, kind: type | tuple[type, ...], path: Path,
           default: Any = None) -> Any:
    """config.json's `key`, checked to be of `kind` (required where `default` is None)."""
    if key not in hf or hf[key] is None:
        if default is None:
            raise ValueError(f"{path}: field '{key}' is missing")
        return default
    value = hf[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ValueError(f"{path}: field '{key}' has an unsupported value {value!r}")
    return value


def check_supported(hf: dict[str, Any], tok_cfg: dict[str, Any], path: Path) -> None:
    """ValueError naming the first field of config.json that transduce cannot follow."""
    if hf.get("model_type") != "marian":
        raise ValueError(f"{path}: field 'model_type' is {hf.get('model_type')!r}; only "
                         "'marian' (MarianMTModel) can be imported")
    for key, wanted in _FIXED.items():
        if key in hf and bool(hf[key]) != wanted:
            raise ValueError(f"{path}: field '{key}' = {hf[key]!r} is unsupported (MarianMTModel "
                             f"computes {key} = {wanted})")
    activation = _field(hf, "activation_function", str, path, "gelu")
    if activation not in ACTIVATIONS:
        raise ValueError(f"{path}: field 'activation_function' = {activation!r} is unsupported "
                         f"(supported: {', '.join(ACTIVATIONS)})")
    for ours, theirs in (("heads", "attention_heads"), ("ff_size", "ffn_dim")):
        if hf.get(f"encoder_{theirs}") != hf.get(f"decoder_{theirs}"):
            raise ValueError(f"{path}: fields 'encoder_{theirs}' and 'decoder_{theirs}' differ; "
                             f"transduce has one model.{ours} for both")
    share = _field(hf, "share_encoder_decoder_embeddings", bool, path, True)
    if share and tok_cfg.get("separate_vocabs"):
        raise ValueError(f"{path}: share_encoder_decoder_embeddings with separate_vocabs in "
                         "tokenizer_config.json is unsupported (one embedding, two vocabularies)")


def transduce_config(hf: dict[str, Any], tok_cfg: dict[str, Any], src_dir: Path) -> Config:
    """The transduce config of a MarianMT config.json (its model section says what
    MarianMTModel computes: post-norm, positions in halves, a logits bias)."""
    path = src_dir / "config.json"
    check_supported(hf, tok_cfg, path)
    d_model = _field(hf, "d_model", int, path)
    model = {
        "arch": "transformer", "emb_dim": d_model, "hidden_size": d_model,
        "heads": _field(hf, "encoder_attention_heads", int, path),
        "ff_size": _field(hf, "encoder_ffn_dim", int, path),
        "encoder_layers": _field(hf, "encoder_layers", int, path),
        "decoder_layers": _field(hf, "decoder_layers", int, path),
        "dropout": float(_field(hf, "dropout", (int, float), path, 0.1)),
        "attention_dropout": float(_field(hf, "attention_dropout", (int, float), path, 0.0)),
        "activation_dropout": float(_field(hf, "activation_dropout", (int, float), path, 0.0)),
        "pre_norm": False, "positions": "sinusoidal_halves",
        "activation": ACTIVATIONS[_field(hf, "activation_function", str, path, "gelu")],
        "scale_embeddings": _field(hf, "scale_embedding", bool, path, False),
        "final_logits_bias": True,
        "max_positions": _field(hf, "max_position_embeddings", int, path, 1024),
        "share_embeddings": _field(hf, "share_encoder_decoder_embeddings", bool, path, True),
        "tie_embeddings": _field(hf, "tie_word_embeddings", bool, path, True),
    }
    beam = hf.get("num_beams")
    generation = src_dir / "generation_config.json"
    if generation.is_file():
        beam = read_json(generation).get("num_beams", beam)
    data = {"src_lang": tok_cfg.get("source_lang") or "src",
            "tgt_lang": tok_cfg.get("target_lang") or "tgt"}
    try:
        return config_from_dict({
            "data": data, "model": model,
            "tokenizer": {"kind": "sentencepiece", "shared": not tok_cfg.get("separate_vocabs")},
            "decode": {"beam_size": beam} if isinstance(beam, int) and beam > 0 else {}})
    except ConfigError as e:
        raise ValueError(f"{path}: {e}") from None


def read_weights(directory: Path) -> tuple[dict[str, torch.Tensor], Path]:
    """All tensors of the weights file (model.safetensors, else pytorch_model.bin loaded
    with weights_only=True: tensors only, nothing unpickled), as float32."""
    safe, pickled = directory / "model.safetensors", directory / "pytorch_model.bin"
    if safe.is_file():
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(safe))
        except (SafetensorError, OSError) as e:
            raise ValueError(f"{safe}: not a readable safetensors file ({e})") from None
        path = safe
    elif pickled.is_file():
        try:
            tensors = torch.load(pickled, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError...
            raise ValueError(f"{pickled}: not loadable with weights_only=True "
                             f"({' '.join(str(e).split())[:200]})") from None
        path = pickled
    else:
        sharded = [p.name for p in directory.glob("*.index.json")]
        hint = f" (sharded weights {sharded[0]} are not supported)" if sharded else ""
        raise FileNotFoundError(f"no weights in {directory}: expected model.safetensors or "
                                f"pytorch_model.bin{hint}")
    if not isinstance(tensors, dict) or not all(torch.is_tensor(t) for t in tensors.values()):
        raise ValueError(f"{path}: expected a mapping of names to tensors")
    return {k: v.float() for k, v in tensors.items()}, path


def transduce_state(tensors: dict[str, torch.Tensor], path: Path,
                    cfg: Config) -> dict[str, torch.Tensor]:
    """transduce's state dict from MarianMT's tensors; ValueError naming a missing or an
    unexpected tensor."""
    m = cfg.model
    used: set[str] = set()

    def need(*names: str) -> torch.Tensor:
        for name in names:
            if name in tensors:
                used.add(name)
                return tensors[name]
        raise ValueError(f"{path}: tensor '{names[0]}' is missing")

    state = {ours: torch.cat([need(t) for t in theirs])
             for ours, theirs in layer_names(m.encoder_layers, m.decoder_layers)}
    if m.share_embeddings:
        src = tgt = need(SHARED, SRC_EMBED, TGT_EMBED)
    else:
        src, tgt = need(SRC_EMBED), need(TGT_EMBED)
    used.update(n for n in (SHARED, SRC_EMBED, TGT_EMBED) if n in tensors)
    out = tgt if m.tie_embeddings else need(LM_HEAD)
    used.add(LM_HEAD)
    bias = tensors.get(LOGITS_BIAS, torch.zeros(1, tgt.size(0)))
    used.add(LOGITS_BIAS)
    extra = sorted(k for k in tensors if k not in used and "embed_positions" not in k)
    if extra:
        raise ValueError(f"{path}: unexpected tensor '{extra[0]}' (does config.json give the "
                         "right numbers of layers?)")
    state.update({"src_embed.weight": src, "tgt_embed.weight": tgt, "generator.weight": out,
                  "final_logits_bias": bias.reshape(-1)})
    return state


def _token(tok_cfg: dict[str, Any], key: str, default: str) -> str:
    value = tok_cfg.get(key, default)
    return value.get("content", default) if isinstance(value, dict) else str(value)


def read_vocab(path: Path, tok_cfg: dict[str, Any], size: int, start: int | None) -> Vocab:
    """A MarianMT vocabulary (JSON token -> id) with its special ids; `start` is the
    decoder's first input (config.json's decoder_start_token_id; None: <pad>, for a
    source-only vocabulary)."""
    data = read_json(path)
    itos = [""] * len(data)
    for token, i in data.items():
        if not isinstance(i, int) or not 0 <= i < len(data) or itos[i]:
            raise ValueError(f"{path}: ids must be 0..{len(data) - 1}, each once "
                             f"(token {token!r} has {i!r})")
        itos[i] = token
    if len(itos) != size:
        raise ValueError(f"{path} has {len(itos)} tokens but config.json says {size}")
    if any(LANGUAGE_TOKEN.match(t) for t in itos) and path.name == "vocab.json":
        raise ValueError(f"{path} has target-language tokens (>>xx<<): multilingual "
                         "MarianMT models are not supported yet")
    ids = {}
    for key, default in (("pad_token", "<pad>"), ("unk_token", "<unk>"), ("eos_token", "</s>")):
        token = _token(tok_cfg, key, default)
        if token not in data:
            raise ValueError(f"{path}: no {key} {token!r}")
        ids[key] = data[token]
    try:
        return Vocab(itos, SpecialIds(ids["pad_token"], ids["unk_token"], data.get("<s>"),
                                      ids["eos_token"],
                                      ids["pad_token"] if start is None else start))
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def marian_codecs(directory: Path, hf: dict[str, Any],
                  tok_cfg: dict[str, Any]) -> tuple[Codec, Codec]:
    """Source and target codecs: source.spm and target.spm with their vocabularies (one
    Vocab object for both sides unless tokenizer_config.json says separate_vocabs)."""
    config = directory / "config.json"
    spms = []
    for name in ("source.spm", "target.spm"):
        path = directory / name
        if not path.is_file():
            bpe = " (BPE-based OPUS-MT models are not supported)" \
                if any(directory.glob("*.bpe")) or any(directory.glob("*merges*")) else ""
            raise FileNotFoundError(f"{path} not found: transduce imports SentencePiece-based "
                                    f"MarianMT models{bpe}")
        try:
            spms.append(SentencePieceTokenizer(path.read_bytes()))
        except (RuntimeError, OSError) as e:
            raise ValueError(f"{path}: not a SentencePiece model ({e})") from None
    vocab_size = _field(hf, "vocab_size", int, config)
    start = _field(hf, "decoder_start_token_id", int, config)
    separate = bool(tok_cfg.get("separate_vocabs"))
    src_vocab = read_vocab(directory / "vocab.json", tok_cfg, vocab_size,
                           None if separate else start)
    tgt_vocab = src_vocab
    if separate:
        tgt_vocab = read_vocab(directory / "target_vocab.json", tok_cfg,
                               _field(hf, "decoder_vocab_size", int, config, vocab_size), start)
    for key, i in (("pad_token_id", tgt_vocab.pad_id), ("eos_token_id", tgt_vocab.eos_id)):
        if key in hf and hf[key] != i:
            raise ValueError(f"{config}: field '{key}' = {hf[key]!r} but the target "
                             f"vocabulary has that token at {i}")
    if spms[0].model_proto == spms[1].model_proto and src_vocab is tgt_vocab:
        codec = Codec(spms[0], src_vocab)
        return codec, codec
    return Codec(spms[0], src_vocab), Codec(spms[1], tgt_vocab)
