"""Reading line-aligned parallel text (plain or .gz) with errors that say what is wrong."""

from __future__ import annotations

import gzip
from pathlib import Path


class CorpusError(ValueError):
    """A data file is missing, unreadable, not UTF-8, or misaligned with its pair."""


def read_lines(path: str | Path) -> list[str]:
    """All lines of a UTF-8 text file (gzip if it ends in .gz), without line endings."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    lines: list[str] = []
    with opener(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                lines.append(raw.decode("utf-8").rstrip("\r\n"))
            except UnicodeDecodeError as e:
                raise CorpusError(f"{path}, line {number}: not valid UTF-8 ({e.reason} at byte "
                                  f"{e.start}); re-encode the file as UTF-8") from None
    return lines


def read_parallel(src_path: str | Path, tgt_path: str | Path,
                  limit: int | None = None) -> tuple[list[str], list[str]]:
    """Both sides of a parallel corpus; raises CorpusError if line counts differ."""
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        raise CorpusError(f"misaligned parallel files: {src_path} has {len(src)} lines but "
                          f"{tgt_path} has {len(tgt)} lines; they must be line-aligned")
    if limit is not None:
        src, tgt = src[:limit], tgt[:limit]
    return src, tgt
