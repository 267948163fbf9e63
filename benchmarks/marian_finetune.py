#!/usr/bin/env python3
"""Fine-tuning through the Hugging Face format with real weights: a Multi30k en->de
Transformer trained by transduce (post-norm, so that it exports as MarianMT), exported with
`export --format hf`, imported back with `transduce import`, then fine-tuned for a few
minutes on another domain (Tatoeba en-de) with `model.init`. Test BLEU on both domains
before and after (catastrophic forgetting shown, not hidden), whether the round trip
changed any output, and whether `transformers` decodes the export as transduce does.

    python benchmarks/marian_finetune.py [--train-minutes 15] [--finetune-minutes 5]
        [--work DIR] [--json-out benchmarks/results/marian_finetune.json]

Steps run as `transduce` commands in subprocesses, one after the other (run it on a quiet
machine: training budgets are wall-clock minutes).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("TRANSDUCE_DATA", ROOT.parent / "shared" / "data"))
M30K, TATOEBA = DATA / "multi30k", DATA / "tatoeba_deu_eng"
TESTS = {"multi30k test_2016_flickr": (M30K / "test_2016_flickr.en.gz",
                                        M30K / "test_2016_flickr.de.gz"),
         "tatoeba en-de test": (TATOEBA / "test.en.gz", TATOEBA / "test.de.gz")}


def transduce(*args: str) -> str:
    cmd = [sys.executable, "-m", "transduce", *args]
    print("$ transduce " + " ".join(args), flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stderr[-3000:]}")
    return done.stdout


def bleu(model_dir: Path, beam: int) -> dict[str, float]:
    out = {}
    for name, (src, ref) in TESTS.items():
        scores = json.loads(transduce("evaluate", str(model_dir), "--src", str(src), "--ref",
                                      str(ref), "--beam", str(beam), "--json"))
        out[name] = round(scores["bleu"], 2)
    return out


def hf_agreement(model_dir: Path, hf_dir: Path, sentences: int = 200) -> dict[str, int]:
    """transformers' generate on the exported directory against transduce on the model:
    identical outputs out of `sentences`, greedy and beam 4 (length penalty 0 on both
    sides, generate with early_stopping), each sentence with transduce's length limit."""
    import torch
    from transformers import MarianMTModel, MarianTokenizer

    from transduce.translator import Translator

    with gzip.open(TESTS["multi30k test_2016_flickr"][0], "rt", encoding="utf-8") as f:
        src = [line.strip() for _, line in zip(range(sentences), f)]
    ours = Translator.load(model_dir)
    ours.decode = ours.decode.model_copy(update={"length_penalty": 0.0})
    hf, tokenizer = MarianMTModel.from_pretrained(hf_dir).eval(), \
        MarianTokenizer.from_pretrained(hf_dir)
    out = {}
    for beam in (1, 4):
        texts = [t.text for t in ours.translate(src, beam_size=beam)]
        same = 0
        for text, mine in zip(src, texts):
            ids = tokenizer(text, return_tensors="pt").input_ids
            limit = int(ids.size(1) * ours.decode.max_len_ratio) + ours.decode.max_len_offset
            with torch.no_grad():
                theirs = hf.generate(input_ids=ids, num_beams=beam, do_sample=False,
                                     max_new_tokens=limit, length_penalty=0.0,
                                     early_stopping=True)
            same += tokenizer.batch_decode(theirs, skip_special_tokens=True)[0] == mine
        out[f"beam{beam}_identical"] = same
    return {**out, "sentences": len(src)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train-minutes", type=float, default=15.0)
    p.add_argument("--finetune-minutes", type=float, default=5.0)
    p.add_argument("--finetune-lr", type=float, default=5e-4)
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--work", type=Path, default=None)
    p.add_argument("--json-out", type=Path,
                   default=ROOT / "benchmarks" / "results" / "marian_finetune.json")
    args = p.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="transduce-finetune-"))
    base, hf_dir, imported, tuned = (work / "multi30k-postnorm", work / "hf",
                                     work / "imported", work / "finetuned")
    tick = time.time()
    if not (base / "model.safetensors").is_file():
        # The Multi30k Transformer recipe, post-norm (MarianMT's layout): a lower peak and a
        # longer warmup, which post-norm layers need.
        transduce("train", "configs/multi30k_transformer.yaml",
                  "--set", f"train.out_dir={base}", "--set", "model.pre_norm=false",
                  "--set", "train.lr=0.001", "--set", "train.scheduler.warmup=800",
                  "--set", f"train.max_minutes={args.train_minutes}",
                  "--set", "train.progress=false")
    transduce("export", str(base), str(hf_dir), "--format", "hf", "--force")
    transduce("import", str(hf_dir), str(imported), "--force")
    sample = work / "test.en"
    with gzip.open(TESTS["multi30k test_2016_flickr"][0], "rt", encoding="utf-8") as f:
        sample.write_text(f.read(), encoding="utf-8")
    before_trip = transduce("translate", str(base), "-i", str(sample), "--beam", "5")
    after_trip = transduce("translate", str(imported), "-i", str(sample), "--beam", "5")
    same = sum(a == b for a, b in zip(before_trip.splitlines(), after_trip.splitlines()))
    agreement = hf_agreement(base, hf_dir)
    rows = {"trained on Multi30k (transduce)": bleu(base, args.beam),
            "exported to HF and imported back": bleu(imported, args.beam)}
    # The recipe's data and training settings; the model and tokenizers come from model.init
    # (a model key the config sets must agree with the imported model's, so none is set).
    recipe = yaml.safe_load((ROOT / "configs" / "multi30k_transformer.yaml").read_text())
    finetune = {"data": recipe["data"], "train": recipe["train"], "decode": recipe["decode"],
                "model": {"init": str(imported)}}
    (work / "finetune.yaml").write_text(yaml.safe_dump(finetune), encoding="utf-8")
    transduce("train", str(work / "finetune.yaml"), "--set", f"train.out_dir={tuned}",
              "--set", f"data.train_src={TATOEBA / 'train.en.gz'}",
              "--set", f"data.train_tgt={TATOEBA / 'train.de.gz'}",
              "--set", f"data.valid_src={TATOEBA / 'val.en.gz'}",
              "--set", f"data.valid_tgt={TATOEBA / 'val.de.gz'}",
              "--set", f"data.test_src={TATOEBA / 'test.en.gz'}",
              "--set", f"data.test_tgt={TATOEBA / 'test.de.gz'}",
              "--set", f"train.lr={args.finetune_lr}", "--set", "train.scheduler.warmup=100",
              "--set", f"train.max_minutes={args.finetune_minutes}",
              "--set", "train.valid_every=250", "--set", "train.progress=false")
    rows[f"fine-tuned {args.finetune_minutes:g} min on Tatoeba"] = bleu(tuned, args.beam)
    names = list(TESTS)
    head = " ".join(f"{n:>26}" for n in names)
    print(f"\n{'model':<36} {head}   (BLEU, beam {args.beam})")
    for model, scores in rows.items():
        print(f"{model:<36} " + " ".join(f"{scores[n]:>26.2f}" for n in names))
    print(f"round trip transduce -> HF -> transduce: {same}/{len(before_trip.splitlines())} "
          "test outputs identical (beam 5)")
    print(f"transformers' generate on the HF export = transduce: greedy "
          f"{agreement['beam1_identical']}/{agreement['sentences']}, beam 4 "
          f"{agreement['beam4_identical']}/{agreement['sentences']}")
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(
        {"work": str(work), "train_minutes": args.train_minutes,
         "finetune_minutes": args.finetune_minutes, "finetune_lr": args.finetune_lr,
         "bleu": rows, "round_trip_identical": same,
         "round_trip_sentences": len(before_trip.splitlines()), "hf_generate": agreement,
         "wall_minutes": round((time.time() - tick) / 60, 1)}, indent=1) + "\n")
    print(f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
