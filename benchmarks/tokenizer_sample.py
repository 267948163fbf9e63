#!/usr/bin/env python3
"""How many sentences should SentencePiece be trained on? (`data.tokenizer_sample`)

For each sample size, trains transduce's joint unigram tokenizer (8k pieces) on that many
pairs drawn by `reservoir` from a corpus file pair, in a fresh process so that its peak
memory is its own, and measures the training time, the peak RSS and the pieces per
sentence it gives on held-out lines (fewer pieces: a better fit of the vocabulary; the
gain flattens out once the sample is large enough). Prints a table and writes JSON.

    .venv/bin/python benchmarks/tokenizer_sample.py --src S.gz --tgt T.gz \\
        --sizes 50000,100000,200000,500000,1000000
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def one(src: str, tgt: str, size: int, heldout: int) -> dict:
    """Runs inside the child process."""
    import resource
    from itertools import islice

    from transduce.config import CorpusConfig, TokenizerConfig
    from transduce.data.prepare import reservoir
    from transduce.data.sources import BadLines, iter_pairs
    from transduce.text import build_codecs

    corpus = CorpusConfig(src=src, tgt=tgt)
    test = list(islice(iter_pairs(corpus, "error", BadLines()), heldout))
    tick = time.time()
    rest = islice(iter_pairs(corpus, "error", BadLines()), heldout, None)
    sample = reservoir(iter(lambda: list(islice(rest, 10_000)), []), size, 1)
    read_s = time.time() - tick
    s, t = zip(*sample)
    del sample
    tick = time.time()
    codec, _ = build_codecs(TokenizerConfig(vocab_size=8000), list(s), list(t))
    train_s = time.time() - tick
    texts = [x for pair in test for x in pair]
    _, lengths = codec.encode_many(texts, threads=2)
    return {"sample_pairs": size, "read_s": round(read_s, 1), "train_s": round(train_s, 1),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "pieces_per_sentence": round(float(lengths.mean()), 3)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--src", required=True)
    p.add_argument("--tgt", required=True)
    p.add_argument("--sizes", default="50000,100000,200000,500000,1000000")
    p.add_argument("--heldout", type=int, default=20000, help="first N pairs, not sampled")
    p.add_argument("--json-out", default=str(ROOT / "benchmarks/results/tokenizer_sample.json"))
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        print(json.dumps(one(args.src, args.tgt, args.child, args.heldout)))
        return 0
    rows = []
    for size in map(int, args.sizes.split(",")):
        out = subprocess.run([sys.executable, __file__, "--src", args.src, "--tgt", args.tgt,
                              "--heldout", str(args.heldout), "--child", str(size)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    print(f"\n{'sample pairs':>12} {'train s':>8} {'peak RSS MiB':>13} {'pieces/sentence':>16}")
    for r in rows:
        print(f"{r['sample_pairs']:>12,} {r['train_s']:>8} {r['peak_rss_mib']:>13,} "
              f"{r['pieces_per_sentence']:>16}")
    Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json_out).write_text(json.dumps({"cpu": platform.processor() or platform.machine(),
                                               "src": args.src, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
