"""Decoding features side by side on one test set: BLEU and speed of plain beam search, a
glossary (constrained search), each repetition/length control, and a document of the same
sentences; for the glossary, how often its target terms are used with and without it.

    .venv/bin/python benchmarks/decoding_features.py MODEL_DIR [--src test.en.gz
        --ref test.de.gz] [--train-src train.en.gz --train-tgt train.de.gz] [--beam 5]

The glossary is drawn from the test references: a word dictionary is first learnt from the
training data (Dice coefficient of source and target words that occur in the same pair),
then an entry (source word -> target word as written in the references) is kept when the
source word occurs in at least `--min-support` test sources and the target word is in at
least `--min-agreement` of their references, so that the entry is right for this test set.
The same glossary is applied to every test sentence. Term use counts (sentence, entry)
pairs whose source term occurs: the target term appears in the output (as a substring:
what constrained search guarantees; and as a whole word). Default data: Multi30k en->de,
test_2016_flickr. The document row translates the test sources joined into paragraphs of
five sentences (documents.py: sentencex, then batches) and scores the sentences it found.
Prints a table and writes benchmarks/results/decoding_features.json. Run it on a quiet
machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from collections import Counter, defaultdict
from pathlib import Path

import torch

from transduce.data import read_parallel
from transduce.documents import translate_document
from transduce.evaluate import score
from transduce.search import Controls
from transduce.text.glossary import Glossary
from transduce.translator import Translator

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("TRANSDUCE_DATA", ROOT.parent / "shared" / "data")) / "multi30k"
WORD = re.compile(r"\w+")


def words(text: str) -> set[str]:
    return set(WORD.findall(text))


def dictionary(srcs: list[str], tgts: list[str], min_count: int = 5, min_dice: float = 0.3
               ) -> dict[str, set[str]]:
    """Lower-cased source word -> lower-cased target words with a Dice coefficient of at
    least min_dice over the sentence pairs (content words: 4+ letters)."""
    cs: Counter[str] = Counter()
    ct: Counter[str] = Counter()
    pair: Counter[tuple[str, str]] = Counter()
    for s, t in zip(srcs, tgts):
        sw = {w for w in words(s.lower()) if len(w) >= 4}
        tw = {w for w in words(t.lower()) if len(w) >= 4}
        cs.update(sw)
        ct.update(tw)
        pair.update((a, b) for a in sw for b in tw)
    out: dict[str, set[str]] = defaultdict(set)
    for (a, b), n in pair.items():
        if n >= min_count and 2 * n / (cs[a] + ct[b]) >= min_dice:
            out[a].add(b)
    return out


def glossary_from_references(srcs: list[str], refs: list[str], lexicon: dict[str, set[str]],
                             min_support: int, min_agreement: float) -> list[tuple[str, str]]:
    support: Counter[str] = Counter()
    used: dict[str, Counter[str]] = defaultdict(Counter)
    for s, r in zip(srcs, refs):
        ref_words = words(r)
        for a in words(s.lower()) & lexicon.keys():
            support[a] += 1
            for w in ref_words:
                if w.lower() in lexicon[a]:
                    used[a][w] += 1
    entries = []
    for a, n in support.items():
        if n >= min_support and used[a]:
            target, hits = used[a].most_common(1)[0]
            if hits / n >= min_agreement:
                entries.append((a, target))
    return sorted(entries)


def term_use(srcs: list[str], hyps: list[str], glossary: Glossary) -> dict:
    pairs = substring = whole = 0
    for s, h in zip(srcs, hyps):
        for _, target in glossary.matches(s):
            pairs += 1
            substring += target in h
            whole += bool(re.search(rf"(?<!\w){re.escape(target)}(?!\w)", h))
    return {"term_pairs": pairs, "term_use": round(100 * substring / max(pairs, 1), 2),
            "term_use_whole_word": round(100 * whole / max(pairs, 1), 2)}


def run(translator: Translator, srcs: list[str], refs: list[str], beam: int,
        **options) -> tuple[dict, list[str]]:
    tick = time.perf_counter()
    results = translator.translate(srcs, beam_size=beam, **options)
    seconds = time.perf_counter() - tick
    hyps = [r.text for r in results]
    s = score(hyps, [[r] for r in refs], with_ter=False)
    return {"bleu": round(s.bleu, 2), "chrf": round(s.chrf, 2), "seconds": round(seconds, 2),
            "sentences_per_s": round(len(srcs) / seconds, 1)}, hyps


def run_document(translator: Translator, srcs: list[str], refs: list[str], beam: int) -> dict:
    """The sources as paragraphs of five sentences, one document (a sentence without final
    punctuation gets a full stop, else it would run into the next); scored on the
    sentences it was split into when they line up with the test set."""
    ended = [s if s.rstrip().endswith((".", "!", "?")) else s.rstrip() + "." for s in srcs]
    doc = "\n\n".join(" ".join(ended[i:i + 5]) for i in range(0, len(ended), 5))
    tick = time.perf_counter()
    _, results = translate_document(translator, doc, "en", beam_size=beam)
    seconds = time.perf_counter() - tick
    row = {"seconds": round(seconds, 2), "sentences_per_s": round(len(srcs) / seconds, 1),
           "sentences_found": len(results)}
    if [r.source for r in results] == [s.strip() for s in ended]:
        s = score([r.text for r in results], [[r] for r in refs], with_ter=False)
        row.update(bleu=round(s.bleu, 2), chrf=round(s.chrf, 2))
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model")
    p.add_argument("--src", default=str(DATA / "test_2016_flickr.en.gz"))
    p.add_argument("--ref", default=str(DATA / "test_2016_flickr.de.gz"))
    p.add_argument("--train-src", default=str(DATA / "train.en.gz"))
    p.add_argument("--train-tgt", default=str(DATA / "train.de.gz"))
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--min-support", type=int, default=3)
    p.add_argument("--min-agreement", type=float, default=0.8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--glossary-out", default=str(ROOT / "benchmarks" / "results" /
                                                 "glossary.tsv"))
    p.add_argument("--json-out", default=str(ROOT / "benchmarks" / "results" /
                                             "decoding_features.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    srcs, refs = read_parallel(args.src, args.ref)
    lexicon = dictionary(*read_parallel(args.train_src, args.train_tgt))
    entries = glossary_from_references(srcs, refs, lexicon, args.min_support, args.min_agreement)
    glossary = Glossary(tuple(entries))
    Path(args.glossary_out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.glossary_out).write_text("".join(f"{a}\t{b}\n" for a, b in entries),
                                       encoding="utf-8")
    with_terms = [i for i, s in enumerate(srcs) if glossary.matches(s)]
    translator = Translator.load(args.model)
    systems = {
        "plain beam": {},
        "glossary": {"glossary": glossary},
        "no_repeat_ngram_size 3": {"controls": Controls(no_repeat_ngram_size=3)},
        "repetition_penalty 1.2": {"controls": Controls(repetition_penalty=1.2)},
        "min_len 5": {"controls": Controls(min_len=5)},
        "coverage_penalty 0.2": {"coverage_penalty": 0.2},
    }
    rows = []
    for name, options in systems.items():
        row, hyps = run(translator, srcs, refs, args.beam, **options)
        sub = score([hyps[i] for i in with_terms], [[refs[i]] for i in with_terms],
                    with_ter=False)
        rows.append({"system": name, **row, **term_use(srcs, hyps, glossary),
                     "bleu_sentences_with_terms": round(sub.bleu, 2)})
    rows.append({"system": "document (sentencex)", **run_document(translator, srcs, refs,
                                                                  args.beam)})
    base = rows[0]
    for r in rows:
        r["time_ratio"] = round(r["seconds"] / base["seconds"], 2)
    print(f"glossary: {len(entries)} entries; {len(with_terms)} of {len(srcs)} test sentences "
          f"have a term ({base['term_pairs']} sentence-term pairs); beam {args.beam}, "
          f"{args.threads} threads; the document was split into {rows[-1]['sentences_found']} "
          f"sentences")
    print(f"{'system':<24} {'term use':>8} {'whole word':>10} {'BLEU':>6} {'w/ terms':>8} "
          f"{'chrF':>6} {'sent/s':>7} {'time':>6}")
    for r in rows:
        print(f"{r['system']:<24} {r.get('term_use', float('nan')):>7.1f}% "
              f"{r.get('term_use_whole_word', float('nan')):>9.1f}% "
              f"{r.get('bleu', float('nan')):>6.2f} "
              f"{r.get('bleu_sentences_with_terms', float('nan')):>8.2f} "
              f"{r.get('chrf', float('nan')):>6.2f} {r['sentences_per_s']:>7.1f} "
              f"{r['time_ratio']:>5.2f}x")
    Path(args.json_out).write_text(json.dumps(
        {"model": args.model, "beam": args.beam, "threads": args.threads,
         "glossary_entries": len(entries), "sentences_with_terms": len(with_terms),
         "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
