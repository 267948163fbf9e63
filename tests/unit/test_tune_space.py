"""The search space of `transduce tune` and its cross-validation folds."""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import pytest

from transduce.config import ConfigError, load_config
from transduce.tune.folds import fold_config, write_folds
from transduce.tune.space import Param, apply, load_space


def test_a_space_reads_lists_and_ranges():
    space = load_space({"train.lr": {"low": 1e-4, "high": 3e-3, "log": True},
                        "model.encoder_layers": {"low": 1, "high": 3},
                        "model.attention": ["bahdanau", "luong_general"]}, {})
    lr, layers, attention = space
    assert (lr.low, lr.high, lr.log, lr.integer) == (1e-4, 3e-3, True, False)
    assert layers.integer and layers.grid_values() == [1, 2, 3]  # integers: step 1
    assert attention.grid_values() == ["bahdanau", "luong_general"]
    assert Param("train.lr", low=0.1, high=0.3, step=0.1).grid_values() == [0.1, 0.2, 0.3]


@pytest.mark.parametrize("space, words", [
    ({"train.lrate": [0.1]}, ["train.lrate", "did you mean 'train.lr'"]),
    ({"model.attention": ["bahdanau", "sideways"]}, ["model.attention", "sideways"]),
    ({"model.dropout": {"low": 0.5, "high": 0.1}}, ["model.dropout", "low (0.5)"]),
    ({"train.lr": {"low": 0.0, "high": 0.1, "log": True}}, ["train.lr", "low > 0"]),
    ({"train.lr": {"low": 0.1}}, ["train.lr", "'low' and 'high'"]),
    ({"train.lr": {"low": 0.1, "hi": 0.2}}, ["train.lr", "hi"]),
    ({"train.lr": "0.1"}, ["train.lr", "a list of values or a range"]),
    ({"train.lr": []}, ["train.lr", "empty"]),
    ({"train.betas": [[0.9, 0.98]]}, ["train.betas", "numbers, strings"]),
])
def test_a_bad_space_is_one_error_naming_the_key(space: dict, words: list[str]):
    with pytest.raises(ConfigError) as e:
        load_space(space, {})
    assert "\n" not in str(e.value)
    for word in words:
        assert word in str(e.value)


def test_grid_search_needs_values_not_a_continuous_range():
    (lr,) = load_space({"train.lr": {"low": 1e-4, "high": 1e-3}}, {})
    with pytest.raises(ConfigError, match="train.lr.*grid search needs"):
        lr.grid_values()


def test_apply_sets_dotted_keys_on_a_copy():
    raw = {"train": {"lr": 0.1}}
    cfg = load_config(apply(raw, {"train.lr": 0.5, "train.scheduler.kind": "constant"}))
    assert (cfg.train.lr, cfg.train.scheduler.kind) == (0.5, "constant")
    assert raw == {"train": {"lr": 0.1}}


def test_folds_partition_the_training_pairs(tmp_path: Path):
    pairs = [(f"source {i}", f"target {i}") for i in range(100)]
    for side, name in ((0, "a.src.gz"), (1, "a.tgt.gz")):
        with gzip.open(tmp_path / name, "wt", encoding="utf-8") as f:
            f.writelines(p[side] + "\n" for p in pairs)
    raw = {"data": {"train_src": str(tmp_path / "a.src.gz"),
                    "train_tgt": str(tmp_path / "a.tgt.gz"), "max_train_pairs": 91}}
    folds = write_folds(load_config(raw), 3, tmp_path / "folds", seed=7)
    seen: list[tuple[str, str]] = []
    sizes = []
    for src, tgt in folds:
        got = list(zip(Path(src).read_text().splitlines(), Path(tgt).read_text().splitlines()))
        seen += got
        sizes.append(len(got))
    assert Counter(seen) == Counter(pairs[:91])  # every pair in exactly one fold
    assert max(sizes) - min(sizes) <= 1
    assert write_folds(load_config(raw), 3, tmp_path / "folds", seed=7) == folds  # reused
    cfg = load_config(fold_config(raw, folds, 1))
    assert cfg.data.valid_src == folds[1][0] and cfg.data.max_train_pairs is None
    assert [c.src for c in cfg.data.corpora()] == [folds[0][0], folds[2][0]]
