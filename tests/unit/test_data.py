"""Corpus reading (errors that say what is wrong), padding and masks, token-budget batching."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import pytest
import torch

from transduce.config import TokenizerConfig, load_config
from transduce.data import CorpusError, collate, make_batches, read_lines, read_parallel
from transduce.data.dataset import encode_pairs
from transduce.text import build_codecs
from transduce.training.trainer import Trainer

PAD, BOS, EOS = 0, 2, 3


def write(path: Path, lines: list[str] | bytes) -> Path:
    data = lines if isinstance(lines, bytes) else ("\n".join(lines) + "\n").encode("utf-8")
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


# ---- reading -----------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_plain_and_gzip(tmp_path: Path, suffix: str):
    lines = ["ein Hund", "", "Grüße\tmit Tab", "last line"]
    path = write(tmp_path / f"a.txt{suffix}", lines)
    assert read_lines(path) == lines


def test_crlf_line_endings_are_stripped(tmp_path: Path):
    path = write(tmp_path / "crlf.txt", b"one\r\ntwo\r\nthree")
    assert read_lines(path) == ["one", "two", "three"]


def test_read_parallel_and_limit(tmp_path: Path):
    src = write(tmp_path / "s.gz", [f"s{i}" for i in range(10)])
    tgt = write(tmp_path / "t", [f"t{i}" for i in range(10)])
    s, t = read_parallel(src, tgt, limit=4)
    assert s == ["s0", "s1", "s2", "s3"] and t == ["t0", "t1", "t2", "t3"]


def test_misaligned_files_name_both_files_and_counts(tmp_path: Path):
    src = write(tmp_path / "train.en", ["a", "b", "c"])
    tgt = write(tmp_path / "train.de.gz", ["a", "b"])
    with pytest.raises(CorpusError) as err:
        read_parallel(src, tgt)
    message = str(err.value)
    assert str(src) in message and str(tgt) in message
    assert "3 lines" in message and "2 lines" in message


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_non_utf8_line_names_file_and_line(tmp_path: Path, suffix: str):
    path = write(tmp_path / f"latin1.txt{suffix}",
                 b"ok\nstill ok\n" + "Stra\u00dfe\n".encode("latin-1") + b"after\n")
    with pytest.raises(CorpusError) as err:
        read_lines(path)
    assert str(path) in str(err.value) and "line 3" in str(err.value)


def test_missing_file_names_its_path(tmp_path: Path):
    missing = tmp_path / "nope" / "train.en.gz"
    with pytest.raises(CorpusError, match="nope/train.en.gz"):
        read_lines(missing)
    other = write(tmp_path / "x", ["a"])
    with pytest.raises(CorpusError, match="nope/train.en.gz"):
        read_parallel(other, missing)


def test_real_multi30k_reads_aligned(data_dir: Path):
    folder = data_dir / "multi30k"
    src, tgt = read_parallel(folder / "val.en.gz", folder / "val.de.gz")
    assert len(src) == len(tgt) > 500
    assert all(s.strip() for s in src)


# ---- padding, masks --------------------------------------------------------------------------

def test_collate_pads_and_builds_masks_and_shifted_targets():
    src = [[5, 6, 7], [8]]
    tgt = [[9], [10, 11, 12]]
    b = collate(src, tgt, PAD, BOS, EOS)
    assert b.src_ids.tolist() == [[5, 6, 7, EOS], [8, EOS, PAD, PAD]]
    assert b.src_mask.tolist() == [[True] * 4, [True, True, False, False]]
    assert b.tgt_in.tolist() == [[BOS, 9, PAD, PAD], [BOS, 10, 11, 12]]
    assert b.tgt_out.tolist() == [[9, EOS, PAD, PAD], [10, 11, 12, EOS]]
    assert b.n_tgt_tokens == 2 + 4
    assert b.size == 2
    # decoder input is the output shifted right by one (teacher forcing)
    real = b.tgt_in[:, 1:] != PAD
    assert torch.equal(b.tgt_in[:, 1:][real], b.tgt_out[:, :-1][real])


def test_collate_without_targets():
    b = collate([[4], [4, 5]], None, PAD, BOS, EOS)
    assert b.tgt_in is None and b.tgt_out is None and b.n_tgt_tokens == 0
    assert b.src_mask.sum(1).tolist() == [2, 3]


# ---- token-budget batching -------------------------------------------------------------------

def random_lengths(n: int, seed: int) -> tuple[list[int], list[int]]:
    rng = random.Random(seed)
    return [rng.randint(1, 40) for _ in range(n)], [rng.randint(1, 40) for _ in range(n)]


@pytest.mark.parametrize("budget", [50, 300, 2000])
def test_every_example_exactly_once_and_budget_respected(budget: int):
    src_lens, tgt_lens = random_lengths(500, seed=budget)
    batches = make_batches(src_lens, tgt_lens, budget, seed=1)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(500))
    for b in batches:
        padded = max(max(src_lens[i], tgt_lens[i]) + 1 for i in b) * len(b)
        assert padded <= budget or len(b) == 1  # an over-long example travels alone


def test_batches_match_what_collate_pads():
    src_lens, tgt_lens = random_lengths(200, seed=5)
    budget = 400
    for b in make_batches(src_lens, tgt_lens, budget, seed=2):
        batch = collate([[7] * src_lens[i] for i in b], [[7] * tgt_lens[i] for i in b],
                        PAD, BOS, EOS)
        assert batch.src_ids.numel() <= budget and batch.tgt_out.numel() <= budget


def test_max_sentences_caps_batch_size():
    src_lens, tgt_lens = [3] * 100, [3] * 100
    batches = make_batches(src_lens, tgt_lens, 10_000, seed=0, max_sentences=7)
    assert max(len(b) for b in batches) == 7
    assert sorted(i for b in batches for i in b) == list(range(100))


def test_batches_group_similar_lengths():
    src_lens, tgt_lens = random_lengths(1000, seed=3)
    for b in make_batches(src_lens, tgt_lens, 500, seed=4):
        lengths = [tgt_lens[i] for i in b]
        assert max(lengths) - min(lengths) <= 1 or len(b) < 5


def test_same_seed_same_batches_other_seed_other_order():
    src_lens, tgt_lens = random_lengths(300, seed=9)
    a = make_batches(src_lens, tgt_lens, 200, seed=11)
    assert a == make_batches(src_lens, tgt_lens, 200, seed=11)
    assert a != make_batches(src_lens, tgt_lens, 200, seed=12)
    assert make_batches(src_lens, tgt_lens, 200) == make_batches(src_lens, tgt_lens, 200)


def test_empty_input_gives_no_batches():
    assert make_batches([], [], 100, seed=0) == []


# ---- encoding and filtering ------------------------------------------------------------------

def test_over_long_and_empty_pairs_are_filtered_and_counted():
    src_text = ["a b", "a b c d e f", "", "c", "a b c", "x"]
    tgt_text = ["a", "b", "c", "", "a b c d e f g", "y z"]
    src, tgt = build_codecs(TokenizerConfig(kind="word"), src_text, tgt_text)
    data = encode_pairs(src_text, tgt_text, src, tgt, max_len=5)
    assert data.n_too_long == 2 and data.n_empty == 2 and len(data) == 2
    assert [src.decode(s) for s in data.src] == ["a b", "x"]
    assert [tgt.decode(t) for t in data.tgt] == ["a", "y z"]
    assert data.n_tgt_tokens == 1 + 1 + 2 + 1


def test_trainer_reports_the_filtered_count(tmp_path: Path):
    src = write(tmp_path / "train.src", ["a b", "a b c d e f g h", "c d", "x " * 20])
    tgt = write(tmp_path / "train.tgt", ["b a", "h g f e d c b a", "d c", "y"])
    cfg = load_config({
        "data": {"train_src": str(src), "train_tgt": str(tgt), "max_len": 5},
        "tokenizer": {"kind": "word"},
        "model": {"emb_dim": 8, "hidden_size": 8, "encoder_layers": 1},
        "train": {"out_dir": str(tmp_path / "model"), "progress": False},
    })
    messages: list[str] = []
    trainer = Trainer.from_config(cfg, log=messages.append)
    assert len(trainer.data) == 2
    assert any("4 pairs read, 2 kept" in m and "2 longer than max_len=5" in m
               for m in messages), messages
    with pytest.raises(ValueError, match="no training pairs left"):
        Trainer.from_config(load_config(cfg.model_dump(mode="json"), ["data.max_len=1"]),
                log=messages.append)
