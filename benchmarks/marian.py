#!/usr/bin/env python3
"""MarianMT import and export, measured against `transformers` on a model of OPUS-MT's
shape (6+6 layers, d_model 512, 8 heads, ff 2048, a shared vocabulary of ~8k) with random
weights, built locally from a MarianConfig (no download; tests/marian_dirs.py):

- import fidelity: max |logit difference| on Multi30k sentences (teacher forcing), and how
  many greedy and beam-4 outputs equal `generate`'s (beam: length_penalty 0 on both sides,
  generate with early_stopping=True);
- round trips: the import exported back (`export --format hf`) and decoded by transformers
  against transduce's greedy; the import exported to CTranslate2 against transformers'
  greedy;
- speed on --threads threads, beam --beam, batch --batch-size, in interleaved rounds:
  transduce PyTorch, transduce int8, transduce's CTranslate2 export (float32 and int8),
  transformers' generate (tokenization and detokenization included everywhere; every
  engine sorts sentences by length into batches; the fidelity check's search settings,
  length penalty 0 and generate(early_stopping=True), so that the engines do the same
  work; each engine's mean output length is reported, in target SentencePiece pieces after
  re-encoding its text). Random weights never learn to stop: the `</s>` logit gets a bias
  (--eos-bias; 4 gives outputs of about the source's length on Multi30k, 3 or less runs
  nearly all of them to the length limit, 4.5 or more ends them at once).

    python benchmarks/marian.py [--sentences 200] [--rounds 3] [--eos-bias 4] [--no-speed] \
        [--json-out benchmarks/results/marian.json]

A quick check of the script: --sentences 20 --rounds 1 --layers 2 --d-model 128.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
from peers import cpu_model  # benchmarks/ is on sys.path when this file runs as a script

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("TRANSDUCE_DATA", ROOT.parent / "shared" / "data"))
sys.path.insert(0, str(ROOT / "tests"))  # the MarianMT directory builder the tests use
from marian_dirs import make_marian_dir, read_lines  # noqa: E402


def by_limit(limits: list[int]) -> dict[int, list[int]]:
    """Sentence indices grouped by length limit: generate takes one limit per batch."""
    groups: dict[int, list[int]] = defaultdict(list)
    for i, limit in enumerate(limits):
        groups[limit].append(i)
    return groups


def hf_generate(model, tokenizer, texts: list[str], limits: list[int], **kw) -> list[list[int]]:
    """generate's output ids (no start token, cut before </s>) with each sentence's limit."""
    out: list[list[int]] = [[] for _ in texts]
    eos = model.config.eos_token_id
    for limit, rows in by_limit(limits).items():
        batch = tokenizer([texts[i] for i in rows], return_tensors="pt", padding=True)
        ids = model.generate(**batch, do_sample=False, max_new_tokens=limit, **kw)[:, 1:]
        for i, row in zip(rows, ids.tolist()):
            out[i] = row[:row.index(eos)] if eos in row else row
    return out


def fidelity(hf_dir: Path, model_dir: Path, src: list[str], ref: list[str],
             batch: int) -> dict:
    from transformers import MarianMTModel, MarianTokenizer

    from transduce.data.batching import collate
    from transduce.search import beam_search, greedy_search, max_lengths
    from transduce.translator import load_model

    hf = MarianMTModel.from_pretrained(hf_dir).eval()
    tokenizer = MarianTokenizer.from_pretrained(hf_dir)
    _, model, s, t = load_model(model_dir)
    model.eval()
    worst, greedy, beam, limits = 0.0, [], [], []
    for start in range(0, len(src), batch):
        b = collate([s.encode(x) for x in src[start:start + batch]],
                    [t.encode(x) for x in ref[start:start + batch]], t.vocab.pad_id,
                    t.vocab.start_id, t.vocab.eos_id, s.vocab.pad_id, s.vocab.eos_id)
        with torch.no_grad():
            ours = model(b.src_ids, b.src_mask, b.tgt_in)
            theirs = hf(input_ids=b.src_ids, attention_mask=b.src_mask.long(),
                        decoder_input_ids=b.tgt_in).logits
        real = b.tgt_out != t.vocab.pad_id
        worst = max(worst, float((ours - theirs)[real].abs().max()))
        limit = max_lengths(b.src_mask, 1.5, 10, 512)
        args = (model, b.src_ids, b.src_mask, t.vocab.start_id, t.vocab.eos_id, limit)
        greedy += [h.ids for h in greedy_search(*args)]
        beam += [hs[0].ids for hs in beam_search(*args, beam_size=4, alpha=0.0)]
        limits += limit.tolist()
    hf_greedy = hf_generate(hf, tokenizer, src, limits, num_beams=1)
    hf_beam = hf_generate(hf, tokenizer, src, limits, num_beams=4, length_penalty=0.0,
                          early_stopping=True)
    return {"max_abs_logit_diff": worst, "sentences": len(src),
            "greedy_identical": sum(a == b for a, b in zip(greedy, hf_greedy)),
            "beam4_identical": sum(a == b for a, b in zip(beam, hf_beam)),
            "ended_before_limit": sum(len(g) + 1 < lim for g, lim in zip(greedy, limits)),
            "mean_output_tokens": round(sum(len(g) for g in greedy) / max(len(greedy), 1), 1),
            "mean_source_tokens": round(sum(len(s.encode(x)) for x in src) / max(len(src), 1),
                                        1)}


def round_trips(hf_dir: Path, model_dir: Path, work: Path, src: list[str]) -> dict:
    from transformers import MarianMTModel, MarianTokenizer

    from transduce.ct2 import export
    from transduce.hf.marian_export import export_marian
    from transduce.translator import Translator

    ours = Translator.load(model_dir)
    d = ours.decode
    limits = [int((len(ours.src.encode(x)) + 1) * d.max_len_ratio) + d.max_len_offset
              for x in src]
    greedy = [r.text for r in ours.translate(src, beam_size=1)]
    back = export_marian(model_dir, work / "exported-hf", force=True)
    tokenizer = MarianTokenizer.from_pretrained(back)
    hf_back = hf_generate(MarianMTModel.from_pretrained(back).eval(), tokenizer, src, limits,
                          num_beams=1)
    ct2 = Translator.load(export(model_dir, work / "ct2", force=True))
    ct2_greedy = []  # one sentence per call: CTranslate2's length limit is the batch's
    for x in src:
        ct2_greedy += [r.text for r in ct2.translate([x], beam_size=1)]
    hf_orig = hf_generate(MarianMTModel.from_pretrained(hf_dir).eval(),
                          MarianTokenizer.from_pretrained(hf_dir), src, limits, num_beams=1)
    decode = tokenizer.decode
    return {
        "transduce_to_hf_greedy_identical": sum(
            a == decode(b, skip_special_tokens=True) for a, b in zip(greedy, hf_back)),
        "hf_to_transduce_to_ct2_greedy_identical": sum(
            a == decode(b, skip_special_tokens=True) for a, b in zip(ct2_greedy, hf_orig)),
        "sentences": len(src)}


def speed(hf_dir: Path, model_dir: Path, work: Path, src: list[str], beam: int, batch: int,
          rounds: int) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Sentences/s of each engine in each round, and the mean length of its outputs in
    target tokens (int8 engines change the random model's outputs, and so their length)."""
    from transformers import MarianMTModel, MarianTokenizer

    from transduce.translator import Translator

    ct2_dir = work / "ct2"  # written by round_trips
    engines: dict[str, Callable[[], list[str]]] = {}
    for name, translator in (("transduce torch", Translator.load(model_dir)),
                             ("transduce int8", Translator.load(model_dir, quantize="int8")),
                             ("transduce ctranslate2", Translator.load(ct2_dir)),
                             ("transduce ctranslate2 int8",
                              Translator.load(ct2_dir, quantize="int8"))):
        translator.decode = translator.decode.model_copy(update={"length_penalty": 0.0})
        engines[name] = (lambda tr=translator: [r.text for r in tr.translate(
            src, beam_size=beam, batch_size=batch)])
    hf = MarianMTModel.from_pretrained(hf_dir).eval()
    tokenizer = MarianTokenizer.from_pretrained(hf_dir)
    d = Translator.load(model_dir).decode

    # Sorted by length into batches, as transduce's Translator does (less padding, and a
    # batch's length limit close to each of its sentences' own).
    by_length = sorted(src, key=lambda x: len(tokenizer(x).input_ids))

    def transformers_generate() -> list[str]:
        out = []
        for start in range(0, len(by_length), batch):
            enc = tokenizer(by_length[start:start + batch], return_tensors="pt", padding=True)
            limit = int(int(enc.attention_mask.sum(1).max()) * d.max_len_ratio) + \
                d.max_len_offset
            with torch.no_grad():
                ids = hf.generate(**enc, num_beams=beam, max_new_tokens=limit,
                                  length_penalty=0.0, early_stopping=True)
            out += tokenizer.batch_decode(ids, skip_special_tokens=True)
        return out

    engines["transformers generate"] = transformers_generate
    times: dict[str, list[float]] = {name: [] for name in engines}
    lengths = {}
    for name, fn in engines.items():  # warm-up
        outputs = tokenizer(text_target=fn()).input_ids  # each ends with </s>
        lengths[name] = round(sum(len(x) - 1 for x in outputs) / len(outputs), 1)
    for r in range(rounds):
        for name in (list(engines) if r % 2 == 0 else list(engines)[::-1]):
            tick = time.perf_counter()
            engines[name]()
            times[name].append(round(len(src) / (time.perf_counter() - tick), 2))
        print(f"round {r + 1}/{rounds}: " + ", ".join(f"{n} {v[-1]:.1f}"
                                                     for n, v in times.items()), flush=True)
    return times, lengths


