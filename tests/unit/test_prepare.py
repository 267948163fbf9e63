"""Prepared training data: streaming readers, filters, the memory-mapped cache and its key,
batches planned from lengths and assembled ahead of the step."""

from __future__ import annotations

import gzip
import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from transduce.config import load_config
from transduce.data import CorpusError, collate, sources
from transduce.data.batching import plan_batches
from transduce.data.dataset import PreparedCorpus
from transduce.data.loader import Prefetcher
from transduce.data.prepare import find_cache, prepare, reservoir
from transduce.data.sources import BadLines, iter_chunks, iter_pairs
from transduce.text import load_codecs, save_codecs
from transduce.training import setup as run_setup
from transduce.training.trainer import Trainer


def write(path: Path, lines: list[str] | bytes) -> Path:
    data = lines if isinstance(lines, bytes) else ("\n".join(lines) + "\n").encode("utf-8")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(data)
    return path


def config(tmp_path: Path, data: dict, tokenizer: dict | None = None, **train) -> object:
    return load_config({
        "data": {"cache_dir": str(tmp_path / "cache"), **data},
        "tokenizer": tokenizer or {"kind": "word"},
        "model": {"emb_dim": 8, "hidden_size": 8, "encoder_layers": 1},
        "train": {"out_dir": str(tmp_path / "model"), "progress": False, **train},
    })


