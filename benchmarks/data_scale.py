#!/usr/bin/env python3
"""The data path at WMT scale: transduce prepare/train against SentencePiece, OpenNMT-py, fairseq.

For each corpus size N (pairs) the script builds a WMT-sized corpus from the Tatoeba sets in
shared/data and measures, each command in its own process tree with memory polled from /proc:

    transduce   prepare from a cold cache (wall time, pairs/s, peak RSS / RssAnon / RssFile)
    spm         SentencePiece's own multi-threaded encoding of the same lines with the model
                that prepare trained: the limit that prepare is compared with
    transduce   train on the warm cache, small Transformer recipe, 100 updates: time to the
                `first update after` line, peak RssAnon and RssFile+RssShmem (the cache's
                memory-mapped pages count there, not as anonymous memory)
    transduce   the same with 2 torchrun processes (1 thread each): RssAnon per process, summed
    transduce   loader throughput (measure_loader, to be filled in)
    OpenNMT-py  onmt_build_vocab and onmt_train (on-the-fly sentencepiece transform) on the
                same corpus and SentencePiece model: wall time, time to the first step, memory
    fairseq     fairseq-preprocess on the SentencePiece-encoded corpus, if 0.12.2 installs

Corpus: line i joins four consecutive Tatoeba pairs (space-joined on each side), taking lines
in turn from tatoeba_deu_eng, tatoeba_fra_eng and tatoeba_spa_eng; source = the non-English
side (de, fr, es), target = English. Each corpus is read again as often as N needs; from the
second pass on, its pairs are first shuffled within windows of 4,096 (seeded by corpus and
pass), so lines do not repeat (data.dedup then has N distinct pairs, as on real data). The
files are written to --work-dir/corpus/N/train.{src,tgt}.gz by streaming (constant memory)
and reused by later runs. Memory is in decimal GB (10^9 bytes), like the targets.

Usage (from the repository root; the interpreter needs sentencepiece and transduce):

    .venv/bin/python benchmarks/data_scale.py                          # 1M and 4.5M pairs
    .venv/bin/python benchmarks/data_scale.py --sizes 20000 --peers onmt   # a quick trial
    .venv/bin/python benchmarks/data_scale.py --only transduce --skip-build

Results: a table on stdout and JSON in --json-out (default benchmarks/results/data_scale.json).
Peer toolkits get their own virtual environments under --peers-dir (see peers.py).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import gzip
import itertools
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import (  # benchmarks/ is not a package: imported from sys.path
    HUGE_STEPS,
    ONMT_COMMON,
    ONMT_ENV,
    ONMT_TRANSFORMER,
    ONMT_VENV,
    TORCH_PIN,
    BenchError,
    PeakMemoryMonitor,
    VenvSpec,
    _terminate,
    cpu_model,
    ensure_venv,
    package_version,
    parse_onmt_log,
    process_tree,
    run_checked,
    status_kib,
    thread_env,
    transformer_recipe,
    write_config,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "configs" / "multi30k_transformer.yaml"
TATOEBA = ("tatoeba_deu_eng", "tatoeba_fra_eng", "tatoeba_spa_eng")
PAIRS_PER_LINE = 4
SHUFFLE_WINDOW = 4096
CORPUS_RECIPE = (f"tatoeba deu/fra/spa -> en, {PAIRS_PER_LINE} pairs per line, round robin, "
                 f"window shuffle {SHUFFLE_WINDOW} from pass 2, v1")
WRITE_BLOCK = 10_000  # lines per write while building
SPM_CHUNK = 100_000  # lines read at a time for the SentencePiece row
SPM_CALLS = (1_000, 2_000, 5_000, 20_000, 100_000)  # lines per sp.encode call, probed
TORCHRUN_PROCS = 2
ALL_PEERS = ("onmt", "fairseq")
# Imported by OpenNMT-py's sentencepiece transform, onmt_build_vocab (all transforms: regex)
# and onmt_train (scorers: sacrebleu), but not installed with `--no-deps opennmt-py`.
ONMT_EXTRAS = ("sentencepiece", "regex", "sacrebleu")
FAIRSEQ_VENV = VenvSpec("fairseq", ((TORCH_PIN,), ("fairseq==0.12.2",)))
FIRST_UPDATE = re.compile(r"first update after")
PREPARED = re.compile(r"prepared data: (.+?)(?: \(|$)")
PREPARE_SUMMARY = re.compile(r"tokenized at .* pairs/s")  # kept / filtered / duplicates
PREPARE_RATE = re.compile(r"tokenized at ([\d,]+) pairs/s")  # the tokenizing pass alone
TRAIN_FINISHED = re.compile(r"training finished")
TRAIN_PRECISION = re.compile(r"^precision ")  # what precision: auto chose
TRAIN_MODEL = re.compile(r"^model: ")  # parameters, vocabulary, device, autocast
ONMT_STEP = re.compile(r"Step\s+(\d+)/")  # steps 1-9 are logged as "Step  1/"
ONMT_LOOP = re.compile(r"Start training loop")  # what peers.py waits for
GB = 1e9
TORCHRUN_ENV_DROP = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK",
                     "ROLE_RANK", "MASTER_ADDR", "MASTER_PORT")


def log(message: str) -> None:
    print(f"[data_scale {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --------------------------------------------------------------------------- corpus


@dataclass(frozen=True)
class Source:
    """One Tatoeba set: its training files, non-English side first."""

    name: str
    lang: str
    src: Path
    tgt: Path  # English


@dataclass(frozen=True)
class Corpus:
    """A built N-pair corpus (gzip, line-aligned)."""

    size: int
    root: Path
    src: Path
    tgt: Path
    info: dict[str, Any]


def find_sources(data_dir: Path) -> list[Source]:
    sources = []
    for name in TATOEBA:
        folder = data_dir / name
        langs = sorted(p.name.split(".")[1] for p in folder.glob("train.*.gz"))
        other = [lang for lang in langs if lang != "en"]
        if "en" not in langs or len(other) != 1:
            raise BenchError(f"{folder}: expected train.en.gz and one other train.*.gz, "
                             f"found {langs}")
        sources.append(Source(name, other[0], folder / f"train.{other[0]}.gz",
                              folder / "train.en.gz"))
    return sources


def read_pairs(source: Source) -> Iterator[tuple[str, str]]:
    with gzip.open(source.src, "rt", encoding="utf-8") as fs, \
            gzip.open(source.tgt, "rt", encoding="utf-8") as ft:
        for s, t in zip(fs, ft, strict=True):
            yield s.rstrip("\n"), t.rstrip("\n")


def pass_pairs(source: Source, pass_index: int) -> Iterator[tuple[str, str]]:
    """One pass over a source: in file order first, later passes shuffled within windows."""
    if pass_index == 0:
        yield from read_pairs(source)
        return
    rng = random.Random(f"{source.name}/{pass_index}")
    window: list[tuple[str, str]] = []
    for pair in read_pairs(source):
        window.append(pair)
        if len(window) == SHUFFLE_WINDOW:
            rng.shuffle(window)
            yield from window
            window = []
    rng.shuffle(window)
    yield from window


def joined_lines(source: Source) -> Iterator[tuple[str, str]]:
    """Endless lines of PAIRS_PER_LINE joined pairs (a pass's last incomplete group is dropped)."""
    for pass_index in itertools.count():
        group: list[tuple[str, str]] = []
        for pair in pass_pairs(source, pass_index):
            group.append(pair)
            if len(group) == PAIRS_PER_LINE:
                yield " ".join(s for s, _ in group), " ".join(t for _, t in group)
                group = []


def corpus_paths(work_dir: Path, size: int) -> tuple[Path, Path, Path, Path]:
    root = work_dir / "corpus" / str(size)
    return root, root / "train.src.gz", root / "train.tgt.gz", root / "corpus.json"


def load_corpus(work_dir: Path, size: int) -> Corpus | None:
    root, src, tgt, stamp = corpus_paths(work_dir, size)
    if not (stamp.exists() and src.exists() and tgt.exists()):
        return None
    info = json.loads(stamp.read_text())
    if info.get("recipe") != CORPUS_RECIPE or info.get("pairs") != size:
        return None
    return Corpus(size, root, src, tgt, info)


def build_corpus(data_dir: Path, work_dir: Path, size: int) -> Corpus:
    """Write the N-pair corpus by streaming; reuse it when an earlier run built it."""
    cached = load_corpus(work_dir, size)
    if cached is not None:
        log(f"corpus {size:,}: reusing {cached.root}")
        return cached
    sources = find_sources(data_dir)
    root, src, tgt, stamp = corpus_paths(work_dir, size)
    root.mkdir(parents=True, exist_ok=True)
    log(f"corpus {size:,}: building in {root}")
    start = time.perf_counter()
    streams = [joined_lines(s) for s in sources]
    tmp_src, tmp_tgt = src.with_suffix(".tmp"), tgt.with_suffix(".tmp")
    chars = [0, 0]
    with gzip.open(tmp_src, "wt", encoding="utf-8", compresslevel=1) as fs, \
            gzip.open(tmp_tgt, "wt", encoding="utf-8", compresslevel=1) as ft:
        for block_start in range(0, size, WRITE_BLOCK):
            block = [next(streams[i % len(streams)])
                     for i in range(block_start, min(size, block_start + WRITE_BLOCK))]
            src_text = "".join(s + "\n" for s, _ in block)
            tgt_text = "".join(t + "\n" for _, t in block)
            chars[0] += len(src_text)
            chars[1] += len(tgt_text)
            fs.write(src_text)
            ft.write(tgt_text)
    tmp_src.replace(src)
    tmp_tgt.replace(tgt)
    info = {
        "recipe": CORPUS_RECIPE, "pairs": size,
        "sources": {s.name: f"{s.lang}->en" for s in sources},
        "src_chars": chars[0], "tgt_chars": chars[1],
        "src_gz_bytes": src.stat().st_size, "tgt_gz_bytes": tgt.stat().st_size,
        "build_s": round(time.perf_counter() - start, 1),
    }
    stamp.write_text(json.dumps(info, indent=2) + "\n")
    log(f"corpus {size:,}: built in {info['build_s']}s "
        f"({(chars[0] + chars[1]) / 1e6:.0f} M characters)")
    return Corpus(size, root, src, tgt, info)


def plain_copy(corpus: Corpus) -> tuple[Path, Path, float]:
    """Uncompressed copies (OpenNMT-py cannot read gzip); returns their paths and the time."""
    out = corpus.root / "plain"
    out.mkdir(exist_ok=True)
    start = time.perf_counter()
    paths = []
    for side, packed in (("src", corpus.src), ("tgt", corpus.tgt)):
        path = out / f"train.{side}"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            with gzip.open(packed, "rb") as fin, open(tmp, "wb") as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)
            tmp.replace(path)
        paths.append(path)
    return paths[0], paths[1], time.perf_counter() - start


