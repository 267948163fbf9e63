"""Running a study: trials of `transduce.train` on an Optuna study kept in a database.

Every `transduce tune` process is a worker: it loads (or creates) the study in the storage
and runs trials until the study has its number of finished trials, so several processes,
on one machine or many, work on one study by running the same command against one
database (SQLite for one machine, PostgreSQL or MySQL for many). A trial whose process died
(kill -9) is marked failed when a worker next starts (same machine: its process is gone;
other machines: its heartbeat stopped) and its parameters are queued again; Ctrl-C marks
the running trial failed and queues it too. Running the same command continues the study.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import socket
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import optuna
from optuna.trial import TrialState
from sqlalchemy.exc import SQLAlchemyError

from transduce.config import ConfigError, config_from_dict
from transduce.data.prepare import prepare
from transduce.evaluate import METRICS
from transduce.training.callbacks import Callback, Sample, Validation
from transduce.training.trainer import Trainer, train
from transduce.tune.folds import fold_config, write_folds
from transduce.tune.space import Param, apply

Log = Callable[[str], None]
SAMPLERS = ("grid", "random", "tpe")
PRUNERS = ("none", "median", "hyperband", "asha")
HEARTBEAT_S, GRACE_S = 30, 120  # a trial whose heartbeat stopped this long ago is stale


@dataclass(frozen=True)
class TuneOptions:
    out: Path
    trials: int | None = None  # finished trials wanted (default: the grid's size, or 20)
    sampler: str = "tpe"
    pruner: str = "asha"
    trial_minutes: float | None = None
    trial_steps: int | None = None
    storage: str | None = None  # a database URL (default: sqlite in `out`)
    study: str = "transduce"
    cv: int = 0  # K-fold cross-validation (0: train on the training data, validate on valid)
    seed: int = 1234


class DuplicateTrial(Exception):
    """Another worker already runs or ran these grid parameters."""


def storage_url(opts: TuneOptions) -> str:
    return opts.storage or f"sqlite:///{(opts.out / 'study.db').resolve()}"


def open_study(opts: TuneOptions, metric: str | None = None,
               space: list[Param] | None = None) -> optuna.Study:
    """Load the study, or create it (needs the metric, whose direction it takes)."""
    # Optuna's own warnings would repeat what the worker says: a failed trial's exception is
    # raised again (one line from the CLI), Ctrl-C is reported as such, not as a traceback.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    url = storage_url(opts)
    engine: dict[str, Any] = {}
    if url.startswith("sqlite"):  # workers take turns writing; wait instead of failing
        engine = {"connect_args": {"timeout": 60}}
    storage = _storage(url, engine)
    sampler = make_sampler(opts.sampler, space or [], opts.seed)
    pruner = make_pruner(opts.pruner)
    if metric is None:
        return optuna.load_study(study_name=opts.study, storage=storage, sampler=sampler,
                                 pruner=pruner)
    lower = metric == "loss" or not METRICS[metric].higher_is_better
    direction: Literal["minimize", "maximize"] = "minimize" if lower else "maximize"
    study = optuna.create_study(storage=storage, study_name=opts.study, direction=direction,
                                sampler=sampler, pruner=pruner, load_if_exists=True)
    if study.direction.name.lower() != direction:
        raise ConfigError(f"study '{opts.study}' in {url} maximizes/minimizes another metric "
                          f"({study.direction.name.lower()}); use another --study name")
    return study


def _storage(url: str, engine: dict[str, Any], attempts: int = 5) -> optuna.storages.RDBStorage:
    """The study database; workers that start together on an empty database race to create
    its tables, and the losers try again."""
    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url, engine_kwargs=engine, heartbeat_interval=HEARTBEAT_S,
                    grace_period=GRACE_S, heartbeat_stale_trial_callback=_mark_stale)
        except SQLAlchemyError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 + random.random())
    raise AssertionError("unreachable")


def make_sampler(name: str, space: list[Param], seed: int) -> optuna.samplers.BaseSampler:
    if name == "grid":
        return optuna.samplers.GridSampler({p.key: p.grid_values() for p in space}, seed=seed)
    if name == "random":  # seeded by process: several workers must not draw the same points
        return optuna.samplers.RandomSampler(seed=seed + os.getpid())
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed + os.getpid(), n_startup_trials=5)
    raise ConfigError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    """Pruners see one report per validation (step 1, 2, ...): the metric's value then."""
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":  # stop a trial below the median of earlier trials at that point
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if name == "hyperband":  # successive halving over brackets (Li et al., 2018)
        return optuna.pruners.HyperbandPruner(min_resource=1, reduction_factor=3)
    if name == "asha":  # one bracket of asynchronous successive halving (Li et al., 2020):
        # a trial goes on past validation 1, 3, 9, ... only in the best third there
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    raise ConfigError(f"unknown pruner {name!r}; choose one of {', '.join(PRUNERS)}")


