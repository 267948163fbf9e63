#!/usr/bin/env python3
"""Does transduce run on CUDA? One timed pass over training, decoding, export and torchrun.

Runs, in order, each step timed, every result written to one JSON file and printed as a
table at the end:

1. environment: torch and CUDA versions, GPUs, bf16 support, CPU model, CTranslate2.
2. train: `configs/multi30k_transformer.yaml` on CUDA with bf16 autocast through the CLI,
   validating on test_2016_flickr, for tokens/s and the time to 35 BLEU (greedy).
3. decode_torch: beam-5 decoding of test_2016_flickr with that model on CUDA (PyTorch).
4. export: `transduce export` of that model to CTranslate2.
5. decode_ct2: beam-5 decoding of the export on CUDA (CTranslate2).
6. torchrun: a 2-process `torch.distributed.run` training run: NCCL on CUDA with >= 2 GPUs;
   with fewer, gloo on CPU (two NCCL ranks cannot share one GPU: rank 1 would ask for
   cuda:1), as the JSON says.

A failing step records its error (the end of its stderr) and the steps that do not depend
on it still run; the exit code is 1 if any step failed. The whole run fits --budget-minutes
(default 8): every subprocess gets a timeout from what is left, keeping a minimum for the
steps after it, and the training time (train.max_minutes) shrinks to fit.

    .venv/bin/python benchmarks/gpu_check.py                  # on the GPU machine
    .venv/bin/python benchmarks/gpu_check.py --dry-run        # same steps, CPU, tiny: ~1 min

--dry-run runs every step with the same commands on CPU (bf16 autocast there too) with a
1+1-layer d_model 64 model, 2,000 training pairs, 30 updates and the first 50 test
sentences; its BLEU means nothing. Logs of every subprocess go to --work-dir (default: a new
temporary folder); the JSON to --json-out (default benchmarks/results/gpu_check.json). The
data is read from --data-dir (default $TRANSDUCE_DATA, else ../shared/data).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import cpu_model  # benchmarks/ is not a package: imported from sys.path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "multi30k_transformer.yaml"
MODEL_FILE = "model.safetensors"  # transduce.training.checkpoint.MODEL_FILE
LOG_FILE = "train_log.jsonl"  # transduce.training.trainer.LOG_FILE
TARGET_BLEU = 35.0
STEPS = ("environment", "train", "decode_torch", "export", "decode_ct2", "torchrun")
MIN_STEP_S = 5.0  # a step with less time than this left is not started
TERM_GRACE_S = 20.0  # after SIGTERM at a timeout (the trainer checkpoints), before SIGKILL
DDP_ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK",
           "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID")

# The GPU training recipe. The CPU recipe's 2,048-token batches leave an H200 idle (a 3+3
# layer d_model 256 model is bound by kernel launches, not arithmetic, at that size), so
# batches are 4x larger: ~60 updates per Multi30k epoch, so that even a slow 100 ms/step
# budget of 2.5 minutes is ~25 epochs, where the CPU recipe reached 35.6 BLEU after ~7. The
# peak lr (2e-3) and warmup (300 updates, ~5 epochs here) stay as they are: 2e-3 is already
# high for Adam on a Transformer, and a bigger lr for the bigger batch (sqrt scaling: 4e-3)
# is a tuning gamble that this first check should not take.
GPU_BATCH_TOKENS = 8192
GPU_VALID_EVERY = 200  # ~3 epochs; each validation decodes the 1,000 test sentences greedily
GPU_TRAIN_MINUTES = 2.5

# Minimum seconds kept for each step while the ones before it run, and most it may take.
GPU_RESERVE = {"environment": 20, "train": 120, "decode_torch": 45, "export": 30,
               "decode_ct2": 30, "torchrun": 90}
GPU_CAP = {"environment": 60, "train": 600, "decode_torch": 120, "export": 90,
           "decode_ct2": 90, "torchrun": 180}
DRY_RESERVE = {"environment": 15, "train": 30, "decode_torch": 15, "export": 10,
               "decode_ct2": 10, "torchrun": 40}
DRY_CAP = {"environment": 60, "train": 240, "decode_torch": 90, "export": 90,
           "decode_ct2": 90, "torchrun": 180}
# One thread: for a model this small it is as fast, and steadier on a shared machine.
DRY_SIZES = ["model.encoder_layers=1", "model.decoder_layers=1", "model.hidden_size=64",
             "model.emb_dim=64", "model.ff_size=128", "model.max_positions=128",
             "tokenizer.vocab_size=500", "data.max_train_pairs=2000", "train.threads=1"]
DRY_TEST_SENTENCES = 50

ENV_PROBE = """
import json, torch
cuda = torch.cuda.is_available()
info = {"torch": torch.__version__, "torch_cuda": torch.version.cuda, "cuda_available": cuda,
        "gpus": torch.cuda.device_count() if cuda else 0,
        "device_name": torch.cuda.get_device_name(0) if cuda else None,
        "capability": list(torch.cuda.get_device_capability(0)) if cuda else None,
        "bf16_supported": torch.cuda.is_bf16_supported() if cuda else None,
        "torch_threads": torch.get_num_threads()}