# --------------------------------------------------------------------------- memory


MEMORY_KEYS = ("VmRSS", "RssAnon", "RssFile", "RssShmem")


def _environ_value(pid: int, name: str) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    prefix = name.encode() + b"="
    for item in raw.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix):].decode(errors="replace")
    return None


def _process_label(pid: int) -> str:
    rank = _environ_value(pid, "LOCAL_RANK")
    if rank is not None:
        return f"rank {rank}"
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return str(pid)
    words = [Path(a.decode(errors="replace")).name for a in argv[:3] if a]
    return f"{pid} {' '.join(words)}"


@dataclass
class MemoryPeaks:
    """Peaks over a process tree, in GB; each sum is taken at one poll, then maximised."""

    rss_gb: float  # summed VmRSS (or the root's VmHWM when higher)
    anon_gb: float  # summed RssAnon
    file_gb: float  # summed RssFile (memory-mapped files, e.g. the cache)
    shmem_gb: float  # summed RssShmem
    file_shmem_gb: float  # summed RssFile + RssShmem
    workers_anon_gb: float | None  # torchrun: summed RssAnon of the workers (LOCAL_RANK set)
    per_process_anon_gb: dict[str, float]  # peak RssAnon of each process


class TreeMemoryMonitor(PeakMemoryMonitor):
    """PeakMemoryMonitor that also keeps RssAnon, RssFile and RssShmem, summed over the tree
    and per process (per torchrun worker)."""

    def __init__(self, root_pid: int, interval_s: float = 0.25):
        super().__init__(root_pid, interval_s)
        self.sums = dict.fromkeys((*MEMORY_KEYS, "file+shmem", "workers"), 0)
        self.per_process: dict[int, int] = {}
        self.labels: dict[int, str] = {}
        self.workers: set[int] = set()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)

    def sample(self) -> None:
        values = {pid: {k: status_kib(pid, k) for k in MEMORY_KEYS}
                  for pid in process_tree(self.root_pid)}
        for pid, v in values.items():
            if pid not in self.labels and v["VmRSS"]:
                self.labels[pid] = _process_label(pid)
                if _environ_value(pid, "LOCAL_RANK") is not None:
                    self.workers.add(pid)
            self.per_process[pid] = max(self.per_process.get(pid, 0), v["RssAnon"])
        totals = {k: sum(v[k] for v in values.values()) for k in MEMORY_KEYS}
        totals["file+shmem"] = totals["RssFile"] + totals["RssShmem"]
        totals["workers"] = sum(v["RssAnon"] for p, v in values.items() if p in self.workers)
        for key, total in totals.items():
            self.sums[key] = max(self.sums[key], total)
        self.peak_kib = max(self.peak_kib, totals["VmRSS"], status_kib(self.root_pid, "VmHWM"))

    def peaks(self) -> MemoryPeaks:
        def gb(kib: int) -> float:
            return round(kib * 1024 / GB, 3)

        per_process = {self.labels.get(pid, str(pid)): gb(kib)
                       for pid, kib in self.per_process.items() if kib}
        return MemoryPeaks(
            rss_gb=gb(self.peak_kib), anon_gb=gb(self.sums["RssAnon"]),
            file_gb=gb(self.sums["RssFile"]), shmem_gb=gb(self.sums["RssShmem"]),
            file_shmem_gb=gb(self.sums["file+shmem"]),
            workers_anon_gb=gb(self.sums["workers"]) if self.workers else None,
            per_process_anon_gb=per_process)


# --------------------------------------------------------------------------- processes


@dataclass
class Outcome:
    """How a monitored command went."""

    wall_s: float
    returncode: int | None
    stopped: bool  # we signalled it (stop condition or timeout)
    timed_out: bool
    marks: dict[str, tuple[float, str]]  # marker name: (seconds from start, first line)
    last_lines: list[str]
    memory: MemoryPeaks

    def seconds(self, name: str) -> float | None:
        return self.marks[name][0] if name in self.marks else None


