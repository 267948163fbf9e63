"""Grid search with and without pruning on the Multi30k RNN recipe, then the tuned config
against the recipe's default for the same training time.

    .venv/bin/python benchmarks/tune.py                      # ~80 min on 2 cores
    .venv/bin/python benchmarks/tune.py --trial-steps 20 --final-minutes 1   # a smoke run
    .venv/bin/python benchmarks/tune.py --pruners asha --final-minutes 0     # one more pruner
    .venv/bin/python benchmarks/tune.py --pruners "" --final-seeds 7         # final runs only

1. `transduce tune configs/multi30k_rnn.yaml` over a grid of 4 learning rates x 3
   dropouts, trials of --trial-steps updates validated 4 times (greedy, the first 300
   validation sentences): once for each of --pruners (none and hyperband; also asha,
   median).
2. The best config of the pruned study and the recipe's default, each trained for
   --final-minutes once per --final-seeds, scored on test_2016_flickr with beam 5.
Prints a table and writes benchmarks/results/tune.json. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "multi30k_rnn.yaml"
DEFAULT_SEED = 1234  # train.seed's default, the seed of runs that name none
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


def final(work: Path, name: str, config: Path, minutes: float, threads: int, seed: int) -> dict:
    out = work / f"final-{name}-seed{seed}"
    transduce("train", str(config), "--set", f"train.out_dir={out}", "--set", f"train.seed={seed}",
              "--set", f"train.max_minutes={minutes}", "--set", "train.max_epochs=1000",
              "--set", f"train.threads={threads}", "--set", "train.progress=false",
              # the recipe's validation, not the short trials' (best.yaml keeps their --set)
              "--set", "train.valid_every=1000", "--set", "train.valid_max_sentences=null",
              log=work / f"final-{name}-seed{seed}.log")
    data = Path(os.environ.get("TRANSDUCE_DATA", ROOT.parent / "shared" / "data")) / "multi30k"
    result = subprocess.run([sys.executable, "-m", "transduce", "evaluate", str(out),
                             "--src", str(data / "test_2016_flickr.en.gz"),
                             "--ref", str(data / "test_2016_flickr.de.gz"), "--beam", "5",
                             "--json", "--metrics", "bleu,chrf"],
                            capture_output=True, text=True, check=True)
    scores = json.loads(result.stdout)
    steps = [json.loads(x)["step"] for x in (out / "train_log.jsonl").read_text().splitlines()]
    return {"name": name, "seed": seed, "config": str(config), "minutes": minutes,
            "test_bleu": round(scores["bleu"], 2), "test_chrf": round(scores["chrf"], 2),
            "updates": steps[-1] if steps else 0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # 240 updates left validation BLEU at 0.5-2 on every trial (noise decided); 500 at 2-8
    p.add_argument("--trial-steps", type=int, default=500)
    p.add_argument("--pruners", default="none,hyperband",
                   help="studies to run; without 'none', the unpruned study of --json-out's "
                        "earlier run is the reference")
    p.add_argument("--final-minutes", type=float, default=20.0,
                   help="0: no final runs (keep those of --json-out's earlier run)")
    p.add_argument("--final-seeds", default=str(DEFAULT_SEED),
                   help="comma-separated train.seed values, one final run of each config per "
                        "seed; --json-out's earlier runs with other seeds are kept")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work-dir", default=str(Path.home() / ".cache" / "transduce-bench" / "tune"))
    p.add_argument("--json-out", default=str(ROOT / "benchmarks" / "results" / "tune.json"))
    args = p.parse_args()
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    (work / "space.yaml").write_text(yaml.safe_dump(SPACE))
    os.environ.setdefault("TRANSDUCE_CACHE", str(work / "cache"))
    transduce("prepare", str(RECIPE), log=work / "prepare.log")  # shared by the studies
    out = Path(args.json_out)
    earlier = json.loads(out.read_text()) if out.is_file() else {}
    studies = {s["pruner"]: s for s in earlier.get("studies", [])}
    for pruner in filter(None, args.pruners.split(",")):
        studies[pruner] = study(work, pruner, args.trial_steps, args.threads)
    finals = earlier.get("finals", [])
    if args.final_minutes:
        tuned = Path(studies["hyperband"]["best_config"])
        seeds = [int(x) for x in args.final_seeds.split(",")]
        finals = [f for f in finals if f.get("seed", DEFAULT_SEED) not in seeds]
        for seed in seeds:
            finals += [final(work, "tuned", tuned, args.final_minutes, args.threads, seed),
                       final(work, "default", RECIPE, args.final_minutes, args.threads, seed)]
    report(studies, finals, args.threads, args.trial_steps)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(
        {"cpu": cpu_model(), "threads": args.threads, "space": SPACE,
         "trial_steps": args.trial_steps, "studies": list(studies.values()),
         "finals": finals}, indent=1) + "\n")
    print(f"\nwrote {out}")


def report(studies: dict[str, dict], finals: list[dict], threads: int, trial_steps: int) -> None:
    unpruned = studies["none"]
    print(f"\nCPU: {cpu_model()}, {threads} threads; grid {SPACE}; "
          f"trials of {trial_steps} updates")
    print(f"{'pruner':<10} {'wall min':>9} {'ratio':>6} {'trials':>7} {'complete':>9} "
          f"{'pruned':>7} {'updates':>8} {'best BLEU':>10} {'gap':>5}  best params")
    for s in studies.values():
        s["wall_ratio"] = round(s["wall_s"] / unpruned["wall_s"], 3)
        s["best_bleu_gap"] = round(unpruned["best_bleu"] - s["best_bleu"], 2)
        print(f"{s['pruner']:<10} {s['wall_s'] / 60:>9.1f} {s['wall_ratio']:>6.2f} "
              f"{s['trials']:>7} {s['completed']:>9} {s['pruned']:>7} {s['updates']:>8} "
              f"{s['best_bleu']:>10.2f} {s['best_bleu_gap']:>5.2f}  {s['best_params']}")
    print("targets: ratio <= 0.60, gap <= 0.5 BLEU")
    print(f"\n{'config':<8} {'seed':>6} {'minutes':>8} {'updates':>8} {'test BLEU':>10} "
          f"{'chrF':>6}")
    for f in finals:
        print(f"{f['name']:<8} {f.get('seed', DEFAULT_SEED):>6} {f['minutes']:>8.0f} "
              f"{f['updates']:>8} {f['test_bleu']:>10.2f} {f['test_chrf']:>6.2f}")
    for name in ("tuned", "default"):
        bleu = [f["test_bleu"] for f in finals if f["name"] == name]
        if len(bleu) > 1:
            print(f"{name:<8} {'mean':>6} of {len(bleu)} seeds: test BLEU "
                  f"{statistics.mean(bleu):.2f} (spread {max(bleu) - min(bleu):.2f})")


if __name__ == "__main__":
    main()
