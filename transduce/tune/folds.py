"""K-fold cross-validation data: the training corpora split once into K disjoint folds.

Fold i's run trains on the other K-1 folds (a list of corpora in data.train, nothing
copied twice) and validates on fold i. Pairs go to folds at random in blocks of K, so
fold sizes differ by at most one; the files are written once per study and reused.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from transduce.config import Config
from transduce.data.sources import BadLines, fingerprint, iter_chunks

FoldFiles = tuple[str, str]  # source and target file of one fold


def write_folds(cfg: Config, k: int, directory: Path, seed: int) -> list[FoldFiles]:
    """Split cfg's training corpora (up to data.max_train_pairs) into `k` folds of
    line-aligned files in `directory`; reuses folds written before for the same inputs."""
    if k < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {k}")
    d = cfg.data
    corpora = d.corpora()
    key = {"k": k, "seed": seed, "max_train_pairs": d.max_train_pairs,
           "inputs": [fingerprint(f) for c in corpora for f in (c.src, c.tgt, c.path) if f]}
    files = [(str(directory / f"fold{i}.src"), str(directory / f"fold{i}.tgt"))
             for i in range(k)]
    marker = directory / "folds.json"
    if marker.is_file() and json.loads(marker.read_text(encoding="utf-8")) == key:
        return files
    directory.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    rng = random.Random(seed)
    outs = [(open(s, "w", encoding="utf-8"), open(t, "w", encoding="utf-8")) for s, t in files]
    left = d.max_train_pairs
    block: list[int] = []
    try:
        for corpus in corpora:
            for srcs, tgts in iter_chunks(corpus, d.on_bad_line, BadLines(), 20_000):
                for s, t in zip(srcs, tgts):
                    if left is not None and left <= 0:
                        break
                    if not block:
                        block = list(range(k))
                        rng.shuffle(block)
                    out_src, out_tgt = outs[block.pop()]
                    out_src.write(s + "\n")
                    out_tgt.write(t + "\n")
                    left = None if left is None else left - 1
    finally:
        for out_src, out_tgt in outs:
            out_src.close()
            out_tgt.close()
    marker.write_text(json.dumps(key), encoding="utf-8")
    return files


def fold_config(raw: dict[str, Any], folds: list[FoldFiles], i: int) -> dict[str, Any]:
    """The raw config of fold i: train on the other folds, validate on fold i."""
    data = dict(raw.get("data") or {})
    for name in ("train", "train_src", "train_tgt", "max_train_pairs"):
        data.pop(name, None)
    data["train"] = [{"src": s, "tgt": t} for j, (s, t) in enumerate(folds) if j != i]
    data["valid_src"], data["valid_tgt"] = folds[i]
    return {**raw, "data": data}
