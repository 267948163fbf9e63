"""What the training loop reports to: a list of callbacks (the progress bar, the JSONL log,
TensorBoard, a tuner's pruning hook). A new logger is one new class, not an edit of the loop.

The loop calls, on rank 0 only:

    on_train_begin(trainer)                    after setting up (and resuming)
    on_step(trainer)                           after every update
    on_log(trainer, stats)                     every train.log_every updates (and the first)
    on_validation(trainer, valid, samples)     after every validation
    on_train_end(trainer, result)              when training stops (not on an exception)

A callback may call `trainer.request_stop(reason)`; the loop stops after that update or
validation, saving a checkpoint.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

if TYPE_CHECKING:
    from transduce.training.trainer import Trainer, TrainResult

LOG_FILE = "train_log.jsonl"


@dataclass
class TrainStats:
    """Training figures over the updates since the last report."""

    step: int
    epoch: int  # 1-based
    loss: float  # mean cross-entropy per target token (with label smoothing)
    tokens_per_s: float  # target tokens per second of training time, all processes
    lr: float
    grad_norm: float  # L2 norm of the gradient before clipping, at the last update
    elapsed_s: float


@dataclass
class Validation:
    """One validation's results."""

    step: int
    epoch: int  # 1-based
    loss: float  # mean cross-entropy per target token, no label smoothing
    scores: dict[str, float]  # metric name -> value (evaluate.METRICS)
    best: bool  # the best model so far, by the early-stopping metric
    lr: float
    elapsed_s: float
    train_time_s: float
    tgt_tokens: int  # target tokens trained on so far, all processes
    valid_time_s: float

    @property
    def ppl(self) -> float:
        return math.exp(min(self.loss, 50.0))

    @property
    def tokens_per_s(self) -> float:
        return self.tgt_tokens / max(self.train_time_s, 1e-9)

    def record(self) -> dict:
        """The flat JSON record of train_log.jsonl."""
        return {"step": self.step, "epoch": self.epoch, "elapsed_s": round(self.elapsed_s, 2),
                "train_time_s": round(self.train_time_s, 2), "tgt_tokens": self.tgt_tokens,
                "tokens_per_s": round(self.tokens_per_s, 1), "valid_loss": round(self.loss, 4),
                "valid_ppl": round(self.ppl, 2),
                **{k: round(v, 2) for k, v in self.scores.items()},
                "lr": self.lr, "best": self.best, "valid_time_s": round(self.valid_time_s, 2)}


@dataclass
class Sample:
    """One validation sentence, its references and the model's translation."""

    src: str
    refs: list[str]
    hyp: str


class Callback:
    """Hooks the training loop calls; override those you need."""

    def on_train_begin(self, trainer: Trainer) -> None:
        pass

    def on_step(self, trainer: Trainer) -> None:
        pass

    def on_log(self, trainer: Trainer, stats: TrainStats) -> None:
        pass

    def on_validation(self, trainer: Trainer, valid: Validation, samples: list[Sample]) -> None:
        pass

    def on_train_end(self, trainer: Trainer, result: TrainResult) -> None:
        pass


class ProgressBar(Callback):
    """A live bar on a terminal or in Jupyter (loss, tokens/s, learning rate, time left);
    in a log file one plain line every 30 seconds. Validation results and sample
    translations are printed as lines, also with the bar off (`show_bar=False`)."""

    def __init__(self, show_bar: bool = True, samples: int = 3):
        self.show_bar, self.samples = show_bar, samples
        self.bar: tqdm | None = None

    def on_train_begin(self, trainer: Trainer) -> None:
        self.bar = tqdm(total=trainer.planned_steps, initial=trainer.progress.step, unit="step",
                        dynamic_ncols=True, smoothing=0.05,
                        mininterval=0.5 if sys.stderr.isatty() else 30.0,
                        disable=not self.show_bar)

    def on_step(self, trainer: Trainer) -> None:
        assert self.bar is not None
        self.bar.update(1)

    def on_log(self, trainer: Trainer, stats: TrainStats) -> None:
        assert self.bar is not None
        fix = {"loss": f"{stats.loss:.3f}", "tok/s": f"{stats.tokens_per_s:,.0f}",
               "lr": f"{stats.lr:.2e}", "ep": str(stats.epoch)}
        minutes = trainer.cfg.train.max_minutes
        if minutes:
            fix["left"] = f"{max(0.0, minutes - stats.elapsed_s / 60):.1f}m"
        self.bar.set_postfix(fix, refresh=False)

    def on_validation(self, trainer: Trainer, valid: Validation, samples: list[Sample]) -> None:
        shown = " ".join(f"{k} {v:.2f}" for k, v in valid.scores.items())
        lines = [f"[step {valid.step}] valid loss {valid.loss:.3f} ppl {valid.ppl:.1f} {shown} "
                 f"| {valid.tokens_per_s:,.0f} tgt tok/s{' *best*' if valid.best else ''}"]
        lines += [f"    src: {s.src}\n    ref: {' | '.join(s.refs)}\n    hyp: {s.hyp}"
                  for s in samples[: self.samples]]
        tqdm.write("\n".join(lines))

    def on_train_end(self, trainer: Trainer, result: TrainResult) -> None:
        if self.bar is not None:
            self.bar.close()


class JsonlLog(Callback):
    """One JSON record per validation in MODEL_DIR/train_log.jsonl (read by `transduce
    summary`, `transduce curves` and plots)."""

    def __init__(self, out: Path):
        self.path = Path(out) / LOG_FILE

    def on_train_begin(self, trainer: Trainer) -> None:
        if trainer.resumed:
            self._trim(trainer.progress.step)
        else:
            self.path.unlink(missing_ok=True)

    def _trim(self, step: int) -> None:
        """Drop records newer than the checkpoint we resume from: a run killed between a
        validation's log line and its checkpoint would otherwise log that step twice."""
        if not self.path.exists():
            return
        lines = self.path.read_text(encoding="utf-8").splitlines()
        kept = [line for line in lines
                if line.strip() and json.loads(line).get("step", 0) <= step]
        if len(kept) != len(lines):
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
            tmp.replace(self.path)

    def on_validation(self, trainer: Trainer, valid: Validation, samples: list[Sample]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(valid.record()) + "\n")
