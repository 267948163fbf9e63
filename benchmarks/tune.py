"""Grid search with and without pruning on the Multi30k RNN recipe, then the tuned config
against the recipe's default for the same training time.

    .venv/bin/python benchmarks/tune.py                      # ~75 min on 2 cores
    .venv/bin/python benchmarks/tune.py --trial-steps 20 --final-minutes 1   # a smoke run

1. `transduce tune configs/multi30k_rnn.yaml` over a grid of 4 learning rates x 3
   dropouts, trials of --trial-steps updates validated 4 times (greedy, the first 300
   validation sentences): once with --pruner none, once with --pruner hyperband.
2. The best config of the pruned study and the recipe's default, each trained for
   --final-minutes, scored on test_2016_flickr with beam 5.
Prints a table and writes benchmarks/results/tune.json. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "multi30k_rnn.yaml"
SPACE = {"train.lr": [5e-4, 1e-3, 2e-3, 4e-3], "model.dropout": [0.1, 0.2, 0.3]}


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def transduce(*args: str, log: Path) -> float:
    """Run `python -m transduce ARGS`, output to `log`; returns the wall time."""
    tick = time.time()
    with open(log, "w") as f:
        run = subprocess.run([sys.executable, "-m", "transduce", *args], stdout=f,
                             stderr=subprocess.STDOUT, check=False)
    if run.returncode != 0:
        sys.exit(f"failed: transduce {' '.join(args)} (see {log})")
    return time.time() - tick


def study(work: Path, pruner: str, trial_steps: int, threads: int) -> dict:
    import optuna

    out = work / pruner
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    every = max(1, trial_steps // 4)
    wall = transduce("tune", str(RECIPE), "--space", str(work / "space.yaml"),
                     "--sampler", "grid", "--pruner", pruner, "--trial-steps", str(trial_steps),
                     "--out", str(out), "--set", f"train.valid_every={every}",
                     "--set", "train.valid_max_sentences=300", "--set", "train.progress=false",
                     "--set", f"train.threads={threads}", log=out / "tune.log")
    s = optuna.load_study(study_name="multi30k_rnn", storage=f"sqlite:///{out / 'study.db'}")
    states = [t.state.name.lower() for t in s.trials]
    best = s.best_trial
    return {"pruner": pruner, "wall_s": round(wall, 1), "trials": len(states),
            "completed": states.count("complete"), "pruned": states.count("pruned"),
            "best_bleu": round(best.value, 2), "best_params": best.params,
            "best_config": str(out / "best.yaml"),
            "updates": sum(t.user_attrs.get("steps", 0) for t in s.trials)}


def final(work: Path, name: str, config: Path, minutes: float, threads: int) -> dict:
    out = work / f"final-{name}"
    transduce("train", str(config), "--set", f"train.out_dir={out}",
              "--set", f"train.max_minutes={minutes}", "--set", "train.max_epochs=1000",
              "--set", f"train.threads={threads}", "--set", "train.progress=false",
              log=work / f"final-{name}.log")
    data = Path(os.environ.get("TRANSDUCE_DATA", ROOT.parent / "shared" / "data")) / "multi30k"
    result = subprocess.run([sys.executable, "-m", "transduce", "evaluate", str(out),
                             "--src", str(data / "test_2016_flickr.en.gz"),
                             "--ref", str(data / "test_2016_flickr.de.gz"), "--beam", "5",
                             "--json", "--metrics", "bleu,chrf"],
                            capture_output=True, text=True, check=True)
    scores = json.loads(result.stdout)
    steps = [json.loads(x)["step"] for x in (out / "train_log.jsonl").read_text().splitlines()]
    return {"name": name, "config": str(config), "minutes": minutes,
            "test_bleu": round(scores["bleu"], 2), "test_chrf": round(scores["chrf"], 2),
            "updates": steps[-1] if steps else 0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trial-steps", type=int, default=240)
    p.add_argument("--final-minutes", type=float, default=20.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work-dir", default=str(Path.home() / ".cache" / "transduce-bench" / "tune"))
    p.add_argument("--json-out", default=str(ROOT / "benchmarks" / "results" / "tune.json"))
    args = p.parse_args()
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    (work / "space.yaml").write_text(yaml.safe_dump(SPACE))
    os.environ.setdefault("TRANSDUCE_CACHE", str(work / "cache"))
    transduce("prepare", str(RECIPE), log=work / "prepare.log")  # shared by both studies

    studies = [study(work, pruner, args.trial_steps, args.threads)
               for pruner in ("none", "hyperband")]
    unpruned, pruned = studies
    finals = [final(work, "tuned", Path(pruned["best_config"]), args.final_minutes,
                    args.threads),
              final(work, "default", RECIPE, args.final_minutes, args.threads)]

    print(f"\nCPU: {cpu_model()}, {args.threads} threads; grid {SPACE}; "
          f"trials of {args.trial_steps} updates")
    print(f"{'pruner':<10} {'wall min':>9} {'trials':>7} {'complete':>9} {'pruned':>7} "
          f"{'updates':>8} {'best BLEU':>10}  best params")
    for s in studies:
        print(f"{s['pruner']:<10} {s['wall_s'] / 60:>9.1f} {s['trials']:>7} "
              f"{s['completed']:>9} {s['pruned']:>7} {s['updates']:>8} "
              f"{s['best_bleu']:>10.2f}  {s['best_params']}")
    ratio = pruned["wall_s"] / unpruned["wall_s"]
    gap = unpruned["best_bleu"] - pruned["best_bleu"]
    print(f"pruned / unpruned wall time: {ratio:.2f} (target <= 0.60); best BLEU gap "
          f"{gap:.2f} (target <= 0.5)")
    print(f"\n{'config':<8} {'minutes':>8} {'updates':>8} {'test BLEU':>10} {'chrF':>6}")
    for f in finals:
        print(f"{f['name']:<8} {f['minutes']:>8.0f} {f['updates']:>8} {f['test_bleu']:>10.2f} "
              f"{f['test_chrf']:>6.2f}")
    Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json_out).write_text(json.dumps(
        {"cpu": cpu_model(), "threads": args.threads, "space": SPACE,
         "trial_steps": args.trial_steps, "studies": studies, "wall_ratio": round(ratio, 3),
         "best_bleu_gap": round(gap, 2), "finals": finals}, indent=1) + "\n")
    print(f"\nwrote {args.json_out}")


if __name__ == "__main__":
    main()
