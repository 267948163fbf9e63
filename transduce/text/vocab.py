"""Vocabulary: token strings <-> integer ids, and which ids are the special symbols.

transduce's own vocabularies put <pad>, <unk>, <s>, </s> at ids 0-3. A vocabulary taken
from elsewhere (a MarianMT model: </s> = 0, <unk> = 1, <pad> = the last id, decoding
starts from <pad>) keeps its ids and records where its specials are (`SpecialIds`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
SPECIALS = (PAD, UNK, BOS, EOS)


@dataclass(frozen=True)
class SpecialIds:
    """Ids of the special symbols. `bos` may be None (no <s>: Marian); `start` is the
    token the decoder starts from (None: `bos`)."""

    pad: int = 0
    unk: int = 1
    bos: int | None = 2
    eos: int = 3
    start: int | None = None

    def check(self, size: int) -> None:
        """ValueError unless every id is in [0, size) and pad, unk, eos differ."""
        for name, i in asdict(self).items():
            if i is not None and not (isinstance(i, int) and 0 <= i < size):
                raise ValueError(f"special id {name} = {i!r} is not an id of a vocabulary "
                                 f"of {size} entries")
        if self.start is None and self.bos is None:
            raise ValueError("special ids need a decoder start id (start) when there is no "
                             "bos (<s>)")
        if len({self.pad, self.unk, self.eos}) != 3:
            raise ValueError(f"special ids pad, unk and eos must differ, got {self}")


DEFAULT_IDS = SpecialIds()


class Vocab:
    """Tokens in a fixed order; `pad_id`, `unk_id`, `bos_id` (or None), `eos_id` and
    `start_id` (the decoder's first input) say where the specials are.

    `Vocab(tokens)`: the four specials at ids 0-3, then `tokens`. `Vocab(itos, specials)`:
    `itos` as it is (specials included, where `specials` says).
    """

    def __init__(self, tokens: Sequence[str], specials: SpecialIds | None = None):
        if specials is None:
            self.itos: list[str] = list(SPECIALS) + [t for t in tokens if t not in SPECIALS]
            specials = DEFAULT_IDS
        else:
            self.itos = list(tokens)
            specials.check(len(self.itos))
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("vocabulary tokens must be unique")
        self.specials = specials
        self.pad_id, self.unk_id, self.eos_id = specials.pad, specials.unk, specials.eos
        self.bos_id: int | None = specials.bos
        start = specials.start if specials.start is not None else specials.bos
        assert start is not None  # SpecialIds.check
        self.start_id: int = start

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]], min_freq: int = 1,
              max_size: int | None = None) -> Vocab:
        """Most frequent first (ties broken alphabetically, so builds are deterministic)."""
        counts = Counter(t for tokens in token_lists for t in tokens)
        ranked = sorted((t for t, c in counts.items() if c >= min_freq and t not in SPECIALS),
                        key=lambda t: (-counts[t], t))
        if max_size is not None:
            ranked = ranked[: max(0, max_size - len(SPECIALS))]
        return cls(ranked)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        unk = self.unk_id
        return [self.stoi.get(t, unk) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Ids to tokens, stopping at </s> and skipping <pad>, <s> and the start token."""
        skip = {self.pad_id, self.bos_id, self.start_id}
        out = []
        for i in ids:
            if i == self.eos_id:
                break
            if i in skip:
                continue
            out.append(self.itos[i])
        return out

    def save(self, path: str | Path) -> None:
        """A JSON list of tokens for transduce's own specials (ids 0-3); else an object
        {"tokens": [...], "specials": {"pad": .., "unk": .., "bos": .., "eos": ..,
        "start": ..}}."""
        data: object = self.itos if self.specials == DEFAULT_IDS else \
            {"tokens": self.itos, "specials": asdict(self.specials)}
        Path(path).write_text(json.dumps(data, ensure_ascii=False, indent=0), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("tokens"), list) \
                and isinstance(data.get("specials"), dict):
            try:
                return cls(data["tokens"], SpecialIds(**data["specials"]))
            except (TypeError, ValueError) as e:
                raise ValueError(f"{path}: bad special ids: {e}") from None
        if not isinstance(data, list) or list(data[:4]) != list(SPECIALS):
            raise ValueError(f"{path}: not a transduce vocabulary (a JSON list starting with "
                             f"{SPECIALS}, or an object with 'tokens' and 'specials')")
        return cls(data[4:])
