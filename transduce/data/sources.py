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
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from itertools import chain, islice, zip_longest
from pathlib import Path
from typing import IO

from transduce.config import CorpusConfig
from transduce.data.corpus import CorpusError

Pair = tuple[str, str]
BLOCK = 1 << 20  # bytes read at a time


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


def _blocks(path: str) -> Iterator[bytes]:
    """The file's bytes, decompressed if it ends in .gz, in blocks of about BLOCK bytes that
    end with a newline (the last one may not). zlib directly, not `gzip.open`: a third less
    time, and the CRC is still checked; files of several gzip members are read whole."""
    if not Path(path).is_file():
        raise CorpusError(f"file not found: {path}")
    with open(path, "rb") as f:
        raw_blocks = _gunzip(f, path) if path.endswith(".gz") else iter(partial(f.read, BLOCK), b"")
        rest = b""
        for data in raw_blocks:
            data = rest + data if rest else data
            cut = data.rfind(b"\n") + 1
            if cut:
                yield data[:cut] if cut < len(data) else data
            rest = data[cut:]
        if rest:
            yield rest


def _gunzip(f: IO[bytes], path: str) -> Iterator[bytes]:
    """Decompressed blocks of at most 4 x BLOCK bytes (a highly compressed file cannot fill
    the memory), member after member."""
    d = zlib.decompressobj(wbits=31)  # 31: a gzip header and trailer
    try:
        while raw := f.read(BLOCK):
            while raw:
                if d.eof:  # the next gzip member
                    d = zlib.decompressobj(wbits=31)
                yield d.decompress(raw, 4 * BLOCK)
                raw = d.unconsumed_tail or (d.unused_data if d.eof else b"")
        while not d.eof and (pending := d.decompress(b"", 4 * BLOCK)):
            yield pending
    except zlib.error as e:
        raise CorpusError(f"{path}: not a readable gzip file ({e})") from None
    if not d.eof:
        raise CorpusError(f"{path}: the gzip file ends early (truncated?)")


def _line_lists(path: str, on_bad_line: str, bad: BadLines) -> Iterator[list[str | None]]:
    """The file's lines without their endings, a block at a time; None for a line that is
    not UTF-8 (when skipping). One decode per block; line by line only to find a bad line."""
    number = 1  # the block's first line
    for block in _blocks(path):
        try:
            text = block.decode("utf-8")
        except UnicodeDecodeError:
            raw = block.split(b"\n")
            if raw[-1] == b"":
                raw.pop()
            lines = [_decode(r, path, number + i, on_bad_line, bad) for i, r in enumerate(raw)]
        else:
            lines = text.split("\n")  # type: ignore[assignment]  # str is a str | None
            if lines[-1] == "":  # after the block's last newline
                lines.pop()
            if "\r" in text:
                lines = [line.rstrip("\r") if line else line for line in lines]
        number += len(lines)
        yield lines


def _sized(lists: Iterator[list[str | None]], size: int) -> Iterator[list[str | None]]:
    """The same lines in lists of `size` (the last one shorter)."""
    buf: list[str | None] = []
    for lines in lists:
        buf += lines
        while len(buf) >= size:
            yield buf[:size]
            del buf[:size]
    if buf:
        yield buf


def _text_chunks(src: str, tgt: str, on_bad_line: str, bad: BadLines,
                 size: int) -> Iterator[tuple[list[str], list[str]]]:
    src_chunks = _sized(_line_lists(src, on_bad_line, bad), size)
    tgt_chunks = _sized(_line_lists(tgt, on_bad_line, bad), size)
    read = 0
    empty: list[str | None] = []
    s: list[str | None]
    t: list[str | None]
    for s, t in zip_longest(src_chunks, tgt_chunks, fillvalue=empty):
        if len(s) != len(t):
            n_src = read + len(s) + sum(map(len, src_chunks))
            n_tgt = read + len(t) + sum(map(len, tgt_chunks))
            raise CorpusError(f"misaligned parallel files: {src} has {n_src} lines but "
                              f"{tgt} has {n_tgt} lines; they must be line-aligned")
        read += len(s)
        if None in s or None in t:
            kept = [(a, b) for a, b in zip(s, t) if a is not None and b is not None]
            s, t = [a for a, _ in kept], [b for _, b in kept]
        yield s, t  # type: ignore[misc]  # no None left


def _numbered_lines(path: str, on_bad_line: str, bad: BadLines) -> Iterator[tuple[int, str]]:
    """(line number, line) for each readable line of the file."""
    lines = chain.from_iterable(_line_lists(path, on_bad_line, bad))
    return ((n, line) for n, line in enumerate(lines, start=1) if line is not None)


def _tsv_pairs(path: str, src_col: int, tgt_col: int, on_bad_line: str,
               bad: BadLines) -> Iterator[Pair]:
    need = max(src_col, tgt_col) + 1
    for number, line in _numbered_lines(path, on_bad_line, bad):
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
    for number, line in _numbered_lines(path, on_bad_line, bad):
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