class PruningReport(Callback):
    """Reports each validation's score to the trial; stops the run when Optuna prunes it."""

    def __init__(self, trial: optuna.Trial, metric: str):
        self.trial, self.metric, self.reports, self.pruned = trial, metric, 0, False

    def on_validation(self, trainer: Trainer, valid: Validation, samples: list[Sample]) -> None:
        self.reports += 1
        value = valid.loss if self.metric == "loss" else valid.scores[self.metric]
        self.trial.report(value, self.reports)
        if self.trial.should_prune():
            self.pruned = True
            trainer.request_stop(f"pruned by the tuner after {self.reports} validations")


@dataclass
class Worker:
    """One process working on a study."""

    base: dict[str, Any]  # the raw config every trial starts from
    space: list[Param]
    opts: TuneOptions
    log: Log = print
    metric: str = ""  # the early-stopping metric, which the study optimizes
    target: int = 0  # finished trials wanted
    folds: list[tuple[str, str]] = field(default_factory=list)  # --cv: the folds' files

    @property
    def name(self) -> str:
        return f"{socket.gethostname()}:{os.getpid()}"

    def run(self) -> optuna.Study:
        cfg = config_from_dict(self.budgeted(self.base))
        metric = cfg.train.early_stopping.metric or cfg.eval.metrics[0]
        self.opts.out.mkdir(parents=True, exist_ok=True)
        study = open_study(self.opts, metric, self.space)
        if not study.user_attrs.get("base_config"):
            study.set_user_attr("base_config", self.base)
            study.set_user_attr("metric", metric)
            study.set_user_attr("space", [p.key for p in self.space])
        self.metric = metric
        self.target = self.opts.trials or 20
        if self.opts.sampler == "grid":  # a grid search ends with its grid
            size = math.prod(len(p.grid_values()) for p in self.space)
            self.target = min(self.opts.trials or size, size)
        requeue_interrupted(study, self.log)
        self.log(f"study '{self.opts.study}' in {storage_url(self.opts)}: "
                 f"{_count(study, finished=True)} of {self.target} trials finished; "
                 f"worker {self.name}")
        if _count(study, finished=True, running=True) < self.target:
            self._prepare_once(cfg)
        while _count(study, finished=True, running=True) < self.target:
            study.optimize(self.objective, n_trials=1, catch=(DuplicateTrial,),
                           gc_after_trial=True)
        return study

    def budgeted(self, raw: dict[str, Any]) -> dict[str, Any]:
        """The config with the trial budget (--trial-steps / --trial-minutes) applied."""
        values: dict[str, Any] = {}
        if self.opts.trial_steps:
            values["train.max_steps"] = self.opts.trial_steps
        if self.opts.trial_minutes:
            values["train.max_minutes"] = self.opts.trial_minutes
        return apply(raw, values)

    def _prepare_once(self, cfg: Any) -> None:
        """The data and tokenizer, prepared before the first trial; the trials reuse them
        (a trial that changes tokenizer or data settings prepares its own, once)."""
        if self.opts.cv:
            self.folds = write_folds(cfg, self.opts.cv, self.opts.out / "folds", self.opts.seed)
        prepare(cfg, log=self.log)

    def objective(self, trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", self.name)
        values = {p.key: p.suggest(trial) for p in self.space}
        if _duplicate(trial, self.opts.sampler == "grid"):
            trial.set_user_attr("duplicate", True)
            raise DuplicateTrial(f"trial {trial.number}: another worker has these parameters")
        raw = self.budgeted(apply(self.base, values))
        out = self.opts.out / "trials" / f"{trial.number:04d}"
        raw.setdefault("train", {})["out_dir"] = str(out)
        shown = ", ".join(f"{k}={v}" for k, v in values.items())
        self.log(f"trial {trial.number}: {shown}")
        tick = time.time()
        try:
            score, steps, pruned = (self._cross_validate(trial, raw) if self.opts.cv
                                    else self._train(trial, raw))
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            raise
        trial.set_user_attr("steps", steps)
        trial.set_user_attr("minutes", round((time.time() - tick) / 60, 3))
        trial.set_user_attr("model_dir", str(out))
        shutil.rmtree(out / "checkpoints", ignore_errors=True)  # the best weights stay
        if pruned:
            raise optuna.TrialPruned(f"trial {trial.number} pruned")
        return score

    def _train(self, trial: optuna.Trial, raw: dict[str, Any],
               report: bool = True, tokenizer_dir: Path | None = None
               ) -> tuple[float, int, bool]:
        pruning = PruningReport(trial, self.metric)
        prefix = f"[trial {trial.number}] "
        result = train(config_from_dict(raw), log=lambda m: self.log(prefix + m),
                       callbacks=[pruning] if report else [], tokenizer_dir=tokenizer_dir)
        if result.best_score is None:
            raise ConfigError("a tuning trial needs a validation set (data.valid_src and "
                              "data.valid_tgt) or --cv K")
        return result.best_score, result.steps, pruning.pruned

    def _cross_validate(self, trial: optuna.Trial, raw: dict[str, Any]
                        ) -> tuple[float, int, bool]:
        """K runs, each validated on its held-out fold; the score is their mean. The pruner
        judges a trial by its first fold."""
        # One tokenizer for all folds, trained on all the training data (as without --cv).
        tokenizer_dir = prepare(config_from_dict(raw), log=self.log)
        scores, steps = [], 0
        for i in range(len(self.folds)):
            fold = fold_config(raw, self.folds, i)
            fold["train"] = {**fold["train"], "out_dir": f"{raw['train']['out_dir']}/fold{i}"}
            score, n, pruned = self._train(trial, fold, report=i == 0,
                                           tokenizer_dir=tokenizer_dir)
            scores.append(score)
            steps += n
            if pruned:
                return score, steps, True
        spread = statistics.stdev(scores) if len(scores) > 1 else 0.0
        trial.set_user_attr("fold_scores", [round(s, 4) for s in scores])
        trial.set_user_attr("cv_std", round(spread, 4))
        self.log(f"trial {trial.number}: {self.metric} over {len(scores)} folds "
                 f"{statistics.mean(scores):.2f} +- {spread:.2f}")
        return statistics.mean(scores), steps, False


def _count(study: optuna.Study, finished: bool = False, running: bool = False) -> int:
    """Trials that count towards the target: finished (complete, pruned, or failed for a
    reason other than an interruption) and, with `running`, those under way or queued."""
    def counted(t: optuna.trial.FrozenTrial) -> bool:
        if t.user_attrs.get("duplicate"):
            return False
        if t.state == TrialState.FAIL:
            return finished and not interrupted(study, t)
        if t.state in (TrialState.RUNNING, TrialState.WAITING):
            return running
        return finished

    return sum(counted(t) for t in study.get_trials(deepcopy=False))


def _duplicate(trial: optuna.Trial, grid: bool) -> bool:
    """True when an earlier live or finished trial has these parameters (looked for in a
    grid search and in a re-queued trial: two workers may have taken the same point)."""
    if not grid and "retry_of" not in trial.user_attrs:
        return False
    for t in trial.study.get_trials(deepcopy=False):
        if (t.number < trial.number and t.params == trial.params
                and t.state in (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)):
            return True
    return False


def _mark_stale(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Optuna failed `trial` because its heartbeat stopped: remember it as interrupted (a
    finished trial's own attributes cannot change any more, the study's can)."""
    study.set_user_attr(f"interrupted_trial_{trial.number}", True)


def interrupted(study: optuna.Study, t: optuna.trial.FrozenTrial) -> bool:
    """A failed trial whose process was stopped (Ctrl-C, kill, a lost machine), as opposed
    to one whose training raised an error."""
    return t.state == TrialState.FAIL and bool(
        t.user_attrs.get("interrupted") or study.user_attrs.get(f"interrupted_trial_{t.number}"))


def requeue_interrupted(study: optuna.Study, log: Log = print) -> None:
    """Mark trials whose process died as failed (interrupted) and queue each interrupted
    trial's parameters again, once."""
    host = socket.gethostname()
    storage = study._storage
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # other machines' trials: by heartbeat
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        name, _, pid = str(t.user_attrs.get("worker", "")).partition(":")
        if name == host and pid.isdigit() and not _alive(int(pid)):  # this machine's
            storage.set_trial_user_attr(t._trial_id, "interrupted", True)
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    for t in trials:
        if interrupted(study, t) and t.number not in retried:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
            log(f"trial {t.number} was interrupted: its parameters are queued again")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
