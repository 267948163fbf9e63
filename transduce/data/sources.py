"""Training corpora as streams of (source, target) text pairs, read once, in constant memory.

A corpus is either two line-aligned files (plain or .gz) or one file holding both sides:
TSV (one pair per line, tab-separated columns) or JSONL (one JSON object per line). Lines
that cannot be read (not UTF-8, a TSV line without the columns, a JSONL line that is not an
object with the fields) raise `CorpusError` naming the file and line, or with
`on_bad_line="skip"` are counted in `BadLines` and skipped.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO

from transduce.config import CorpusConfig
from transduce.data.corpus import CorpusError

Pair = tuple[str, str]


@dataclass
class BadLines:
    """Lines skipped with on_bad_line=skip: how many, and where the first few were."""

    count: int = 0
    first: list[str] = field(default_factory=list)

    def add(self, where: str) -> None:
        self.count += 1
        if len(self.first) < 5:
            self.first.append(where)


def open_bytes(path: str | Path) -> IO[bytes]:
    """A file as bytes, decompressed if it ends in .gz; CorpusError if it is missing."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"file not found: {path}")
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]  # a binary file object
    return open(path, "rb")


def corpus_files(corpus: CorpusConfig) -> list[str]:
    return [corpus.path] if corpus.path else [str(corpus.src), str(corpus.tgt)]


def corpus_name(corpus: CorpusConfig) -> str:
    return " + ".join(corpus_files(corpus))


def corpus_format(corpus: CorpusConfig) -> str:
    """'text' (two line-aligned files), 'tsv' or 'jsonl'."""
    if corpus.path is None:
        return "text"
    if corpus.format != "auto":
        return corpus.format
    name = corpus.path[:-3] if corpus.path.endswith(".gz") else corpus.path
    for ext, kind in ((".tsv", "tsv"), (".jsonl", "jsonl"), (".json", "jsonl")):
        if name.endswith(ext):
            return kind
    raise CorpusError(f"{corpus.path}: cannot tell the format from the name; set its 'format' "
                      "to tsv or jsonl")


def iter_chunks(corpus: CorpusConfig, on_bad_line: str, bad: BadLines,
                size: int = 10_000) -> Iterator[tuple[list[str], list[str]]]:
    """Every readable pair of `corpus`, in file order, as (sources, targets) of up to `size`
    pairs at a time."""
    kind = corpus_format(corpus)
    if kind == "text":
        yield from _text_chunks(str(corpus.src), str(corpus.tgt), on_bad_line, bad, size)
        return
    assert corpus.path is not None
    if kind == "tsv":
        pairs = _tsv_pairs(corpus.path, int(corpus.src_field or 0), int(corpus.tgt_field or 1),
                           on_bad_line, bad)
    else:
        pairs = _jsonl_pairs(corpus.path, corpus.src_field or "src", corpus.tgt_field or "tgt",
                             on_bad_line, bad)
    while chunk := list(islice(pairs, size)):
        src, tgt = zip(*chunk)
        yield list(src), list(tgt)


def iter_pairs(corpus: CorpusConfig, on_bad_line: str, bad: BadLines) -> Iterator[Pair]:
    """Every readable pair of `corpus`, in file order."""
    for src, tgt in iter_chunks(corpus, on_bad_line, bad):
        yield from zip(src, tgt)


def _bad(message: str, where: str, on_bad_line: str, bad: BadLines) -> None:
    if on_bad_line == "error":
        raise CorpusError(f"{where}: {message} (set data.on_bad_line: skip to skip such lines)")
    bad.add(where)


def _decode(raw: bytes, path: str, number: int, on_bad_line: str, bad: BadLines) -> str | None:
    try:
        return raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as e:
        _bad(f"not valid UTF-8 ({e.reason} at byte {e.start}); re-encode the file as UTF-8",
             f"{path}, line {number}", on_bad_line, bad)
        return None