try:
    import ctranslate2
    info["ctranslate2"] = ctranslate2.__version__
    info["ctranslate2_cuda_devices"] = ctranslate2.get_cuda_device_count()
except Exception as e:
    info["ctranslate2_error"] = repr(e)
print(json.dumps(info))
"""


class StepError(Exception):
    """A step failed in an expected way; the message, and what it measured before it
    failed, go into the JSON."""

    def __init__(self, message: str, result: dict[str, Any] | None = None):
        super().__init__(message)
        self.result = result or {}


@dataclass
class Step:
    ok: bool = False
    skipped: bool = False
    seconds: float = 0.0
    error: str | None = None
    result: dict[str, Any] = field(default_factory=dict)


@dataclass
class Proc:
    rc: int
    stdout: str
    stderr: str
    wall_s: float
    timed_out: bool
    command: str


@dataclass
class Plan:
    """What differs between the GPU run and --dry-run; everything else is shared."""

    dry_run: bool
    device: str
    precision: str
    train_minutes: float
    batch_tokens: int
    valid_every: int
    reserve: dict[str, float]
    cap: dict[str, float]
    sizes: list[str]  # --set overrides for model and data sizes (dry-run only)
    train_max_steps: int | None  # besides train.max_minutes (dry-run only)
    warmup: int | None  # train.scheduler.warmup, if not the recipe's
    startup_s: float  # training's start-up, final validation and save, beside max_minutes


class Budget:
    """The wall-clock budget of the whole script."""

    def __init__(self, total_s: float, reserve: dict[str, float], cap: dict[str, float]):
        self.start = time.monotonic()
        self.total_s = total_s
        self.reserve, self.cap = reserve, cap

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def timeout(self, step: str) -> float:
        """Seconds `step` may take: its cap, or what is left once the minimum of every later
        step is kept aside. Raises StepError when that is too little to start."""
        later = sum(self.reserve[s] for s in STEPS[STEPS.index(step) + 1:])
        left = self.total_s - self.elapsed() - later
        if left < MIN_STEP_S:
            raise StepError(f"out of budget: {left:.0f} s left for {step} after keeping "
                            f"{later:.0f} s for the later steps")
        return min(self.cap[step], left)


@dataclass
class Context:
    args: argparse.Namespace
    plan: Plan
    budget: Budget
    work: Path
    data: Path
    env: dict[str, str]
    gpus: int = 0
    test_src: Path | None = None
    test_ref: Path | None = None
    test_error: str | None = None  # why there is no test set


# ---- subprocesses -----------------------------------------------------------------------

def _stop(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM to the process group (the trainer checkpoints and exits; torchrun passes it
    on), then SIGKILL after `grace` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_command(cmd: list[str], log: Path, timeout: float, env: dict[str, str]) -> Proc:
    """Run `cmd` in the repository root with stdout/stderr in log.out/log.err."""
    out_path, err_path = log.with_suffix(".out"), log.with_suffix(".err")
    tick = time.monotonic()
    timed_out = False
    with open(out_path, "w", encoding="utf-8") as out, open(err_path, "w", encoding="utf-8") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _stop(proc, TERM_GRACE_S)
        except BaseException:
            _stop(proc, 2.0)
            raise
    return Proc(proc.returncode if proc.returncode is not None else -9, read_text(out_path),
                read_text(err_path), time.monotonic() - tick, timed_out, shlex.join(cmd))


def read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def tail(text: str, lines: int = 15, chars: int = 3000) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])[-chars:]


def failure(proc: Proc) -> str:
    """What went wrong: the last line of output first (the table shows only it), then the
    command and the end of its stderr (or stdout)."""
    what = f"timed out after {proc.wall_s:.0f} s" if proc.timed_out else f"exit code {proc.rc}"
    end = tail(proc.stderr) or tail(proc.stdout)
    last = end.splitlines()[-1] if end else "no output"
    return f"{what}: {last}\n$ {proc.command}\n{end}"


def check(proc: Proc) -> Proc:
    if proc.rc != 0 or proc.timed_out:
        raise StepError(failure(proc))
    return proc


def last_json(text: str) -> dict[str, Any]:
    """The last line of `text` that is a JSON object."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise StepError(f"no JSON object in the output:\n{tail(text)}")


