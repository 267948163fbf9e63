"""An ensemble against its members: test BLEU of each model alone and of all together.

    .venv/bin/python benchmarks/ensemble.py MODEL_DIR MODEL_DIR [MODEL_DIR ...]
        [--src test.en.gz --ref test.de.gz] [--beam 5]

The models must share their tokenizer (e.g. trained from the same data with different
seeds or hyper-parameters). Default data: Multi30k test_2016_flickr en->de. Prints a table
and writes benchmarks/results/ensemble.json. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from transduce.data import read_parallel
from transduce.evaluate import score, split_refs
from transduce.translator import Translator

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("TRANSDUCE_DATA", ROOT.parent / "shared" / "data")) / "multi30k"


def evaluate(translator: Translator, srcs: list[str], refs: list[list[str]],
             beam: int) -> dict:
    tick = time.time()
    hyps = [t.text for t in translator.translate(srcs, beam_size=beam)]
    seconds = time.time() - tick
    s = score(hyps, refs)
    return {"bleu": round(s.bleu, 2), "chrf": round(s.chrf, 2),
            "sentences_per_s": round(len(srcs) / seconds, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+")
    p.add_argument("--src", default=str(DATA / "test_2016_flickr.en.gz"))
    p.add_argument("--ref", default=str(DATA / "test_2016_flickr.de.gz"))
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json-out", default=str(ROOT / "benchmarks" / "results" / "ensemble.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    srcs, ref_lines = read_parallel(args.src, args.ref)
    refs = [split_refs(line) for line in ref_lines]
    rows = [{"system": Path(m).name, **evaluate(Translator.load(m), srcs, refs, args.beam)}
            for m in args.models]
    together = Translator.load_ensemble(args.models)
    rows.append({"system": f"ensemble of {len(args.models)}",
                 **evaluate(together, srcs, refs, args.beam)})
    best_single = max(r["bleu"] for r in rows[:-1])
    print(f"{'system':<28} {'BLEU':>6} {'chrF':>6} {'sent/s':>7}   (beam {args.beam}, "
          f"{len(srcs)} sentences)")
    for r in rows:
        print(f"{r['system']:<28} {r['bleu']:>6.2f} {r['chrf']:>6.2f} {r['sentences_per_s']:>7.1f}")
    print(f"ensemble - best single model: {rows[-1]['bleu'] - best_single:+.2f} BLEU")
    Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json_out).write_text(json.dumps(
        {"models": args.models, "beam": args.beam, "threads": args.threads, "rows": rows,
         "gain_over_best_single": round(rows[-1]["bleu"] - best_single, 2)}, indent=1) + "\n")


if __name__ == "__main__":
    main()
