"""Metrics equal sacreBLEU's own on a small table (empty hypotheses included)."""

from __future__ import annotations

import pytest
import sacrebleu

from transduce.evaluate import Scores, score, token_accuracy

TABLE = {
    "perfect": (["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee."],
                ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee."]),
    "partial": (["Ein Mann fährt ein Rad .", "Hunde spielen im Schnee"],
                ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee."]),
    "one empty hypothesis": (["", "Eine Frau liest ein Buch."],
                             ["Ein Kind schläft.", "Eine Frau liest ein Buch."]),
    "all empty hypotheses": (["", ""], ["Ein Kind schläft.", "Eine Frau liest."]),
    "empty reference": (["Ein Kind", ""], ["", ""]),
    "case and punctuation": (["ein mann, der läuft!", "EIN HUND"],
                             ["Ein Mann, der läuft!", "Ein Hund"]),
    "unicode": (["Größe ändert sich – „schön“", "日本 語"],
                ["Größe ändert sich – „schön“", "日本語"]),
    "single word": (["Hallo"], ["Hallo Welt"]),
}


@pytest.mark.parametrize("name", TABLE)
@pytest.mark.parametrize("lowercase", [False, True])
def test_scores_equal_sacrebleu(name: str, lowercase: bool):
    hyps, refs = TABLE[name]
    s = score(hyps, refs, lowercase=lowercase)
    assert isinstance(s, Scores)
    assert s.bleu == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs], lowercase=lowercase).score)
    assert s.chrf == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    assert s.ter == pytest.approx(
        sacrebleu.corpus_ter(hyps, [refs], case_sensitive=not lowercase).score)
    assert -1e-9 <= s.bleu <= 100.0 + 1e-9 and -1e-9 <= s.chrf <= 100.0 + 1e-9
    exact = 100.0 * sum(h.strip() == r.strip() for h, r in zip(hyps, refs)) / len(refs)
    assert s.exact_match == pytest.approx(exact)


def test_bounds_on_clear_cases():
    hyps, refs = TABLE["perfect"]
    perfect = score(hyps, refs)
    assert perfect.bleu == pytest.approx(100.0) and perfect.chrf == pytest.approx(100.0)
    assert perfect.ter == 0.0 and perfect.exact_match == 100.0 and perfect.token_accuracy == 100
    empty = score(*TABLE["all empty hypotheses"])
    assert empty.bleu == 0.0 and empty.exact_match == 0.0 and empty.token_accuracy == 0.0


def test_other_tokenizers_match_sacrebleu():
    hyps, refs = TABLE["unicode"]
    for tok in ("intl", "char", "none"):
        assert score(hyps, refs, tokenize=tok).bleu == pytest.approx(
            sacrebleu.corpus_bleu(hyps, [refs], tokenize=tok).score), tok


def test_signatures_describe_the_settings():
    s = score(*TABLE["partial"])
    assert set(s.signatures) == {"bleu", "chrf", "ter"}
    assert "nrefs:1" in s.signatures["bleu"] and "tok:13a" in s.signatures["bleu"]
    assert "case:mixed" in s.signatures["bleu"]
    assert f"version:{sacrebleu.__version__}" in s.signatures["bleu"]
    assert "case:lc" in score(*TABLE["partial"], lowercase=True).signatures["bleu"]
    without_ter = score(*TABLE["partial"], with_ter=False)
    assert "ter" not in without_ter.signatures and without_ter.ter != without_ter.ter  # NaN
    assert set(s.as_dict()) == {"bleu", "chrf", "ter", "exact_match", "token_accuracy",
                                "signatures"}
    assert str(s).startswith("BLEU ")


def test_token_accuracy_counts_same_position_matches():
    assert token_accuracy(["a b c", "x"], ["a x c", "x y"]) == pytest.approx(100 * 3 / 5)
    assert token_accuracy([""], ["a b"]) == 0.0
    assert token_accuracy(["a b c d"], ["a b"]) == 100.0  # extra hypothesis tokens: no penalty


def test_bad_arguments_say_what_is_wrong():
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        score(["a", "b"], ["a"])
    with pytest.raises(TypeError, match="must be a string"):
        score(["a", None], ["a", "b"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="nothing to score"):
        score([], [])
