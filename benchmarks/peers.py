#!/usr/bin/env python3
"""Side-by-side benchmark of transduce against peer NMT toolkits on Multi30k en->de.

Systems (run one after another, same data, same joint SentencePiece vocabulary):

    onmt-rnn               OpenNMT-py 3.5.1, bi-LSTM + Luong attention
    onmt-transformer       OpenNMT-py 3.5.1, 3+3 layer pre-norm Transformer
    ctranslate2            CTranslate2 4.x decoding the onmt-transformer checkpoint
    joeynmt-transformer    JoeyNMT 2.3.0, 3+3 layer pre-norm Transformer
    transduce-rnn          configs/multi30k_rnn.yaml
    transduce-transformer  configs/multi30k_transformer.yaml
    transduce-int8         transduce-transformer's model decoded with int8 linear layers
    transduce-ct2          transduce-transformer's model exported to CTranslate2

Each peer lives in its own virtual environment under --peers-dir, created on first
use. Peers have no wall-clock stop, so they are given a huge step budget and are
stopped once --budget-minutes of training have passed (the clock starts when the
toolkit logs the start of its training loop); the last complete checkpoint is then
evaluated. transduce stops itself via ``train.max_minutes``. ``--decode-only`` skips
training and decodes the models that an earlier run left in --work-dir.

Usage (from the repository root; the interpreter needs sentencepiece and sacrebleu):

    .venv/bin/python benchmarks/peers.py --budget-minutes 20 --threads 2

This file only imports the standard library at module level so that it can also
run inside the peer virtual environments (see the hidden ``ct2-decode`` command).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gzip
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
TORCH_PIN = "torch==2.13.0"
ALL_SYSTEMS = (
    "onmt-rnn",
    "onmt-transformer",
    "ctranslate2",
    "joeynmt-transformer",
    "transduce-rnn",
    "transduce-transformer",
    "transduce-int8",
    "transduce-ct2",
)
BEAMS = (1, 5)
DECODE_BATCH = 64
SPM_VOCAB_SIZE = 8000
HUGE_STEPS = 10_000_000
STOP_GRACE_S = 180.0  # time a peer gets to exit (and save) after being signalled
TRANSDUCE_GRACE_S = 600.0  # transduce stops itself; allow start-up and the final save
STDERR_TAIL = 3000


# --------------------------------------------------------------------------- results


@dataclass
class TrainResult:
    """What one training run achieved within the budget."""

    steps: int | None  # last step the trainer reported
    eval_step: int | None  # step of the checkpoint that was evaluated
    tgt_tokens_per_s: float | None  # target tokens per second of training
    peak_rss_gib: float | None  # peak resident memory of the training process tree
    wall_s: float  # wall time of the whole training command
    startup_s: float | None  # time before the training loop started (not budgeted)


@dataclass
class DecodeResult:
    """Quality and speed of decoding the test set with one beam size."""

    beam: int
    bleu: float
    chrf: float
    sents_per_s: float
    tgt_tokens_per_s: float  # shared-SentencePiece pieces of the detokenized output
    decode_s: float  # timed part of decoding (model load excluded when possible), best run
    wall_s: float  # wall time of the whole decoding command
    load_excluded: bool
    decode_s_runs: list[float] = field(default_factory=list)  # every run (--decode-repeats)


@dataclass
class SystemResult:
    """Everything measured for one system; ``error`` is set when it failed."""

    system: str
    toolkit: str
    train: TrainResult | None = None
    decode: list[DecodeResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None


# --------------------------------------------------------------------------- helpers


class BenchError(RuntimeError):
    """A system failed; the message goes into the JSON and the run continues."""


def log(message: str) -> None:
    print(f"[peers {time.strftime('%H:%M:%S')}] {message}", flush=True)


def tail(path: Path, chars: int = STDERR_TAIL) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def thread_env(threads: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(threads)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def run_checked(cmd: Sequence[str], log_path: Path, env: dict[str, str] | None = None,
                stdin: Path | None = None, stdout: Path | None = None,
                cwd: Path | None = None) -> float:
    """Run a command to completion; stderr (and stdout unless redirected) go to log_path.

    Returns the wall time in seconds. Raises BenchError with the log tail on failure.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with contextlib.ExitStack() as files:
        log_file = files.enter_context(open(log_path, "ab"))
        log_file.write(f"$ {' '.join(map(str, cmd))}\n".encode())
        log_file.flush()
        stdin_file = files.enter_context(open(stdin, "rb")) if stdin else subprocess.DEVNULL
        stdout_file = files.enter_context(open(stdout, "wb")) if stdout else log_file
        proc = subprocess.run(list(map(str, cmd)), stdin=stdin_file, stdout=stdout_file,
                              stderr=log_file, env=env, cwd=cwd)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise BenchError(f"{cmd[0]} exited with {proc.returncode}; log {log_path}:\n"
                         f"{tail(log_path)}")
    return wall


