"""Prepared training data: the corpora read once, tokenized and cached as memory-mapped ids.

`prepare(cfg)` streams every training corpus twice in constant memory: once to draw a
random sample (reservoir sampling) that the tokenizer is trained on, once to tokenize
(SentencePiece on every core), filter and append the ids to flat binary files. The cache
directory holds:

    src.ids, tgt.ids     every kept pair's token ids, concatenated (uint16 or int32)
    index.npy            per kept pair: src offset and length, tgt offset and length, corpus
    tokenizer files      as in a model directory (text/codec.py)
    meta.json            the key it was built for, counts, dtypes; written last

A cache is built in a temporary directory and renamed into place when complete, so a
killed prepare leaves nothing that could be read. Its name is a hash of its key: the input
files (size, mtime and a content fingerprint), the tokenizer settings (or the given
tokenizer's files) and the filters. Any change gives another key, hence a new cache, and
the log says which setting differs from the nearest existing cache.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import queue
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from transduce.config import Config, DataConfig
from transduce.data.corpus import CorpusError
from transduce.data.sources import (
    BadLines,
    Pair,
    corpus_files,
    corpus_name,
    fingerprint,
    iter_chunks,
)
from transduce.text import Codec, build_codecs, load_codecs, save_codecs

VERSION = 1
META = "meta.json"
INDEX_DTYPE = np.dtype([("src_off", "<i8"), ("src_len", "<i4"), ("tgt_off", "<i8"),
                        ("tgt_len", "<i4"), ("corpus", "<i2")])
CHUNK = 20_000  # pairs tokenized at a time


def default_cache_root() -> Path:
    return Path(os.environ.get("TRANSDUCE_CACHE") or Path.home() / ".cache" / "transduce")


def cache_root(data: DataConfig) -> Path:
    return Path(data.cache_dir) if data.cache_dir else default_cache_root() / "data"


def tokenizer_files_hash(directory: str | Path) -> str:
    """One hash over a tokenizer's files (as save_codecs writes them)."""
    directory = Path(directory)
    names = ["tokenizer.json"] + sorted(p.name for p in directory.iterdir()
                                        if p.name.endswith((".vocab.json", ".spm.model")))
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode() + b"\0" + (directory / name).read_bytes())
    return digest.hexdigest()[:32]


def cache_key(cfg: Config, tokenizer_hash: str | None = None) -> dict:
    """What a cache depends on. With `tokenizer_hash`, a given tokenizer replaces the
    settings a new one would be trained with."""
    d = cfg.data
    corpora = [{"files": [fingerprint(f) for f in corpus_files(c)],
                **c.model_dump(exclude={"src", "tgt", "path", "weight"})}
               for c in d.corpora()]
    tokenizer = ({"files": tokenizer_hash} if tokenizer_hash else
                 {**cfg.tokenizer.model_dump(), "lowercase": d.lowercase,
                  "sample": d.tokenizer_sample, "seed": cfg.train.seed})
    filters = {"max_len": d.max_len, "max_len_ratio": d.max_len_ratio, "dedup": d.dedup,
               "on_bad_line": d.on_bad_line, "max_train_pairs": d.max_train_pairs}
    return {"version": VERSION, "corpora": corpora, "tokenizer": tokenizer, "filters": filters}


def _digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


@dataclass
class Counts:
    """What preparing did to the pairs, reported in one line."""

    read: int = 0
    kept: int = 0
    empty: int = 0
    too_long: int = 0
    ratio: int = 0
    duplicates: int = 0
    bad_lines: BadLines = field(default_factory=BadLines)

    def summary(self, data: DataConfig) -> str:
        parts = [f"{self.empty:,} with an empty side",
                 f"{self.too_long:,} longer than max_len={data.max_len}"]
        if data.max_len_ratio:
            parts.append(f"{self.ratio:,} with a length ratio above {data.max_len_ratio:g}")
        if data.dedup:
            parts.append(f"{self.duplicates:,} duplicates")
        line = (f"{self.read:,} pairs read, {self.kept:,} kept; dropped "
                f"{', '.join(parts)}")
        if self.bad_lines.count:
            line += (f"; skipped {self.bad_lines.count:,} unreadable lines (first: "
                     f"{'; '.join(self.bad_lines.first)})")
        return line


# ---- finding a cache --------------------------------------------------------------------

