"""CMUdict G2P splits: deterministic, split by word, every pronunciation of a word together."""

from __future__ import annotations

from pathlib import Path

import pytest

from transduce.cli import main
from transduce.data.cmudict import KEPT, load_lexicon, split_words, write_cmudict_splits


@pytest.fixture(scope="module")
def lexicon() -> dict[str, list[str]]:
    return load_lexicon()


def read_split(root: Path, name: str) -> list[tuple[str, str]]:
    src = (root / f"{name}.src").read_text(encoding="utf-8").splitlines()
    tgt = (root / f"{name}.tgt").read_text(encoding="utf-8").splitlines()
    assert len(src) == len(tgt)
    return list(zip(src, tgt))


def test_the_lexicon_keeps_letters_and_apostrophes_only(lexicon):
    assert len(lexicon) > 120_000
    assert all(KEPT.fullmatch(w) for w in lexicon)
    assert "ad-hoc" not in lexicon and "a.m." not in lexicon and "'s" in lexicon
    assert lexicon["tomato"] == ["T AH0 M EY1 T OW2", "T AH0 M AA1 T OW2"]
    assert all(len(set(p)) == len(p) for p in lexicon.values())  # no repeated pronunciation


def test_splits_are_deterministic_word_disjoint_and_keep_a_word_together(lexicon, tmp_path):
    small = {w: lexicon[w] for w in sorted(lexicon)[::40]}  # ~3k words, both kinds included
    counts = write_cmudict_splits(tmp_path / "a", seed=1, lexicon=small)
    write_cmudict_splits(tmp_path / "b", seed=1, lexicon=small)
    write_cmudict_splits(tmp_path / "c", seed=2, lexicon=small)
    for name in ("train", "valid", "test"):
        for side in ("src", "tgt"):
            a = (tmp_path / "a" / f"{name}.{side}").read_bytes()
            assert a == (tmp_path / "b" / f"{name}.{side}").read_bytes()
    assert (tmp_path / "a/test.src").read_bytes() != (tmp_path / "c/test.src").read_bytes()

    words: dict[str, set[str]] = {}
    for name in ("train", "valid", "test"):
        pairs = read_split(tmp_path / "a", name)
        seen = {src for src, _ in pairs}
        words[name] = seen
        assert len(seen) == counts[name]
        if name == "train":  # one line per pronunciation, all of them
            assert len(pairs) == sum(len(small[w]) for w in seen)
            assert sorted(pairs) == sorted((w, p) for w in seen
                                   for p in small[w])
        else:  # one line per word, its pronunciations TAB-separated
            assert len(pairs) == len(seen)
            assert all(tgt.split("\t") == small[src] for src, tgt in pairs)
    assert not words["train"] & words["valid"] and not words["train"] & words["test"]
    assert not words["valid"] & words["test"]
    assert words["train"] | words["valid"] | words["test"] == set(small)
    assert counts["valid"] == counts["test"] == round(0.05 * len(small))
    assert any("\t" in t for _, t in read_split(tmp_path / "a", "test"))  # several references


def test_lines_are_spaced_letters_and_phonemes(tmp_path):
    write_cmudict_splits(tmp_path, lexicon={"transduce": ["T R AE0 N S D UW1 S"]},
                         valid=0, test=0)
    assert read_split(tmp_path, "train") == [("transduce", "T R AE0 N S D UW1 S")]


def test_bad_fractions_are_refused():
    with pytest.raises(ValueError, match="sum below 1"):
        split_words(["a", "b"], valid=0.6, test=0.5, seed=1)


def test_the_data_command(tmp_path, capsys):
    assert main(["data", "cmudict", str(tmp_path / "cmu"), "--seed", "3", "--valid", "0.01",
                 "--test", "0.02"]) == 0
    out = capsys.readouterr().out
    assert "validation" in out and str(tmp_path / "cmu") in out
    assert {p.name for p in (tmp_path / "cmu").iterdir()} == {
        f"{n}.{s}" for n in ("train", "valid", "test") for s in ("src", "tgt")}