def run_monitored(cmd: Sequence[str], log_path: Path, env: dict[str, str], timeout_s: float,
                  markers: dict[str, re.Pattern[str]] | None = None,
                  stop_when: Callable[[str], bool] | None = None,
                  cwd: Path = REPO_ROOT) -> Outcome:
    """Run cmd (stdout and stderr to log_path), poll its memory, and note when the first
    line matching each of `markers` came (seconds from the start of the process).

    stop_when(line) -> True sends SIGTERM (then SIGKILL to the group after 60 s).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    marks: dict[str, tuple[float, str]] = {}
    last = collections.deque(maxlen=40)
    stop = threading.Event()
    with open(log_path, "ab") as log_file:
        log_file.write(f"$ {' '.join(map(str, cmd))}\n".encode())
        log_file.flush()
        start = time.perf_counter()
        proc = subprocess.Popen(list(map(str, cmd)), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                cwd=cwd, start_new_session=True)

        def read() -> None:
            assert proc.stdout is not None
            for raw in proc.stdout:
                now = time.perf_counter()
                log_file.write(raw)
                log_file.flush()  # the log can be followed while the command runs
                line = raw.decode(errors="replace").rstrip("\r\n")
                last.append(line)
                for name, pattern in (markers or {}).items():
                    if name not in marks and pattern.search(line):
                        marks[name] = (round(now - start, 3), line)
                if stop_when is not None and stop_when(line):
                    stop.set()
            log_file.flush()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        stopped = timed_out = False
        with TreeMemoryMonitor(proc.pid) as memory:
            try:
                while proc.poll() is None:
                    if stop.wait(0.1):
                        stopped = True
                        _terminate(proc, signal.SIGTERM, 60)
                    elif time.perf_counter() - start > timeout_s:
                        stopped = timed_out = True
                        _terminate(proc, signal.SIGTERM, 30)
            finally:
                if proc.poll() is None:
                    _terminate(proc, signal.SIGKILL, 0)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # leftovers (loader workers, ...)
            wall = time.perf_counter() - start
        reader.join(timeout=10)
    return Outcome(wall_s=wall, returncode=proc.returncode, stopped=stopped,
                   timed_out=timed_out, marks=marks, last_lines=list(last),
                   memory=memory.peaks())


def check_outcome(outcome: Outcome, what: str, log_path: Path) -> None:
    if outcome.timed_out:
        raise BenchError(f"{what} timed out after {outcome.wall_s:.0f}s; log {log_path}")
    if outcome.returncode != 0 and not outcome.stopped:
        lines = [line for line in outcome.last_lines if line.strip()]
        last = lines[-1].strip() if lines else "(no output)"
        raise BenchError(f"{what} exited with {outcome.returncode}: {last} (log {log_path})\n"
                         + "\n".join(lines[-15:]))


# --------------------------------------------------------------------------- results


@dataclass
class Measurement:
    """One row of the table: a system's measurement at one corpus size."""

    system: str
    size: int
    step: str
    wall_s: float | None = None
    rate: float | None = None
    rate_unit: str = ""
    first_update_s: float | None = None  # start of the process to its first update/step
    memory: MemoryPeaks | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class Bench:
    """Settings and what has been measured so far."""

    args: argparse.Namespace
    meta: dict[str, Any]
    measurements: list[Measurement] = field(default_factory=list)
    corpora: dict[int, dict[str, Any]] = field(default_factory=dict)

    def add(self, m: Measurement) -> Measurement:
        self.measurements.append(m)
        write_json(self)
        return m

    def find(self, system: str, size: int, step: str) -> Measurement | None:
        for m in self.measurements:
            if (m.system, m.size, m.step) == (system, size, step) and m.error is None:
                return m
        return None

    def timeout_s(self) -> float:
        return self.args.step_timeout_min * 60


def measured(bench: Bench, system: str, size: int, step: str,
             body: Callable[[Measurement], None]) -> Measurement:
    """Run body(m) to fill a Measurement; a failure is recorded and the run goes on."""
    m = Measurement(system=system, size=size, step=step)
    log(f"{system} {step} ({size:,} pairs)")
    try:
        body(m)
    except Exception as exc:  # one failing step must not stop the others
        m.error = f"{type(exc).__name__}: {exc}"
        log(f"{system} {step}: FAILED: {m.error.splitlines()[0]}")
    return bench.add(m)


# --------------------------------------------------------------------------- transduce


def transduce_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "transduce", *args]