def _decode_lines(raw: list[bytes], path: str, first: int, on_bad_line: str,
                  bad: BadLines) -> list[str | None]:
    """Lines without their endings; None for a line that is not UTF-8 (when skipping).
    One decode of the whole chunk; line by line only to find a bad line."""
    try:
        text = b"".join(raw).decode("utf-8")
    except UnicodeDecodeError:
        return [_decode(r, path, first + i, on_bad_line, bad) for i, r in enumerate(raw)]
    lines: list[str | None] = list(text.split("\n"))
    if len(lines) > len(raw):  # the last line's newline
        lines.pop()
    if "\r" in text:
        lines = [line.rstrip("\r") if line else line for line in lines]
    return lines


def _text_chunks(src: str, tgt: str, on_bad_line: str, bad: BadLines,
                 size: int) -> Iterator[tuple[list[str], list[str]]]:
    with open_bytes(src) as fs, open_bytes(tgt) as ft:
        first = 1  # the line number of the chunk's first line
        while True:
            raw_s, raw_t = list(islice(fs, size)), list(islice(ft, size))
            if len(raw_s) != len(raw_t):
                n_src = first - 1 + len(raw_s) + sum(1 for _ in fs)
                n_tgt = first - 1 + len(raw_t) + sum(1 for _ in ft)
                raise CorpusError(f"misaligned parallel files: {src} has {n_src} lines but "
                                  f"{tgt} has {n_tgt} lines; they must be line-aligned")
            if not raw_s:
                return
            s = _decode_lines(raw_s, src, first, on_bad_line, bad)
            t = _decode_lines(raw_t, tgt, first, on_bad_line, bad)
            first += len(raw_s)
            if None in s or None in t:
                kept = [(a, b) for a, b in zip(s, t) if a is not None and b is not None]
                s, t = [a for a, _ in kept], [b for _, b in kept]
            yield s, t  # type: ignore[misc]  # no None left


def _tsv_pairs(path: str, src_col: int, tgt_col: int, on_bad_line: str,
               bad: BadLines) -> Iterator[Pair]:
    need = max(src_col, tgt_col) + 1
    with open_bytes(path) as f:
        for number, raw in enumerate(f, start=1):
            line = _decode(raw, path, number, on_bad_line, bad)
            if line is None:
                continue
            cols = line.split("\t")
            if len(cols) < need:
                _bad(f"{len(cols)} tab-separated column(s), need {need}",
                     f"{path}, line {number}", on_bad_line, bad)
                continue
            yield cols[src_col], cols[tgt_col]


def _field(obj: object, dotted: str) -> object:
    for key in dotted.split("."):
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def _jsonl_pairs(path: str, src_key: str, tgt_key: str, on_bad_line: str,
                 bad: BadLines) -> Iterator[Pair]:
    with open_bytes(path) as f:
        for number, raw in enumerate(f, start=1):
            line = _decode(raw, path, number, on_bad_line, bad)
            if line is None:
                continue
            where = f"{path}, line {number}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                _bad(f"not valid JSON ({e.msg})", where, on_bad_line, bad)
                continue
            s, t = _field(obj, src_key), _field(obj, tgt_key)
            if not isinstance(s, str) or not isinstance(t, str):
                missing = src_key if not isinstance(s, str) else tgt_key
                _bad(f"no string field '{missing}'", where, on_bad_line, bad)
                continue
            yield s, t


def fingerprint(path: str | Path, sample_bytes: int = 1 << 20) -> dict[str, object]:
    """Identity of a file's content: its size, mtime and a hash of its first and last MiB."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"file not found: {path}")
    stat = path.stat()
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        digest.update(f.read(sample_bytes))
        if stat.st_size > 2 * sample_bytes:
            f.seek(-sample_bytes, os.SEEK_END)
        digest.update(f.read(sample_bytes))
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "hash": digest.hexdigest()}