def transduce(ctx: Context, *args: str) -> list[str]:
    return [ctx.args.python, "-m", "transduce", *args]


def sets(overrides: list[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


def read_log(model_dir: Path) -> list[dict[str, Any]]:
    path = model_dir / LOG_FILE
    if not path.is_file():
        raise StepError(f"no training log at {path}")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---- steps ------------------------------------------------------------------------------

def step_environment(ctx: Context) -> dict[str, Any]:
    proc = check(run_command([ctx.args.python, "-c", ENV_PROBE], ctx.work / "environment",
                             ctx.budget.timeout("environment"), ctx.env))
    info = last_json(proc.stdout)
    ctx.gpus = int(info.get("gpus") or 0)
    info.update(cpu_model=cpu_model(), cpu_count=os.cpu_count(), python=ctx.args.python,
                dry_run=ctx.plan.dry_run)
    if not ctx.plan.dry_run and not info["cuda_available"]:
        raise StepError(f"CUDA is not available to torch {info['torch']}", info)
    return info


def prepare_decode_set(ctx: Context) -> None:
    """The validation and decoding set: test_2016_flickr, or its first sentences in
    --dry-run. A problem is kept in ctx.test_error for the steps that need the set."""
    src = ctx.data / "multi30k" / "test_2016_flickr.en.gz"
    ref = ctx.data / "multi30k" / "test_2016_flickr.de.gz"
    if not src.is_file() or not ref.is_file():
        ctx.test_error = f"test set not found: {src}, {ref} (set --data-dir or TRANSDUCE_DATA)"
        return
    if not ctx.plan.dry_run:
        ctx.test_src, ctx.test_ref = src, ref
        return
    parts = ctx.work / "data" / "test.en", ctx.work / "data" / "test.de"
    parts[0].parent.mkdir(parents=True, exist_ok=True)
    for full, part in ((src, parts[0]), (ref, parts[1])):
        with gzip.open(full, "rt", encoding="utf-8") as f:
            lines = [line for _, line in zip(range(DRY_TEST_SENTENCES), f)]
        part.write_text("".join(lines), encoding="utf-8")
    ctx.test_src, ctx.test_ref = parts


def decode_set(ctx: Context) -> tuple[Path, Path]:
    if ctx.test_src is None or ctx.test_ref is None:
        raise StepError(ctx.test_error or "no test set")
    return ctx.test_src, ctx.test_ref


def recipe_overrides(ctx: Context) -> list[str]:
    """Sizes, precision, batch and warmup: the same for training and the torchrun step."""
    p = ctx.plan
    out = [*p.sizes, f"train.precision={p.precision}", f"train.batch_tokens={p.batch_tokens}"]
    return out + ([f"train.scheduler.warmup={p.warmup}"] if p.warmup else [])


def train_overrides(ctx: Context, minutes: float) -> list[str]:
    p = ctx.plan
    src, ref = decode_set(ctx)
    steps = [f"train.max_steps={p.train_max_steps}"] if p.train_max_steps else []
    return [*recipe_overrides(ctx), f"train.device={p.device}",
            f"train.max_minutes={minutes:.3f}", *steps, f"train.valid_every={p.valid_every}",
            f"train.out_dir={ctx.work / 'model'}", f"data.valid_src={src}",
            f"data.valid_tgt={ref}"]


def first_at(log: list[dict[str, Any]], bleu: float) -> dict[str, Any] | None:
    return next((r for r in log if r.get("bleu", 0.0) >= bleu), None)


def step_train(ctx: Context) -> dict[str, Any]:
    timeout = ctx.budget.timeout("train")
    minutes = min(ctx.plan.train_minutes, (timeout - ctx.plan.startup_s) / 60)
    if minutes <= 0.05:
        raise StepError(f"out of budget: {timeout:.0f} s left for training")
    overrides = train_overrides(ctx, minutes)
    proc = run_command(transduce(ctx, "train", str(CONFIG), *sets(overrides)),
                       ctx.work / "train", timeout, ctx.env)
    log_path = ctx.work / "model" / LOG_FILE
    log = read_log(ctx.work / "model") if log_path.is_file() else []
    result = train_result(log, proc, minutes, overrides, log_path)
    if proc.rc != 0 or proc.timed_out:  # a timed-out trainer still saves its model
        raise StepError(failure(proc), result)
    if not log:
        raise StepError(f"training wrote no validation to {log_path}", result)
    return result


def train_result(log: list[dict[str, Any]], proc: Proc, minutes: float,
                 overrides: list[str], log_path: Path) -> dict[str, Any]:
    """Throughput and BLEU from the training log (BLEU: greedy, train.valid_beam 1)."""
    last = log[-1] if log else {}
    hit = first_at(log, TARGET_BLEU)
    return {"command": proc.command, "wall_s": round(proc.wall_s, 1), "max_minutes": minutes,
            "overrides": overrides, "steps": last.get("step"), "epochs": last.get("epoch"),
            "tgt_tokens": last.get("tgt_tokens"), "train_time_s": last.get("train_time_s"),
            "tokens_per_s": last.get("tokens_per_s"), "final_bleu_greedy": last.get("bleu"),
            "best_bleu_greedy": max((r.get("bleu", 0.0) for r in log), default=None),
            "target_bleu": TARGET_BLEU,
            "time_to_target_s": hit["elapsed_s"] if hit else None,
            "train_time_to_target_s": hit["train_time_s"] if hit else None,
            "step_at_target": hit["step"] if hit else None,
            "validations": [[r.get("step"), r.get("elapsed_s"), r.get("bleu")] for r in log],
            "log": str(log_path)}


def need_model(ctx: Context) -> Path:
    model = ctx.work / "model"
    if not (model / MODEL_FILE).is_file():
        raise StepError(f"skipped: the train step left no model ({model / MODEL_FILE})")
    return model


def decode(ctx: Context, model: Path, step: str, log_name: str = "",
           env: dict[str, str] | None = None) -> dict[str, Any]:
    """`transduce evaluate --beam 5 --json` on the test set; sentences/s from its timing of
    the translation alone (loading and scoring excluded)."""
    src, ref = decode_set(ctx)
    cmd = transduce(ctx, "evaluate", str(model), "--src", str(src), "--ref", str(ref),
                    "--beam", "5", "--device", ctx.plan.device, "--json")
    proc = check(run_command(cmd, ctx.work / (log_name or step), ctx.budget.timeout(step),
                             env or ctx.env))
    scores = last_json(proc.stdout)
    sentences, seconds = int(scores["sentences"]), float(scores["seconds"])
    return {"command": proc.command, "device": ctx.plan.device, "beam": 5,
            "sentences": sentences, "seconds": round(seconds, 3),
            "sentences_per_s": round(sentences / max(seconds, 1e-9), 2),
            "bleu": scores.get("bleu"), "chrf": scores.get("chrf"),
            "wall_s": round(proc.wall_s, 1)}


def step_decode_torch(ctx: Context) -> dict[str, Any]:
    return decode(ctx, need_model(ctx), "decode_torch")


def step_export(ctx: Context) -> dict[str, Any]:
    model = need_model(ctx)
    out = ctx.work / "export"
    proc = check(run_command(transduce(ctx, "export", str(model), str(out), "--force"),
                             ctx.work / "export", ctx.budget.timeout("export"), ctx.env))
    if not (out / "model.bin").is_file():
        raise StepError(f"export wrote no {out / 'model.bin'}:\n{tail(proc.stdout)}")
    return {"command": proc.command, "out_dir": str(out), "wall_s": round(proc.wall_s, 1),
            "model_bin_mb": round((out / "model.bin").stat().st_size / 2 ** 20, 1)}


def nvidia_lib_dirs() -> list[str]:
    """The lib folders of the nvidia-* wheels that a CUDA build of torch installs
    (site-packages/nvidia/*/lib), where CTranslate2 may find libcublas."""
    root = Path(sysconfig.get_paths()["purelib"]) / "nvidia"
    return sorted(str(p) for p in root.glob("*/lib") if p.is_dir()) if root.is_dir() else []


def step_decode_ct2(ctx: Context) -> dict[str, Any]:
    """CTranslate2Translator passes --device to ctranslate2.Translator(device=...); a CUDA
    failure that looks like a missing CUDA library is retried once with the nvidia wheels'
    lib folders on LD_LIBRARY_PATH, and the JSON says so."""
    export = ctx.work / "export"
    if not (export / "model.bin").is_file():
        raise StepError(f"skipped: the export step left no export ({export / 'model.bin'})")
    try:
        return decode(ctx, export, "decode_ct2")
    except StepError as e:
        dirs = nvidia_lib_dirs()
        if ctx.plan.device != "cuda" or not dirs or not re.search(r"lib\w*\.so|CUDA", str(e)):
            raise
        first = str(e)
    path = ":".join([*dirs, *filter(None, [ctx.env.get("LD_LIBRARY_PATH")])])
    try:
        result = decode(ctx, export, "decode_ct2", "decode_ct2_retry",
                        {**ctx.env, "LD_LIBRARY_PATH": path})
    except StepError as e:
        raise StepError(f"{first}\n-- retried with LD_LIBRARY_PATH={path}:\n{e}") from None
    return {**result, "ld_library_path_retry": path, "first_error": first}


def ddp_overrides(ctx: Context, device: str, steps: int) -> list[str]:
    """`steps` updates, one validation (on at most 100 sentences of the recipe's validation
    set; in --dry-run, 20 of the test subset). On CUDA, and in --dry-run, the sizes and
    recipe of the train step; gloo on the GPU machine's CPU gets the CPU recipe's batches and
    precision, and half the cores per process (torchrun sets OMP_NUM_THREADS=1)."""
    p = ctx.plan
    out = [f"train.device={device}", f"train.max_steps={steps}", f"train.valid_every={steps}",
           f"train.out_dir={ctx.work / 'torchrun'}",
           f"train.valid_max_sentences={20 if p.dry_run else 100}"]
    if device == "cuda" or p.dry_run:
        out = [*recipe_overrides(ctx), *out]
    if p.dry_run:
        src, ref = decode_set(ctx)
        out += [f"data.valid_src={src}", f"data.valid_tgt={ref}"]
    if device == "cpu":
        out.append(f"train.threads={max(1, min(8, (os.cpu_count() or 2) // 2))}")
    return out


def step_torchrun(ctx: Context) -> dict[str, Any]:
    device = "cuda" if ctx.gpus >= 2 and not ctx.plan.dry_run else "cpu"
    steps = 6 if ctx.plan.dry_run else (100 if device == "cuda" else 20)
    overrides = ddp_overrides(ctx, device, steps)
    env = {k: v for k, v in ctx.env.items() if k not in DDP_ENV}
    cmd = [ctx.args.python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", "-m", "transduce", "train", str(CONFIG), *sets(overrides)]
    proc = check(run_command(cmd, ctx.work / "torchrun", ctx.budget.timeout("torchrun"), env))
    if "2 processes" not in proc.stdout + proc.stderr:
        raise StepError(f"the trainer did not report 2 processes:\n{tail(proc.stdout)}")
    last = read_log(ctx.work / "torchrun")[-1]
    why = ("NCCL, one GPU per process" if device == "cuda" else
           "gloo on CPU: " + ("--dry-run" if ctx.plan.dry_run else
                              f"{ctx.gpus} GPU(s) visible; two NCCL ranks cannot share one"))
    return {"command": proc.command, "processes": 2, "device": device,
            "backend": "nccl" if device == "cuda" else "gloo", "why": why,
            "wall_s": round(proc.wall_s, 1), "steps": last.get("step"),
            "tgt_tokens": last.get("tgt_tokens"), "tokens_per_s": last.get("tokens_per_s"),
            "bleu_greedy": last.get("bleu"), "overrides": overrides}


# ---- running and reporting --------------------------------------------------------------

def run_step(ctx: Context, report: dict[str, Any], name: str,
             fn: Callable[[Context], dict[str, Any]]) -> None:
    step = Step()
    tick = time.monotonic()
    print(f"[{ctx.budget.elapsed():6.1f} s] {name} ...", flush=True)
    try:
        step.result = fn(ctx)
        step.ok = True
    except StepError as e:
        step.error, step.result = str(e), e.result
        step.skipped = step.error.startswith(("skipped", "out of budget"))
    except Exception as e:
        step.error = f"{type(e).__name__}: {e}\n{tail(traceback.format_exc())}"
    step.seconds = round(time.monotonic() - tick, 2)
    report["steps"][name] = asdict(step)
    status = "ok" if step.ok else "FAILED"
    print(f"[{ctx.budget.elapsed():6.1f} s] {name}: {status} in {step.seconds:.1f} s"
          + ("" if step.ok else f"\n    {str(step.error).splitlines()[0]}"), flush=True)
    write_json(ctx, report)


def write_json(ctx: Context, report: dict[str, Any]) -> None:
    report["total_s"] = round(ctx.budget.elapsed(), 1)
    report["ok"] = all(s["ok"] for s in report["steps"].values())
    out = Path(ctx.args.json_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def summary(name: str, r: dict[str, Any]) -> str:
    """One line of the table for a step that succeeded."""
    if name == "environment":
        gpu = f" {r['device_name']}" if r["device_name"] else ""
        return (f"torch {r['torch']} (CUDA {r['torch_cuda']}), {r['gpus']} GPU(s){gpu}, "
                f"bf16 {r['bf16_supported']}, "
                f"ct2 {r.get('ctranslate2', '?')}; CPU {r['cpu_model']} x{r['cpu_count']}")
    if name == "train":
        hit = r["time_to_target_s"]
        to = "not reached" if hit is None else f"{hit:.0f} s (train {r['train_time_to_target_s']}" \
            f" s, step {r['step_at_target']})"
        return (f"{r['tokens_per_s']:,.0f} tgt tok/s, {r['steps']} steps, BLEU greedy "
                f"{r['final_bleu_greedy']}; {TARGET_BLEU:g} BLEU: {to}")
    if name.startswith("decode"):
        return (f"{r['sentences_per_s']:.1f} sents/s beam 5 on {r['device']} "
                f"({r['sentences']} in {r['seconds']:.2f} s), BLEU {r['bleu']:.2f}")
    if name == "export":
        return f"{r['model_bin_mb']} MB model.bin in {r['out_dir']}"
    return (f"2 x {r['device']} ({r['backend']}), {r['steps']} steps, "
            f"{r['tokens_per_s']:,.0f} tgt tok/s, wall {r['wall_s']} s")


def print_table(report: dict[str, Any]) -> None:
    print(f"\n{'step':<13} {'ok':<4} {'time s':>7}  result")
    for name, s in report["steps"].items():
        try:
            text = summary(name, s["result"]) if s["ok"] else \
                f"{'' if s['skipped'] else 'FAILED: '}{str(s['error']).splitlines()[0]}"
        except (KeyError, TypeError, ValueError) as e:
            text = f"(no summary: {e!r})"
        print(f"{name:<13} {'yes' if s['ok'] else 'NO':<4} {s['seconds']:>7.1f}  {text}")
    print(f"total {report['total_s']:.1f} s of {report['budget_s']:.0f}; "
          f"{'all steps ok' if report['ok'] else 'SOME STEPS FAILED'}")


def make_plan(args: argparse.Namespace) -> Plan:
    if args.dry_run:
        return Plan(True, "cpu", "bf16", args.train_minutes or 1.0, args.batch_tokens or 1024,
                    args.valid_every or 10, DRY_RESERVE, DRY_CAP, DRY_SIZES,
                    train_max_steps=30, warmup=10, startup_s=60)
    return Plan(False, "cuda", "bf16", args.train_minutes or GPU_TRAIN_MINUTES,
                args.batch_tokens or GPU_BATCH_TOKENS, args.valid_every or GPU_VALID_EVERY,
                GPU_RESERVE, GPU_CAP, [], train_max_steps=None, warmup=None, startup_s=90)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, ~1 minute")
    p.add_argument("--budget-minutes", type=float, default=8.0, help="for the whole script")
    p.add_argument("--train-minutes", type=float, default=None,
                   help=f"train.max_minutes (default {GPU_TRAIN_MINUTES}; less if the budget "
                        f"needs it)")
    p.add_argument("--batch-tokens", type=int, default=None,
                   help=f"train.batch_tokens (default {GPU_BATCH_TOKENS})")
    p.add_argument("--valid-every", type=int, default=None,
                   help=f"train.valid_every (default {GPU_VALID_EVERY})")
    p.add_argument("--data-dir", default=os.environ.get("TRANSDUCE_DATA",
                                                        str(ROOT.parent / "shared" / "data")))
    p.add_argument("--work-dir", default=None, help="logs and models (default: a temp dir)")
    p.add_argument("--json-out", default=str(ROOT / "benchmarks" / "results" / "gpu_check.json"))
    p.add_argument("--python", default=sys.executable, help="interpreter with transduce")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = make_plan(args)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="gpu_check-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    data = Path(args.data_dir).resolve()
    env = {**os.environ, "TRANSDUCE_DATA": str(data), "PYTHONUNBUFFERED": "1"}
    # transduce's prepared-data cache: in the work dir, so that the check starts from nothing
    # and leaves ~/.cache alone (a TRANSDUCE_CACHE already set is kept).
    env.setdefault("TRANSDUCE_CACHE", str(work / "cache"))
    reserve, cap = plan.reserve, plan.cap
    ctx = Context(args, plan, Budget(args.budget_minutes * 60, reserve, cap), work, data, env)
    report: dict[str, Any] = {"script": "benchmarks/gpu_check.py", "dry_run": plan.dry_run,
                              "budget_s": args.budget_minutes * 60, "work_dir": str(work),
                              "data_dir": str(data), "started": time.strftime("%FT%T%z"),
                              "steps": {}}
    print(f"gpu_check: work dir {work}, budget {args.budget_minutes:g} min"
          f"{', dry run on CPU' if plan.dry_run else ''}", flush=True)
    prepare_decode_set(ctx)
    for name in STEPS:
        run_step(ctx, report, name, globals()[f"step_{name}"])
    write_json(ctx, report)
    print_table(report)
    print(f"JSON: {args.json_out}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