def sets(overrides: Sequence[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


def cache_dir_of(bench: Bench, size: int) -> Path:
    return bench.args.work_dir / "cache" / str(size)


def data_overrides(bench: Bench, corpus: Corpus, threads: int) -> list[str]:
    """The same data/tokenizer settings for prepare and train, so that train hits the cache."""
    return [f"data.train_src={corpus.src}", f"data.train_tgt={corpus.tgt}",
            f"data.cache_dir={cache_dir_of(bench, corpus.size)}",
            "data.valid_src=", "data.valid_tgt=", "data.test_src=", "data.test_tgt=",
            "data.src_lang=mul", "data.tgt_lang=en", f"train.threads={threads}",
            *bench.args.transduce_set]


def config_value(bench: Bench, dotted: str) -> Any:
    """A value of the benchmark config after --transduce-set (read with transduce.config)."""
    from transduce.config import load_config

    node: Any = load_config(bench.args.config, list(bench.args.transduce_set))
    for key in dotted.split("."):
        node = getattr(node, key)
    return node


def find_spm_model(where: Sequence[Path]) -> Path | None:
    models = [p for root in where if root.exists() for p in root.rglob("*.spm.model")]
    return max(models, key=lambda p: p.stat().st_mtime) if models else None


def run_prepare(bench: Bench, corpus: Corpus, m: Measurement) -> None:
    cache = cache_dir_of(bench, corpus.size)
    shutil.rmtree(cache, ignore_errors=True)  # cold cache
    log_path = bench.args.work_dir / "logs" / f"prepare.{corpus.size}.log"
    log_path.unlink(missing_ok=True)
    cmd = transduce_cmd("prepare", str(bench.args.config), "--threads", str(bench.args.threads),
                        *sets(data_overrides(bench, corpus, bench.args.threads)))
    out = run_monitored(cmd, log_path, thread_env(bench.args.threads), bench.timeout_s(),
                        markers={"summary": PREPARE_SUMMARY})
    check_outcome(out, "transduce prepare", log_path)
    m.wall_s, m.memory = round(out.wall_s, 2), out.memory
    m.rate, m.rate_unit = round(corpus.size / out.wall_s, 1), "pairs/s"
    prepared = [PREPARED.search(line) for line in out.last_lines]
    path = next((p[1] for p in reversed(prepared) if p), None)
    if path is None:
        raise BenchError(f"no 'prepared data:' line in the output; log {log_path}")
    m.extra.update(cache_path=path, last_line=out.last_lines[-1] if out.last_lines else "",
                   summary_line=out.marks.get("summary", (None, None))[1],
                   cache_bytes=dir_bytes(Path(path)))


def dir_bytes(path: Path) -> int | None:
    if path.is_file():
        return path.stat().st_size
    if not path.is_dir():
        return None
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def spm_model_for(bench: Bench, corpus: Corpus) -> tuple[Path, str]:
    """The SentencePiece model prepare trained; else (prepare failed) one trained here."""
    prepared = bench.find("transduce", corpus.size, "prepare (cold cache)")
    where = [Path(prepared.extra["cache_path"])] if prepared else []
    model = find_spm_model([*where, cache_dir_of(bench, corpus.size)])
    if model is not None:
        return model, "trained by transduce prepare"
    fallback = corpus.root / "fallback" / "spm.spm.model"
    if not fallback.exists():
        log("no SentencePiece model from transduce prepare: training a fallback one")
        cmd = [sys.executable, str(Path(__file__).resolve()), "spm-train",
               "--src", str(corpus.src), "--tgt", str(corpus.tgt),
               "--prefix", str(fallback.parent / "spm.spm"),
               "--vocab-size", str(config_value(bench, "tokenizer.vocab_size")),
               "--model-type", str(config_value(bench, "tokenizer.model_type")),
               "--threads", str(bench.args.threads)]
        run_checked(cmd, corpus.root / "fallback" / "train.log",
                    env=thread_env(bench.args.threads))
    return fallback, "FALLBACK: trained by this script (transduce prepare gave none)"


def run_spm_encode(bench: Bench, corpus: Corpus, m: Measurement) -> None:
    model, origin = spm_model_for(bench, corpus)
    out_json = bench.args.work_dir / "logs" / f"spm-encode.{corpus.size}.json"
    log_path = out_json.with_suffix(".log")
    cmd = [sys.executable, str(Path(__file__).resolve()), "spm-encode", "--model", str(model),
           "--files", str(corpus.src), str(corpus.tgt), "--threads", str(bench.args.threads),
           "--json-out", str(out_json)]
    out = run_monitored(cmd, log_path, thread_env(bench.args.threads), bench.timeout_s())
    check_outcome(out, "SentencePiece encoding", log_path)
    result = json.loads(out_json.read_text())
    m.wall_s, m.memory = round(out.wall_s, 2), out.memory
    m.rate, m.rate_unit = round(result["sentences"] / result["encode_s"], 1), "sentences/s"
    m.extra.update(result, model=str(model), model_origin=origin,
                   with_reading_sentences_per_s=round(
                       result["sentences"] / (result["encode_s"] + result["read_s"]), 1))
    probe = ", ".join(f"{k}: {v:,}/s" for k, v in result["probe_sentences_per_s"].items())
    m.notes.append(f"sp.encode(calls of {result['lines_per_call']:,} lines, the fastest of "
                   f"{probe}, out_type=int, num_threads={bench.args.threads}); rate = encode "
                   f"time only (gzip reading excluded); model {origin}")
    prepared = bench.find("transduce", corpus.size, "prepare (cold cache)")
    if prepared and prepared.wall_s:
        ratio = (2 * corpus.size / prepared.wall_s) / m.rate
        m.extra["prepare_over_spm"] = round(ratio, 3)
        summary = PREPARE_RATE.search(prepared.extra.get("summary_line") or "")
        if summary:
            pass_rate = 2 * float(summary.group(1).replace(",", "")) / m.rate
            m.extra["tokenizing_pass_over_spm"] = round(pass_rate, 3)


def run_train(bench: Bench, corpus: Corpus, m: Measurement, procs: int) -> None:
    threads = bench.args.threads if procs == 1 else 1
    name = f"train{procs}p"
    out_dir = bench.args.work_dir / "runs" / f"{name}.{corpus.size}"
    shutil.rmtree(out_dir, ignore_errors=True)
    overrides = [*data_overrides(bench, corpus, threads),
                 f"train.max_steps={bench.args.train_steps}", "train.valid_every=100000000",
                 f"train.out_dir={out_dir}", "train.progress=false"]
    args = ["train", str(bench.args.config), *sets(overrides)]
    env = thread_env(threads)
    if procs == 1:
        cmd = transduce_cmd(*args)
    else:
        for name_ in TORCHRUN_ENV_DROP:
            env.pop(name_, None)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", str(procs), "-m", "transduce", *args]
    cache = cache_dir_of(bench, corpus.size)
    before = set(cache.iterdir()) if cache.exists() else set()
    log_path = bench.args.work_dir / "logs" / f"{name}.{corpus.size}.log"
    log_path.unlink(missing_ok=True)
    out = run_monitored(cmd, log_path, env, bench.timeout_s(),
                        markers={"first": FIRST_UPDATE, "finished": TRAIN_FINISHED,
                                 "precision": TRAIN_PRECISION, "model": TRAIN_MODEL})
    check_outcome(out, f"transduce train ({procs} process{'es' * (procs > 1)})", log_path)
    if "first" not in out.marks:
        raise BenchError(f"no 'first update after' line; log {log_path}")
    m.wall_s, m.memory = round(out.wall_s, 2), out.memory
    m.first_update_s = round(out.marks["first"][0], 2)
    m.extra.update(first_update_line=out.marks["first"][1], threads_per_process=threads,
                   finished_line=out.marks.get("finished", (None, None))[1],
                   precision_line=out.marks.get("precision", (None, None))[1],
                   model_line=out.marks.get("model", (None, None))[1],
                   steps=bench.args.train_steps)
    added = (set(cache.iterdir()) if cache.exists() else set()) - before
    if added:
        m.notes.append("CACHE MISS: train wrote new cache entries "
                       f"({', '.join(p.name for p in sorted(added))}): not a warm-cache run")
    m.notes.append(f"{bench.args.train_steps} updates, no validation; memory peaks over the "
                   "whole run (start-up, updates, final save)")
    if "precision" in out.marks:  # precision: auto decides per machine (OpenNMT-py: fp32)
        m.notes.append(out.marks["precision"][1])


def measure_loader(cache_dir: Path, batch_tokens: int, seconds: float = 30.0,
                   window: int = 1_000_000) -> dict[str, Any]:
    """Target tokens/s that transduce's loader delivers with no model: epoch 0's batch plan
    (as the trainer makes it), then padded batches from the memory map, built by the
    background thread and consumed as fast as they come, for `seconds`."""
    import numpy as np

    from transduce.data.batching import plan_batches
    from transduce.data.dataset import PreparedCorpus
    from transduce.data.loader import Prefetcher
    from transduce.text import load_codecs

    tick = time.perf_counter()
    data = PreparedCorpus(cache_dir)
    vocab = load_codecs(cache_dir)[1].vocab
    open_s = time.perf_counter() - tick
    tick = time.perf_counter()
    rng = np.random.default_rng(1)
    batches = plan_batches(data.src_len, data.tgt_len, data.epoch_examples([1.0], rng),
                           batch_tokens, rng, window)
    plan_s = time.perf_counter() - tick
    tokens, n, tick = 0, 0, time.perf_counter()
    with Prefetcher(lambda rows: data.collate(rows, vocab.pad_id, vocab.start_id, vocab.eos_id),
                    batches) as loader:
        for batch in loader:
            tokens += batch.n_tgt_tokens
            n += 1
            if time.perf_counter() - tick > seconds:
                break
    elapsed = time.perf_counter() - tick
    return {"tgt_tokens_per_s": tokens / elapsed, "batches": n, "tgt_tokens": tokens,
            "seconds": round(elapsed, 2), "batches_per_epoch": len(batches),
            "open_s": round(open_s, 2), "plan_epoch_s": round(plan_s, 2), "pairs": len(data)}


def run_loader(bench: Bench, corpus: Corpus, m: Measurement) -> None:
    prepared = bench.find("transduce", corpus.size, "prepare (cold cache)")
    cache = Path(prepared.extra["cache_path"]) if prepared else cache_dir_of(bench, corpus.size)
    out_json = bench.args.work_dir / "logs" / f"loader.{corpus.size}.json"
    out_json.unlink(missing_ok=True)
    log_path = out_json.with_suffix(".log")
    batch_tokens = int(config_value(bench, "train.batch_tokens"))
    cmd = [sys.executable, str(Path(__file__).resolve()), "measure-loader", "--cache-dir",
           str(cache), "--batch-tokens", str(batch_tokens), "--json-out", str(out_json)]
    out = run_monitored(cmd, log_path, thread_env(bench.args.threads), bench.timeout_s())
    result = json.loads(out_json.read_text()) if out_json.exists() else {}
    if "error" in result:
        raise BenchError(result["error"])
    check_outcome(out, "measure_loader", log_path)
    m.wall_s, m.memory = round(out.wall_s, 2), out.memory
    rate = result.get("tgt_tokens_per_s")
    m.rate, m.rate_unit = (round(rate, 1) if rate else None), "tgt tokens/s"
    m.extra.update(result, batch_tokens=batch_tokens)


def bench_transduce(bench: Bench, corpus: Corpus) -> None:
    n = corpus.size
    measured(bench, "transduce", n, "prepare (cold cache)",
             lambda m: run_prepare(bench, corpus, m))
    measured(bench, "SentencePiece", n, "encode src+tgt",
             lambda m: run_spm_encode(bench, corpus, m))
    measured(bench, "transduce", n, "train 1 process",
             lambda m: run_train(bench, corpus, m, 1))
    measured(bench, "transduce", n, f"train torchrun x{TORCHRUN_PROCS}",
             lambda m: run_train(bench, corpus, m, TORCHRUN_PROCS))
    measured(bench, "transduce", n, "loader", lambda m: run_loader(bench, corpus, m))


# --------------------------------------------------------------------------- OpenNMT-py


def onmt_bin(bench: Bench) -> Path:
    """The OpenNMT-py venv of peers.py, plus what its sentencepiece transform and
    onmt_build_vocab import and peers.py never needed (ONMT_EXTRAS)."""
    bin_dir = ensure_venv(ONMT_VENV, bench.args.peers_dir)
    missing = [module for module in ONMT_EXTRAS
               if subprocess.run([str(bin_dir / "python"), "-c", f"import {module}"],
                                 check=False, capture_output=True).returncode != 0]
    if missing:
        log(f"installing {', '.join(missing)} into the OpenNMT-py venv")
        run_checked([str(bin_dir / "pip"), "install", "--disable-pip-version-check",
                     *missing], bench.args.peers_dir / "onmt-setup.log")
    bench.meta["versions"]["OpenNMT-py"] = package_version(bin_dir / "python", "OpenNMT-py")
    return bin_dir


@dataclass
class OnmtData:
    bin: Path
    src: Path
    tgt: Path
    spm: Path
    run_dir: Path


def run_onmt_vocab(bench: Bench, data: OnmtData, size: int, m: Measurement) -> Path:
    vocab = data.run_dir / "vocab.txt"
    config = write_config(data.run_dir / "vocab.yaml", {
        "data": {"corpus_1": {"path_src": str(data.src), "path_tgt": str(data.tgt),
                              "transforms": ["sentencepiece"]}},
        "src_subword_model": str(data.spm), "tgt_subword_model": str(data.spm),
        "save_data": str(data.run_dir / "samples"), "src_vocab": str(vocab),
        "share_vocab": True, "overwrite": True,
    })
    n_sample = bench.args.onmt_n_sample
    cmd = [str(data.bin / "onmt_build_vocab"), "-config", str(config), "-n_sample",
           str(n_sample), "-num_threads", str(bench.args.threads)]
    log_path = data.run_dir / "build_vocab.log"
    out = run_monitored(cmd, log_path, thread_env(bench.args.threads, ONMT_ENV),
                        bench.timeout_s())
    check_outcome(out, "onmt_build_vocab", log_path)
    m.wall_s, m.memory = round(out.wall_s, 2), out.memory
    m.rate, m.rate_unit = round(size / out.wall_s, 1), "pairs/s"
    with open(vocab, "rb") as f:
        m.extra.update(n_sample=n_sample, vocab_entries=sum(1 for _ in f))
    sample = ("the whole corpus: like prepare, it reads and tokenizes every pair"
              if n_sample < 0 else "a sample")
    m.notes.append(f"-n_sample {n_sample} ({sample}), sentencepiece transform, "
                   f"-num_threads {bench.args.threads}")
    return vocab


def onmt_train_config(bench: Bench, data: OnmtData, vocab: Path) -> dict[str, Any]:
    r = transformer_recipe(bench.args.transduce_set)
    max_len = int(config_value(bench, "data.max_len"))
    return {
        **ONMT_COMMON, **ONMT_TRANSFORMER,
        "batch_size": r.batch_tokens, "learning_rate": r.noam_factor,
        "warmup_steps": r.warmup, "dropout": [r.dropout],
        "attention_dropout": [r.attention_dropout], "label_smoothing": r.label_smoothing,
        "bucket_size": bench.args.onmt_bucket_size, "report_every": 1,
        "train_steps": HUGE_STEPS, "valid_steps": HUGE_STEPS,
        "save_checkpoint_steps": HUGE_STEPS,
        "src_vocab": str(vocab), "tgt_vocab": str(vocab), "share_vocab": True,
        "data": {"corpus_1": {"path_src": str(data.src), "path_tgt": str(data.tgt),
                              "transforms": ["sentencepiece", "filtertoolong"]}},
        "src_subword_model": str(data.spm), "tgt_subword_model": str(data.spm),
        "src_seq_length": max_len, "tgt_seq_length": max_len,
        "save_model": str(data.run_dir / "model"),
    }


def run_onmt_train(bench: Bench, data: OnmtData, vocab: Path, m: Measurement) -> None:
    config = write_config(data.run_dir / "train.yaml", onmt_train_config(bench, data, vocab))
    steps = bench.args.onmt_steps

    def stop_when(line: str) -> bool:
        match = ONMT_STEP.search(line)
        return match is not None and int(match[1]) >= steps

    log_path = data.run_dir / "train.log"
    cmd = [str(data.bin / "onmt_train"), "-config", str(config)]
    out = run_monitored(cmd, log_path, thread_env(bench.args.threads, ONMT_ENV),
                        bench.timeout_s(), markers={"first": ONMT_STEP, "loop": ONMT_LOOP},
                        stop_when=stop_when)
    check_outcome(out, "onmt_train", log_path)
    if "first" not in out.marks:
        raise BenchError(f"onmt_train logged no step; log {log_path}:\n"
                         + "\n".join(out.last_lines[-15:]))
    last_step, tok_per_s = parse_onmt_log(log_path)
    m.wall_s, m.memory = round(out.wall_s, 2), out.memory
    m.first_update_s = round(out.marks["first"][0], 2)
    m.rate, m.rate_unit = (round(tok_per_s, 1) if tok_per_s else None), "tgt tokens/s"
    m.extra.update(first_step_line=out.marks["first"][1], last_step=last_step,
                   bucket_size=bench.args.onmt_bucket_size,
                   training_loop_start_s=out.seconds("loop"))
    m.notes.append(f"-report_every 1, SIGTERM at step {steps}; first update = first "
                   f"'Step N/' line; bucket_size {bench.args.onmt_bucket_size} (OpenNMT-py's "
                   "default is 262144); sentencepiece + filtertoolong transforms on the fly")


def bench_onmt(bench: Bench, corpus: Corpus) -> None:
    n = corpus.size
    holder: dict[str, Any] = {}

    def setup(m: Measurement) -> None:
        bin_dir = onmt_bin(bench)
        spm, origin = spm_model_for(bench, corpus)
        src, tgt, seconds = plain_copy(corpus)
        run_dir = bench.args.work_dir / "onmt" / str(n)
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        holder["data"] = OnmtData(bin_dir, src, tgt, spm, run_dir)
        m.wall_s = round(seconds, 2)
        m.notes.append(f"OpenNMT-py reads no gzip: corpus decompressed once (not counted "
                       f"below); SentencePiece model {origin}: {spm}")

    measured(bench, "OpenNMT-py", n, "setup (venv, gunzip)", setup)
    if "data" not in holder:
        return
    data: OnmtData = holder["data"]

    def vocab(m: Measurement) -> None:
        holder["vocab"] = run_onmt_vocab(bench, data, n, m)

    measured(bench, "OpenNMT-py", n, "onmt_build_vocab", vocab)
    if "vocab" not in holder:
        return
    measured(bench, "OpenNMT-py", n, f"onmt_train ({bench.args.onmt_steps} steps)",
             lambda m: run_onmt_train(bench, data, holder["vocab"], m))


# --------------------------------------------------------------------------- fairseq


def _pip_reason(message: str, lines: int = 12) -> str:
    """The last line of an error output (the exception or pip's verdict), then its tail."""
    kept = [line for line in message.splitlines() if line.strip()]
    return "\n".join(kept[-1:] + kept[-lines:-1]) if kept else "(no output)"


def fairseq_bin(bench: Bench) -> Path:
    """fairseq 0.12.2's venv; a failed install is remembered (--retry-fairseq-install)."""
    failed = bench.args.peers_dir / "fairseq-setup.failed.json"
    wanted = json.dumps([list(step) for step in FAIRSEQ_VENV.pip_steps])
    if failed.exists() and not bench.args.retry_fairseq_install:
        saved = json.loads(failed.read_text())
        if saved.get("spec") == wanted:
            raise BenchError(f"not installed (earlier attempt, {saved['when']}; "
                             f"--retry-fairseq-install to try again): {saved['reason']}")
    try:
        bin_dir = ensure_venv(FAIRSEQ_VENV, bench.args.peers_dir)
    except BenchError as exc:
        reason = _pip_reason(str(exc))
        failed.write_text(json.dumps({"spec": wanted, "when": time.strftime("%Y-%m-%d %H:%M"),
                                      "reason": reason}))
        raise BenchError(f"not installed: {reason}") from None
    failed.unlink(missing_ok=True)
    probe = subprocess.run([str(bin_dir / "fairseq-preprocess"), "--help"],
                           check=False, capture_output=True, text=True)
    if probe.returncode != 0:
        reason = _pip_reason(probe.stderr)
        if "mutable default" in reason:
            reason += "\n(fairseq 0.12.2's dataclass configs predate Python 3.11's check)"
        raise BenchError(f"installed, but fairseq-preprocess does not start: {reason}")
    bench.meta["versions"]["fairseq"] = package_version(bin_dir / "python", "fairseq")
    return bin_dir


def bench_fairseq(bench: Bench, corpus: Corpus) -> None:
    n = corpus.size
    holder: dict[str, Any] = {}
    run_dir = bench.args.work_dir / "fairseq" / str(n)

    def install(m: Measurement) -> None:
        start = time.perf_counter()
        holder["bin"] = fairseq_bin(bench)
        m.wall_s = round(time.perf_counter() - start, 2)

    measured(bench, "fairseq", n, "install", install)
    if "bin" not in holder:
        return

    def encode(m: Measurement) -> None:
        spm, origin = spm_model_for(bench, corpus)
        shutil.rmtree(run_dir, ignore_errors=True)
        (run_dir / "pieces").mkdir(parents=True)
        cmd = [sys.executable, str(Path(__file__).resolve()), "spm-pieces", "--model", str(spm),
               "--files", str(corpus.src), str(corpus.tgt), "--out",
               str(run_dir / "pieces" / "train.src"), str(run_dir / "pieces" / "train.tgt"),
               "--threads", str(bench.args.threads)]
        log_path = run_dir / "pieces.log"
        out = run_monitored(cmd, log_path, thread_env(bench.args.threads), bench.timeout_s())
        check_outcome(out, "SentencePiece encoding to pieces", log_path)
        m.wall_s, m.memory = round(out.wall_s, 2), out.memory
        m.rate, m.rate_unit = round(n / out.wall_s, 1), "pairs/s"
        m.notes.append(f"text -> whitespace-separated pieces (plain files), num_threads "
                       f"{bench.args.threads}; model {origin}")
        holder["pieces"] = run_dir / "pieces" / "train"

    measured(bench, "fairseq", n, "spm encode to pieces", encode)
    if "pieces" not in holder:
        return

    def preprocess(m: Measurement) -> None:
        cmd = [str(holder["bin"] / "fairseq-preprocess"), "--source-lang", "src",
               "--target-lang", "tgt", "--trainpref", str(holder["pieces"]),
               "--destdir", str(run_dir / "bin"), "--joined-dictionary",
               "--dataset-impl", "mmap", "--workers", str(bench.args.threads)]
        log_path = run_dir / "preprocess.log"
        out = run_monitored(cmd, log_path, thread_env(bench.args.threads), bench.timeout_s())
        check_outcome(out, "fairseq-preprocess", log_path)
        m.wall_s, m.memory = round(out.wall_s, 2), out.memory
        m.rate, m.rate_unit = round(n / out.wall_s, 1), "pairs/s"
        m.extra["destdir_bytes"] = dir_bytes(run_dir / "bin")
        m.notes.append(f"--joined-dictionary --dataset-impl mmap --workers "
                       f"{bench.args.threads}")

    measured(bench, "fairseq", n, "fairseq-preprocess", preprocess)


# --------------------------------------------------------------------------- targets


@dataclass
class Target:
    size: int
    what: str
    value: str
    target: str
    passed: bool | None  # None: not measured


def _ok(value: float | None, limit: float, higher_is_better: bool = False) -> bool | None:
    if value is None:
        return None
    return value >= limit if higher_is_better else value <= limit


def _mem(m: Measurement | None, attr: str) -> float | None:
    if m is None or m.memory is None:
        return None
    return getattr(m.memory, attr)


def _fmt(value: float | None, unit: str = "", digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def max_worker_anon(m: Measurement | None) -> float | None:
    """The highest peak RssAnon among the torchrun workers (labelled 'rank N')."""
    if m is None or m.memory is None:
        return None
    ranks = [gb for label, gb in m.memory.per_process_anon_gb.items()
             if label.startswith("rank ")]
    return max(ranks) if ranks else None


def targets_for(bench: Bench, n: int) -> list[Target]:
    prep = bench.find("transduce", n, "prepare (cold cache)")
    spm = bench.find("SentencePiece", n, "encode src+tgt")
    t1 = bench.find("transduce", n, "train 1 process")
    t2 = bench.find("transduce", n, f"train torchrun x{TORCHRUN_PROCS}")
    loader = bench.find("transduce", n, "loader")
    vocab = bench.find("OpenNMT-py", n, "onmt_build_vocab")
    onmt = bench.find("OpenNMT-py", n, f"onmt_train ({bench.args.onmt_steps} steps)")
    ratio = spm.extra.get("prepare_over_spm") if spm else None
    pass_ratio = spm.extra.get("tokenizing_pass_over_spm") if spm else None
    worker_max = max_worker_anon(t2)
    out = [
        Target(n, "prepare peak RSS", _fmt(_mem(prep, "rss_gb"), " GB"), "<= 2 GB at 4.5M",
               _ok(_mem(prep, "rss_gb"), 2.0)),
        Target(n, "prepare / SentencePiece encode (sentences/s)", _fmt(ratio, "x"),
               ">= 0.8x", _ok(ratio, 0.8, True)),
        Target(n, "prepare's tokenizing pass / SentencePiece encode", _fmt(pass_ratio, "x"),
               ">= 0.8x", _ok(pass_ratio, 0.8, True)),
        Target(n, "train 1 process peak RssAnon", _fmt(_mem(t1, "anon_gb"), " GB"),
               "<= 1.5 GB", _ok(_mem(t1, "anon_gb"), 1.5)),
        Target(n, f"train torchrun x{TORCHRUN_PROCS}: max RssAnon per process",
               _fmt(worker_max, " GB"), "<= 1.5 GB", _ok(worker_max, 1.5)),
        Target(n, f"train torchrun x{TORCHRUN_PROCS}: RssAnon of the workers together",
               _fmt(_mem(t2, "workers_anon_gb"), " GB"), "<= 2.6 GB",
               _ok(_mem(t2, "workers_anon_gb"), 2.6)),
        Target(n, "first update after start, 1 process", _fmt(t1 and t1.first_update_s, " s", 1),
               "<= 15 s", _ok(t1 and t1.first_update_s, 15.0)),
        Target(n, f"first update after start, torchrun x{TORCHRUN_PROCS}",
               _fmt(t2 and t2.first_update_s, " s", 1), "<= 15 s",
               _ok(t2 and t2.first_update_s, 15.0)),
        Target(n, "loader target tokens/s", _fmt(loader and loader.rate, "", 0), ">= 300000",
               _ok(loader and loader.rate, 300_000, True)),
    ]
    out.extend(onmt_comparisons(n, prep, t1, vocab, onmt))
    return out


def onmt_comparisons(n: int, prep: Measurement | None, t1: Measurement | None,
                     vocab: Measurement | None, onmt: Measurement | None) -> list[Target]:
    """transduce's figure / OpenNMT-py's for the same step: below 1 is better."""
    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    def total(a: Measurement | None, b: Measurement | None) -> float | None:
        if a is None or b is None or a.wall_s is None or b.first_update_s is None:
            return None
        return a.wall_s + b.first_update_s

    pairs = [
        ("prepare wall / onmt_build_vocab wall", prep and prep.wall_s, vocab and vocab.wall_s),
        ("prepare peak RSS / onmt_build_vocab peak RSS", _mem(prep, "rss_gb"),
         _mem(vocab, "rss_gb")),
        ("first update (warm cache) / onmt first step", t1 and t1.first_update_s,
         onmt and onmt.first_update_s),
        ("prepare + first update / build_vocab + onmt first step", total(prep, t1),
         total(vocab, onmt)),
        ("train peak RssAnon / onmt_train peak RssAnon", _mem(t1, "anon_gb"),
         _mem(onmt, "anon_gb")),
        ("train peak RSS / onmt_train peak RSS", _mem(t1, "rss_gb"), _mem(onmt, "rss_gb")),
    ]
    return [Target(n, f"vs OpenNMT-py: {what}", _fmt(ratio(a, b), "x"), "< 1x",
                   None if ratio(a, b) is None else ratio(a, b) < 1.0)  # type: ignore[operator]
            for what, a, b in pairs]


# --------------------------------------------------------------------------- report


COLUMNS = ("system", "N", "measurement", "wall s", "rate", "1st upd s", "RSS GB", "Anon GB",
           "File+Shm", "error")
TARGET_COLUMNS = ("N", "target", "value", "target", "pass")


def measurement_row(m: Measurement) -> list[str]:
    mem = m.memory
    rate = f"{m.rate:,.0f} {m.rate_unit}" if m.rate is not None else "-"
    anon = _fmt(mem.anon_gb) if mem else "-"
    if mem and mem.workers_anon_gb is not None:
        anon = _fmt(mem.workers_anon_gb) + "*"
    return [m.system, f"{m.size:,}", m.step, _fmt(m.wall_s, "", 1), rate,
            _fmt(m.first_update_s, "", 1), _fmt(mem.rss_gb) if mem else "-", anon,
            _fmt(mem.file_shmem_gb) if mem else "-",
            m.error.splitlines()[0][:100] if m.error else ""]


def target_row(t: Target) -> list[str]:
    verdict = "-" if t.passed is None else ("pass" if t.passed else "FAIL")
    return [f"{t.size:,}", t.what, t.value, t.target, verdict]


def aligned(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A plain-text table: columns as wide as their widest cell."""
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return [line(header), "-|-".join("-" * w for w in widths), *map(line, rows)]


MEMORY_LEGEND = ("RSS = peak summed VmRSS of the process tree; Anon = peak summed RssAnon "
                 "(* = the torchrun workers only); File+Shm = peak summed RssFile + RssShmem "
                 "(memory-mapped cache pages). GB = 10^9 bytes.")


TARGET_LEGEND = ("prepare's wall time includes training SentencePiece on a sample (the bulk of "
                 "it at small N); onmt_build_vocab and the SentencePiece row reuse that model, "
                 "so their times include no tokenizer training. 'vs OpenNMT-py' rows: "
                 "transduce's figure / OpenNMT-py's, below 1 is better.")


def format_tables(bench: Bench) -> str:
    lines = aligned(COLUMNS, [measurement_row(m) for m in bench.measurements])
    lines += ["", MEMORY_LEGEND, ""]
    sizes = sorted({m.size for m in bench.measurements})
    lines += aligned(TARGET_COLUMNS, [target_row(t) for n in sizes for t in targets_for(bench, n)])
    lines += ["", TARGET_LEGEND]
    notes = [f"  {m.system} {m.step} ({m.size:,}): {note}"
             for m in bench.measurements for note in m.notes]
    errors = [f"  {m.system} {m.step} ({m.size:,}): {m.error}"
              for m in bench.measurements if m.error]
    if notes:
        lines += ["", "Notes:", *notes]
    if errors:
        lines += ["", "Errors:", *errors]
    return "\n".join(lines)


def write_json(bench: Bench) -> None:
    path: Path = bench.args.json_out
    path.parent.mkdir(parents=True, exist_ok=True)
    sizes = sorted({m.size for m in bench.measurements})
    payload = {
        "meta": bench.meta,
        "corpora": {str(k): v for k, v in bench.corpora.items()},
        "measurements": [dataclasses.asdict(m) for m in bench.measurements],
        "targets": [dataclasses.asdict(t) for n in sizes for t in targets_for(bench, n)],
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")


def lscpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return cpu_model()
    for row in out.splitlines():
        if row.startswith("Model name:"):
            return row.split(":", 1)[1].strip()
    return cpu_model()


# --------------------------------------------------------------------------- sub-commands


def _read_chunks(path: Path, chunk: int) -> Iterator[list[str]]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        while True:
            lines = [line.rstrip("\n") for line in itertools.islice(f, chunk)]
            if not lines:
                return
            yield lines


def spm_encode_main(argv: Sequence[str]) -> None:
    """Hidden `spm-encode`: time sp.encode(out_type=int) over files, chunk by chunk."""
    parser = argparse.ArgumentParser(prog="data_scale.py spm-encode")
    parser.add_argument("--model", required=True)
    parser.add_argument("--files", nargs="+", required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--chunk", type=int, default=SPM_CHUNK)
    parser.add_argument("--json-out", required=True)
    args = parser.parse_args(argv)
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=args.model)
    probe = _probe_spm_calls(sp, next(_read_chunks(Path(args.files[0]), args.chunk)), args.threads)
    call = max(probe, key=probe.__getitem__)  # SentencePiece at its fastest
    sentences = pieces = 0
    encode_s = read_s = 0.0
    for path in args.files:
        chunks = _read_chunks(Path(path), args.chunk)
        while True:
            start = time.perf_counter()
            lines = next(chunks, None)
            read_s += time.perf_counter() - start
            if lines is None:
                break
            start = time.perf_counter()
            for a in range(0, len(lines), call):
                ids = sp.encode(lines[a:a + call], out_type=int, num_threads=args.threads)
                pieces += sum(map(len, ids))
            encode_s += time.perf_counter() - start
            sentences += len(lines)
    Path(args.json_out).write_text(json.dumps({
        "sentences": sentences, "pieces": pieces, "encode_s": round(encode_s, 3),
        "read_s": round(read_s, 3), "threads": args.threads, "chunk": args.chunk,
        "lines_per_call": call, "probe_sentences_per_s": {str(k): v for k, v in probe.items()}}))


def _probe_spm_calls(sp: Any, lines: list[str], threads: int, rounds: int = 3) -> dict[int, int]:
    """Sentences/s of sp.encode over `lines` for each call size in SPM_CALLS (the median of
    `rounds`, sizes interleaved): SentencePiece's speed depends on it (2026-11-30, 2 threads:
    ~190k sentences/s in calls of 100k lines, ~260k in calls of 2k)."""
    rates: dict[int, list[float]] = {c: [] for c in SPM_CALLS}
    for _ in range(rounds):
        for call in SPM_CALLS:
            start = time.perf_counter()
            for a in range(0, len(lines), call):
                sp.encode(lines[a:a + call], out_type=int, num_threads=threads)
            rates[call].append(len(lines) / (time.perf_counter() - start))
    return {c: round(statistics.median(r)) for c, r in rates.items()}


def spm_pieces_main(argv: Sequence[str]) -> None:
    """Hidden `spm-pieces`: write whitespace-separated pieces of each file (for fairseq)."""
    parser = argparse.ArgumentParser(prog="data_scale.py spm-pieces")
    parser.add_argument("--model", required=True)
    parser.add_argument("--files", nargs="+", required=True)
    parser.add_argument("--out", nargs="+", required=True)
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args(argv)
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=args.model)
    for src, dst in zip(args.files, args.out, strict=True):
        with open(dst, "w", encoding="utf-8") as out:
            for lines in _read_chunks(Path(src), SPM_CHUNK):
                encoded = sp.encode(lines, out_type=str, num_threads=args.threads)
                out.write("".join(" ".join(p) + "\n" for p in encoded))


def spm_train_main(argv: Sequence[str]) -> None:
    """Hidden `spm-train`: a fallback joint model on the first 200k lines of each side."""
    parser = argparse.ArgumentParser(prog="data_scale.py spm-train")
    for name in ("--src", "--tgt", "--prefix", "--model-type"):
        parser.add_argument(name, required=True)
    parser.add_argument("--vocab-size", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args(argv)
    import sentencepiece as spm

    def sample() -> Iterator[str]:
        for path in (args.src, args.tgt):
            yield from next(_read_chunks(Path(path), 200_000), [])

    Path(args.prefix).parent.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=sample(), model_prefix=args.prefix, vocab_size=args.vocab_size,
        model_type=args.model_type, character_coverage=1.0, num_threads=args.threads,
        minloglevel=2)


def measure_loader_main(argv: Sequence[str]) -> None:
    """Hidden `measure-loader`: run measure_loader and write its dict (or the error)."""
    parser = argparse.ArgumentParser(prog="data_scale.py measure-loader")
    parser.add_argument("--cache-dir", type=Path, required=True)
    parser.add_argument("--batch-tokens", type=int, required=True)
    parser.add_argument("--json-out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        result = measure_loader(args.cache_dir, args.batch_tokens)
    except NotImplementedError as exc:
        result = {"error": f"NotImplementedError: {exc}"}
    args.json_out.write_text(json.dumps(result))


SUBCOMMANDS: dict[str, Callable[[Sequence[str]], None]] = {
    "spm-encode": spm_encode_main,
    "spm-pieces": spm_pieces_main,
    "spm-train": spm_train_main,
    "measure-loader": measure_loader_main,
}


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    default_data = Path(os.environ.get("TRANSDUCE_DATA", REPO_ROOT.parent / "shared" / "data"))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000000,4500000",
                        help="comma-separated corpus sizes in pairs")
    parser.add_argument("--work-dir", type=Path,
                        default=Path("~/.cache/transduce-bench/data_scale").expanduser())
    parser.add_argument("--peers-dir", type=Path,
                        default=Path("~/.cache/transduce-peers").expanduser())
    parser.add_argument("--peers", default=",".join(ALL_PEERS),
                        help="comma-separated subset of: " + ", ".join(ALL_PEERS) + " (or none)")
    parser.add_argument("--json-out", type=Path,
                        default=REPO_ROOT / "benchmarks" / "results" / "data_scale.json")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-build", action="store_true",
                        help="use the corpora an earlier run built in --work-dir")
    parser.add_argument("--only", choices=("transduce", "peers"), default=None)
    parser.add_argument("--data-dir", type=Path, default=default_data,
                        help="folder holding tatoeba_*_eng/ (default $TRANSDUCE_DATA or "
                             "../shared/data)")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help="the small Transformer recipe (data paths are overridden)")
    parser.add_argument("--transduce-set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra override for transduce prepare and train (repeatable)")
    parser.add_argument("--train-steps", type=int, default=100)
    parser.add_argument("--onmt-steps", type=int, default=100,
                        help="stop onmt_train (SIGTERM) once it logs this step")
    parser.add_argument("--onmt-n-sample", type=int, default=-1,
                        help="onmt_build_vocab -n_sample (-1: the whole corpus)")
    parser.add_argument("--onmt-bucket-size", type=int, default=262144,
                        help="onmt_train bucket_size (262144 is OpenNMT-py's default)")
    parser.add_argument("--step-timeout-min", type=float, default=180.0,
                        help="time limit of each measured command")
    parser.add_argument("--retry-fairseq-install", action="store_true",
                        help="try to install fairseq again after a remembered failure")
    args = parser.parse_args(argv)
    try:
        args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--sizes must be comma-separated integers, got {args.sizes!r}")
    if not args.sizes or min(args.sizes) < PAIRS_PER_LINE:
        parser.error("--sizes needs at least one size >= 4")
    wanted = {p.strip() for p in args.peers.split(",") if p.strip() and p.strip() != "none"}
    if wanted - set(ALL_PEERS):
        parser.error(f"unknown peers: {', '.join(sorted(wanted - set(ALL_PEERS)))}")
    args.peers = [p for p in ALL_PEERS if p in wanted]
    args.work_dir = args.work_dir.expanduser().resolve()
    args.peers_dir = args.peers_dir.expanduser().resolve()
    args.config = args.config.resolve()
    return args


def main(argv: Sequence[str]) -> int:
    if argv[:1] and argv[0] in SUBCOMMANDS:
        SUBCOMMANDS[argv[0]](argv[1:])
        return 0
    args = parse_args(argv)
    for folder in (args.work_dir, args.peers_dir):
        folder.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "lscpu_model_name": lscpu_model(), "cores": os.cpu_count(), "threads": args.threads,
        "sizes": args.sizes, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "config": str(args.config), "transduce_set": args.transduce_set,
        "train_steps": args.train_steps, "torchrun_procs": TORCHRUN_PROCS,
        "corpus_recipe": CORPUS_RECIPE, "direction": "de/fr/es -> en (target = English)",
        "memory_unit": "GB = 10^9 bytes", "versions": {
            "transduce": package_version(Path(sys.executable), "transduce"),
            "sentencepiece": package_version(Path(sys.executable), "sentencepiece"),
            "torch": package_version(Path(sys.executable), "torch")},
        "peers": args.peers, "only": args.only,
    }
    bench = Bench(args=args, meta=meta)
    for n in args.sizes:
        corpus = load_corpus(args.work_dir, n) if args.skip_build else None
        if corpus is None:
            if args.skip_build:
                log(f"corpus {n:,}: --skip-build but none in {args.work_dir}: skipped")
                bench.add(Measurement("corpus", n, "build", error="BenchError: no corpus "
                                      "(--skip-build)"))
                continue
            try:
                corpus = build_corpus(args.data_dir, args.work_dir, n)
            except Exception as exc:  # recorded; the next size may work
                bench.add(Measurement("corpus", n, "build", error=f"{type(exc).__name__}: "
                                      f"{exc}"))
                continue
        bench.corpora[n] = {**corpus.info, "src": str(corpus.src), "tgt": str(corpus.tgt)}
        if args.only != "peers":
            bench_transduce(bench, corpus)
        if args.only != "transduce":
            if "onmt" in args.peers:
                bench_onmt(bench, corpus)
            if "fairseq" in args.peers:
                bench_fairseq(bench, corpus)
    write_json(bench)
    print()
    print(format_tables(bench))
    print(f"\nJSON: {args.json_out}")
    return 0 if all(m.error is None for m in bench.measurements) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
