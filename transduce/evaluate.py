"""Corpus metrics on detokenized text: sacreBLEU's BLEU, chrF and TER (with signatures)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from sacrebleu.metrics import BLEU, CHRF, TER


@dataclass
class Scores:
    bleu: float
    chrf: float
    ter: float
    exact_match: float  # % of hypotheses identical to their reference
    token_accuracy: float  # % of reference tokens matched at the same position (whitespace tokens)
    signatures: dict[str, str]

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (f"BLEU {self.bleu:.2f}  chrF {self.chrf:.2f}  TER {self.ter:.2f}  "
                f"exact match {self.exact_match:.1f}%  token accuracy {self.token_accuracy:.1f}%")


def _check(hyps: Sequence[str], refs: Sequence[str]) -> None:
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references: they must align")
    if not refs:
        raise ValueError("nothing to score: no hypotheses and no references")
    if not all(isinstance(h, str) for h in hyps) or not all(isinstance(r, str) for r in refs):
        raise TypeError("each hypothesis and reference must be a string")


def token_accuracy(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Share of reference tokens that the hypothesis has at the same position, in %."""
    total = sum(len(r.split()) for r in refs)
    hits = sum(h == r for hyp, ref in zip(hyps, refs) for h, r in zip(hyp.split(), ref.split()))
    return 100.0 * hits / max(total, 1)


def score(hyps: Sequence[str], refs: Sequence[str], tokenize: str = "13a",
          lowercase: bool = False, with_ter: bool = True) -> Scores:
    """All metrics for one hypothesis per reference. BLEU is cased 13a unless told otherwise."""
    _check(hyps, refs)
    bleu = BLEU(tokenize=tokenize, lowercase=lowercase)
    chrf = CHRF()
    ter = TER(case_sensitive=not lowercase)
    ref_streams = [list(refs)]
    b, c = bleu.corpus_score(list(hyps), ref_streams), chrf.corpus_score(list(hyps), ref_streams)
    t = ter.corpus_score(list(hyps), ref_streams).score if with_ter else float("nan")
    exact = 100.0 * sum(h.strip() == r.strip() for h, r in zip(hyps, refs)) / max(len(refs), 1)
    sigs = {"bleu": str(bleu.get_signature()), "chrf": str(chrf.get_signature())}
    if with_ter:
        sigs["ter"] = str(ter.get_signature())
    return Scores(b.score, c.score, t, exact, token_accuracy(hyps, refs), sigs)
