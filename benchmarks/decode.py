#!/usr/bin/env python3
"""Decoding speed of trained model directories (or their CTranslate2 exports, `transduce
export`): float32 against int8, PyTorch against CTranslate2, greedy and beam, timed in
interleaved rounds.

On a shared machine one timing can be 20-40% off the next one of the same thing, so a lone
"before" and "after" says little. Here every configuration (model x quantize x beam)
translates the whole test set once per round, the order alternating from round to round,
and the table gives the median and best sentences/s over the rounds and the median of the
per-round speed ratios to the first configuration (first model, first quantize setting) at
the same beam (a ratio from the same round shares its noise). Model loading is not timed;
tokenization and detokenization are, as in `transduce translate`.

    python benchmarks/decode.py MODEL_DIR [EXPORT_DIR ...] --src test.en.gz --ref test.de.gz \
        [--beams 1,5] [--quantize none,int8] [--rounds 5] [--threads 2] [--json-out F]

Without --src/--ref it uses Multi30k's test_2016_flickr in the model's direction from
$TRANSDUCE_DATA (default ../shared/data).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from peers import cpu_model  # benchmarks/ is on sys.path when this file runs as a script

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("TRANSDUCE_DATA", ROOT.parent / "shared" / "data"))


@dataclass
class Result:
    model: str
    engine: str  # torch or ctranslate2
    quantize: str
    beam: int
    bleu: float
    chrf: float
    sents_per_s: list[float] = field(default_factory=list)  # one per round
    tokens_per_s: list[float] = field(default_factory=list)  # output pieces, no </s>
    ratio_to_first: float | None = None  # median per-round speed ratio to the first config


def default_test(model_dir: Path) -> tuple[Path, Path]:
    from transduce.config import load_config

    data = load_config(model_dir / "config.yaml").data
    base = DATA / "multi30k" / "test_2016_flickr"
    return Path(f"{base}.{data.src_lang}.gz"), Path(f"{base}.{data.tgt_lang}.gz")


def run(models: list[Path], src: list[str], ref: list[str], beams: list[int],
        quantize: list[str], rounds: int, batch_size: int) -> list[Result]:
    from transduce.ct2 import is_export
    from transduce.evaluate import score
    from transduce.translator import Translator

    translators = {(str(m), q): Translator.load(m, quantize=q) for m in models for q in quantize}
    configs = [(m, q, b) for (m, q) in translators for b in beams]
    out: dict[tuple[str, str, int], Result] = {}
    for key in configs:  # warm-up (first-call allocations), and the quality of each setting
        m, q, b = key
        hyps = translators[m, q].translate(src, beam_size=b, batch_size=batch_size)
        s = score([h.text for h in hyps], ref, with_ter=False)
        engine = "ctranslate2" if is_export(m) else "torch"
        out[key] = Result(m, engine, q, b, round(s.bleu, 2), round(s.chrf, 2))
        print(f"{Path(m).name} {q} beam {b}: BLEU {s.bleu:.2f} chrF {s.chrf:.2f}", flush=True)
    for r in range(rounds):
        for key in (configs if r % 2 == 0 else configs[::-1]):
            m, q, b = key
            start = time.perf_counter()
            hyps = translators[m, q].translate(src, beam_size=b, batch_size=batch_size)
            seconds = time.perf_counter() - start
            out[key].sents_per_s.append(round(len(src) / seconds, 1))
            out[key].tokens_per_s.append(round(sum(len(h.tgt_tokens) for h in hyps) / seconds, 1))
        print(f"round {r + 1}/{rounds}: " + ", ".join(
            f"{q} b{b} {out[m, q, b].sents_per_s[-1]:.0f}" for m, q, b in configs), flush=True)
    for (_m, _q, b), res in out.items():
        first = out[str(models[0]), quantize[0], b]
        if res is not first:
            res.ratio_to_first = round(statistics.median(
                x / y for x, y in zip(res.sents_per_s, first.sents_per_s)), 3)
    return list(out.values())


def table(results: list[Result]) -> str:
    head = ("model", "engine", "quantize", "beam", "BLEU", "chrF", "sents/s median", "best",
            "tok/s median", "ratio")
    rows = [head] + [(Path(r.model).name, r.engine, r.quantize, str(r.beam), f"{r.bleu:.2f}",
                      f"{r.chrf:.2f}", f"{statistics.median(r.sents_per_s):.1f}",
                      f"{max(r.sents_per_s):.1f}", f"{statistics.median(r.tokens_per_s):.0f}",
                      "-" if r.ratio_to_first is None else f"{r.ratio_to_first:.2f}x")
                     for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", type=Path,
                   help="model directories from training, or CTranslate2 exports of them")
    p.add_argument("--src", type=Path, help="source file (.gz or text)")
    p.add_argument("--ref", type=Path, help="reference file, line-aligned with --src")
    p.add_argument("--beams", default="1,5", help="comma-separated beam sizes (1 = greedy)")
    p.add_argument("--quantize", default="none,int8",
                   help="comma-separated settings (ratios are to the first model's first)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--limit", type=int, default=None, help="first N test sentences only")
    p.add_argument("--json-out", type=Path, default=Path("decode_results.json"))
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    if (args.src is None) != (args.ref is None):
        p.error("give both --src and --ref, or neither (Multi30k test_2016_flickr)")
    src_path, ref_path = (args.src, args.ref) if args.src else default_test(args.models[0])
    for path in (src_path, ref_path):
        if not path.is_file():
            p.error(f"{path} not found (set TRANSDUCE_DATA or pass --src/--ref)")
    from transduce.data import CorpusError, read_parallel

    try:
        src, ref = read_parallel(src_path, ref_path, args.limit)
    except CorpusError as err:
        p.error(str(err))
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    beams = [int(b) for b in args.beams.split(",")]
    quantize = args.quantize.split(",")
    results = run(args.models, src, ref, beams, quantize, args.rounds, args.batch_size)
    print(table(results))
    meta = {"src": str(src_path), "ref": str(ref_path), "sentences": len(src),
            "rounds": args.rounds, "threads": args.threads, "batch_size": args.batch_size,
            "cpu": cpu_model(), "torch": torch.__version__,
            "python": sys.version.split()[0], "date": time.strftime("%Y-%m-%dT%H:%M:%S")}
    args.json_out.write_text(json.dumps({"meta": meta, "results": [asdict(r) for r in results]},
                                        indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