def read_lines(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def write_lines(path: Path, lines: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)


def write_config(path: Path, config: dict[str, Any]) -> Path:
    """Write a YAML config. JSON is valid YAML, so no YAML library is needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def aggregate_rate(intervals: Sequence[tuple[float, float]]) -> float | None:
    """Overall rate from (amount, rate) intervals: total amount / total time."""
    amount = sum(a for a, r in intervals if r > 0)
    seconds = sum(a / r for a, r in intervals if r > 0)
    return amount / seconds if seconds > 0 else None


def zip_is_complete(path: Path) -> bool:
    """torch.save writes zip archives; a checkpoint cut off mid-write has no directory."""
    try:
        with zipfile.ZipFile(path) as archive:
            return bool(archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


# --------------------------------------------------------------------------- memory


def _parent_of(pid: str) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            parent = _parent_of(entry)
            if parent is not None:
                children.setdefault(parent, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class PeakMemoryMonitor:
    """Polls /proc for the summed RSS of a process tree; keeps the peak.

    The root's own high-water mark (VmHWM) is also read, so a short spike of the
    main process between two polls is not missed.
    """

    def __init__(self, root_pid: int, interval_s: float = 0.5):
        self.root_pid = root_pid
        self.interval_s = interval_s
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> PeakMemoryMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_gib(self) -> float:
        return self.peak_kib / 2**20

    def _poll(self) -> None:
        while not self._stop.is_set():
            tree = process_tree(self.root_pid)
            total = sum(status_kib(pid, "VmRSS") for pid in tree)
            self.peak_kib = max(self.peak_kib, total, status_kib(self.root_pid, "VmHWM"))
            self._stop.wait(self.interval_s)


# --------------------------------------------------------------------------- training


@dataclass
class TrainJob:
    """A training command and how to stop it at the budget."""

    cmd: list[str]
    env: dict[str, str]
    log_path: Path
    start_marker: str | None  # the budget clock starts when this appears in the log
    stop_signal: signal.Signals | None  # None: the trainer stops itself
    cwd: Path | None = None


@dataclass
class TrainRun:
    wall_s: float
    startup_s: float | None
    peak_rss_gib: float
    stopped_by_us: bool


def _log_contains(path: Path, marker: str) -> bool:
    try:
        return marker in path.read_text(errors="replace")
    except OSError:
        return False


def _terminate(proc: subprocess.Popen, sig: signal.Signals, grace_s: float) -> None:
    """Signal the trainer, give it grace_s to save and exit, then kill its group."""
    if proc.poll() is None:
        proc.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def run_budgeted(job: TrainJob, budget_s: float) -> TrainRun:
    """Run a trainer, stop it budget_s after its training loop starts, track memory."""
    job.log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(job.log_path, "ab") as log_file:
        log_file.write(f"$ {' '.join(job.cmd)}\n".encode())
        log_file.flush()
        proc = subprocess.Popen(job.cmd, stdout=log_file, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=job.env, cwd=job.cwd,
                                start_new_session=True)
    loop_start: float | None = None
    stopped = False
    with PeakMemoryMonitor(proc.pid) as memory:
        try:
            while proc.poll() is None:
                now = time.perf_counter()
                if loop_start is None and (job.start_marker is None
                                           or _log_contains(job.log_path, job.start_marker)):
                    loop_start = now
                if job.stop_signal is None:
                    if now - start > budget_s + TRANSDUCE_GRACE_S:
                        stopped = True
                        _terminate(proc, signal.SIGTERM, 30)
                elif loop_start is not None and now - loop_start >= budget_s:
                    stopped = True
                    _terminate(proc, job.stop_signal, STOP_GRACE_S)
                time.sleep(1.0)
        finally:
            if proc.poll() is None:
                _terminate(proc, signal.SIGKILL, 0)
    wall = time.perf_counter() - start
    if proc.returncode != 0 and not stopped:
        raise BenchError(f"training exited with {proc.returncode}; log {job.log_path}:\n"
                         f"{tail(job.log_path)}")
    startup = loop_start - start if loop_start is not None and job.start_marker else None
    return TrainRun(wall_s=wall, startup_s=startup, peak_rss_gib=memory.peak_gib,
                    stopped_by_us=stopped)


# --------------------------------------------------------------------------- data


@dataclass
class Data:
    """Raw and SentencePiece-encoded Multi30k files shared by all systems."""

    root: Path
    spm_model: Path
    raw: dict[str, Path]  # "train.en", "test.de", ... (test possibly truncated)
    pieces: dict[str, Path]  # same keys, whitespace-separated pieces
    vocab: Path  # one piece per line, SentencePiece specials excluded

    @property
    def test_refs(self) -> list[str]:
        return read_lines(self.raw["test.de"])


def _gunzip(src: Path, dst: Path, limit: int | None = None) -> None:
    with gzip.open(src, "rt", encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f]
    write_lines(dst, lines[:limit] if limit else lines)


def _train_spm(data_root: Path, train_en: Path, train_de: Path) -> Path:
    import sentencepiece as spm

    prefix = data_root / f"spm{SPM_VOCAB_SIZE}"
    model = prefix.with_suffix(".model")
    if model.exists():
        return model
    log(f"training joint SentencePiece unigram {SPM_VOCAB_SIZE} on train.en+train.de")
    spm.SentencePieceTrainer.train(
        input=f"{train_en},{train_de}", model_prefix=str(prefix), vocab_size=SPM_VOCAB_SIZE,
        model_type="unigram", character_coverage=1.0, num_threads=2,
        minloglevel=2, input_sentence_size=0)
    return model


def load_spm(model: Path) -> Any:
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=str(model))


def _encode_file(sp: Any, src: Path, dst: Path) -> None:
    write_lines(dst, [" ".join(sp.encode(line, out_type=str)) for line in read_lines(src)])


def _write_piece_vocab(sp: Any, dst: Path) -> None:
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    specials = {"<unk>", "<s>", "</s>", "<pad>"}
    write_lines(dst, [p for p in pieces if p not in specials])


def prepare_data(source_dir: Path, work_dir: Path, test_limit: int | None) -> Data:
    root = work_dir / "data"
    raw_dir, piece_dir = root / "raw", root / "pieces"
    raw: dict[str, Path] = {}
    names = {"train": "train", "val": "val", "test": "test_2016_flickr"}
    for split, stem in names.items():
        for lang in ("en", "de"):
            key, dst = f"{split}.{lang}", raw_dir / f"{split}.{lang}"
            limit = test_limit if split == "test" else None
            if split == "test" or not dst.exists():
                _gunzip(source_dir / f"{stem}.{lang}.gz", dst, limit)
            raw[key] = dst
    spm_model = _train_spm(root, raw["train.en"], raw["train.de"])
    sp = load_spm(spm_model)
    pieces = {key: piece_dir / key for key in raw}
    for key, src in raw.items():
        if key.startswith("test") or not pieces[key].exists():
            _encode_file(sp, src, pieces[key])
    vocab = root / "vocab.pieces.txt"
    _write_piece_vocab(sp, vocab)
    log(f"data ready in {root} ({len(read_lines(raw['test.en']))} test sentences)")
    return Data(root=root, spm_model=spm_model, raw=raw, pieces=pieces, vocab=vocab)


# --------------------------------------------------------------------------- venvs


@dataclass(frozen=True)
class VenvSpec:
    name: str
    pip_steps: tuple[tuple[str, ...], ...]  # each a list of `pip install` arguments


ONMT_VENV = VenvSpec("onmt", (
    (TORCH_PIN,),
    ("--no-deps", "opennmt-py==3.5.1"),
    ("configargparse", "ctranslate2>=4,<5", "pyonmttok>=1.37,<2", "rapidfuzz",
     "pyahocorasick", "spacy", "fasttext-wheel"),
))
# joeynmt 2.3.0 imports importlib_metadata without declaring it.
JOEY_VENV = VenvSpec("joeynmt", ((TORCH_PIN,), ("joeynmt==2.3.0", "importlib-metadata")))


def ensure_venv(spec: VenvSpec, peers_dir: Path) -> Path:
    """Create the venv and install its packages once; return its bin directory."""
    venv = peers_dir / spec.name
    stamp = venv / ".transduce-bench.json"
    wanted = json.dumps([list(step) for step in spec.pip_steps])
    if stamp.exists() and stamp.read_text() == wanted:
        return venv / "bin"
    log(f"setting up {venv} (pip; a few minutes)")
    setup_log = peers_dir / f"{spec.name}-setup.log"
    start = time.perf_counter()
    if not (venv / "bin" / "python").exists():
        run_checked([sys.executable, "-m", "venv", str(venv)], setup_log)
    for step in spec.pip_steps:
        run_checked([str(venv / "bin" / "pip"), "install", "--disable-pip-version-check",
                     *step], setup_log)
    stamp.write_text(wanted)
    log(f"{venv} ready in {time.perf_counter() - start:.0f}s")
    return venv / "bin"


def package_version(python: Path, dist: str) -> str:
    code = f"import importlib.metadata as m; print(m.version({dist!r}))"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    return out.stdout.strip() or "?"


# --------------------------------------------------------------------------- systems


@dataclass(frozen=True)
class Recipe:
    """Training hyperparameters of the Transformer systems, read from
    configs/multi30k_transformer.yaml (with --transduce-set overrides) so that the peers
    train with the same batch size, learning-rate schedule, dropout and smoothing."""

    batch_tokens: int
    peak_lr: float  # reached at the end of the linear warmup, then lr * sqrt(warmup / step)
    warmup: int
    dropout: float
    attention_dropout: float
    label_smoothing: float
    d_model: int

    @property
    def noam_factor(self) -> float:
        """The Noam schedule (OpenNMT-py, JoeyNMT) is factor * d^-0.5 * min(step^-0.5,
        step * warmup^-1.5): the same curve as inverse_sqrt with this factor."""
        return self.peak_lr * (self.d_model * self.warmup) ** 0.5


def transformer_recipe(overrides: Sequence[str]) -> Recipe:
    from transduce.config import load_config  # the transduce interpreter, never a peer venv

    cfg = load_config(REPO_ROOT / "configs" / "multi30k_transformer.yaml", list(overrides))
    sched = cfg.train.scheduler
    # The peers' CLIs have no decay tied to a wall-clock budget: with transduce's `linear`
    # they keep the Noam curve of the same warmup and peak.
    if sched.kind not in ("inverse_sqrt", "linear"):
        raise BenchError(f"peers can copy an inverse_sqrt or linear schedule only, "
                         f"not {sched.kind}")
    return Recipe(batch_tokens=cfg.train.batch_tokens, peak_lr=cfg.train.lr,
                  warmup=sched.warmup, dropout=cfg.model.dropout,
                  attention_dropout=cfg.model.attention_dropout,
                  label_smoothing=cfg.train.label_smoothing, d_model=cfg.model.hidden_size)


@dataclass
class Context:
    """Settings and shared state that every system needs."""

    data: Data
    work_dir: Path
    peers_dir: Path
    threads: int
    budget_s: float
    ckpt_steps: int
    transduce_python: Path
    transduce_overrides: list[str]  # extra `--set KEY=VALUE` for transduce train
    decode_repeats: int = 1  # decode the test set this many times per beam; keep the fastest
    decode_only: bool = False  # reuse the models of an earlier run in work_dir
    versions: dict[str, str] = field(default_factory=dict)
    _recipe: Recipe | None = None

    @property
    def recipe(self) -> Recipe:
        """The Transformer training recipe that every toolkit is given."""
        if self._recipe is None:
            self._recipe = transformer_recipe(self.transduce_overrides)
        return self._recipe

    def run_dir(self, system: str) -> Path:
        return self.work_dir / "runs" / system


@dataclass
class Translation:
    hyps: list[str]  # detokenized
    decode_s: float
    wall_s: float
    load_excluded: bool


class System:
    """A benchmarked system: optional setup, training within the budget, decoding."""

    name = ""
    toolkit = ""
    trains = True  # False: train() only prepares another system's model

    def setup(self, ctx: Context) -> None:
        pass

    def train(self, ctx: Context) -> TrainResult | None:
        raise NotImplementedError

    def translate(self, ctx: Context, beam: int) -> Translation:
        raise NotImplementedError

    def notes(self, ctx: Context) -> list[str]:
        return []


def _decode_pieces(ctx: Context, piece_lines: Sequence[str]) -> list[str]:
    sp = load_spm(ctx.data.spm_model)
    return [sp.decode_pieces(line.split()) for line in piece_lines]


# ----- OpenNMT-py


ONMT_COMMON: dict[str, Any] = {
    "share_vocab": True,
    "share_embeddings": True,
    "share_decoder_embeddings": True,
    "word_vec_size": 256,
    "batch_type": "tokens",
    "batch_size": 4096,
    "optim": "adam",
    "label_smoothing": 0.1,
    "num_workers": 0,  # no loader processes: they would compete for the thread budget
    "bucket_size": 16384,  # the default (262144) reads the 29k-line corpus 9 times first
    "report_every": 10,
    "train_steps": HUGE_STEPS,
    "seed": 1234,
}
ONMT_RNN: dict[str, Any] = {
    "encoder_type": "brnn",
    "decoder_type": "rnn",
    "rnn_type": "LSTM",
    "layers": 2,
    "enc_hid_size": 256,  # brnn: 128 per direction
    "dec_hid_size": 256,
    "global_attention": "general",
    "input_feed": 1,
    "dropout": [0.3],
    "learning_rate": 0.001,
}
# Batch size, learning-rate schedule, dropout and label smoothing come from the shared Recipe.
ONMT_TRANSFORMER: dict[str, Any] = {
    "encoder_type": "transformer",
    "decoder_type": "transformer",
    "layers": 3,
    "hidden_size": 256,
    "heads": 4,
    "transformer_ff": 1024,
    "position_encoding": True,
    "self_attn_type": "scaled-dot",  # ct2 rejects scaled-dot-flash (same maths)
    "add_qkvbias": True,
    "add_ffnbias": True,
    "adam_beta1": 0.9,
    "adam_beta2": 0.98,
    "decay_method": "noam",
    "param_init": 0.0,
    "param_init_glorot": True,
    "normalization": "tokens",
    "max_grad_norm": 0.0,
}
ONMT_ENV = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}


class OnmtSystem(System):
    toolkit = "OpenNMT-py"

    def __init__(self, name: str, arch: dict[str, Any]):
        self.name = name
        self.arch = arch
        self.bin: Path | None = None

    def setup(self, ctx: Context) -> None:
        self.bin = ensure_venv(ONMT_VENV, ctx.peers_dir)
        ctx.versions["OpenNMT-py"] = package_version(self.bin / "python", "OpenNMT-py")

    def config(self, ctx: Context, run_dir: Path) -> dict[str, Any]:
        pieces = ctx.data.pieces
        recipe: dict[str, Any] = {}
        if self.arch["encoder_type"] == "transformer":
            r = ctx.recipe
            recipe = {"batch_size": r.batch_tokens, "learning_rate": r.noam_factor,
                      "warmup_steps": r.warmup, "dropout": [r.dropout],
                      "attention_dropout": [r.attention_dropout],
                      "label_smoothing": r.label_smoothing}
        return {
            **ONMT_COMMON,
            **self.arch,
            **recipe,
            "src_vocab": str(ctx.data.vocab),
            "tgt_vocab": str(ctx.data.vocab),
            "data": {"corpus_1": {"path_src": str(pieces["train.en"]),
                                  "path_tgt": str(pieces["train.de"])}},
            "save_model": str(run_dir / "model"),
            "save_checkpoint_steps": ctx.ckpt_steps,
            "keep_checkpoint": 3,
            "valid_steps": HUGE_STEPS,
        }

    def train(self, ctx: Context) -> TrainResult:
        assert self.bin is not None
        run_dir = ctx.run_dir(self.name)
        config = write_config(run_dir / "train.yaml", self.config(ctx, run_dir))
        job = TrainJob(cmd=[str(self.bin / "onmt_train"), "-config", str(config)],
                       env=thread_env(ctx.threads, ONMT_ENV), log_path=run_dir / "train.log",
                       start_marker="Start training loop", stop_signal=signal.SIGTERM)
        run = run_budgeted(job, ctx.budget_s)
        steps, rate = parse_onmt_log(job.log_path)
        eval_step = onmt_step(self.checkpoint(ctx))
        return TrainResult(steps=max(steps or 0, eval_step), eval_step=eval_step,
                           tgt_tokens_per_s=rate,
                           peak_rss_gib=run.peak_rss_gib, wall_s=run.wall_s,
                           startup_s=run.startup_s)

    def checkpoint(self, ctx: Context) -> Path:
        return latest_onmt_checkpoint(ctx.run_dir(self.name))

    def translate(self, ctx: Context, beam: int) -> Translation:
        assert self.bin is not None
        run_dir = ctx.run_dir(self.name)
        hyp = run_dir / f"test.beam{beam}.pieces"
        log_path = run_dir / f"translate.beam{beam}.log"
        log_path.unlink(missing_ok=True)
        cmd = [str(self.bin / "onmt_translate"), "-model", str(self.checkpoint(ctx)),
               "-src", str(ctx.data.pieces["test.en"]), "-output", str(hyp),
               "-beam_size", str(beam), "-batch_size", str(DECODE_BATCH),
               "-batch_type", "sents", "-gpu", "-1", "-report_time"]
        wall = run_checked(cmd, log_path, env=thread_env(ctx.threads, ONMT_ENV))
        match = re.search(r"Total translation time \(s\): ([\d.]+)", tail(log_path, 10**6))
        if match is None:
            raise BenchError(f"no 'Total translation time' in {log_path}")
        return Translation(hyps=_decode_pieces(ctx, read_lines(hyp)),
                           decode_s=float(match.group(1)), wall_s=wall, load_excluded=True)

    def notes(self, ctx: Context) -> list[str]:
        return [f"checkpoint every {ctx.ckpt_steps} steps; stopped with SIGTERM at the budget",
                "decode time: onmt_translate -report_time (model load excluded)",
                "beam search: OpenNMT-py default length penalty (avg), max_length 250"]


_ONMT_STEP = re.compile(
    r"Step (\d+)/\s*\d+;.*?bsz:\s*[\d.]+/\s*([\d.]+)/\s*[\d.]+;\s*[\d.]+/\s*([\d.]+) tok/s")


def parse_onmt_log(path: Path) -> tuple[int | None, float | None]:
    """Last reported step and overall target tokens/s (token-weighted over reports)."""
    intervals, last_step = [], 0
    for match in _ONMT_STEP.finditer(tail(path, 10**9)):
        step, tgt_per_batch, rate = int(match[1]), float(match[2]), float(match[3])
        intervals.append(((step - last_step) * tgt_per_batch, rate))
        last_step = step
    return (last_step or None), aggregate_rate(intervals)


def onmt_step(checkpoint: Path) -> int:
    return int(re.search(r"_step_(\d+)\.pt$", checkpoint.name)[1])  # type: ignore[index]


def latest_onmt_checkpoint(run_dir: Path) -> Path:
    """The newest checkpoint that was completely written before the process stopped."""
    checkpoints = sorted(run_dir.glob("model_step_*.pt"), key=onmt_step, reverse=True)
    for checkpoint in checkpoints:
        if zip_is_complete(checkpoint):
            return checkpoint
    raise BenchError(f"no complete checkpoint in {run_dir} (budget shorter than "
                     "--ckpt-steps steps?)")


# ----- CTranslate2 (decodes the onmt-transformer model)


class Ct2System(System):
    name = "ctranslate2"
    toolkit = "CTranslate2"
    trains = False
    source = "onmt-transformer"

    def __init__(self) -> None:
        self.onmt = OnmtSystem(self.source, ONMT_TRANSFORMER)

    def setup(self, ctx: Context) -> None:
        self.onmt.setup(ctx)
        ctx.versions["ctranslate2"] = package_version(self.python, "ctranslate2")

    @property
    def python(self) -> Path:
        assert self.onmt.bin is not None
        return self.onmt.bin / "python"

    def train(self, ctx: Context) -> None:
        """No training: convert the onmt-transformer checkpoint to a float32 model."""
        assert self.onmt.bin is not None
        checkpoint = self.onmt.checkpoint(ctx)
        model_dir = ctx.run_dir(self.name) / "model"
        cmd = [str(self.onmt.bin / "ct2-opennmt-py-converter"), "--model_path",
               str(checkpoint), "--output_dir", str(model_dir), "--unsafe_deserialization",
               "--force"]
        log(f"converting {checkpoint.name} with ct2-opennmt-py-converter")
        run_checked(cmd, ctx.run_dir(self.name) / "convert.log",
                    env=thread_env(ctx.threads, ONMT_ENV))
        self.converted_step = onmt_step(checkpoint)
        return None

    def translate(self, ctx: Context, beam: int) -> Translation:
        run_dir = ctx.run_dir(self.name)
        hyp = run_dir / f"test.beam{beam}.pieces"
        timing = run_dir / f"timing.beam{beam}.json"
        cmd = [str(self.python), str(Path(__file__).resolve()), "ct2-decode",
               "--model", str(run_dir / "model"), "--src", str(ctx.data.pieces["test.en"]),
               "--out", str(hyp), "--beam", str(beam), "--threads", str(ctx.threads),
               "--timing-out", str(timing)]
        wall = run_checked(cmd, run_dir / f"translate.beam{beam}.log",
                           env=thread_env(ctx.threads))
        decode_s = json.loads(timing.read_text())["decode_s"]
        return Translation(hyps=_decode_pieces(ctx, read_lines(hyp)), decode_s=decode_s,
                           wall_s=wall, load_excluded=True)

    def notes(self, ctx: Context) -> list[str]:
        step = getattr(self, "converted_step", "?")
        return [f"model: onmt-transformer checkpoint (step {step}) converted to float32",
                (f"Translator(compute_type=float32, inter_threads={ctx.threads}, "
                 f"intra_threads=1): batches decoded in parallel, one thread each "
                 f"(faster here than one batch on {ctx.threads} threads); "
                 f"translate_batch(max_batch_size={DECODE_BATCH}); model load excluded; "
                 f"default length penalty 1")]


def ct2_decode(argv: Sequence[str]) -> None:
    """Hidden sub-command, run inside the OpenNMT-py venv: decode with CTranslate2."""
    parser = argparse.ArgumentParser(prog="peers.py ct2-decode")
    for name in ("--model", "--src", "--out", "--timing-out"):
        parser.add_argument(name, required=True)
    parser.add_argument("--beam", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args(argv)
    import ctranslate2

    translator = ctranslate2.Translator(args.model, device="cpu", compute_type="float32",
                                        inter_threads=args.threads, intra_threads=1)
    sources = [line.split() for line in read_lines(Path(args.src))]
    start = time.perf_counter()
    results = translator.translate_batch(sources, beam_size=args.beam,
                                         max_batch_size=DECODE_BATCH)
    decode_s = time.perf_counter() - start
    write_lines(Path(args.out), [" ".join(r.hypotheses[0]) for r in results])
    Path(args.timing_out).write_text(json.dumps({"decode_s": decode_s}))


# ----- JoeyNMT


# Dropout is replaced by the shared Recipe's.
JOEY_TRANSFORMER_LAYERS: dict[str, Any] = {
    "type": "transformer",
    "num_layers": 3,
    "num_heads": 4,
    "embeddings": {"embedding_dim": 256, "scale": True, "dropout": 0.1},
    "hidden_size": 256,
    "ff_size": 1024,
    "dropout": 0.1,
    "layer_norm": "pre",
}


class JoeySystem(System):
    name = "joeynmt-transformer"
    toolkit = "JoeyNMT"

    def __init__(self) -> None:
        self.bin: Path | None = None

    def setup(self, ctx: Context) -> None:
        self.bin = ensure_venv(JOEY_VENV, ctx.peers_dir)
        ctx.versions["joeynmt"] = package_version(self.bin / "python", "joeynmt")

    def config(self, ctx: Context, run_dir: Path, testing: dict[str, Any]) -> dict[str, Any]:
        pieces = ctx.data.pieces
        side = {"level": "word", "lowercase": False, "normalize": False, "max_length": 200,
                "voc_file": str(ctx.data.vocab)}
        r = ctx.recipe
        layers = {**JOEY_TRANSFORMER_LAYERS, "dropout": r.dropout,
                  "embeddings": {**JOEY_TRANSFORMER_LAYERS["embeddings"], "dropout": r.dropout}}
        return {
            "name": self.name,
            "model_dir": str(run_dir / "model"),
            "use_cuda": False,
            "random_seed": 42,
            "data": {
                "train": str(pieces["train.en"].with_suffix("")),
                "dev": str(pieces["val.en"].with_suffix("")),
                "dataset_type": "plain",
                "sample_dev_subset": 100,
                "src": {"lang": "en", **side},
                "trg": {"lang": "de", **side},
            },
            "training": {
                "optimizer": "adam", "adam_betas": [0.9, 0.98], "scheduling": "noam",
                "learning_rate_factor": r.noam_factor, "learning_rate_warmup": r.warmup,
                # JoeyNMT stops when the lr falls below learning_rate_min (default 1e-4),
                # which a short warmup's first steps do. (1e-8 would be read back as a string.)
                "learning_rate_min": 0.0,
                "loss": "crossentropy", "label_smoothing": r.label_smoothing,
                "normalization": "tokens",
                "batch_size": r.batch_tokens, "batch_type": "token", "epochs": 100000,
                "logging_freq": 10, "validation_freq": HUGE_STEPS, "keep_best_ckpts": 1,
                "early_stopping_metric": "ppl", "overwrite": True, "shuffle": True,
                "num_workers": 0,
            },
            "testing": testing,
            "model": {
                "initializer": "xavier_uniform", "embed_initializer": "xavier_uniform",
                "bias_initializer": "zeros", "init_gain": 1.0, "embed_init_gain": 1.0,
                "tied_embeddings": True, "tied_softmax": True,
                "encoder": layers, "decoder": layers,
            },
        }

    def train(self, ctx: Context) -> TrainResult:
        assert self.bin is not None
        run_dir = ctx.run_dir(self.name)
        testing = {"beam_size": 1, "batch_size": 64, "batch_type": "sentence",
                   "max_output_length": 60}
        config = write_config(run_dir / "train.yaml", self.config(ctx, run_dir, testing))
        job = TrainJob(cmd=[str(self.bin / "python"), "-m", "joeynmt", "train", str(config)],
                       env=thread_env(ctx.threads), log_path=run_dir / "train.log",
                       start_marker="EPOCH 1", stop_signal=signal.SIGINT)
        run = run_budgeted(job, ctx.budget_s)
        steps, rate = parse_joey_log(job.log_path)
        return TrainResult(steps=steps, eval_step=joey_step(self.checkpoint(ctx)),
                           tgt_tokens_per_s=rate, peak_rss_gib=run.peak_rss_gib,
                           wall_s=run.wall_s, startup_s=run.startup_s)

    def checkpoint(self, ctx: Context) -> Path:
        latest = ctx.run_dir(self.name) / "model" / "latest.ckpt"
        if not latest.exists() or not zip_is_complete(latest.resolve()):
            raise BenchError(f"JoeyNMT wrote no complete checkpoint ({latest})")
        return latest.resolve()

    def translate(self, ctx: Context, beam: int) -> Translation:
        assert self.bin is not None
        run_dir = ctx.run_dir(self.name)
        testing = {"load_model": str(self.checkpoint(ctx)), "beam_size": beam,
                   "beam_alpha": 1, "batch_size": DECODE_BATCH, "batch_type": "sentence"}
        config = write_config(run_dir / f"translate.beam{beam}.yaml",
                              self.config(ctx, run_dir, testing))
        hyp = run_dir / f"test.beam{beam}.pieces"
        log_path = run_dir / f"translate.beam{beam}.log"
        log_path.unlink(missing_ok=True)
        # `translate -o` crashes in 2.3.0; hypotheses are read from stdout instead.
        cmd = [str(self.bin / "python"), "-m", "joeynmt", "translate", str(config)]
        wall = run_checked(cmd, log_path, env=thread_env(ctx.threads),
                           stdin=ctx.data.pieces["test.en"], stdout=hyp)
        match = re.search(r"Generation took ([\d.]+)\[sec\]", tail(log_path, 10**6))
        if match is None:
            raise BenchError(f"no 'Generation took' in {log_path}")
        return Translation(hyps=_decode_pieces(ctx, read_lines(hyp)),
                           decode_s=float(match.group(1)), wall_s=wall, load_excluded=True)

    def notes(self, ctx: Context) -> list[str]:
        return ["no validation; stopped with SIGINT at the budget (JoeyNMT then saves)",
                "decode time: JoeyNMT's 'Generation took' log line (model load excluded)",
                "beam search: beam_alpha 1, max_output_length default (1.5 x source)"]


def parse_joey_log(path: Path) -> tuple[int | None, float | None]:
    """Last step and overall target tokens/s (time-weighted over logging intervals)."""
    text = tail(path, 10**9)
    intervals, last_step = [], 0
    for match in re.finditer(r"Step:\s+(\d+),.*?Tokens per Sec:\s+([\d.]+)", text):
        step, rate = int(match[1]), float(match[2])
        intervals.append((float(step - last_step), rate))
        last_step = step
    interrupted = re.findall(r"Interrupt at epoch \d+, step (\d+)\.", text)
    steps = int(interrupted[-1]) if interrupted else last_step or None
    return steps, aggregate_rate(intervals)


def joey_step(checkpoint: Path) -> int:
    return int(checkpoint.stem)


# ----- transduce


TRANSDUCE_DECODE_NOTE = "decode time: translate wall time minus a model-load-only run (empty input)"


class TransduceSystem(System):
    toolkit = "transduce"

    def __init__(self, name: str, config: str):
        self.name = name
        self.config = REPO_ROOT / "configs" / config

    def setup(self, ctx: Context) -> None:
        if not self.config.exists():
            raise BenchError(f"missing {self.config}")
        ctx.versions["transduce"] = package_version(ctx.transduce_python, "transduce")

    def command(self, ctx: Context, *args: str) -> list[str]:
        return [str(ctx.transduce_python), "-m", "transduce", *args]

    def train(self, ctx: Context) -> TrainResult:
        run_dir = ctx.run_dir(self.name)
        minutes = f"{ctx.budget_s / 60:g}"
        overrides = [f"train.max_minutes={minutes}", f"train.out_dir={run_dir}",
                     *ctx.transduce_overrides]
        cmd = self.command(ctx, "train", str(self.config),
                           *[arg for item in overrides for arg in ("--set", item)])
        job = TrainJob(cmd=cmd, env=thread_env(ctx.threads), log_path=run_dir.parent /
                       f"{self.name}.train.log", start_marker=None, stop_signal=None,
                       cwd=REPO_ROOT)
        run = run_budgeted(job, ctx.budget_s)
        if run.stopped_by_us:
            raise BenchError(f"transduce did not stop within budget + {TRANSDUCE_GRACE_S:.0f}s")
        last = read_transduce_log(run_dir / "train_log.jsonl")
        rate = last.get("tokens_per_s")
        if last.get("tgt_tokens") and last.get("train_time_s"):
            rate = last["tgt_tokens"] / last["train_time_s"]  # over the whole run
        return TrainResult(steps=last.get("step"), eval_step=last.get("step"),
                           tgt_tokens_per_s=rate,
                           peak_rss_gib=run.peak_rss_gib, wall_s=run.wall_s, startup_s=None)

    decode_flags: tuple[str, ...] = ()

    def model_dir(self, ctx: Context) -> Path:
        return ctx.run_dir(self.name)

    def translate(self, ctx: Context, beam: int) -> Translation:
        run_dir = ctx.run_dir(self.name)
        hyp = run_dir / f"test.beam{beam}.txt"
        log_path = run_dir.parent / f"{self.name}.translate.log"
        empty = ctx.data.root / "empty.txt"  # the CLI rejects -i /dev/null (not a file)
        empty.write_text("")
        load_s = min(self._time_translate(ctx, empty, Path("/dev/null"), beam, log_path)
                     for _ in range(2))
        wall = self._time_translate(ctx, ctx.data.raw["test.en"], hyp, beam, log_path)
        return Translation(hyps=read_lines(hyp), decode_s=max(wall - load_s, 1e-6),
                           wall_s=wall, load_excluded=True)

    def _time_translate(self, ctx: Context, src: Path, out: Path, beam: int,
                        log_path: Path) -> float:
        cmd = self.command(ctx, "translate", str(self.model_dir(ctx)), "-i", str(src),
                           "-o", str(out), "--beam", str(beam),
                           "--batch-size", str(DECODE_BATCH), *self.decode_flags)
        return run_checked(cmd, log_path, env=thread_env(ctx.threads), cwd=REPO_ROOT)

    def notes(self, ctx: Context) -> list[str]:
        extra = " ".join(f"--set {item}" for item in ctx.transduce_overrides) or "none"
        return [f"{self.config.relative_to(REPO_ROOT)} (precision as configured; extra: "
                f"{extra}); stops itself (train.max_minutes, counts its validations)",
                TRANSDUCE_DECODE_NOTE]


class TransduceInt8System(TransduceSystem):
    """No training: transduce-transformer's model, decoded with int8 linear layers."""

    trains = False
    source = "transduce-transformer"
    decode_flags = ("--quantize", "int8")

    def __init__(self) -> None:
        super().__init__("transduce-int8", "multi30k_transformer.yaml")

    def model_dir(self, ctx: Context) -> Path:
        return ctx.run_dir(self.source)

    def train(self, ctx: Context) -> None:
        source = ctx.run_dir(self.source)
        if not (source / "model.safetensors").exists():
            raise BenchError(f"no trained {self.source} in {source}: "
                             f"benchmark {self.source} first (in the same --systems list)")
        return None

    def notes(self, ctx: Context) -> list[str]:
        return [f"model: {self.source}'s, decoded with --quantize int8 (linear layers in "
                f"int8, per-channel weight scales)",
                TRANSDUCE_DECODE_NOTE]


class TransduceCt2System(TransduceInt8System):
    """No training: transduce-transformer's model exported to CTranslate2 (`transduce
    export`) and decoded through `transduce translate EXPORT_DIR`."""

    decode_flags = ()

    def __init__(self) -> None:
        TransduceSystem.__init__(self, "transduce-ct2", "multi30k_transformer.yaml")

    def model_dir(self, ctx: Context) -> Path:
        return ctx.run_dir(self.name) / "export"

    def train(self, ctx: Context) -> None:
        super().train(ctx)
        log(f"exporting {self.source} to CTranslate2")
        run_checked(self.command(ctx, "export", str(ctx.run_dir(self.source)),
                                 str(self.model_dir(ctx))),
                    ctx.run_dir(self.name) / "export.log", env=thread_env(ctx.threads),
                    cwd=REPO_ROOT)

    def notes(self, ctx: Context) -> list[str]:
        return [(f"model: {self.source}'s, exported to CTranslate2 float32 (transduce "
                 f"export) and decoded by transduce's CTranslate2 translator ({ctx.threads} "
                 f"workers of one thread)"), TRANSDUCE_DECODE_NOTE]


def read_transduce_log(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise BenchError(f"missing {path}")
    records = [json.loads(line) for line in read_lines(path) if line.strip()]
    if not records:
        raise BenchError(f"empty {path}")
    return records[-1]


def make_system(name: str) -> System:
    factories: dict[str, Callable[[], System]] = {
        "onmt-rnn": lambda: OnmtSystem("onmt-rnn", ONMT_RNN),
        "onmt-transformer": lambda: OnmtSystem("onmt-transformer", ONMT_TRANSFORMER),
        "ctranslate2": Ct2System,
        "joeynmt-transformer": JoeySystem,
        "transduce-rnn": lambda: TransduceSystem("transduce-rnn", "multi30k_rnn.yaml"),
        "transduce-transformer": lambda: TransduceSystem("transduce-transformer",
                                                         "multi30k_transformer.yaml"),
        "transduce-int8": TransduceInt8System,
        "transduce-ct2": TransduceCt2System,
    }
    return factories[name]()


# --------------------------------------------------------------------------- scoring


def score(ctx: Context, beam: int, translation: Translation,
          decode_s_runs: Sequence[float] = ()) -> DecodeResult:
    import sacrebleu

    refs = ctx.data.test_refs
    if len(translation.hyps) != len(refs):
        raise BenchError(f"{len(translation.hyps)} hypotheses for {len(refs)} references")
    sp = load_spm(ctx.data.spm_model)
    n_tokens = sum(len(sp.encode(h)) for h in translation.hyps)
    decode_s = translation.decode_s
    return DecodeResult(
        beam=beam,
        bleu=round(sacrebleu.corpus_bleu(translation.hyps, [refs]).score, 2),
        chrf=round(sacrebleu.corpus_chrf(translation.hyps, [refs]).score, 2),
        sents_per_s=round(len(refs) / decode_s, 2),
        tgt_tokens_per_s=round(n_tokens / decode_s, 1),
        decode_s=round(decode_s, 3),
        wall_s=round(translation.wall_s, 3),
        load_excluded=translation.load_excluded,
        decode_s_runs=[round(s, 3) for s in decode_s_runs] or [round(decode_s, 3)],
    )


def benchmark_system(name: str, ctx: Context) -> SystemResult:
    system = make_system(name)
    result = SystemResult(system=name, toolkit=system.toolkit)
    try:
        system.setup(ctx)
        run_dir = ctx.run_dir(name)
        reuse = ctx.decode_only and system.trains  # the run dir holds the trained model
        if not reuse:
            shutil.rmtree(run_dir, ignore_errors=True)
            run_dir.mkdir(parents=True)
        if system.trains and not reuse:
            log(f"{name}: training ({ctx.budget_s / 60:g} min budget)")
        result.train = None if reuse else system.train(ctx)
        if result.train:
            log(f"{name}: {result.train.steps} steps, "
                f"{_fmt(result.train.tgt_tokens_per_s, 0)} tgt tok/s, "
                f"evaluating step {result.train.eval_step}")
        for beam in BEAMS:
            log(f"{name}: decoding test with beam {beam}"
                f"{f' ({ctx.decode_repeats} times)' if ctx.decode_repeats > 1 else ''}")
            # This machine's timings swing by 20-40% from one minute to the next: the
            # fastest of a few runs is the least disturbed one.
            runs = [system.translate(ctx, beam) for _ in range(ctx.decode_repeats)]
            fastest = min(runs, key=lambda t: t.decode_s)
            decoded = score(ctx, beam, fastest, [t.decode_s for t in runs])
            result.decode.append(decoded)
            log(f"{name}: beam {beam}: BLEU {decoded.bleu} chrF {decoded.chrf} "
                f"{decoded.sents_per_s} sent/s")
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        log(f"{name}: FAILED: {result.error.splitlines()[0]}")
    result.notes = system.notes(ctx)
    return result


# --------------------------------------------------------------------------- report


def _fmt(value: float | int | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


TABLE_COLUMNS = (
    ("system", 28), ("steps", 7), ("train tok/s", 11), ("RSS GiB", 7),
    ("BLEU b5", 7), ("chrF b5", 7), ("BLEU b1", 7), ("chrF b1", 7),
    ("sent/s b1", 9), ("tok/s b1", 8), ("sent/s b5", 9), ("tok/s b5", 8),
)


def table_row(result: SystemResult) -> list[str]:
    train = result.train
    by_beam = {d.beam: d for d in result.decode}
    b1, b5 = by_beam.get(1), by_beam.get(5)
    steps = _fmt(train.steps) if train else ("(onmt)" if result.system == "ctranslate2"
                                              else "-")
    row = [
        result.system + (" FAILED" if result.error else ""),
        steps,
        _fmt(train.tgt_tokens_per_s, 0) if train else "-",
        _fmt(train.peak_rss_gib, 2) if train else "-",
        _fmt(b5.bleu if b5 else None), _fmt(b5.chrf if b5 else None),
        _fmt(b1.bleu if b1 else None), _fmt(b1.chrf if b1 else None),
        _fmt(b1.sents_per_s if b1 else None), _fmt(b1.tgt_tokens_per_s if b1 else None, 0),
        _fmt(b5.sents_per_s if b5 else None), _fmt(b5.tgt_tokens_per_s if b5 else None, 0),
    ]
    return row


def format_table(results: Sequence[SystemResult], meta: dict[str, Any]) -> str:
    header = " | ".join(name.ljust(width) for name, width in TABLE_COLUMNS)
    lines = [header, "-|-".join("-" * width for _, width in TABLE_COLUMNS)]
    for result in results:
        cells = table_row(result)
        lines.append(" | ".join(c.ljust(w) for c, (_, w) in zip(cells, TABLE_COLUMNS, strict=True)))
    lines.append("")
    lines.append(f"Multi30k en->de test_2016_flickr ({meta['test_sentences']} sentences), "
                 f"sacreBLEU cased 13a / chrF; {meta['budget_minutes']:g} min training "
                 f"budget, {meta['threads']} threads, decode batch {DECODE_BATCH}.")
    lines.append("steps = last step the trainer reported (the evaluated checkpoint may be a "
                 "little earlier, see eval_step in the JSON); train tok/s = target tokens/s "
                 "from the toolkit's own log; RSS = peak summed RSS of the training process "
                 "tree; decode tok/s = shared-SentencePiece pieces of the output; decode "
                 f"speeds are the fastest of {meta.get('decode_repeats', 1)} runs.")
    for result in results:
        for note in result.notes:
            lines.append(f"  {result.system}: {note}")
        if result.error:
            lines.append(f"  {result.system}: ERROR {result.error.splitlines()[0]}")
    return "\n".join(lines)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def write_json(path: Path, results: Sequence[SystemResult], meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"meta": meta, "results": [dataclasses.asdict(r) for r in results]}
    path.write_text(json.dumps(payload, indent=2) + "\n")


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    default_data = Path(os.environ.get("TRANSDUCE_DATA", REPO_ROOT.parent / "shared" / "data"))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", default=",".join(ALL_SYSTEMS),
                        help="comma-separated subset of: " + ", ".join(ALL_SYSTEMS))
    parser.add_argument("--budget-minutes", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work-dir", type=Path,
                        default=Path("~/.cache/transduce-bench").expanduser())
    parser.add_argument("--peers-dir", type=Path,
                        default=Path("~/.cache/transduce-peers").expanduser())
    parser.add_argument("--data-dir", type=Path, default=default_data,
                        help="folder holding multi30k/ (default $TRANSDUCE_DATA or "
                             "../shared/data)")
    parser.add_argument("--test-limit", type=int, default=None,
                        help="decode only the first N test sentences")
    parser.add_argument("--decode-repeats", type=int, default=3,
                        help="decode the test set N times per beam and report the fastest "
                             "run (all are in the JSON)")
    parser.add_argument("--decode-only", action="store_true",
                        help="no training: decode the models an earlier run left in "
                             "--work-dir (runs/SYSTEM)")
    parser.add_argument("--ckpt-steps", type=int, default=50,
                        help="OpenNMT-py checkpoint interval (it cannot save on a signal)")
    parser.add_argument("--transduce-python", type=Path, default=Path(sys.executable),
                        help="interpreter with transduce installed (default: this one)")
    parser.add_argument("--transduce-set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra config override for transduce train (repeatable), "
                             "e.g. train.precision=fp32 to match the fp32 peers")
    parser.add_argument("--json-out", type=Path,
                        default=REPO_ROOT / "benchmarks" / "results" / "peers.json")
    args = parser.parse_args(argv)
    wanted = {s.strip() for s in args.systems.split(",") if s.strip()}
    unknown = sorted(wanted - set(ALL_SYSTEMS))
    if unknown:
        parser.error(f"unknown systems: {', '.join(unknown)}")
    if args.decode_repeats < 1:
        parser.error("--decode-repeats must be at least 1")
    args.systems = [s for s in ALL_SYSTEMS if s in wanted]  # ctranslate2 after onmt
    return args


def check_interpreter() -> None:
    missing = []
    for module in ("sentencepiece", "sacrebleu"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        sys.exit(f"peers.py needs {' and '.join(missing)} in this interpreter "
                 f"({sys.executable}); run it with e.g. .venv/bin/python")


def main(argv: Sequence[str]) -> int:
    if argv[:1] == ["ct2-decode"]:
        ct2_decode(argv[1:])
        return 0
    args = parse_args(argv)
    check_interpreter()
    # A shell starts background jobs (`peers.py ... &`) with SIGINT ignored, and children
    # inherit an ignored signal: JoeyNMT would never see the SIGINT that asks it to save and
    # stop. A handled signal is reset to the default in children.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    args.peers_dir.mkdir(parents=True, exist_ok=True)
    data = prepare_data(args.data_dir / "multi30k", args.work_dir, args.test_limit)
    ctx = Context(data=data, work_dir=args.work_dir, peers_dir=args.peers_dir,
                  threads=args.threads, budget_s=args.budget_minutes * 60,
                  ckpt_steps=args.ckpt_steps, transduce_python=args.transduce_python,
                  transduce_overrides=args.transduce_set,
                  decode_repeats=args.decode_repeats, decode_only=args.decode_only)
    meta: dict[str, Any] = {
        "budget_minutes": args.budget_minutes, "threads": args.threads,
        "test_sentences": len(data.test_refs), "decode_batch": DECODE_BATCH,
        "beams": list(BEAMS), "decode_repeats": args.decode_repeats,
        "decode_only": args.decode_only,
        "spm": f"joint unigram {SPM_VOCAB_SIZE}",
        "cpu": cpu_model(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "versions": ctx.versions,
    }
    results = []
    for name in args.systems:
        results.append(benchmark_system(name, ctx))
        write_json(args.json_out, results, meta)  # keep partial results on disk
    print()
    print(format_table(results, meta))
    print(f"\nJSON: {args.json_out}")
    return 0 if all(r.error is None for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