def check_cache(path: Path) -> str | None:
    """None if `path` is a complete cache, else what is wrong with it."""
    try:
        meta = json.loads((path / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "its meta.json is missing or unreadable"
    for name, size in meta.get("sizes", {}).items():
        real = (path / name).stat().st_size if (path / name).is_file() else -1
        if real != size:
            return f"{name} has {max(real, 0):,} bytes where {size:,} were written"
    return None


def _differences(old: object, new: object, where: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            out += _differences(old.get(k), new.get(k), f"{where}.{k}" if where else str(k))
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [d for i, (a, b) in enumerate(zip(old, new))
                for d in _differences(a, b, f"{where}[{i}]")]
    return [] if old == new else [f"{where}: {old!r} -> {new!r}"]


def _why_new(root: Path, key: dict) -> str:
    """Why no cache matches: the differences from the most similar cache in `root`."""
    best: list[str] | None = None
    for meta_path in root.glob(f"*/{META}"):
        try:
            old = json.loads(meta_path.read_text(encoding="utf-8"))["key"]
        except (OSError, ValueError, KeyError):
            continue
        diffs = _differences(old, key)
        if best is None or len(diffs) < len(best):
            best = diffs
    if not best:
        return "no prepared data for these inputs yet"
    return f"changed since the closest cache: {'; '.join(best[:3])}"


def find_cache(cfg: Config, tokenizer_dir: str | Path | None = None) -> tuple[Path, dict]:
    """Where the cache for `cfg` is (or would be), and its key. With `tokenizer_dir`, the
    cache must use that tokenizer: the one trained from the settings if its files are the
    same, else one built with the given tokenizer."""
    root = cache_root(cfg.data)
    key = cache_key(cfg)
    path = root / _digest(key)
    if tokenizer_dir is None:
        return path, key
    wanted = tokenizer_files_hash(tokenizer_dir)
    if check_cache(path) is None and _meta(path).get("tokenizer_hash") == wanted:
        return path, key
    key = cache_key(cfg, wanted)
    return root / _digest(key), key


def _meta(path: Path) -> dict:
    return json.loads((path / META).read_text(encoding="utf-8"))


# ---- preparing ----------------------------------------------------------------------------

def prepare(cfg: Config, tokenizer_dir: str | Path | None = None, threads: int | None = None,
            log: Callable[[str], None] = print, force: bool = False) -> Path:
    """The cache directory for cfg's training data, built if no complete one exists."""
    if not cfg.data.corpora():
        raise ValueError("no training data: set data.train_src and data.train_tgt, or data.train")
    path, key = find_cache(cfg, tokenizer_dir)
    problem = check_cache(path) if path.exists() else "missing"
    if problem is None and not force:
        log(f"prepared data: {path} (reused; {_meta(path)['counts']['kept']:,} pairs)")
        return path
    reason = ("rebuilding as asked (--force)" if force else _why_new(path.parent, key)
              if problem == "missing" else f"the cache is damaged ({problem}); rebuilding")
    log(f"preparing the training data: {reason}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    try:
        _build(cfg, key, tmp, tokenizer_dir, threads or os.cpu_count() or 1, log)
        if path.exists():
            shutil.rmtree(path)
        try:
            os.rename(tmp, path)
        except OSError:  # another process put a complete cache there first
            if check_cache(path) is not None:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"prepared data: {path} ({_meta(path)['counts']['kept']:,} pairs)")
    return path


Chunk = tuple[int, list[str], list[str]]  # corpus number, sources, targets


def _read(data: DataConfig, bad: BadLines) -> Iterator[Chunk]:
    """All readable pairs in chunks of up to CHUNK, up to data.max_train_pairs in all."""
    left = data.max_train_pairs
    for c, corpus in enumerate(data.corpora()):
        for src, tgt in iter_chunks(corpus, data.on_bad_line, bad, CHUNK):
            if left is not None:
                src, tgt = src[:left], tgt[:left]
                left -= len(src)
            if src:
                yield c, src, tgt
            if left == 0:
                return


def reservoir(chunks: Iterable[Sequence[Pair]], k: int, seed: int) -> list[Pair]:
    """A uniform random sample of k items from a stream of unknown length, read in chunks.

    Algorithm L (Li, 1994): after the first k items, the gap to the next item that enters
    the sample is drawn directly, so random numbers are drawn per sampled item, not per item.
    """
    rng = random.Random(seed)
    sample: list[Pair] = []
    seen, upcoming, w = 0, 0, 1.0  # items read; index of the next item to enter; L's W

    def gap() -> int:
        return int(math.log(1.0 - rng.random()) / math.log(1.0 - w)) + 1

    for chunk in chunks:
        if len(sample) < k:
            sample.extend(chunk[:k - len(sample)])
            if len(sample) == k:
                w = math.exp(math.log(1.0 - rng.random()) / k)
                upcoming = k - 1 + gap()
        while len(sample) == k and upcoming < seen + len(chunk):
            sample[rng.randrange(k)] = chunk[upcoming - seen]
            w *= math.exp(math.log(1.0 - rng.random()) / k)
            upcoming += gap()
        seen += len(chunk)
    return sample


def _tokenizer(cfg: Config, tokenizer_dir: str | Path | None,
               log: Callable[[str], None]) -> tuple[Codec, Codec]:
    if tokenizer_dir is not None:
        return load_codecs(tokenizer_dir)
    d = cfg.data
    tick = time.time()
    sample = reservoir((list(zip(s, t)) for _, s, t in _read(d, BadLines())),
                       d.tokenizer_sample, cfg.train.seed)
    if not sample:
        raise ValueError("no training pairs could be read; check the data files")
    log(f"read the corpora in {time.time() - tick:.0f} s; training the {cfg.tokenizer.kind} "
        f"tokenizer on a random sample of {len(sample):,} pairs (data.tokenizer_sample)")
    src, tgt = zip(*sample)
    del sample
    return build_codecs(cfg.tokenizer, list(src), list(tgt), d.lowercase)


def _chunks(data: DataConfig, bad: BadLines) -> Iterator[Chunk]:
    """`_read`, ahead of the consumer in a background thread (gzip decompression and
    SentencePiece release the GIL)."""
    out: queue.Queue = queue.Queue(maxsize=4)

    def read() -> None:
        try:
            for chunk in _read(data, bad):
                out.put(chunk)
            out.put(None)
        except BaseException as e:  # handed to the consumer
            out.put(e)

    threading.Thread(target=read, daemon=True).start()
    while (item := out.get()) is not None:
        if isinstance(item, BaseException):
            raise item
        yield item


def _keep(src_len: np.ndarray, tgt_len: np.ndarray, data: DataConfig, counts: Counts) -> np.ndarray:
    """The mask of pairs that pass the length filters, counted by reason."""
    empty = (src_len == 0) | (tgt_len == 0)
    long_ = ~empty & ((src_len > data.max_len) | (tgt_len > data.max_len))
    ratio = np.zeros_like(empty)
    if data.max_len_ratio:
        longer, shorter = np.maximum(src_len, tgt_len), np.minimum(src_len, tgt_len)
        ratio = ~empty & ~long_ & (longer > data.max_len_ratio * shorter)
    counts.empty += int(empty.sum())
    counts.too_long += int(long_.sum())
    counts.ratio += int(ratio.sum())
    return ~(empty | long_ | ratio)


class _CacheWriter:
    """Appends tokenized chunks to the cache files under construction and keeps their index,
    dedup hashes and counts; `finish` saves the index."""

    def __init__(self, out: Path, files: list[BinaryIO], data: DataConfig, dtype: type,
                 counts: Counts):
        self.out, self.files, self.data, self.dtype, self.counts = out, files, data, dtype, counts
        self.offsets = [0, 0]
        self.index_parts: list[np.ndarray] = []
        self.hash_parts: list[np.ndarray] = []

    def add(self, corpus: int, srcs: list[str], tgts: list[str],
            encoded: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        (_, s_len), (_, t_len) = encoded
        self.counts.read += len(srcs)
        keep = _keep(s_len, t_len, self.data, self.counts)
        index = np.zeros(int(keep.sum()), INDEX_DTYPE)
        for side, (ids, lens) in enumerate(encoded):
            kept_ids = ids[np.repeat(keep, lens)]
            self.files[side].write(kept_ids.astype(self.dtype).tobytes())
            name = ("src", "tgt")[side]
            index[f"{name}_len"] = lens[keep]
            index[f"{name}_off"] = self.offsets[side] + np.cumsum(lens[keep]) - lens[keep]
            self.offsets[side] += len(kept_ids)
        index["corpus"] = corpus
        self.index_parts.append(index)
        if self.data.dedup:
            self.hash_parts.append(np.fromiter(
                (hash(p) for p, k in zip(zip(srcs, tgts), keep) if k), dtype=np.int64,
                count=len(index)))

    def finish(self) -> np.ndarray:
        """The index of the kept pairs (duplicates dropped), saved."""
        parts = self.index_parts
        index = np.concatenate(parts) if parts else np.zeros(0, INDEX_DTYPE)
        if self.data.dedup and len(index):
            _, first = np.unique(np.concatenate(self.hash_parts), return_index=True)
            self.counts.duplicates = len(index) - len(first)
            index = index[np.sort(first)]
        self.counts.kept = len(index)
        if not self.counts.kept:
            raise CorpusError("no training pairs left after filtering: "
                              + self.counts.summary(self.data))
        np.save(self.out / "index.npy", index)
        return index


def _build(cfg: Config, key: dict, out: Path, tokenizer_dir: str | Path | None, threads: int,
           log: Callable[[str], None]) -> None:
    d = cfg.data
    codecs = _tokenizer(cfg, tokenizer_dir, log)
    save_codecs(*codecs, out)
    dtype = np.uint16 if max(len(c.vocab) for c in codecs) <= 65535 else np.int32
    counts, tick = Counts(), time.time()
    with open(out / "src.ids", "wb") as fs, open(out / "tgt.ids", "wb") as ft:
        writer = _CacheWriter(out, [fs, ft], d, dtype, counts)
        _tokenize_into(writer, codecs, d, threads, log)
    index = writer.finish()
    per_corpus = np.bincount(index["corpus"], minlength=len(d.corpora())).tolist()
    _write_meta(out, key, counts, per_corpus, dtype, tokenizer_files_hash(out))
    rate = counts.read / max(time.time() - tick, 1e-9)
    log(f"tokenized at {rate:,.0f} pairs/s: {counts.summary(d)}")
    for c, n in zip(d.corpora(), per_corpus):
        log(f"  {n:,} pairs from {corpus_name(c)} (weight {c.weight:g})")


def _tokenize_into(writer: _CacheWriter, codecs: tuple[Codec, Codec], d: DataConfig,
                   threads: int, log: Callable[[str], None]) -> None:
    """Tokenize every readable pair into `writer`. Two stages overlap: SentencePiece
    encodes a chunk (GIL released, on `threads` threads) while one thread turns the
    previous chunk's id lists into arrays, filters and writes them (GIL held)."""
    counts, tick = writer.counts, time.time()

    def write(corpus: int, srcs: list[str], tgts: list[str], ids: list[list[list[int]]]) -> None:
        writer.add(corpus, srcs, tgts, [c.flatten(i) for c, i in zip(codecs, ids)])
        if counts.read % (CHUNK * 25) == 0:
            log(f"  {counts.read:,} pairs tokenized ({counts.read / (time.time() - tick):,.0f}"
                f" pairs/s)")

    with ThreadPoolExecutor(1) as pool:
        pending: Future | None = None
        for corpus, srcs, tgts in _chunks(d, counts.bad_lines):
            ids = [c.encode_lists(texts, threads) for c, texts in zip(codecs, (srcs, tgts))]
            if pending is not None:
                pending.result()
            pending = pool.submit(write, corpus, srcs, tgts, ids)
        if pending is not None:
            pending.result()


def _write_meta(out: Path, key: dict, counts: Counts, per_corpus: list[int], dtype: type,
                tok_hash: str) -> None:
    for name in ("src.ids", "tgt.ids", "index.npy"):
        with open(out / name, "rb") as f:
            os.fsync(f.fileno())
    meta = {"key": key, "dtype": np.dtype(dtype).str, "tokenizer_hash": tok_hash,
            "counts": {"read": counts.read, "kept": counts.kept, "empty": counts.empty,
                       "too_long": counts.too_long, "ratio": counts.ratio,
                       "duplicates": counts.duplicates, "bad_lines": counts.bad_lines.count,
                       "per_corpus": per_corpus},
            "sizes": {name: (out / name).stat().st_size
                      for name in ("src.ids", "tgt.ids", "index.npy")}}
    (out / META).write_text(json.dumps(meta, indent=1), encoding="utf-8")
