"""The training loop: batches in, updates out, validation and checkpoints on the way.

It knows a model only through `features(src_ids, src_mask, tgt_in)` and `output_weight`
(the loss is computed from those), and reports to callbacks (callbacks.py) instead of
writing logs itself. Setting a run up (data, tokenizers, model) is setup.py's job; `train`
does both and returns a `TrainResult`.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau

from transduce.config import Config
from transduce.data import Batch, collate, make_batches
from transduce.data.batching import plan_batches
from transduce.data.loader import Prefetcher
from transduce.evaluate import METRICS, evaluate
from transduce.training import distributed
from transduce.training.callbacks import (
    LOG_FILE,
    Callback,
    JsonlLog,
    ProgressBar,
    Sample,
    TrainStats,
    Validation,
)
from transduce.training.checkpoint import MODEL_FILE, load_checkpoint, save_checkpoint, save_weights
from transduce.training.loss import output_layer_loss
from transduce.training.schedules import make_scheduler
from transduce.training.setup import Setup, set_up
from transduce.translator import Translator

__all__ = ["LOG_FILE", "Progress", "TrainResult", "Trainer", "train"]


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


@dataclass
class TrainResult:
    """What a run gives back: where the model is and how well it did."""

    model_dir: Path
    metric: str  # the metric that picked the best model ("loss" or a name in METRICS)
    best_score: float | None  # its best validation value (None: never validated)
    best_step: int
    steps: int
    epochs: int  # epochs begun
    minutes: float  # wall time of the loop, resumed runs included
    stop_reason: str
    history: list[dict]  # the validation records (as in train_log.jsonl) of this process


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


def add_l1_gradient(params: Sequence[torch.nn.Parameter], coefficient: float) -> None:
    """Add the (sub)gradient of coefficient * sum(|w|) to every weight matrix and embedding
    (parameters with 2 or more dimensions; biases and normalization gains are left alone):
    grad += coefficient * sign(w). sign(0) = 0, so an exact zero stays a minimum."""
    for p in params:
        if p.grad is not None and p.dim() >= 2:
            p.grad.add_(torch.sign(p.detach()), alpha=coefficient)


class Trainer:
    """Trains a set-up run (setup.py) into its model directory.

    `run()` trains, validating every train.valid_every updates (best model, checkpoint,
    early stopping) and reporting to `callbacks`. Under torchrun each process trains on its
    share of the batches (distributed.py); callbacks run on rank 0 only.
    """

    def __init__(self, setup: Setup, callbacks: Sequence[Callback] = ()):
        self.setup, self.cfg, self.log = setup, setup.cfg, setup.log
        self.model, self.src, self.tgt = setup.model, setup.src, setup.tgt
        self.data, self.device, self.world = setup.data, setup.device, setup.world
        self.valid_text, self.valid_data = setup.valid_text, setup.valid_data
        self.out, self.amp_dtype = setup.out, setup.amp_dtype
        self.callbacks = list(callbacks) if self.world.main else []
        t = self.cfg.train
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(self.cfg, self.params)
        # fp16 gradients can underflow: scale the loss (bf16 has fp32's range and needs none).
        self.scaler = torch.amp.GradScaler(self.device.type,
                                           enabled=self.amp_dtype == torch.float16)
        self.progress = Progress()
        self._plan: tuple[int, list[np.ndarray]] | None = None
        self._stop_request = ""
        self.grad_norm = 0.0
        per_epoch = len(self.epoch_batches(0))
        self.planned_steps = max(1, -(-per_epoch // t.accum_steps) * t.max_epochs)
        if t.max_steps:
            self.planned_steps = min(self.planned_steps, t.max_steps)
        self.scheduler = make_scheduler(t.scheduler, self.optimizer, setup.model_dim,
                                        self.budget_used)
        self.resumed = setup.checkpoint is not None
        if setup.checkpoint is not None:
            self.progress = Progress(**load_checkpoint(setup.checkpoint, self.model,
                                                       self.optimizer, self.scheduler))
            self.log(f"resumed from {setup.checkpoint} (step {self.progress.step}, "
                     f"epoch {self.progress.epoch})")
        self.features = self.model.features  # teacher forcing up to the output layer
        if self.world.rank > 0:  # its own dropout masks (rank 0 draws as one process would)
            torch.manual_seed(t.seed + 7919 * self.world.rank + self.progress.step)
        if self.world.size > 1:  # after loading a checkpoint: DDP copies rank 0's weights
            from torch.nn.parallel import DistributedDataParallel

            self.ddp = DistributedDataParallel(_Features(self.model))
            self.features = self.ddp

    @classmethod
    def from_config(cls, cfg: Config, resume: bool = False, log: Callable[[str], None] = print,
                    callbacks: Sequence[Callback] | None = None) -> Trainer:
        """Set up `cfg` and a trainer for it, with `default_callbacks` unless given."""
        setup = set_up(cfg, resume, log)
        return cls(setup, default_callbacks(setup) if callbacks is None else callbacks)

    def request_stop(self, reason: str) -> None:
        """Stop after the current update or validation (a callback's way to end the run)."""
        self._stop_request = self._stop_request or reason

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
        v, s = self.tgt.vocab, self.src.vocab
        return [self.data.collate(r, v.pad_id, v.start_id, v.eos_id, s.pad_id, s.eos_id)
                .to(self.device) for r in rows]

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                              enabled=self.amp_dtype is not None)

    def train_step(self, batches: list[Batch]) -> tuple[float, int]:
        """One update from (accumulated) batches; returns the mean loss per target token of
        this process's batches, and the target tokens of the update over all processes."""
        t = self.cfg.train
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
                                         self.tgt.vocab.pad_id, t.label_smoothing,
                                         bias=self.model.final_logits_bias)
                self.scaler.scale(loss * scale).backward()
            total += loss.item()
        self.scaler.unscale_(self.optimizer)  # a no-op without fp16 loss scaling
        if t.l1:
            add_l1_gradient(self.params, t.l1)
        if t.clip_grad_norm > 0:  # the norm before clipping, for the logs
            norm = torch.nn.utils.clip_grad_norm_(self.params, t.clip_grad_norm)
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in self.params
                                                  if p.grad is not None])
        self.grad_norm = float(norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None and not isinstance(self.scheduler, ReduceLROnPlateau):
            self.scheduler.step()
        return total / max(n_tokens, 1), n_all

    def run(self) -> TrainResult:
        """Train until a stop condition."""
        t, p = self.cfg.train, self.progress
        sigterm = {"flag": False}

        def on_signal(signum: int, frame: object) -> None:
            sigterm["flag"] = True

        old = signal.signal(signal.SIGTERM, on_signal)
        started = time.time() - p.elapsed_s
        self._call("on_train_begin")
        try:
            while p.epoch < t.max_epochs:
                batches = self.epoch_batches(p.epoch)
                groups = [batches[i:i + t.accum_steps]
                          for i in range(p.batch_in_epoch, len(batches), t.accum_steps)]
                with Prefetcher(self._batches, groups) as loader:
                    reason = self._epoch(loader, started, sigterm)
                if reason:
                    return self._finish(reason)
                p.epoch += 1
                p.batch_in_epoch = 0
            self.validate(final=True)
            return self._finish("max_epochs reached")
        except KeyboardInterrupt:
            self._checkpoint()
            self.log(f"interrupted: saved a checkpoint at step {p.step}; continue with --resume")
            raise
        finally:
            signal.signal(signal.SIGTERM, old)

    def _epoch(self, loader: Prefetcher, started: float, sigterm: dict[str, bool]) -> str:
        """Train on the rest of this epoch's batches; a reason to stop, or "" at its end."""
        t, p = self.cfg.train, self.progress
        window_loss, window_tokens, window_time = 0.0, 0, 0.0
        tick = time.time()
        for data in loader:  # waiting for a batch counts as training time
            loss, n = self.train_step(data)
            if p.step == 0:
                self.log(f"first update after {time.time() - self.setup.started:.1f} s")
            dt = time.time() - tick
            p.batch_in_epoch += len(data)
            p.step += 1
            p.tgt_tokens += n
            p.train_time_s += dt
            window_loss, window_tokens, window_time = (window_loss + loss * n,
                                                       window_tokens + n, window_time + dt)
            p.elapsed_s = time.time() - started
            stop = sigterm["flag"] or bool(self._stop_request)
            if self.world.size > 1:  # one clock and one stop signal for all
                p.elapsed_s, flag = distributed.reduce(
                    self.world, [p.elapsed_s, float(stop)], "max", self.device)
                stop = flag > 0
            if p.step % t.log_every == 0 or p.step == 1:
                stats = TrainStats(p.step, p.epoch + 1, window_loss / window_tokens,
                                   window_tokens / max(window_time, 1e-9),
                                   self.optimizer.param_groups[0]["lr"], self.grad_norm,
                                   p.elapsed_s)
                self._call("on_log", stats)
                window_loss, window_tokens, window_time = 0.0, 0, 0.0
            self._call("on_step")
            if stop:
                self._checkpoint()
                return (self._stop_request or "stopped by another process" if not sigterm["flag"]
                        else "stopped by SIGTERM; continue with --resume")
            reason = self._stop_reason()
            validate = p.step % t.valid_every == 0 or reason
            if validate and self.validate(final=bool(reason)):
                reason = reason or "early stopping"
            reason = reason or self._stop_request  # a callback may stop after validating
            if reason:
                return reason
            tick = time.time()  # validation is not training time
        return ""

    def _call(self, hook: str, *args: object) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)

    def budget_used(self, step: int) -> float:
        """The fraction of the training budget spent after `step` updates: of the planned
        updates (max_steps, max_epochs) or of max_minutes, whichever is further along."""
        t = self.cfg.train
        used = step / self.planned_steps
        if t.max_minutes:
            used = max(used, self.progress.elapsed_s / (t.max_minutes * 60))
        return used

    def _stop_reason(self) -> str:
        t, p = self.cfg.train, self.progress
        if t.max_steps and p.step >= t.max_steps:
            return "max_steps reached"
        if t.max_minutes and p.elapsed_s >= t.max_minutes * 60:
            return "time budget reached"
        return ""

    def _finish(self, reason: str) -> TrainResult:
        p = self.progress
        name = self.stop_metric
        value = None if p.best is None else signed_score(name, p.best)  # its own inverse
        result = TrainResult(self.out, name, value, p.best_step, p.step, p.epoch + 1,
                             p.elapsed_s / 60, reason, list(p.history))
        if value is not None:
            best = f"best {name} {value:.2f} at step {p.best_step}"
        else:
            best = "no validation set" if self.valid_data is None else "not validated yet"
        if self.world.main and not (self.out / MODEL_FILE).exists():
            save_weights(self.model, self.out / MODEL_FILE)
        self._call("on_train_end", result)
        self.log(f"training finished ({reason}) after {p.step} steps, {p.elapsed_s / 60:.1f} min;"
                 f" {best}. Model: {self.out}")
        return result

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
            b = collate([d.src[i] for i in ix], [d.tgt[i] for i in ix], v.pad_id, v.start_id,
                        v.eos_id, self.src.vocab.pad_id, self.src.vocab.eos_id).to(self.device)
            assert b.tgt_in is not None and b.tgt_out is not None
            with self._autocast():
                features = self.model.features(b.src_ids, b.src_mask, b.tgt_in)
            total += output_layer_loss(features, self.model.output_weight, b.tgt_out,
                                       v.pad_id, bias=self.model.final_logits_bias).item()
            n += b.n_tgt_tokens
        return total / max(n, 1)

    def translator(self) -> Translator:
        """The model being trained as a Translator (never an int8 copy of it)."""
        return Translator.from_model(self.model, self.src, self.tgt, self.cfg.decode,
                                     self.device, quantize="none")

    def validate(self, final: bool = False) -> bool:
        """Score the model, keep the best, checkpoint, report to the callbacks; True when
        early stopping."""
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
        hyps = [tr.text for tr in self.translator().translate(srcs, beam_size=t.valid_beam,
                                                              n_best=1)]
        name = self.stop_metric
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
        valid = Validation(p.step, p.epoch + 1, loss, values, improved,
                           self.optimizer.param_groups[0]["lr"], p.elapsed_s, p.train_time_s,
                           p.tgt_tokens, time.time() - tick)
        p.history.append(valid.record())
        samples = [Sample(s, r, h) for s, h, r in zip(srcs[: t.num_samples],
                                                      hyps[: t.num_samples], refs)]
        self._call("on_validation", valid, samples)
        self._checkpoint()
        patience = t.early_stopping.patience
        return bool(patience) and p.bad_validations >= patience and not final

    @property
    def stop_metric(self) -> str:
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


