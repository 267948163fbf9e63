"""`transduce tune`: grid search, pruning, several workers on SQLite and PostgreSQL, resuming
after kill -9, and cross-validation, with tiny models trained for real on the demo task."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from postgres import postgres_server

from transduce.cli import main
from transduce.config import load_config
from transduce.demo import make_splits, write_splits
from transduce.training.callbacks import Validation
from transduce.tune.study import PruningReport, TuneOptions, make_pruner, open_study

SPACE = {"train.lr": [0.003, 0.01], "model.dropout": [0.0, 0.2]}


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with base.yaml (a tiny RNN on the demo task) and space.yaml (2 x 2)."""
    root = tmp_path_factory.mktemp("tune")
    paths = write_splits(root / "data", make_splits(n_train=600, n_valid=30, n_test=5, seed=2))
    base = {"data": {k: str(v) for k, v in paths.items() if not k.startswith("test")},
            "tokenizer": {"kind": "word", "shared": False},
            "model": {"arch": "rnn", "emb_dim": 16, "hidden_size": 32, "encoder_layers": 1,
                      "decoder_layers": 1},
            "train": {"lr": 3e-3, "batch_tokens": 400, "max_steps": 12, "valid_every": 4,
                      "progress": False, "num_samples": 0, "threads": 1, "tensorboard": False,
                      "early_stopping": {"metric": "chrf", "patience": 0}},
            "decode": {"beam_size": 1}}
    (root / "base.yaml").write_text(yaml.safe_dump(base))
    (root / "space.yaml").write_text(yaml.safe_dump(SPACE))
    return root


def tune_args(task: Path, out: Path, *extra: str) -> list[str]:
    return ["tune", str(task / "base.yaml"), "--space", str(task / "space.yaml"),
            "--sampler", "grid", "--pruner", "none", "--out", str(out), *extra]


def load(out: Path, name: str = "base", storage: str | None = None) -> optuna.Study:
    return open_study(TuneOptions(out, storage=storage, study=name))


def finished_params(study: optuna.Study) -> Counter:
    return Counter(tuple(sorted(t.params.items())) for t in study.trials
                   if t.state == TrialState.COMPLETE)


def grid_points() -> set:
    return {(("model.dropout", d), ("train.lr", lr)) for lr in SPACE["train.lr"]
            for d in SPACE["model.dropout"]}


def test_a_2x2_grid_finishes_4_trials_and_writes_a_loadable_best_config(task: Path,
                                                                        tmp_path: Path,
                                                                        capsys):
    out = tmp_path / "grid"
    assert main(tune_args(task, out)) == 0
    study = load(out)
    assert finished_params(study) == Counter(grid_points())  # each point once
    assert all(t.value is not None and t.user_attrs["steps"] == 12 for t in study.trials)
    best = load_config(out / "best.yaml")
    assert (best.train.lr, best.model.dropout) == (study.best_params["train.lr"],
                                                     study.best_params["model.dropout"])
    assert best.train.max_steps == 12  # the base config's budget
    printed = capsys.readouterr().out
    assert "4 trials (4 complete)" in printed and "best: trial" in printed
    assert (out / "history.png").stat().st_size > 0 and (out / "importance.png").is_file()
    # --report reads the same study back
    assert main([*tune_args(task, out), "--report"]) == 0
    assert "4 trials (4 complete)" in capsys.readouterr().out


class _Trainer:
    """Stands in for a Trainer: records a stop request."""

    def __init__(self) -> None:
        self.stopped = ""

    def request_stop(self, reason: str) -> None:
        self.stopped = reason


def _report(trial: optuna.Trial, scores: list[float]) -> _Trainer:
    trainer, hook = _Trainer(), PruningReport(trial, "bleu")
    for i, score in enumerate(scores, start=1):
        hook.on_validation(trainer, Validation(i * 10, 1, 1.0, {"bleu": score}, False, 1e-3,
                                               0.0, 0.0, 0, 0.0), [])  # type: ignore[arg-type]
        if trainer.stopped:
            break
    return trainer


