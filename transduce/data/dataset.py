"""Text pairs -> id pairs, with over-long pairs filtered and counted."""

from __future__ import annotations

from dataclasses import dataclass

from transduce.text import Codec


@dataclass
class EncodedCorpus:
    src: list[list[int]]
    tgt: list[list[int]]
    n_empty: int = 0  # pairs dropped because a side was empty
    n_too_long: int = 0  # pairs dropped because a side exceeded max_len tokens

    def __len__(self) -> int:
        return len(self.src)

    @property
    def n_tgt_tokens(self) -> int:
        return sum(len(t) + 1 for t in self.tgt)


def encode_pairs(src_texts: list[str], tgt_texts: list[str], src: Codec, tgt: Codec,
                 max_len: int | None = None) -> EncodedCorpus:
    out = EncodedCorpus([], [])
    for s, t in zip(src_texts, tgt_texts):
        s_ids, t_ids = src.encode(s), tgt.encode(t)
        if not s_ids or not t_ids:
            out.n_empty += 1
        elif max_len is not None and (len(s_ids) > max_len or len(t_ids) > max_len):
            out.n_too_long += 1
        else:
            out.src.append(s_ids)
            out.tgt.append(t_ids)
    return out