@pytest.fixture(scope="module")
def m30k(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The first 600 Multi30k training pairs, as plain files."""
    root = tmp_path_factory.mktemp("m30k_600")
    out = {}
    for lang in ("en", "de"):
        with gzip.open(data_dir / "multi30k" / f"train.{lang}.gz", "rt", encoding="utf-8") as f:
            lines = [next(f).rstrip("\n") for _ in range(600)]
        out[lang] = write(root / f"train.{lang}", lines)
    return out


def spm_config(tmp_path: Path, m30k: dict[str, Path], **data) -> object:
    return config(tmp_path, {"train_src": str(m30k["en"]), "train_tgt": str(m30k["de"]),
                             "max_len": 60, **data},
                  {"kind": "sentencepiece", "vocab_size": 300})


# ---- the cache ---------------------------------------------------------------------------

def test_prepared_ids_equal_direct_tokenization(tmp_path: Path, m30k):
    cfg = spm_config(tmp_path, m30k)
    path = prepare(cfg, log=lambda _: None)
    data = PreparedCorpus(path)
    src, tgt = load_codecs(path)
    en = m30k["en"].read_text(encoding="utf-8").splitlines()
    de = m30k["de"].read_text(encoding="utf-8").splitlines()
    want = [(src.encode(s), tgt.encode(t)) for s, t in zip(en, de)]
    want = [(s, t) for s, t in want if 0 < len(s) <= 60 and 0 < len(t) <= 60]
    got_src, got_tgt = data.ids(np.arange(len(data)))
    assert len(data) == len(want) > 500
    assert [list(map(int, s)) for s in got_src] == [s for s, _ in want]
    assert [list(map(int, t)) for t in got_tgt] == [t for _, t in want]
    # the batch built from the memory map equals the one padded from id lists
    rows = np.array([5, 0, 17, 3])
    v = tgt.vocab
    a = data.collate(rows, v.pad_id, v.bos_id, v.eos_id)
    b = collate([want[i][0] for i in rows], [want[i][1] for i in rows], v.pad_id, v.bos_id,
                v.eos_id)
    for name in ("src_ids", "src_mask", "tgt_in", "tgt_out"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.n_tgt_tokens == b.n_tgt_tokens


def test_a_matching_cache_is_reused_and_every_change_rebuilds_it_saying_why(tmp_path, m30k):
    messages: list[str] = []
    cfg = spm_config(tmp_path, m30k)
    first = prepare(cfg, log=messages.append)
    assert prepare(cfg, log=messages.append) == first and "reused" in messages[-1]

    changed_tok = spm_config(tmp_path, m30k)
    changed_tok.tokenizer.vocab_size = 250
    messages.clear()
    assert prepare(changed_tok, log=messages.append) != first
    assert any("tokenizer.vocab_size: 300 -> 250" in m for m in messages), messages

    changed_filter = spm_config(tmp_path, m30k, max_len=20)
    messages.clear()
    short = prepare(changed_filter, log=messages.append)
    assert any("filters.max_len: 60 -> 20" in m for m in messages), messages
    assert len(PreparedCorpus(short)) < len(PreparedCorpus(first))

    with open(m30k["de"], "a", encoding="utf-8") as f:  # same line count, new content
        f.write("")
    lines = m30k["de"].read_text(encoding="utf-8").splitlines()
    lines[0] = "Ganz anders."
    copy = tmp_path / "copy"
    copy.mkdir()
    files = {"en": m30k["en"], "de": write(copy / "train.de", lines)}
    messages.clear()
    edited = spm_config(tmp_path, files)
    prepare(edited, log=messages.append)
    assert any("corpora[0].files[1]" in m for m in messages), messages
    # the first cache is still there and still valid for the first settings
    assert prepare(cfg, log=messages.append) == first and "reused" in messages[-1]


def test_a_killed_prepare_leaves_nothing_that_is_read(tmp_path: Path, m30k, monkeypatch):
    cfg = spm_config(tmp_path, m30k)
    path, _ = find_cache(cfg)
    # what kill -9 in the middle leaves behind: a temporary folder with partial files
    leftover = path.parent / f".{path.name}.tmp-killed"
    leftover.mkdir(parents=True)
    (leftover / "src.ids").write_bytes(b"\0" * 10)

    def crash(*args: object, **kwargs: object) -> None:
        (Path(str(args[2])) / "src.ids").write_bytes(b"\1" * 100)
        raise KeyboardInterrupt

    monkeypatch.setattr("transduce.data.prepare._build", crash)
    with pytest.raises(KeyboardInterrupt):
        prepare(cfg, log=lambda _: None)
    assert not path.exists()
    monkeypatch.undo()
    messages: list[str] = []
    assert prepare(cfg, log=messages.append) == path
    assert len(PreparedCorpus(path)) > 500


def test_a_truncated_cache_is_rebuilt(tmp_path: Path, m30k):
    cfg = spm_config(tmp_path, m30k)
    path = prepare(cfg, log=lambda _: None)
    n = len(PreparedCorpus(path))
    with open(path / "tgt.ids", "r+b") as f:
        f.truncate(100)
    messages: list[str] = []
    assert prepare(cfg, log=messages.append) == path
    assert any("damaged" in m and "tgt.ids has 100 bytes" in m for m in messages), messages
    assert len(PreparedCorpus(path)) == n


def test_a_given_tokenizer_gets_its_own_cache(tmp_path: Path, m30k):
    cfg = spm_config(tmp_path, m30k)
    trained = prepare(cfg, log=lambda _: None)
    same = tmp_path / "same"
    save_codecs(*load_codecs(trained), same)
    assert find_cache(cfg, same)[0] == trained  # the model's tokenizer is the cache's
    other_cfg = spm_config(tmp_path, m30k)
    other_cfg.tokenizer.vocab_size = 200
    other = tmp_path / "other"
    save_codecs(*load_codecs(prepare(other_cfg, log=lambda _: None)), other)
    path = prepare(cfg, tokenizer_dir=other, log=lambda _: None)
    assert path != trained
    assert (path / "shared.spm.model").read_bytes() == (other / "shared.spm.model").read_bytes()


# ---- filters and readers ----------------------------------------------------------------

def test_each_filter_is_applied_and_counted(tmp_path: Path):
    src = write(tmp_path / "s.txt", b"a b\n\nc d e f g h i\none\nx y\na b\n\xff bad\nlast\n")
    tgt = write(tmp_path / "t.txt", b"b a\nz\nh\none two three four five six seven eight "
                                    b"nine ten\ny x\nb a\nok\nlast one\n")
    cfg = config(tmp_path, {"train_src": str(src), "train_tgt": str(tgt), "max_len": 6,
                            "max_len_ratio": 3.0, "on_bad_line": "skip"})
    messages: list[str] = []
    path = prepare(cfg, log=messages.append)
    meta = json.loads((path / "meta.json").read_text())["counts"]
    assert meta == {"read": 7, "kept": 3, "empty": 1, "too_long": 2, "ratio": 0,
                    "duplicates": 1, "bad_lines": 1, "per_corpus": [3]}
    summary = next(m for m in messages if "pairs read" in m)
    assert "7 pairs read, 3 kept" in summary and "1 duplicates" in summary
    assert f"{src}, line 7" in summary  # the skipped line, by number
    src_c, _ = load_codecs(path)
    got = PreparedCorpus(path).ids(np.arange(3))
    assert [src_c.decode(list(map(int, s))) for s in got[0]] == ["a b", "x y", "last"]

    cfg.data.max_len = 20
    ratio = json.loads((prepare(cfg, log=lambda _: None) / "meta.json").read_text())["counts"]
    assert ratio["ratio"] == 2 and ratio["too_long"] == 0  # 7 and 10 words against 1


def test_tsv_and_jsonl_corpora(tmp_path: Path):
    tsv = write(tmp_path / "a.tsv.gz", ["hello\thallo", "good day\tguten Tag\textra"])
    jsonl = write(tmp_path / "b.jsonl", [json.dumps({"translation": {"en": "cat", "de": "Katze"}}),
                                         json.dumps({"translation": {"en": "dog", "de": "Hund"}})])
    cfg = config(tmp_path, {"train": [
        {"path": str(tsv)},
        {"path": str(jsonl), "src_field": "translation.en", "tgt_field": "translation.de",
         "weight": 2}]})
    assert [list(iter_pairs(c, "error", BadLines())) for c in cfg.data.corpora()] == [
        [("hello", "hallo"), ("good day", "guten Tag")], [("cat", "Katze"), ("dog", "Hund")]]
    data = PreparedCorpus(prepare(cfg, log=lambda _: None))
    assert data.per_corpus == [2, 2]


@pytest.mark.parametrize("name, lines, message", [
    ("bad.tsv", ["a\tb", "only one column", "c\td"], "bad.tsv, line 2: 1 tab-separated column"),
    ("bad.jsonl", ['{"src": "a", "tgt": "b"}', '{"src": "c"}'],
     "bad.jsonl, line 2: no string field 'tgt'"),
    ("bad.jsonl", ['{"src": "a", "tgt": "b"}', "{not json"], "bad.jsonl, line 2: not valid JSON"),
])
def test_malformed_lines_are_named_or_skipped_and_counted(tmp_path: Path, name, lines, message):
    path = write(tmp_path / name, lines)
    cfg = config(tmp_path, {"train": [{"path": str(path)}]})
    with pytest.raises(CorpusError, match=message.replace("(", r"\(")):
        prepare(cfg, log=lambda _: None)
    cfg.data.on_bad_line = "skip"
    bad = BadLines()
    pairs = list(iter_pairs(cfg.data.corpora()[0], "skip", bad))
    assert len(pairs) == len(lines) - 1 and bad.count == 1 and bad.first == [f"{path}, line 2"]


def test_input_errors_name_the_files(tmp_path: Path):
    a = write(tmp_path / "a.txt", ["x", "y", "z"])
    b = write(tmp_path / "b.txt", ["x", "y"])
    with pytest.raises(CorpusError, match=f"{a} has 3 lines but {b} has 2 lines"):
        prepare(config(tmp_path, {"train_src": str(a), "train_tgt": str(b)}), log=lambda _: None)
    with pytest.raises(CorpusError, match=f"{b} has 2 lines but {a} has 3 lines"):
        prepare(config(tmp_path, {"train_src": str(b), "train_tgt": str(a)}), log=lambda _: None)
    missing = tmp_path / "missing.txt"
    with pytest.raises(CorpusError, match=f"file not found: {missing}"):
        prepare(config(tmp_path, {"train_src": str(a), "train_tgt": str(missing)}),
                log=lambda _: None)
    with pytest.raises(CorpusError, match="cannot tell the format"):
        prepare(config(tmp_path, {"train": [{"path": str(a)}]}), log=lambda _: None)


@pytest.mark.parametrize("block", [3, 16, 1 << 20])
def test_files_are_read_whole_in_blocks_of_any_size(tmp_path: Path, monkeypatch, block: int):
    """Lines that straddle blocks, CRLF endings, a last line without a newline, a gzip file
    of two members, a line that is not UTF-8: each read as line by line would."""
    monkeypatch.setattr(sources, "BLOCK", block)
    src = [f"line {i} " + "x" * (i % 7) for i in range(50)]
    tgt = [f"Zeile {i}" for i in range(50)]
    a = tmp_path / "a.gz"
    a.write_bytes(gzip.compress("".join(s + "\r\n" for s in src[:20]).encode())
                  + gzip.compress(("\n".join(src[20:])).encode()))  # two members, no last \n
    b = write(tmp_path / "b.txt", tgt)
    cfg = config(tmp_path, {"train_src": str(a), "train_tgt": str(b)})
    chunks = list(iter_chunks(cfg.data.corpora()[0], "error", BadLines(), size=8))
    assert [len(s) for s, _ in chunks] == [8] * 6 + [2]
    assert [x for s, _ in chunks for x in s] == src and [x for _, t in chunks for x in t] == tgt
    bad = write(tmp_path / "bad.txt", b"ok\n\xff\xfe\nfine\n")
    good = write(tmp_path / "good.txt", ["1", "2", "3"])
    cfg = config(tmp_path, {"train_src": str(bad), "train_tgt": str(good)})
    with pytest.raises(CorpusError, match=f"{bad}, line 2: not valid UTF-8"):
        list(iter_pairs(cfg.data.corpora()[0], "error", BadLines()))
    skipped = BadLines()
    assert list(iter_pairs(cfg.data.corpora()[0], "skip", skipped)) == [("ok", "1"), ("fine", "3")]
    assert skipped.first == [f"{bad}, line 2"]


def test_a_damaged_gzip_file_is_named(tmp_path: Path):
    whole = gzip.compress(("\n".join(f"sentence {i}" for i in range(5000)) + "\n").encode())
    b = write(tmp_path / "b.txt", [f"Satz {i}" for i in range(5000)])
    for name, data, message in (("cut.gz", whole[:len(whole) // 2], "ends early"),
                                ("flip.gz", whole[:-8] + bytes(8), "not a readable gzip")):
        path = tmp_path / name
        path.write_bytes(data)
        cfg = config(tmp_path, {"train_src": str(path), "train_tgt": str(b)})
        with pytest.raises(CorpusError, match=f"{path}: .*{message}"):
            prepare(cfg, log=lambda _: None)


# ---- sampling, weights, batches ----------------------------------------------------------

@pytest.mark.parametrize("chunk", [1, 7, 100])
def test_reservoir_sample_is_uniform_whatever_the_chunks(chunk: int):
    items = [(str(i), "") for i in range(100)]
    counts = np.zeros(100)
    for seed in range(400):
        sample = reservoir((items[a:a + chunk] for a in range(0, 100, chunk)), 10, seed)
        assert len(sample) == 10 and len(set(sample)) == 10
        for i, _ in sample:
            counts[int(i)] += 1
    assert counts.sum() == 4000 and counts.min() > 15 and counts.max() < 70  # mean 40
    # early and late items alike: the halves' shares are about equal
    assert abs(counts[:50].sum() - counts[50:].sum()) < 400
    assert reservoir(iter([[("a", "b")]]), 10, 0) == [("a", "b")]


def test_corpus_weights_are_honoured_in_each_epoch(tmp_path: Path):
    a = [f"a{i}" for i in range(300)]
    b = [f"b{i}" for i in range(200)]
    cfg = config(tmp_path, {"train": [
        {"src": str(write(tmp_path / "a.s", a)), "tgt": str(write(tmp_path / "a.t", a))},
        {"src": str(write(tmp_path / "b.s", b)), "tgt": str(write(tmp_path / "b.t", b)),
         "weight": 2.5}]})
    data = PreparedCorpus(prepare(cfg, log=lambda _: None))
    corpus = np.asarray(data.index["corpus"])
    for epoch in range(3):
        examples = data.epoch_examples([1.0, 2.5], np.random.default_rng(epoch))
        assert np.bincount(corpus[examples]).tolist() == [300, 500]
        b_rows, times = np.unique(examples[corpus[examples] == 1], return_counts=True)
        assert len(b_rows) == 200 and set(times.tolist()) == {2, 3}  # 2 each, half once more


@pytest.mark.parametrize("window", [None, 64])
def test_planned_batches_cover_every_example_once_within_the_budget(window):
    rng = np.random.default_rng(0)
    src_lens, tgt_lens = rng.integers(1, 40, 1000), rng.integers(1, 40, 1000)
    examples = np.arange(1000)
    batches = plan_batches(src_lens, tgt_lens, examples, 300, np.random.default_rng(1), window)
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    for b in batches:
        assert len(b) == 1 or (np.maximum(src_lens[b], tgt_lens[b]).max() + 1) * len(b) <= 300
    again = plan_batches(src_lens, tgt_lens, examples, 300, np.random.default_rng(1), window)
    assert all(np.array_equal(x, y) for x, y in zip(batches, again))
    if window:  # every batch comes from one window of the shuffled order
        order = np.random.default_rng(1).permutation(examples)
        where = np.empty(1000, int)
        where[order] = np.arange(1000) // window
        assert all(len(set(where[b].tolist())) == 1 for b in batches)


def test_prefetcher_keeps_order_stops_early_and_passes_errors_on():
    made: list[int] = []

    def make(i: int) -> int:
        made.append(i)
        if i == 7:
            raise ValueError("item 7")
        return i * i

    with Prefetcher(make, range(5), ahead=2) as loader:
        assert list(loader) == [0, 1, 4, 9, 16]
    with Prefetcher(make, range(1000), ahead=2) as loader:
        assert next(iter(loader)) == 0
    time.sleep(0.05)
    assert len(made) < 5 + 10  # stopped reading ahead when closed
    with pytest.raises(ValueError, match="item 7"), Prefetcher(make, range(10)) as loader:
        list(loader)
    assert threading.active_count() < 10


# ---- training on the cache ---------------------------------------------------------------

def test_training_reads_its_ids_from_the_memory_mapped_cache(tmp_path: Path, m30k):
    cfg = spm_config(tmp_path, m30k)
    cfg.train.max_steps, cfg.train.valid_every, cfg.train.batch_tokens = 3, 100, 400
    messages: list[str] = []
    trainer = Trainer.from_config(cfg, log=messages.append)
    seen: list[object] = []
    original = trainer._batches

    def spy(rows: list[np.ndarray]) -> list:
        seen.append(trainer.data.src_ids)
        return original(rows)

    trainer._batches = spy  # type: ignore[method-assign]
    trainer.run()
    assert len(seen) >= 3 and any("first update after" in m for m in messages)
    for array in (trainer.data.src_ids, trainer.data.tgt_ids):
        assert isinstance(array, np.memmap) and not array.flags.owndata  # a view of the file
        assert Path(array.filename).parent == trainer.data.path
        assert Path(array.filename).parent.parent == tmp_path / "cache"
    assert isinstance(trainer.data.index, np.memmap)
    assert (trainer.out / "shared.spm.model").read_bytes() == \
        (trainer.data.path / "shared.spm.model").read_bytes()


def test_precision_auto_times_a_matrix_product(monkeypatch):
    assert run_setup.bf16_speedup(size=64, rounds=3) > 0
    messages: list[str] = []
    monkeypatch.setattr(run_setup, "bf16_speedup", lambda: 0.6)
    assert run_setup.resolve_precision("auto", torch.device("cpu"), messages.append) is None
    monkeypatch.setattr(run_setup, "bf16_speedup", lambda: 2.7)
    assert run_setup.resolve_precision("auto", torch.device("cpu"),
                                            messages.append) == torch.bfloat16
    assert "0.60x" in messages[0] and "fp32" in messages[0]
    assert "2.70x" in messages[1] and "bf16" in messages[1]


def test_cache_dir_defaults_under_transduce_cache(tmp_path: Path, monkeypatch, m30k):
    monkeypatch.setenv("TRANSDUCE_CACHE", str(tmp_path / "tc"))
    cfg = spm_config(tmp_path, m30k)
    cfg.data.cache_dir = None
    path = prepare(cfg, log=lambda _: None)
    assert path.parent == tmp_path / "tc" / "data"
    shutil.rmtree(path)