@pytest.mark.parametrize("pruner", ["median", "hyperband", "asha"])
def test_the_pruner_stops_a_trial_whose_scores_are_clearly_worse(pruner: str):
    # (Hyperband puts trials into brackets by a hash of the study name and trial number.)
    study = optuna.create_study(direction="maximize", pruner=make_pruner(pruner),
                                study_name="scripted", sampler=optuna.samplers.RandomSampler(0))
    for i in range(9):
        good = [20.0 + i % 3, 25.0 + i % 4, 30.0 - i % 2, 32.0 + i % 3]
        trial = study.ask()
        _report(trial, good)
        study.tell(trial, good[-1])
    trial = study.ask()
    assert not _report(trial, [30.0, 35.0, 40.0, 45.0]).stopped  # the best so far runs on
    study.tell(trial, 45.0)
    trial = study.ask()
    assert "pruned" in _report(trial, [1.0, 1.5, 2.0, 2.5]).stopped


def _worker(task: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "transduce", *tune_args(task, out, *extra)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def _two_workers_split_the_grid(task: Path, out: Path, *extra: str) -> optuna.Study:
    workers = [_worker(task, out, "--trial-steps", "40", *extra) for _ in range(2)]
    logs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], logs
    return load(out, storage=extra[1] if extra else None)


def test_two_workers_on_one_sqlite_study_split_the_trials(task: Path, tmp_path: Path):
    study = _two_workers_split_the_grid(task, tmp_path / "sqlite")
    assert finished_params(study) == Counter(grid_points())  # none ran twice
    assert len({t.user_attrs["worker"] for t in study.trials
                if t.state == TrialState.COMPLETE}) == 2


def test_a_postgresql_server_serves_two_workers_on_one_study(task: Path, tmp_path: Path):
    with postgres_server() as url:
        study = _two_workers_split_the_grid(task, tmp_path / "pg", "--storage", url)
        assert finished_params(study) == Counter(grid_points())
        assert len({t.user_attrs["worker"] for t in study.trials
                    if t.state == TrialState.COMPLETE}) == 2


def test_a_killed_tune_continues_where_it_stopped(task: Path, tmp_path: Path):
    out = tmp_path / "killed"
    worker = _worker(task, out, "--trial-steps", "400")
    deadline = time.time() + 120
    while time.time() < deadline:  # until a trial is under way
        time.sleep(0.5)
        if (out / "study.db").exists():
            try:
                if any(t.state == TrialState.RUNNING for t in load(out).trials):
                    break
            except KeyError:  # the study is not created yet
                continue
    worker.send_signal(signal.SIGKILL)
    worker.wait(30)
    killed = [t.number for t in load(out).trials if t.state == TrialState.RUNNING]
    assert len(killed) == 1

    run = subprocess.run([sys.executable, "-m", "transduce",
                          *tune_args(task, out, "--trial-steps", "12")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert f"trial {killed[0]} was interrupted" in run.stdout
    study = load(out)
    assert study.trials[killed[0]].state == TrialState.FAIL
    assert study.trials[killed[0]].user_attrs["interrupted"]
    assert finished_params(study) == Counter(grid_points())  # its point ran again, once
    assert "interrupted" in run.stdout.split("study 'base'")[-1]  # shown in the table


def test_cross_validation_trains_one_run_per_fold(task: Path, tmp_path: Path):
    out = tmp_path / "cv"
    space = tmp_path / "one_point.yaml"
    space.write_text(yaml.safe_dump({"train.lr": [0.01]}))
    args = tune_args(task, out, "--cv", "3")
    args[args.index("--space") + 1] = str(space)
    assert main(args) == 0
    (trial,) = load(out).trials
    assert trial.state == TrialState.COMPLETE
    assert len(trial.user_attrs["fold_scores"]) == 3
    assert trial.value == pytest.approx(sum(trial.user_attrs["fold_scores"]) / 3, abs=1e-3)
    folds = sorted((out / "trials" / "0000").glob("fold*"))
    assert [f.name for f in folds] == ["fold0", "fold1", "fold2"]
    for i, fold in enumerate(folds):  # fold i validates on folds/fold{i}, trains on the rest
        cfg = load_config(fold / "config.yaml")
        assert cfg.data.valid_src == str(out / "folds" / f"fold{i}.src")
        assert sorted(c.src for c in cfg.data.corpora()) == sorted(
            str(out / "folds" / f"fold{j}.src") for j in range(3) if j != i)