def table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sentences", type=int, default=200, help="Multi30k test sentences")
    p.add_argument("--layers", type=int, default=6, help="encoder and decoder layers each")
    p.add_argument("--d-model", type=int, default=512)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--ff", type=int, default=2048)
    p.add_argument("--spm-size", type=int, default=4400,
                   help="pieces per SentencePiece model (the shared vocabulary is ~8k)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--eos-bias", type=float, default=4.0,
                   help="final logits bias of </s> in the random model: higher ends outputs "
                   "sooner (random weights otherwise run to the length limit)")
    p.add_argument("--no-speed", action="store_true", help="fidelity and round trips only")
    p.add_argument("--work", type=Path, default=None, help="folder for the models (default: "
                   "a temporary one)")
    p.add_argument("--json-out", type=Path, default=ROOT / "benchmarks/results/marian.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from transduce.hf.marian_import import import_marian

    m30k = DATA / "multi30k"
    if not (m30k / "train.en.gz").is_file():
        p.error(f"Multi30k not found under {DATA}; set TRANSDUCE_DATA")
    work = args.work or Path(tempfile.mkdtemp(prefix="transduce-marian-"))
    tick = time.time()
    en, de = read_lines(m30k / "train.en.gz", 29000), read_lines(m30k / "train.de.gz", 29000)
    hf_dir = make_marian_dir(work / "hf", en, de, vocab_size=args.spm_size,
                             d_model=args.d_model, layers=args.layers, heads=args.heads,
                             ff=args.ff, init_std=0.05, eos_bias=args.eos_bias)
    model_dir = import_marian(hf_dir, work / "transduce", force=True)
    vocab = len(json.loads((hf_dir / "vocab.json").read_text(encoding="utf-8")))
    print(f"built and imported the MarianMT model in {time.time() - tick:.0f} s "
          f"(vocabulary {vocab:,}) -> {work}", flush=True)
    src = read_lines(m30k / "test_2016_flickr.en.gz", args.sentences)
    ref = read_lines(m30k / "test_2016_flickr.de.gz", args.sentences)
    fid = fidelity(hf_dir, model_dir, src, ref, args.batch_size)
    trips = round_trips(hf_dir, model_dir, work, src)
    n = len(src)
    rows = [("max |logit diff| (teacher forcing)", f"{fid['max_abs_logit_diff']:.2e}"),
            ("greedy = generate", f"{fid['greedy_identical']}/{n}"),
            ("beam 4 = generate (length_penalty 0)", f"{fid['beam4_identical']}/{n}"),
            ("outputs ended before the length limit", f"{fid['ended_before_limit']}/{n}"),
            ("mean tokens, output (greedy) / source",
             f"{fid['mean_output_tokens']} / {fid['mean_source_tokens']}"),
            ("transduce -> HF export: transformers greedy = transduce greedy",
             f"{trips['transduce_to_hf_greedy_identical']}/{n}"),
            ("HF -> transduce -> CT2 export: greedy = transformers greedy",
             f"{trips['hf_to_transduce_to_ct2_greedy_identical']}/{n}")]
    times, lengths = ({}, {}) if args.no_speed else speed(
        hf_dir, model_dir, work, src, args.beam, args.batch_size, args.rounds)
    base = times.get("transformers generate")
    for name, values in times.items():
        ratio = statistics.median(a / b for a, b in zip(values, base)) if base else 0.0
        rows.append((f"{name} (sentences/s, median)",
                     f"{statistics.median(values):.1f}  ({ratio:.2f}x transformers; "
                     f"outputs {lengths[name]} tokens)"))
    print(table(rows))
    meta = {"sentences": n, "eos_bias": args.eos_bias, "layers": args.layers,
            "d_model": args.d_model, "heads": args.heads, "ff": args.ff, "vocab": vocab,
            "threads": args.threads, "beam": args.beam,
            "batch_size": args.batch_size, "rounds": args.rounds, "cpu": cpu_model(),
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%dT%H:%M:%S")}
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps({"meta": meta, "fidelity": fid, "round_trips": trips,
                                         "sentences_per_s": times,
                                         "mean_output_tokens": lengths}, indent=1) + "\n",
                             encoding="utf-8")
    print(f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
