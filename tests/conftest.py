"""Shared fixtures: where the real data lives, and a small trained model to decode with."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from transduce.config import load_config
from transduce.demo import demo_config, make_splits, write_splits
from transduce.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("TRANSDUCE_DATA", ROOT.parent / "shared" / "data"))

torch.set_num_threads(1)  # tiny models: one thread is faster and repeatable on a shared machine


@pytest.fixture(scope="session", autouse=True)
def prepared_data_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Prepared training data goes to a folder of this test session (CLI subprocesses
    inherit it), never to the user's ~/.cache/transduce."""
    root = tmp_path_factory.mktemp("transduce-cache")
    os.environ["TRANSDUCE_CACHE"] = str(root)
    return root


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """../shared/data (override with TRANSDUCE_DATA). Tests that need it fail loudly if absent."""
    assert (DATA / "multi30k" / "train.en.gz").is_file(), (
        f"real data not found under {DATA}; set TRANSDUCE_DATA to the shared data folder")
    return DATA


@pytest.fixture(scope="session")
def demo_splits() -> dict[str, list[tuple[str, str]]]:
    return make_splits(n_train=4000, n_valid=100, n_test=100, seed=3)


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory: pytest.TempPathFactory, demo_splits) -> Path:
    """A small attention model trained for real on the demo task (about 30-60 s on 2 cores).

    Good enough that most test sentences come out right; tests must not assume all do.
    """
    root = tmp_path_factory.mktemp("demo")
    paths = write_splits(root / "data", demo_splits)
    raw = demo_config(paths, root / "model", minutes=10.0, seed=3)  # max_steps decides
    raw["train"].update({"max_steps": 500, "valid_every": 250, "progress": False})
    return train(load_config(raw), log=lambda _: None).model_dir
