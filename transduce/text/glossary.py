"""Glossaries: source terms and the target terms their translation must use.

A glossary is a list of (source term, target term) pairs, read from a TSV file (one pair a
line; blank lines and lines starting with '#' are skipped) or given as pairs (the HTTP
APIs). A source term matches whole words, case-insensitively; where terms overlap, the
longest wins. Terms written in scripts without spaces between words (Chinese, Japanese)
match anywhere. The matched entries' target terms become the constraints of the search
(search/constraints.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path


def _spaced(ch: str) -> bool:
    """A word character of a script that puts spaces between words."""
    unspaced = "\u3040" <= ch <= "\u30ff" or "\u3400" <= ch <= "\u9fff" or \
        "\uf900" <= ch <= "\ufaff"
    return (ch.isalnum() or ch == "_") and not unspaced


def _pattern(term: str) -> str:
    before = r"(?<!\w)" if _spaced(term[0]) else ""
    after = r"(?!\w)" if _spaced(term[-1]) else ""
    return before + re.escape(term) + after


class Glossary:
    """Equal (and hashable) by its entries, so that requests with one glossary can share a
    decoding batch."""

    def __init__(self, entries: tuple[tuple[str, str], ...]):
        self.entries = entries
        terms = sorted({s.strip().casefold(): s.strip() for s, _ in self.entries}.values(),
                       key=len, reverse=True)  # longest first: the regex tries them in order
        self._targets = {s.strip().casefold(): t.strip() for s, t in reversed(self.entries)}
        self._regex = re.compile("|".join(_pattern(t) for t in terms), re.IGNORECASE) \
            if terms else None

    @classmethod
    def from_pairs(cls, pairs: Iterable[object]) -> Glossary:
        """ValueError naming the first entry that is not a pair of non-empty strings."""
        entries = []
        for i, pair in enumerate(pairs):
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2
                    and all(isinstance(x, str) and x.strip() for x in pair)):
                raise ValueError(f"glossary entry {i} must be a [source term, target term] pair "
                                 f"of non-empty strings, got {pair!r}"[:200])
            entries.append((str(pair[0]), str(pair[1])))
        return cls(tuple(entries))

    @classmethod
    def read(cls, path: str | Path) -> Glossary:
        """A TSV file; ValueError naming the file and line of a malformed entry."""
        entries = []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                line = line.rstrip("\r\n")
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                parts = line.split("\t")
                if len(parts) != 2 or not all(p.strip() for p in parts):
                    raise ValueError(f"{path}:{n}: expected 'source term<TAB>target term', "
                                     f"got {line!r}"[:200])
                entries.append((parts[0], parts[1]))
        if not entries:
            raise ValueError(f"{path}: no glossary entries (one 'source<TAB>target' a line)")
        return cls(tuple(entries))

    def __len__(self) -> int:
        return len(self.entries)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Glossary) and other.entries == self.entries

    def __hash__(self) -> int:
        return hash(self.entries)

    def matches(self, text: str) -> list[tuple[str, str]]:
        """(source term as written in `text`, target term) of every entry that occurs, in
        order of occurrence, each target term once."""
        if self._regex is None:
            return []
        out: dict[str, str] = {}
        for m in self._regex.finditer(text):
            target = self._targets[m.group(0).casefold()]
            out.setdefault(target, m.group(0))
        return [(source, target) for target, source in out.items()]
