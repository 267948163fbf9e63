"""Corpus metrics on detokenized text, one or several references per source.

sacreBLEU's BLEU, chrF and TER (with signatures); jiwer's error rates (WER, CER, and the
token error rate, e.g. the phoneme error rate of G2P); rouge-score's ROUGE; exact match and
sentence error rate. Every metric is on a 0-100 scale; `METRICS` says which way is better.

Several references: a reference line holds TAB-separated alternatives (`split_refs`).
sacreBLEU sees all of them; an error rate takes, per sentence, the closest alternative (fewest
edits; on a tie the longer one) and sums edits and reference lengths over the corpus; exact
match and sentence error count a hit when any alternative matches; ROUGE takes the best F1.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from sacrebleu.metrics import BLEU, CHRF, TER

Refs = Sequence[str] | Sequence[Sequence[str]]  # one str, or a list of alternatives, per item


@dataclass(frozen=True)
class Metric:
    """What a metric name means: its direction and the library that computes it."""

    name: str
    higher_is_better: bool
    library: str  # distribution name whose version is reported
    description: str


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("bleu", True, "sacrebleu", "BLEU (sacreBLEU, 13a tokenization unless told)"),
    Metric("chrf", True, "sacrebleu", "chrF (sacreBLEU)"),
    Metric("ter", False, "sacrebleu", "translation edit rate (sacreBLEU)"),
    Metric("exact_match", True, "transduce", "% of lines equal to a reference"),
    Metric("sentence_error_rate", False, "transduce",
           "% of lines equal to no reference (100 - exact_match); G2P's 'word error rate'"),
    Metric("wer", False, "jiwer", "word error rate: word edits / reference words (jiwer)"),
    Metric("cer", False, "jiwer", "character error rate: character edits / reference "
                                  "characters, spaces included (jiwer)"),
    Metric("token_error_rate", False, "jiwer",
           "edits over whitespace-separated tokens / reference tokens (jiwer's WER); the "
           "phoneme error rate when tokens are phonemes"),
    Metric("rouge1", True, "rouge-score", "ROUGE-1 F1 (rouge-score; ASCII letters and digits)"),
    Metric("rouge2", True, "rouge-score", "ROUGE-2 F1 (rouge-score; ASCII letters and digits)"),
    Metric("rougeL", True, "rouge-score", "ROUGE-L F1 (rouge-score; ASCII letters and digits)"),
)}
DEFAULT_METRICS = ("bleu", "chrf")


def check_metric_names(names: Sequence[str], where: str = "metrics",
                       extra: Sequence[str] = ()) -> None:
    """Raise ValueError naming the unknown metric and listing the valid ones."""
    valid = [*METRICS, *extra]
    for name in names:
        if name not in valid:
            raise ValueError(f"{where}: unknown metric {name!r} (valid: {', '.join(valid)})")
    if not names:
        raise ValueError(f"{where}: give at least one metric (valid: {', '.join(valid)})")


def split_refs(line: str) -> list[str]:
    """The TAB-separated alternative references of one reference line."""
    return line.split("\t")


@dataclass
class Evaluation:
    """Values of the metrics asked for, in that order, and how each was computed."""

    values: dict[str, float]
    signatures: dict[str, str]  # sacreBLEU signature, or "jiwer 4.0.0"-like versions

    def __str__(self) -> str:
        return "  ".join(f"{name} {value:.2f}" for name, value in self.values.items())


def evaluate(names: Sequence[str], hyps: Sequence[str], refs: Refs, tokenize: str = "13a",
             lowercase: bool = False) -> Evaluation:
    """The metrics `names` for hyps[i] against refs[i] (a str or a list of alternatives).
    `tokenize` and `lowercase` are sacreBLEU's settings for BLEU (lowercase also for TER)."""
    check_metric_names(names)
    alts = _check(hyps, refs)
    values: dict[str, float] = {}
    sigs: dict[str, str] = {}
    for name in names:
        if name in ("bleu", "chrf", "ter"):
            values[name], sigs[name] = _sacrebleu(name, list(hyps), alts, tokenize, lowercase)
            continue
        if name in ("exact_match", "sentence_error_rate"):
            hits = exact_match(hyps, alts)
            values[name] = hits if name == "exact_match" else 100.0 - hits
        elif name in ("wer", "token_error_rate", "cer"):
            values[name] = error_rate(hyps, alts, chars=name == "cer")
        else:
            values[name] = rouge(name, hyps, alts)
        library = METRICS[name].library
        sigs[name] = "transduce: equal after stripping outer whitespace" \
            if library == "transduce" else f"{library} {importlib.metadata.version(library)}"
    return Evaluation(values, sigs)


