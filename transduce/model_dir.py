"""A model directory as training writes it: config.yaml, tokenizer files, safetensors weights."""

from __future__ import annotations

from pathlib import Path

from transduce.config import Config, load_config
from transduce.models import Seq2Seq, build_model
from transduce.text import Codec, load_codecs
from transduce.training.checkpoint import MODEL_FILE, load_weights


def load_model(model_dir: str | Path,
               weights: str = MODEL_FILE) -> tuple[Config, Seq2Seq, Codec, Codec]:
    """The config, model (weights loaded) and tokenizers of a model directory."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{model_dir} is not a transduce model directory "
                                f"(no config.yaml); train one with 'transduce train'")
    cfg: Config = load_config(model_dir / "config.yaml")
    src, tgt = load_codecs(model_dir)
    model = build_model(cfg.model, len(src.vocab), len(tgt.vocab), src.vocab.pad_id,
                        tgt.vocab.pad_id)
    load_weights(model, model_dir / weights)
    return cfg, model, src, tgt
