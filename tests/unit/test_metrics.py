"""Metrics equal their libraries' own (sacreBLEU, jiwer, rouge-score) on small tables, empty
hypotheses and several references included; direction of the best; the evaluate command."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import sacrebleu

from transduce.cli import main
from transduce.config import ConfigError, load_config
from transduce.evaluate import METRICS, Scores, evaluate, score, token_accuracy
from transduce.training.trainer import Progress, signed_score, train, update_best

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


# ---- every metric against its library, one or several references --------------------------

MULTI = {  # hyps, refs (a str, or a list of alternatives), including empty hypotheses
    "one reference each": (["a b c", "", "x y"], ["a x c", "d e", "x y"]),
    "several references": (["T AH0 M EY1 T OW2", "R IY1 D", ""],
                           [["T AH0 M EY1 T OW2", "T AH0 M AA1 T OW2"], ["R EH1 D", "R IY1 D"],
                            ["AH0"]]),
    "closest is not first": (["a b c d"], [["x y", "a b c e", "a b c d e f"]]),
    "all empty hypotheses": (["", ""], [["a b", "a"], "c"]),
    "variable counts": (["the cat sat", "a dog"], [["the cat sat", "a cat sat", "cat"],
                                                    "the dog"]),
}


def _alts(refs) -> list[list[str]]:
    return [[r] if isinstance(r, str) else list(r) for r in refs]


def _closest(hyps, refs, measure) -> list[str]:
    """Per sentence the alternative with the fewest edits (ties: the longer), by jiwer."""
    chosen = []
    for h, alts in zip(hyps, _alts(refs)):
        outs = [(measure(r, h), r) for r in alts]
        edits = [(o.substitutions + o.deletions + o.insertions,
                  -(o.substitutions + o.deletions + o.hits)) for o, _ in outs]
        chosen.append(outs[edits.index(min(edits))][1])
    return chosen


@pytest.mark.parametrize("name", MULTI)
def test_every_metric_equals_its_library(name: str):
    import jiwer
    from rouge_score import rouge_scorer

    hyps, refs = MULTI[name]
    got = evaluate(list(METRICS), hyps, refs).values
    alts = _alts(refs)
    streams = [[a[k] if k < len(a) else None for a in alts] for k in range(max(map(len, alts)))]
    assert got["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, streams).score)
    assert got["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, streams).score)
    assert got["ter"] == pytest.approx(sacrebleu.corpus_ter(hyps, streams).score)
    exact = 100 * sum(h in a for h, a in zip(hyps, alts)) / len(hyps)
    assert got["exact_match"] == pytest.approx(exact)
    assert got["sentence_error_rate"] == pytest.approx(100 - exact)
    words = _closest(hyps, refs, jiwer.process_words)
    assert got["wer"] == pytest.approx(100 * jiwer.wer(words, hyps))
    assert got["token_error_rate"] == got["wer"]
    chars = _closest(hyps, refs, jiwer.process_characters)
    assert got["cer"] == pytest.approx(100 * jiwer.cer(chars, hyps))
    for rouge in ("rouge1", "rouge2", "rougeL"):
        scorer = rouge_scorer.RougeScorer([rouge])
        mean = sum(scorer.score_multi(a, h)[rouge].fmeasure for h, a in zip(hyps, alts))
        assert got[rouge] == pytest.approx(100 * mean / len(hyps)), rouge


def test_one_reference_as_a_list_is_the_same_as_a_string():
    hyps, refs = TABLE["partial"]
    assert evaluate(list(METRICS), hyps, refs) == evaluate(list(METRICS), hyps,
                                                           [[r] for r in refs])
    assert score(hyps, refs) == score(hyps, [[r] for r in refs])


def test_error_rates_take_the_closest_reference_and_sum_over_the_corpus():
    # sentence 1: 1 edit against "a b c e" (4 words); sentence 2: 0 edits against "c d" (2)
    got = evaluate(["wer", "cer"], ["a b c d", "c d"], [["x", "a b c e"], ["c d", "c"]]).values
    assert got["wer"] == pytest.approx(100 * 1 / 6)
    assert evaluate(["wer"], ["", ""], ["", ""]).values["wer"] == 0.0
    assert evaluate(["wer"], ["a"], [""]).values["wer"] == 100.0


def test_multiple_references_reach_sacrebleu_with_their_count():
    e = evaluate(["bleu"], ["a b c d", "x"], [["a b c d", "a b"], ["x"]])
    assert "nrefs:var" in e.signatures["bleu"]
    assert "nrefs:2" in evaluate(["bleu"], ["a"], [["a", "b"]]).signatures["bleu"]


def test_direction_and_signatures_of_each_metric():
    import importlib.metadata

    lower = {n for n, m in METRICS.items() if not m.higher_is_better}
    assert lower == {"ter", "wer", "cer", "token_error_rate", "sentence_error_rate"}
    e = evaluate(["wer", "rougeL", "sentence_error_rate", "chrf"], ["a b"], ["a b"])
    assert list(e.values) == ["wer", "rougeL", "sentence_error_rate", "chrf"]
    assert e.signatures["wer"] == f"jiwer {importlib.metadata.version('jiwer')}"
    assert e.signatures["rougeL"] == f"rouge-score {importlib.metadata.version('rouge-score')}"
    assert e.signatures["chrf"].startswith("nrefs:1|")
    assert str(e).startswith("wer 0.00  rougeL 100.00")


def test_unknown_metric_names_list_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown metric 'blue' \(valid: bleu, chrf, ter, "):
        evaluate(["blue"], ["a"], ["a"])
    with pytest.raises(ConfigError, match=r"eval.metrics.*'per'.*token_error_rate"):
        load_config({"eval": {"metrics": ["token_error_rate", "per"]}})
    with pytest.raises(ConfigError, match=r"early_stopping.metric.*'accuracy'.*rougeL, loss"):
        load_config({"train": {"early_stopping": {"metric": "accuracy"}}})


def test_early_stopping_metric_defaults_to_the_first_metric():
    assert load_config({}).train.early_stopping.metric == "bleu"
    cfg = load_config({"eval": {"metrics": ["token_error_rate", "sentence_error_rate"]}})
    assert cfg.train.early_stopping.metric == "token_error_rate"
    cfg = load_config({"eval": {"metrics": ["wer"]},
                       "train": {"early_stopping": {"metric": "loss"}}})
    assert cfg.train.early_stopping.metric == "loss"


@pytest.mark.parametrize("metric, values, best_index", [
    ("token_error_rate", [40.0, 25.0, 30.0, 20.0, 22.0, 21.0], 3),  # lower is better
    ("sentence_error_rate", [90.0, 95.0, 97.0], 0),
    ("loss", [3.0, 2.5, 2.6], 1),
    ("bleu", [10.0, 12.0, 11.0, 12.0], 1),  # a tie is no improvement
])
def test_best_follows_the_direction_of_the_metric(metric, values, best_index):
    p = Progress()
    improved = []
    for step, value in enumerate(values):
        p.step = step
        improved.append(update_best(p, metric, value))
    assert p.best_step == best_index and improved[best_index]
    assert signed_score(metric, p.best) == values[best_index]  # p.best is kept signed
    assert p.bad_validations == len(values) - 1 - best_index  # patience counts from the best
    assert not any(improved[best_index + 1:])


# ---- validation and `transduce evaluate` on a tiny model ---------------------------------

LEXICON = {"cat": ["K AE1 T"], "cab": ["K AE1 B"], "bat": ["B AE1 T"], "tab": ["T AE1 B"],
           "act": ["AE1 K T"], "tact": ["T AE1 K T"], "the": ["DH AH0", "DH IY0"],
           "a": ["AH0", "EY1"]}


@pytest.fixture(scope="module")
def tiny_g2p(tmp_path_factory) -> Path:
    """A G2P model trained for 4 steps (seconds), validated on multi-reference lines."""
    root = tmp_path_factory.mktemp("g2p")
    words = sorted(LEXICON)
    (root / "train.src").write_text("".join(" ".join(w) + "\n" for w in words * 5))
    (root / "train.tgt").write_text("".join(LEXICON[w][0] + "\n" for w in words * 5))
    (root / "valid.src").write_text("".join(" ".join(w) + "\n" for w in words))
    (root / "valid.tgt").write_text("".join("\t".join(LEXICON[w]) + "\n" for w in words))
    cfg = load_config({
        "data": {**{f"{s}_{side}": str(root / f"{s}.{side}") for s in ("train", "valid")
                    for side in ("src", "tgt")}},
        "tokenizer": {"kind": "word", "shared": False},
        "model": {"emb_dim": 8, "hidden_size": 8, "encoder_layers": 1},
        "eval": {"metrics": ["token_error_rate", "sentence_error_rate", "bleu"]},
        "train": {"out_dir": str(root / "model"), "max_steps": 4, "valid_every": 2,
                  "progress": False, "num_samples": 0},
        "decode": {"beam_size": 1, "max_len_offset": 3}})
    return train(cfg, log=lambda _: None).model_dir


def test_validation_logs_the_configured_metrics_under_their_names(tiny_g2p: Path):
    records = [json.loads(x) for x in (tiny_g2p / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    for r in records:
        assert {"token_error_rate", "sentence_error_rate", "bleu", "exact_match"} <= set(r)
        assert r["sentence_error_rate"] == pytest.approx(100 - r["exact_match"], abs=0.02)
    assert load_config(tiny_g2p / "config.yaml").train.early_stopping.metric == \
        "token_error_rate"


def test_evaluate_prints_the_metrics_with_signatures_or_versions(tiny_g2p: Path, tmp_path,
                                                                capsys):
    import importlib.metadata

    (tmp_path / "t.src").write_text("c a t\nt h e\n")
    (tmp_path / "t.ref").write_text("K AE1 T\nDH AH0\tDH IY0\n")
    args = ["evaluate", str(tiny_g2p), "--src", str(tmp_path / "t.src"), "--ref",
            str(tmp_path / "t.ref")]
    assert main([*args, "--metrics", "bleu,wer,rouge1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^bleu \d+\.\d\d  wer \d+\.\d\d  rouge1 \d+\.\d\d$", out, re.M), out
    assert "  bleu: nrefs:var|case:mixed|eff:no|tok:13a|" in out
    assert f"  wer: jiwer {importlib.metadata.version('jiwer')}" in out
    assert f"  rouge1: rouge-score {importlib.metadata.version('rouge-score')}" in out
    assert main(args) == 0  # the model's own eval.metrics, then translation's
    out = capsys.readouterr().out
    assert re.search(r"^token_error_rate \S+  sentence_error_rate \S+  bleu \S+  chrf \S+  "
                     r"ter \S+  exact_match \S+$", out, re.M), out
    assert main([*args, "--json", "--metrics", "cer"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"cer", "signatures", "sentences", "seconds"}
    assert main([*args, "--metrics", "bleu,per"]) == 2
    assert "unknown metric 'per' (valid: bleu," in capsys.readouterr().err