def _check(hyps: Sequence[str], refs: Refs) -> list[list[str]]:
    """refs as a list of alternatives per item, after checking types and lengths."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references: they must align")
    if not refs:
        raise ValueError("nothing to score: no hypotheses and no references")
    if not all(isinstance(h, str) for h in hyps):
        raise TypeError("each hypothesis and reference must be a string")
    alts = [[r] if isinstance(r, str) else list(r) for r in refs]
    if not all(a and all(isinstance(x, str) for x in a) for a in alts):
        raise TypeError("each hypothesis and reference must be a string (or, for several "
                        "references, a non-empty list of strings)")
    return alts


def _sacrebleu(name: str, hyps: list[str], alts: list[list[str]], tokenize: str,
               lowercase: bool) -> tuple[float, str]:
    metric: BLEU | CHRF | TER
    if name == "bleu":
        metric = BLEU(tokenize=tokenize, lowercase=lowercase)
    elif name == "chrf":
        metric = CHRF()
    else:
        metric = TER(case_sensitive=not lowercase)
    # sacreBLEU takes reference streams; None (not "") marks a missing alternative, so a
    # sentence with fewer references is scored against those it has.
    n = max(len(a) for a in alts)
    streams: list[list[str | None]] = [[a[k] if k < len(a) else None for a in alts]
                                       for k in range(n)]
    value = metric.corpus_score(hyps, streams).score  # type: ignore[arg-type]
    return value, str(metric.get_signature())


def exact_match(hyps: Sequence[str], alts: Sequence[Sequence[str]]) -> float:
    """% of hypotheses equal (outer whitespace aside) to any of their references."""
    hits = sum(h.strip() in {r.strip() for r in a} for h, a in zip(hyps, alts))
    return 100.0 * hits / max(len(alts), 1)


def error_rate(hyps: Sequence[str], alts: Sequence[Sequence[str]], chars: bool = False) -> float:
    """100 x edits / reference length over the corpus (jiwer's WER, or CER if `chars`),
    each hypothesis against its closest reference."""
    import jiwer

    process = jiwer.process_characters if chars else jiwer.process_words
    edits = length = 0
    for hyp, refs in zip(hyps, alts):
        best: tuple[int, int] | None = None
        for ref in refs:
            out = process(ref, hyp)
            e = out.substitutions + out.deletions + out.insertions
            n = out.substitutions + out.deletions + out.hits
            if best is None or (e, -n) < (best[0], -best[1]):
                best = (e, n)
        assert best is not None
        edits, length = edits + best[0], length + best[1]
    if length == 0:  # only empty references: 0 if every hypothesis is empty too, else 100
        return 0.0 if edits == 0 else 100.0
    return 100.0 * edits / length


def rouge(name: str, hyps: Sequence[str], alts: Sequence[Sequence[str]]) -> float:
    """Mean sentence ROUGE F1 x 100 (rouge-score; best over a sentence's references)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer([name])
    total = sum(scorer.score_multi(list(a), h)[name].fmeasure for h, a in zip(hyps, alts))
    return 100.0 * total / len(alts)


@dataclass
class Scores:
    """The fixed set of translation scores that `score` returns."""

    bleu: float
    chrf: float
    ter: float
    exact_match: float  # % of hypotheses identical to a reference
    token_accuracy: float  # % of reference tokens matched at the same position (whitespace tokens)
    signatures: dict[str, str]

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (f"BLEU {self.bleu:.2f}  chrF {self.chrf:.2f}  TER {self.ter:.2f}  "
                f"exact match {self.exact_match:.1f}%  token accuracy {self.token_accuracy:.1f}%")


def token_accuracy(hyps: Sequence[str], refs: Refs) -> float:
    """Share of reference tokens that the hypothesis has at the same position, in %
    (against each item's first reference)."""
    firsts = [a[0] for a in _check(hyps, refs)]
    total = sum(len(r.split()) for r in firsts)
    hits = sum(h == r for hyp, ref in zip(hyps, firsts) for h, r in zip(hyp.split(), ref.split()))
    return 100.0 * hits / max(total, 1)


def score(hyps: Sequence[str], refs: Refs, tokenize: str = "13a",
          lowercase: bool = False, with_ter: bool = True) -> Scores:
    """BLEU, chrF, TER, exact match and token accuracy; BLEU is cased 13a unless told otherwise.
    refs[i] is hyps[i]'s reference, or a list of its alternative references."""
    names = ["bleu", "chrf", "exact_match"] + (["ter"] if with_ter else [])
    e = evaluate(names, hyps, refs, tokenize, lowercase)
    sigs: dict[str, str] = {k: v for k, v in e.signatures.items() if k != "exact_match"}
    return Scores(e.values["bleu"], e.values["chrf"], e.values.get("ter", float("nan")),
                  e.values["exact_match"], token_accuracy(hyps, refs), sigs)
