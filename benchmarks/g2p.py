"""The G2P recipe in transduce and in OpenNMT-py: the same CMUdict split, budget and model.

    transduce data cmudict /tmp/cmudict
    CMUDICT_DATA=/tmp/cmudict .venv/bin/python benchmarks/g2p.py            # ~65 minutes
    CMUDICT_DATA=/tmp/cmudict .venv/bin/python benchmarks/g2p.py --systems onmt

transduce trains configs/g2p_cmudict.yaml as a user would, its learning rate decaying to 0
at the end of --minutes. OpenNMT-py 3.5.1 (the venv of peers.py) trains the same model (a
2-layer bidirectional LSTM encoder of 384, an LSTM decoder of 384 with Luong general
attention and no input feeding, embeddings of 128, dropout 0.2, label smoothing 0.1, Adam
2e-3, 2,048-token batches, gradient norm clipped at 5) for --minutes of its training loop.
Two differences, which OpenNMT-py imposes: the decoder has 2 layers, not 1 (each starts
from the encoder layer of the same depth), and the output layer is not tied to the target
embeddings (it ties only equal sizes). It is stopped with SIGTERM and its last checkpoint
decodes the test split. Its learning rate cannot decay over a wall-clock budget: it halves
every --decay-steps updates from --start-decay (OpenNMT-py's step decay; the defaults
start at ~60% of the updates it made in 30 minutes on a 2-core Xeon).

Word and phoneme error rates for both come from transduce.evaluate, as in `transduce
evaluate`: all pronunciations of a word are references. Prints a table and writes JSON
(--json-out). Run it alone on the machine: it times training.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import (  # benchmarks/ is not a package: imported from sys.path
    HUGE_STEPS,
    ONMT_ENV,
    ONMT_VENV,
    TrainJob,
    cpu_model,
    ensure_venv,
    latest_onmt_checkpoint,
    onmt_step,
    package_version,
    parse_onmt_log,
    read_lines,
    run_budgeted,
    run_checked,
    thread_env,
    write_config,
    write_lines,
)

from transduce.evaluate import evaluate, split_refs

ROOT = Path(__file__).resolve().parent.parent
METRICS = ["sentence_error_rate", "token_error_rate"]


def chars(word: str) -> str:
    """A word as OpenNMT-py reads it: one token per character (transduce's char tokenizer)."""
    return " ".join(word.strip())


def vocab_file(path: Path, lines: list[str]) -> Path:
    counts = Counter(token for line in lines for token in line.split())
    write_lines(path, [f"{token}\t{n}" for token, n in counts.most_common()])
    return path


def prepare(data: Path, work: Path) -> dict[str, Path]:
    """Sources split into characters; targets as the split has them (one pronunciation a line)."""
    src = [chars(w) for w in read_lines(data / "train.src")]
    tgt = read_lines(data / "train.tgt")
    files = {"train.src": work / "train.src", "train.tgt": work / "train.tgt",
             "test.src": work / "test.src"}
    write_lines(files["train.src"], src)
    write_lines(files["train.tgt"], tgt)
    write_lines(files["test.src"], [chars(w) for w in read_lines(data / "test.src")])
    files["src.vocab"] = vocab_file(work / "src.vocab", src)
    files["tgt.vocab"] = vocab_file(work / "tgt.vocab", tgt)
    return files


def onmt_config(files: dict[str, Path], run_dir: Path, args: argparse.Namespace) -> dict:
    return {
        "src_vocab": str(files["src.vocab"]), "tgt_vocab": str(files["tgt.vocab"]),
        "data": {"corpus_1": {"path_src": str(files["train.src"]),
                              "path_tgt": str(files["train.tgt"])}},
        "encoder_type": "brnn", "decoder_type": "rnn", "rnn_type": "LSTM",
        "enc_layers": 2, "dec_layers": 2,  # each starts from the encoder layer of its depth
        "hidden_size": 384,
        "word_vec_size": 128, "global_attention": "general", "input_feed": 0,
        "share_decoder_embeddings": False, "dropout": [0.2], "label_smoothing": 0.1,
        "optim": "adam", "learning_rate": 0.002, "max_grad_norm": 5.0,
        "start_decay_steps": args.start_decay, "decay_steps": args.decay_steps,
        "learning_rate_decay": 0.5,
        "batch_type": "tokens", "batch_size": 2048, "num_workers": 0, "bucket_size": 16384,
        "train_steps": HUGE_STEPS, "valid_steps": HUGE_STEPS, "report_every": 100,
        "save_model": str(run_dir / "model"), "save_checkpoint_steps": args.ckpt_steps,
        "keep_checkpoint": 2, "seed": 1234,
    }


def score(args: argparse.Namespace, hyps: list[str]) -> dict[str, float]:
    refs = [split_refs(line) for line in read_lines(args.data / "test.tgt")]
    values = evaluate(METRICS, hyps, refs).values
    return {"wer": values["sentence_error_rate"], "per": values["token_error_rate"]}


def run_transduce(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The recipe as a user runs it, its linear decay ending with --minutes."""
    run_dir = work / "transduce"
    shutil.rmtree(run_dir, ignore_errors=True)
    env = thread_env(args.threads, {"CMUDICT_DATA": str(args.data.resolve())})
    cli = [sys.executable, "-m", "transduce"]
    job = TrainJob(cmd=[*cli, "train", str(ROOT / "configs/g2p_cmudict.yaml"),
                        "--set", f"train.out_dir={run_dir}", "--set", "train.progress=false",
                        "--set", f"train.max_minutes={args.minutes}",
                        "--set", f"train.threads={args.threads}"],
                   env=env, log_path=work / "transduce.train.log", start_marker=None,
                   stop_signal=None)
    (work / "transduce.train.log").unlink(missing_ok=True)
    run = run_budgeted(job, args.minutes * 60)
    last = json.loads(read_lines(run_dir / "train_log.jsonl")[-1])
    hyp_path = run_dir / f"test.beam{args.beam}.hyp"
    decode_s = run_checked([*cli, "evaluate", str(run_dir), "--src", str(args.data / "test.src"),
                            "--ref", str(args.data / "test.tgt"), "--beam", str(args.beam),
                            "--output", str(hyp_path)], work / "transduce.evaluate.log", env=env)
    return {"system": "transduce " + package_version(Path(sys.executable), "transduce"),
            "steps": last["step"], "eval_step": last["step"],
            "tgt_tokens_per_s": last["tokens_per_s"], "peak_rss_gib": run.peak_rss_gib,
            "decode_s": round(decode_s, 1), **score(args, read_lines(hyp_path))}


def run_onmt(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    bin_dir = ensure_venv(ONMT_VENV, args.peers_dir)
    run_dir = work / "onmt"
    for old in run_dir.glob("model_step_*.pt"):
        old.unlink()
    files = prepare(args.data, work)
    config = write_config(run_dir / "train.yaml", onmt_config(files, run_dir, args))
    env = thread_env(args.threads, ONMT_ENV)
    job = TrainJob(cmd=[str(bin_dir / "onmt_train"), "-config", str(config)], env=env,
                   log_path=run_dir / "train.log", start_marker="Start training loop",
                   stop_signal=signal.SIGTERM)
    (run_dir / "train.log").unlink(missing_ok=True)
    run = run_budgeted(job, args.minutes * 60)
    steps, rate = parse_onmt_log(job.log_path)
    checkpoint = latest_onmt_checkpoint(run_dir)
    hyp_path = run_dir / f"test.beam{args.beam}.hyp"
    decode_s = run_checked([str(bin_dir / "onmt_translate"), "-model", str(checkpoint),
                            "-src", str(files["test.src"]), "-output", str(hyp_path),
                            "-beam_size", str(args.beam), "-batch_size", "64", "-gpu", "-1"],
                           run_dir / "translate.log", env=env)
    return {"system": "OpenNMT-py " + package_version(bin_dir / "python", "OpenNMT-py"),
            "steps": steps, "eval_step": onmt_step(checkpoint), "tgt_tokens_per_s": rate,
            "peak_rss_gib": run.peak_rss_gib, "decode_s": round(decode_s, 1),
            **score(args, read_lines(hyp_path))}


SYSTEMS = {"transduce": run_transduce, "onmt": run_onmt}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path,
                   default=Path(os.environ.get("CMUDICT_DATA", "data/cmudict")))
    p.add_argument("--systems", default="transduce,onmt", help="comma-separated, in order")
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--start-decay", type=int, default=3500)
    p.add_argument("--decay-steps", type=int, default=700)
    p.add_argument("--ckpt-steps", type=int, default=500)
    p.add_argument("--peers-dir", type=Path, default=Path.home() / ".cache/transduce-peers")
    p.add_argument("--work-dir", type=Path, default=Path.home() / ".cache/transduce-bench/g2p")
    p.add_argument("--json-out", type=Path, default=Path("benchmarks/results/g2p.json"))
    args = p.parse_args()
    names = [n.strip() for n in args.systems.split(",") if n.strip()]
    unknown = sorted(set(names) - set(SYSTEMS))
    if unknown:
        p.error(f"unknown --systems {unknown}; choose from {sorted(SYSTEMS)}")
    args.work_dir.mkdir(parents=True, exist_ok=True)
    results = [{**SYSTEMS[name](args, args.work_dir), "minutes": args.minutes,
                "beam": args.beam} for name in names]
    print(f"CMUdict test, {args.minutes:g} minutes of training, {args.threads} threads, "
          f"{cpu_model()}, beam {args.beam}")
    print("| system | updates | tgt tok/s | peak RSS GiB | test WER | test PER |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['system']} | {r['eval_step']:,} | {r['tgt_tokens_per_s'] or 0:,.0f} | "
              f"{r['peak_rss_gib']:.2f} | {r['wer']:.1f} | {r['per']:.1f} |")
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps({"cpu": cpu_model(), "threads": args.threads,
                                         "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
