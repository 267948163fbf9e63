"""A tiny G2P model learns CMUdict pronunciations: its error rates fall below measured floors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from transduce.config import load_config
from transduce.data.cmudict import load_lexicon, make_lines, split_words
from transduce.evaluate import evaluate, split_refs
from transduce.training.trainer import train
from transduce.translator import Translator

pytestmark = pytest.mark.slow  # ~20 s on one thread

# Measured once (one torch thread, seed 1, 400 steps, beam 3 on 200 held-out words): PER
# 30.7%, sentence error rate 77.5% (validation log: PER 50.5 at step 200, 32.3 at 400). The
# floors leave a margin for other machines and torch versions.
PER_FLOOR, SER_FLOOR = 40.0, 88.0


def write(root: Path, name: str, srcs: list[str], tgts: list[str]) -> dict[str, str]:
    (root / f"{name}.src").write_text("".join(s + "\n" for s in srcs), encoding="utf-8")
    (root / f"{name}.tgt").write_text("".join(t + "\n" for t in tgts), encoding="utf-8")
    return {f"{name}_src": str(root / f"{name}.src"), f"{name}_tgt": str(root / f"{name}.tgt")}


def test_tiny_g2p_model_learns(tmp_path: Path):
    lexicon = load_lexicon()
    words = split_words(sorted(lexicon), valid=0.0016, test=0.0, seed=1)  # 200 validation words
    train_words = [w for w in words["train"] if 3 <= len(w) <= 8][:3500]
    files = {**write(tmp_path, "train", *make_lines(train_words, lexicon, False)),
             **write(tmp_path, "valid", *make_lines(words["valid"], lexicon, True))}
    cfg = load_config({
        "data": {**files, "max_len": 30},
        "tokenizer": {"kind": "char", "tgt_kind": "word", "shared": False},
        "model": {"arch": "rnn", "emb_dim": 64, "hidden_size": 128, "encoder_layers": 1,
                  "decoder_layers": 1, "attention": "luong_general", "dropout": 0.1},
        "eval": {"metrics": ["token_error_rate", "sentence_error_rate"]},
        "train": {"out_dir": str(tmp_path / "model"), "seed": 1, "lr": 3e-3,
                  "batch_tokens": 1024, "label_smoothing": 0.0, "max_steps": 400,
                  "valid_every": 200, "progress": False, "num_samples": 0,
                  "scheduler": {"kind": "constant"}, "early_stopping": {"patience": 0}},
        "decode": {"beam_size": 1, "max_len_offset": 5}})
    model_dir = train(cfg, log=lambda _: None).model_dir
    log = [json.loads(x) for x in (model_dir / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["token_error_rate"] < log[0]["token_error_rate"]

    srcs = (tmp_path / "valid.src").read_text(encoding="utf-8").splitlines()
    refs = [split_refs(t) for t in (tmp_path / "valid.tgt").read_text("utf-8").splitlines()]
    hyps = [t.text for t in Translator.load(model_dir).translate(srcs, beam_size=3)]
    got = evaluate(["token_error_rate", "sentence_error_rate"], hyps, refs).values
    assert got["token_error_rate"] < PER_FLOOR and got["sentence_error_rate"] < SER_FLOOR, got
