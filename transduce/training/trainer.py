"""The training loop. It knows batches, a loss and a model's forward; nothing of architectures."""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau
from tqdm import tqdm

from transduce.config import Config, save_config
from transduce.data import Batch, collate, make_batches, read_parallel
from transduce.data.batching import plan_batches
from transduce.data.dataset import PreparedCorpus, encode_pairs
from transduce.data.loader import Prefetcher
from transduce.data.prepare import check_cache, find_cache, prepare
from transduce.evaluate import METRICS, evaluate, split_refs
from transduce.models import build_model, count_parameters
from transduce.models.build import load_pretrained_embeddings
from transduce.text import load_codecs, save_codecs
from transduce.training import distributed
from transduce.training.checkpoint import (
    CHECKPOINTS,
    MODEL_FILE,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    save_weights,
)
from transduce.training.loss import output_layer_loss
from transduce.training.schedules import make_scheduler
from transduce.translator import Translator

LOG_FILE = "train_log.jsonl"


@dataclass
class Progress:
    """Everything needed to continue a run exactly where it stopped (saved as JSON)."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    tgt_tokens: int = 0
    train_time_s: float = 0.0
    elapsed_s: float = 0.0
    best: float | None = None
    best_step: int = 0
    bad_validations: int = 0
    history: list[dict] = field(default_factory=list)


def resolve_device(setting: str) -> torch.device:
    if setting == "cuda" or (setting == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def resolve_precision(setting: str, device: torch.device,
                      log: Callable[[str], None] = print) -> torch.dtype | None:
    """The autocast dtype, or None for fp32. 'auto': on CUDA bf16 where supported, else fp16;
    on a CPU bf16 only where a timed matrix product shows it to be much faster than fp32."""
    if setting == "fp32":
        return None
    if setting == "bf16":
        _cap_onednn_cache()
        return torch.bfloat16
    if setting == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    _cap_onednn_cache()
    speedup = bf16_speedup()
    # The small Transformer's step gained ~1.15x where bf16 products ran 2.3-3x fp32's
    # speed: below ~1.5x the casts around the products eat the gain.
    choice = torch.bfloat16 if speedup >= 1.5 else None
    log(f"precision auto: bf16 matrix products run at {speedup:.2f}x fp32's speed on this "
        f"CPU -> {'bf16' if choice else 'fp32'}")
    return choice


def _cap_onednn_cache() -> None:
    """oneDNN keeps a compiled kernel, with its buffers, for each of the last 1,024 shapes it
    saw; with bf16 and batches of many shapes that cache alone held ~1 GB (small Transformer:
    RssAnon 2.3 GB, against 1.38 GB with 16 kernels at the same speed, 1.62 GB with 128).
    oneDNN reads this when it first runs; a value the user set is kept."""
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "16")


def bf16_speedup(size: int = 512, rounds: int = 7) -> float:
    """How many times faster a (size x size) matrix product runs in bf16 than in fp32 on
    this CPU: the median over `rounds` of the ratio of one fp32 and one bf16 timing taken
    back to back (some tens of milliseconds in all), so that a moment of load from another
    process does not decide. CPU flags don't tell: measured 0.6x with avx512_bf16 alone,
    2.3-3x on AMD Zen 4 and ~3x with AMX."""
    if not torch.backends.mkldnn.is_available():
        return 0.0
    pairs = {dtype: (torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype))
             for dtype in (torch.float32, torch.bfloat16)}

    def seconds(dtype: torch.dtype) -> float:
        a, b = pairs[dtype]
        tick = time.perf_counter()
        for _ in range(3):
            a @ b
        return time.perf_counter() - tick

    seconds(torch.float32), seconds(torch.bfloat16)  # warm-up: the first calls pick kernels
    ratios = sorted(seconds(torch.float32) / max(seconds(torch.bfloat16), 1e-9)
                    for _ in range(rounds))
    return ratios[len(ratios) // 2]


def make_optimizer(cfg: Config, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    t = cfg.train
    # Fused Adam: one kernel for all parameters, where the default loops over them (on
    # 2 CPU cores that loop was 4% of a small Transformer's step).
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, betas=t.betas, weight_decay=t.weight_decay,
                                fused=True)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=t.lr, betas=t.betas, weight_decay=t.weight_decay,
                                 fused=True)
    if t.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.SGD(params, lr=t.lr, weight_decay=t.weight_decay)


class Trainer:
    """Trains `cfg` into the model directory cfg.train.out_dir.

    Reading data and building tokenizers happen in `__init__`; `run()` trains, validating
    every `valid_every` steps (JSONL log, best model, checkpoint, early stopping).
    Under torchrun each process trains on its share of the batches (distributed.py).
    """

    def __init__(self, cfg: Config, resume: bool = False, log: Callable[[str], None] = print):
        t, d = cfg.train, cfg.data
        self.started = time.time()
        self.device = resolve_device(t.device)
        self.world = distributed.init(self.device.type == "cuda")
        if self.world.size > 1 and self.device.type == "cuda":
            self.device = torch.device("cuda", self.world.local_rank)
        self.cfg, self.log = cfg, log if self.world.main else (lambda _: None)
        log = self.log
        self.out = Path(t.out_dir)
        self.amp_dtype = resolve_precision(t.precision, self.device, log)
        # CPU timings differ between processes: all of them take bf16 if any chose it.
        timed = t.precision == "auto" and self.device.type == "cpu" and self.world.size > 1
        if timed and distributed.reduce(self.world, [float(self.amp_dtype is not None)],
                                        "max")[0]:
            self.amp_dtype = torch.bfloat16
        if t.threads:
            torch.set_num_threads(t.threads)
        random.seed(t.seed)
        torch.manual_seed(t.seed)
        # Validation references: TAB-separated alternatives per line; the loss uses the first.
        self.valid_text: tuple[list[str], list[list[str]]] | None = None
        if d.valid_src and d.valid_tgt:
            valid_src, valid_tgt = read_parallel(d.valid_src, d.valid_tgt)
            self.valid_text = valid_src, [split_refs(line) for line in valid_tgt]
        ckpt = latest_checkpoint(self.out) if resume else None
        if resume and ckpt is None:
            log(f"no checkpoint in {self.out}/checkpoints: starting from scratch")
        self.data = PreparedCorpus(self._prepared(self.out if ckpt is not None else None))
        self.src, self.tgt = load_codecs(self.data.path)
        self.valid_data = encode_pairs(self.valid_text[0], [r[0] for r in self.valid_text[1]],
                                       self.src, self.tgt) if self.valid_text else None
        self.model = build_model(cfg.model, len(self.src.vocab), len(self.tgt.vocab),
                                 self.src.vocab.pad_id).to(self.device)
        self._load_pretrained()
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(cfg, params)
        # fp16 gradients can underflow: scale the loss (bf16 has fp32's range and needs none).
        self.scaler = torch.amp.GradScaler(self.device.type,
                                           enabled=self.amp_dtype == torch.float16)
        self.progress = Progress()
        self._plan: tuple[int, list[np.ndarray]] | None = None
        per_epoch = len(self.epoch_batches(0))
        self.planned_steps = max(1, -(-per_epoch // t.accum_steps) * t.max_epochs)
        if t.max_steps:
            self.planned_steps = min(self.planned_steps, t.max_steps)
        self.scheduler = make_scheduler(t.scheduler, self.optimizer, cfg.model.hidden_size,
                                        self.budget_used)
        if ckpt is not None:
            self.progress = Progress(**load_checkpoint(ckpt, self.model, self.optimizer,
                                                       self.scheduler))
            log(f"resumed from {ckpt} (step {self.progress.step}, epoch {self.progress.epoch})")
            self._trim_log()
        elif self.world.main:
            self.out.mkdir(parents=True, exist_ok=True)
            # A fresh run owns the directory: an earlier run's checkpoints sort after ours, so
            # pruning would delete ours and `latest`, --resume and `average` would mix runs.
            shutil.rmtree(self.out / CHECKPOINTS, ignore_errors=True)
            save_config(cfg, self.out / "config.yaml")
            save_codecs(self.src, self.tgt, self.out)
            (self.out / LOG_FILE).unlink(missing_ok=True)
            (self.out / MODEL_FILE).unlink(missing_ok=True)
        log(f"model: {count_parameters(self.model):,} parameters; vocab src "
            f"{len(self.src.vocab):,} tgt {len(self.tgt.vocab):,}; device {self.device}"
            f"{'' if self.amp_dtype is None else f', autocast {self.amp_dtype}'}"
            f"{'' if self.world.size == 1 else f'; {self.world.size} processes'}")
        self.features = self.model.features  # teacher forcing up to the output layer
        if self.world.rank > 0:  # its own dropout masks (rank 0 draws as one process would)
            torch.manual_seed(t.seed + 7919 * self.world.rank + self.progress.step)
        if self.world.size > 1:  # after loading a checkpoint: DDP copies rank 0's weights
            from torch.nn.parallel import DistributedDataParallel

            self.ddp = DistributedDataParallel(_Features(self.model))
            self.features = self.ddp

    def _trim_log(self) -> None:
        """Drop log records newer than the checkpoint we resume from: a run killed between a
        validation's log line and its checkpoint would otherwise log that step twice."""
        path = self.out / LOG_FILE
        if not path.exists():
            return
        lines = path.read_text(encoding="utf-8").splitlines()
        kept = [line for line in lines
                if line.strip() and json.loads(line).get("step", 0) <= self.progress.step]
        if len(kept) != len(lines):
            tmp = path.with_suffix(".tmp")
            tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
            tmp.replace(path)

    def _prepared(self, tokenizer_dir: Path | None) -> Path:
        """The prepared cache of the training data: rank 0 prepares (or reuses) it while the
        other processes wait, then every process memory-maps the same files."""
        threads = self.cfg.train.threads or os.cpu_count() or 1
        if self.world.main:
            path = prepare(self.cfg, tokenizer_dir, threads, self.log)
        distributed.barrier(self.world)
        if not self.world.main:
            path, _ = find_cache(self.cfg, tokenizer_dir)
            problem = check_cache(path)
            if problem is not None:
                raise ValueError(f"rank {self.world.rank} cannot read the prepared data at "
                                 f"{path} ({problem}): data.cache_dir must be on a filesystem "
                                 "that every machine shares")
        return path

    def _load_pretrained(self) -> None:
        pre = self.cfg.model.pretrained_embeddings
        for path, embed, codec in ((pre.src, self.model.src_embed, self.src),
                                   (pre.tgt, self.model.tgt_embed, self.tgt)):
            if path:
                n = load_pretrained_embeddings(embed, path, codec.vocab.itos, pre.freeze)
                self.log(f"loaded {n:,} pretrained vectors from {path}")

    # ---- the loop ---------------------------------------------------------------------

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """This process's batches of an epoch (rows of the prepared data): with N processes,
        every N-th batch from its rank on, the same number for every process (a remainder
        of < N batches is skipped). The same epoch always gives the same batches."""
        if self._plan is not None and self._plan[0] == epoch:
            return self._plan[1]
        d, t = self.cfg.data, self.cfg.train
        rng = np.random.default_rng(t.seed + epoch)
        examples = self.data.epoch_examples([c.weight for c in d.corpora()], rng)
        batches = plan_batches(self.data.src_len, self.data.tgt_len, examples, t.batch_tokens,
                               rng, d.shuffle_window)
        n, rank = self.world.size, self.world.rank
        self._plan = (epoch, batches[rank:len(batches) // n * n:n])
        return self._plan[1]

    def _batches(self, rows: list[np.ndarray]) -> list[Batch]:
        v = self.tgt.vocab
        return [self.data.collate(r, v.pad_id, v.bos_id, v.eos_id).to(self.device)
                for r in rows]

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                              enabled=self.amp_dtype is not None)

    def train_step(self, batches: list[Batch]) -> tuple[float, int]:
        """One update from (accumulated) batches; returns the mean loss per target token of
        this process's batches, and the target tokens of the update over all processes."""
        self.model.train()
        n_tokens = sum(b.n_tgt_tokens for b in batches)
        # The gradient is the summed loss over every process's tokens / their number: DDP
        # averages over processes, hence the factor world.size.
        n_all = int(distributed.reduce(self.world, [n_tokens], device=self.device)[0])
        scale = self.world.size / n_all
        total = 0.0
        for i, b in enumerate(batches):
            assert b.tgt_in is not None and b.tgt_out is not None
            sync = self.world.size == 1 or i == len(batches) - 1  # DDP: on the last only
            with contextlib.nullcontext() if sync else self.ddp.no_sync():
                with self._autocast():
                    features = self.features(b.src_ids, b.src_mask, b.tgt_in)  # (B, T, H)
                loss = output_layer_loss(features, self.model.output_weight, b.tgt_out,
                                         self.tgt.vocab.pad_id, self.cfg.train.label_smoothing)
                self.scaler.scale(loss * scale).backward()
            total += loss.item()
        if self.cfg.train.clip_grad_norm > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None and not isinstance(self.scheduler, ReduceLROnPlateau):
            self.scheduler.step()
        return total / max(n_tokens, 1), n_all

    def run(self) -> Path:
        """Train until a stop condition; returns the model directory."""
        t, p = self.cfg.train, self.progress
        stop_requested = {"flag": False}

        def on_signal(signum: int, frame: object) -> None:
            stop_requested["flag"] = True

        old = signal.signal(signal.SIGTERM, on_signal)
        # A live bar on a terminal; in a log file, one plain line every 30 seconds instead.
        bar = tqdm(total=self.planned_steps, initial=p.step, unit="step", dynamic_ncols=True,
                   smoothing=0.05, mininterval=0.5 if sys.stderr.isatty() else 30.0,
                   disable=not t.progress or not self.world.main)
        started = time.time() - p.elapsed_s
        try:
            while p.epoch < t.max_epochs:
                batches = self.epoch_batches(p.epoch)
                groups = [batches[i:i + t.accum_steps]
                          for i in range(p.batch_in_epoch, len(batches), t.accum_steps)]
                with Prefetcher(self._batches, groups) as loader:
                    reason = self._epoch(loader, bar, started, stop_requested)
                if reason:
                    return self._finish(bar, reason)
                p.epoch += 1
                p.batch_in_epoch = 0
            self.validate(bar, final=True)
            return self._finish(bar, "max_epochs reached")
        except KeyboardInterrupt:
            self._checkpoint()
            bar.close()
            self.log(f"interrupted: saved a checkpoint at step {p.step}; continue with --resume")
            raise
        finally:
            signal.signal(signal.SIGTERM, old)

    def _epoch(self, loader: Prefetcher, bar: tqdm, started: float,
               stop_requested: dict[str, bool]) -> str:
        """Train on the rest of this epoch's batches; a reason to stop, or "" at its end."""
        t, p = self.cfg.train, self.progress
        window_loss, window_tokens, window_time = 0.0, 0, 0.0
        tick = time.time()
        for data in loader:  # waiting for a batch counts as training time
            loss, n = self.train_step(data)
            if p.step == 0:
                self.log(f"first update after {time.time() - self.started:.1f} s")
            dt = time.time() - tick
            p.batch_in_epoch += len(data)
            p.step += 1
            p.tgt_tokens += n
            p.train_time_s += dt
            window_loss += loss * n
            window_tokens += n
            window_time += dt
            p.elapsed_s = time.time() - started
            if self.world.size > 1:  # one clock and one stop signal for all
                p.elapsed_s, stop = distributed.reduce(
                    self.world, [p.elapsed_s, float(stop_requested["flag"])], "max",
                    self.device)
                stop_requested["flag"] = stop > 0
            if p.step % t.log_every == 0 or p.step == 1:
                bar.set_postfix(self._postfix(window_loss / window_tokens,
                                              window_tokens / window_time), refresh=False)
                window_loss, window_tokens, window_time = 0.0, 0, 0.0
            bar.update(1)
            if stop_requested["flag"]:
                self._checkpoint()
                return "stopped by SIGTERM; continue with --resume"
            reason = self._stop_reason()
            validate = p.step % t.valid_every == 0 or reason
            if validate and self.validate(bar, final=bool(reason)):
                reason = reason or "early stopping"
            if reason:
                return reason
            tick = time.time()  # validation is not training time
        return ""

    def budget_used(self, step: int) -> float:
        """The fraction of the training budget spent after `step` updates: of the planned
        updates (max_steps, max_epochs) or of max_minutes, whichever is further along."""
        t = self.cfg.train
        used = step / self.planned_steps
        if t.max_minutes:
            used = max(used, self.progress.elapsed_s / (t.max_minutes * 60))
        return used

    def _postfix(self, loss: float, tok_s: float) -> dict[str, str]:
        t, p = self.cfg.train, self.progress
        fix = {"loss": f"{loss:.3f}", "tok/s": f"{tok_s:,.0f}",
               "lr": f"{self.optimizer.param_groups[0]['lr']:.2e}", "ep": str(p.epoch + 1)}
        if t.max_minutes:
            fix["left"] = f"{max(0.0, t.max_minutes - p.elapsed_s / 60):.1f}m"
        return fix

    def _stop_reason(self) -> str:
        t, p = self.cfg.train, self.progress
        if t.max_steps and p.step >= t.max_steps:
            return "max_steps reached"
        if t.max_minutes and p.elapsed_s >= t.max_minutes * 60:
            return "time budget reached"
        return ""

    def _finish(self, bar: tqdm, reason: str) -> Path:
        bar.close()
        p = self.progress
        if p.best is not None:
            name = self._stop_metric()
            value = signed_score(name, p.best)  # its own inverse
            best = f"best {name} {value:.2f} at step {p.best_step}"
        else:
            best = "no validation set" if self.valid_data is None else "not validated yet"
        self.log(f"training finished ({reason}) after {p.step} steps, {p.elapsed_s / 60:.1f} min;"
                 f" {best}. Model: {self.out}")
        if self.world.main and not (self.out / MODEL_FILE).exists():
            save_weights(self.model, self.out / MODEL_FILE)
        return self.out

    # ---- validation -------------------------------------------------------------------

    @torch.no_grad()
    def valid_loss(self) -> float:
        """Mean cross-entropy per target token on the validation set (no label smoothing)."""
        assert self.valid_data is not None
        self.model.eval()
        d, v = self.valid_data, self.tgt.vocab
        total, n = 0.0, 0
        for ix in make_batches([len(s) for s in d.src], [len(t) for t in d.tgt],
                               self.cfg.train.batch_tokens):
            b = collate([d.src[i] for i in ix], [d.tgt[i] for i in ix], v.pad_id, v.bos_id,
                        v.eos_id).to(self.device)
            assert b.tgt_in is not None and b.tgt_out is not None
            with self._autocast():
                features = self.model.features(b.src_ids, b.src_mask, b.tgt_in)
            total += output_layer_loss(features, self.model.output_weight, b.tgt_out,
                                       v.pad_id).item()
            n += b.n_tgt_tokens
        return total / max(n, 1)

    def validate(self, bar: tqdm, final: bool = False) -> bool:
        """Log metrics, keep the best model, checkpoint; returns True when early stopping."""
        t, p = self.cfg.train, self.progress
        if self.valid_text is None:
            self._save_model()
            self._checkpoint()
            return False
        tick = time.time()
        srcs, refs = self.valid_text
        if t.valid_max_sentences:
            srcs, refs = srcs[: t.valid_max_sentences], refs[: t.valid_max_sentences]
        loss = self.valid_loss()
        # Validation scores the model being trained, never an int8 copy of it.
        translator = Translator(self.model, self.src, self.tgt, self.cfg.decode, self.device,
                                quantize="none")
        hyps = [tr.text for tr in translator.translate(srcs, beam_size=t.valid_beam, n_best=1)]
        name = self._stop_metric()
        names = list(dict.fromkeys([*self.cfg.eval.metrics, "exact_match"]))
        if name != "loss" and name not in names:
            names.append(name)
        values = evaluate(names, hyps, refs).values
        value = loss if name == "loss" else values[name]
        improved = update_best(p, name, value)
        if improved:
            self._save_model()
        if isinstance(self.scheduler, ReduceLROnPlateau):  # mode "max"
            self.scheduler.step(signed_score(name, value))
        record = {"step": p.step, "epoch": p.epoch + 1, "elapsed_s": round(p.elapsed_s, 2),
                  "train_time_s": round(p.train_time_s, 2), "tgt_tokens": p.tgt_tokens,
                  "tokens_per_s": round(p.tgt_tokens / max(p.train_time_s, 1e-9), 1),
                  "valid_loss": round(loss, 4), "valid_ppl": round(math.exp(min(loss, 50)), 2),
                  **{k: round(v, 2) for k, v in values.items()},
                  "lr": self.optimizer.param_groups[0]["lr"], "best": improved,
                  "valid_time_s": round(time.time() - tick, 2)}
        p.history.append(record)
        if self.world.main:
            with open(self.out / LOG_FILE, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            shown = " ".join(f"{k} {v:.2f}" for k, v in values.items())
            bar.write(f"[step {p.step}] valid loss {loss:.3f} ppl {record['valid_ppl']:.1f} "
                      f"{shown} | {record['tokens_per_s']:,.0f} "
                      f"tgt tok/s{' *best*' if improved else ''}")
            for s, h, r in list(zip(srcs, hyps, refs))[: t.num_samples]:
                bar.write(f"    src: {s}\n    ref: {' | '.join(r)}\n    hyp: {h}")
        self._checkpoint()
        patience = t.early_stopping.patience
        return bool(patience) and p.bad_validations >= patience and not final

    def _stop_metric(self) -> str:
        """The metric that picks the best model and stops early (config resolves a null)."""
        return self.cfg.train.early_stopping.metric or self.cfg.eval.metrics[0]

    def _save_model(self) -> None:
        if self.world.main:
            save_weights(self.model, self.out / MODEL_FILE)

    def _checkpoint(self) -> None:
        """Rank 0 writes; the others hold the same state."""
        if not self.world.main:
            return
        p = self.progress
        save_checkpoint(self.out, self.model, self.optimizer, self.scheduler,
                        {**p.__dict__, "history": p.history[-50:]}, self.cfg.train.keep_last)


def signed_score(metric: str, value: float) -> float:
    """`value` of `metric` (a name in evaluate.METRICS, or "loss") signed so that higher is
    better: BLEU as it is, -loss, -WER."""
    return value if metric != "loss" and METRICS[metric].higher_is_better else -value


def update_best(p: Progress, metric: str, value: float) -> bool:
    """Record one validation `value` of `metric` at step p.step in p.best (kept signed, see
    `signed_score`), p.best_step and p.bad_validations; True when it is the best so far."""
    signed = signed_score(metric, value)
    if p.best is None or signed > p.best:
        p.best, p.best_step, p.bad_validations = signed, p.step, 0
        return True
    p.bad_validations += 1
    return False


def train(cfg: Config, resume: bool = False, log: Callable[[str], None] = print) -> Path:
    """Train a model as configured; returns the model directory (cfg.train.out_dir).
    Under torchrun, every process calls this (see training/distributed.py)."""
    trainer = Trainer(cfg, resume, log)
    try:
        return trainer.run()
    finally:
        distributed.shutdown(trainer.world)


class _Features(torch.nn.Module):
    """`model.features` as a module's forward, for DistributedDataParallel to wrap."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, src_ids: torch.Tensor, src_mask: torch.Tensor,
                tgt_in: torch.Tensor) -> torch.Tensor:
        return self.model.features(src_ids, src_mask, tgt_in)  # type: ignore[operator]
