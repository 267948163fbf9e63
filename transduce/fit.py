"""Training from Python lists, for notebooks: `transduce.fit(src_texts, tgt_texts, ...)`.

The same pipeline as `transduce train`: the lists are written as line-aligned files in the
model directory (MODEL_DIR/data) and trained on like any corpus, so the run can be resumed,
evaluated and served as usual.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from transduce.config import Config, ConfigError, config_from_dict, load_config
from transduce.training.callbacks import Callback
from transduce.training.trainer import train
from transduce.translator import Translator


def fit(src_texts: Sequence[str], tgt_texts: Sequence[str],
        valid: tuple[Sequence[str], Sequence[str]] | None = None,
        config: str | Path | dict[str, Any] | Config | None = None,
        out_dir: str | Path | None = None, log: Callable[[str], None] = print,
        callbacks: Sequence[Callback] = (), **sections: dict[str, Any]) -> Translator:
    """Train on parallel lists and return the best model as a Translator.

    `config`: a YAML path, a dict or a Config (default: the package defaults); its data
    files are replaced by the lists. `sections` override config sections key by key, e.g.
    ``fit(src, tgt, model={"arch": "transformer"}, train={"max_steps": 2000})``.
    `out_dir` (default: train.out_dir) is the model directory.
    """
    raw = _config_dict(config)
    for name, values in sections.items():
        if not isinstance(values, dict):
            raise ConfigError(f"fit({name}=...) must be a dict of '{name}' settings, "
                              f"got {type(values).__name__}")
        raw.setdefault(name, {})
        if not isinstance(raw[name], dict):
            raise ConfigError(f"config section '{name}' must be a mapping of options")
        raw[name].update(values)
    if out_dir is not None:
        raw.setdefault("train", {})["out_dir"] = str(out_dir)
    out = Path(config_from_dict(copy.deepcopy(raw)).train.out_dir)
    data = raw.setdefault("data", {})
    for key in ("train", "train_src", "train_tgt", "valid_src", "valid_tgt"):
        data.pop(key, None)
    data["train_src"], data["train_tgt"] = write_pairs(out / "data", "train", src_texts,
                                                       tgt_texts)
    if valid is not None:
        data["valid_src"], data["valid_tgt"] = write_pairs(out / "data", "valid", *valid)
    result = train(config_from_dict(raw), log=log, callbacks=callbacks)
    return Translator.load(result.model_dir)


def _config_dict(config: str | Path | dict[str, Any] | Config | None) -> dict[str, Any]:
    if config is None:
        return {}
    if isinstance(config, Config):
        return config.model_dump(mode="json")
    if isinstance(config, dict):
        return copy.deepcopy(config)
    return load_config(config).model_dump(mode="json")


def write_pairs(directory: Path, name: str, src_texts: Sequence[str],
                tgt_texts: Sequence[str]) -> tuple[str, str]:
    """Write two aligned lists as NAME.src / NAME.tgt, one text per line; the paths."""
    if len(src_texts) != len(tgt_texts):
        raise ValueError(f"{name}: {len(src_texts):,} source texts but {len(tgt_texts):,} "
                         "target texts; the lists must be aligned")
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for side, texts in (("src", src_texts), ("tgt", tgt_texts)):
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"{name} {side} text {i} must be a string, "
                                f"got {type(text).__name__}")
            if "\n" in text or "\r" in text:
                raise ValueError(f"{name} {side} text {i} contains a line break; "
                                 "give one sentence (or segment) per item")
        path = directory / f"{name}.{side}"
        path.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
        paths.append(str(path))
    return paths[0], paths[1]