def default_callbacks(setup: Setup) -> list[Callback]:
    """The progress bar and validation lines, the JSONL log, and TensorBoard where it is
    installed and train.tensorboard is on."""
    t = setup.cfg.train
    callbacks: list[Callback] = [ProgressBar(t.progress, t.num_samples), JsonlLog(setup.out)]
    if t.tensorboard and setup.world.main:
        try:
            from transduce.training.tensorboard import TensorBoardLog
        except ImportError as e:
            setup.log(f"TensorBoard logging is off ({e}); pip install tensorboard, "
                      "or set train.tensorboard: false")
        else:
            callbacks.append(TensorBoardLog(setup.out))
    return callbacks


def train(cfg: Config, resume: bool = False, log: Callable[[str], None] = print,
          callbacks: Sequence[Callback] = (), tokenizer_dir: str | Path | None = None
          ) -> TrainResult:
    """Train a model as configured, into cfg.train.out_dir. `callbacks` are added to the
    default ones; `tokenizer_dir` gives a tokenizer to use instead of training one.
    Under torchrun, every process calls this (see training/distributed.py)."""
    setup = set_up(cfg, resume, log, tokenizer_dir)
    try:
        return Trainer(setup, [*default_callbacks(setup), *callbacks]).run()
    finally:
        distributed.shutdown(setup.world)


class _Features(torch.nn.Module):
    """`model.features` as a module's forward, for DistributedDataParallel to wrap."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, src_ids: torch.Tensor, src_mask: torch.Tensor,
                tgt_in: torch.Tensor) -> torch.Tensor:
        return self.model.features(src_ids, src_mask, tgt_in)  # type: ignore[operator]
