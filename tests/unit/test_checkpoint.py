"""Checkpoints: atomic `latest`, exact save/load, crash leftovers ignored, exact resume,
no pickle anywhere."""

from __future__ import annotations

import gzip
import json
import os
import random
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from transduce.config import ModelConfig, SchedulerConfig, load_config
from transduce.models import build_model
from transduce.training.checkpoint import (
    average_checkpoints,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_weights,
    save_checkpoint,
    save_weights,
)
from transduce.training.schedules import make_scheduler
from transduce.training.trainer import Trainer


def tiny(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(ModelConfig(emb_dim=8, hidden_size=8, encoder_layers=1), 13, 11)


def trained_state(seed: int, kind: str = "plateau"):
    """A model, Adam optimizer and scheduler after a few updates (so optimizer state exists)."""
    model = tiny(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = make_scheduler(SchedulerConfig(kind=kind, warmup=3), opt, 8)
    for _ in range(3):
        loss = sum((p ** 2).sum() for p in model.parameters())
        loss.backward()
        opt.step()
        opt.zero_grad()
        if kind == "plateau":
            sched.step(loss.item())
        elif sched is not None:
            sched.step()
    return model, opt, sched


def progress(step: int) -> dict:
    return {"step": step, "epoch": 1, "batch_in_epoch": 2, "best": 3.5, "history": [{"x": 1}]}


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def assert_same_optimizer(a: torch.optim.Optimizer, b: torch.optim.Optimizer) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert [{k: v for k, v in g.items() if k != "betas"} for g in sa["param_groups"]] == \
        [{k: v for k, v in g.items() if k != "betas"} for g in sb["param_groups"]]
    assert sa["state"].keys() == sb["state"].keys()
    for idx in sa["state"]:
        for name, value in sa["state"][idx].items():
            other = sb["state"][idx][name]
            assert torch.equal(value, other) if torch.is_tensor(value) else value == other


@pytest.mark.parametrize("kind", ["plateau", "noam", "constant"])
def test_save_load_round_trip_is_exact(tmp_path: Path, kind: str):
    model, opt, sched = trained_state(seed=1, kind=kind)
    random.seed(7)
    torch.manual_seed(8)
    path = save_checkpoint(tmp_path, model, opt, sched, progress(12), keep_last=3)
    after_save = (torch.rand(3), random.random())

    model2, opt2, sched2 = trained_state(seed=2, kind=kind)  # different everything
    torch.manual_seed(99)
    random.seed(99)
    restored = load_checkpoint(path, model2, opt2, sched2)
    assert restored == progress(12)
    assert_same_tensors(model.state_dict(), model2.state_dict())
    assert_same_optimizer(opt, opt2)
    if sched is not None:
        assert sched.state_dict() == sched2.state_dict()
    # the random streams continue exactly where they were at save time
    assert torch.equal(torch.rand(3), after_save[0]) and random.random() == after_save[1]
    # and the restored optimizer takes the same next step
    for m, o in ((model, opt), (model2, opt2)):
        sum((p ** 3).sum() for p in m.parameters()).backward()
        o.step()
    assert_same_tensors(model.state_dict(), model2.state_dict())


def test_latest_points_at_the_newest_complete_checkpoint_and_old_ones_are_pruned(tmp_path):
    model, opt, sched = trained_state(seed=3)
    for step in (10, 20, 30, 40):
        final = save_checkpoint(tmp_path, model, opt, sched, progress(step), keep_last=2)
        root = tmp_path / "checkpoints"
        assert (root / "latest").read_text(encoding="utf-8").strip() == final.name
        assert latest_checkpoint(tmp_path) == final
        assert not list(root.glob(".tmp-*")) and not list(root.glob(".latest.*"))
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000030", "step-00000040"]
    files = sorted(p.name for p in (tmp_path / "checkpoints" / "step-00000040").iterdir())
    assert files == ["model.safetensors", "optimizer.safetensors", "state.json"]


def test_crash_leftovers_are_ignored(tmp_path: Path):
    model, opt, sched = trained_state(seed=4)
    good = save_checkpoint(tmp_path, model, opt, sched, progress(10), keep_last=5)
    root = tmp_path / "checkpoints"
    # a crash while writing step 20 leaves a temporary directory ...
    (root / ".tmp-00000020").mkdir()
    (root / ".tmp-00000020" / "model.safetensors").write_bytes(b"partial")
    # ... and a newer directory whose state.json never got written
    (root / "step-00000030").mkdir()
    save_weights(tiny(5), root / "step-00000030" / "model.safetensors")
    assert latest_checkpoint(tmp_path) == good
    assert list_checkpoints(tmp_path) == [good]
    # a `latest` pointing at an incomplete (or vanished) directory is not trusted: the newest
    # complete checkpoint is used instead of silently starting from scratch
    for name in ("step-00000030", "step-00000099"):
        (root / "latest").write_text(name, encoding="utf-8")
        assert latest_checkpoint(tmp_path) == good
    (root / "latest").unlink()
    assert latest_checkpoint(tmp_path) == good
    assert latest_checkpoint(tmp_path / "elsewhere") is None
    # the next save overwrites the leftover and prunes only complete checkpoints
    again = save_checkpoint(tmp_path, model, opt, sched, progress(20), keep_last=1)
    assert list_checkpoints(tmp_path) == [again] and latest_checkpoint(tmp_path) == again


def test_weights_round_trip_and_average(tmp_path: Path):
    a, b = tiny(6), tiny(7)
    save_weights(a, tmp_path / "a.safetensors")
    c = tiny(8)
    load_weights(c, tmp_path / "a.safetensors")
    assert_same_tensors(a.state_dict(), c.state_dict())
    _, opt, sched = trained_state(seed=9)
    paths = []
    for step, m in ((1, a), (2, b)):
        paths.append(save_checkpoint(tmp_path, m, opt, sched, progress(step), keep_last=5))
    average_checkpoints(paths, tmp_path / "avg.safetensors", c)
    avg = load_file(str(tmp_path / "avg.safetensors"))
    sa, sb = a.state_dict(), b.state_dict()
    for k, v in avg.items():
        torch.testing.assert_close(v, (sa[k] + sb[k]) / 2)
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        load_weights(c, tmp_path / "nothing.safetensors")
    wrong = build_model(ModelConfig(emb_dim=8, hidden_size=8, encoder_layers=1), 14, 11)
    with pytest.raises(ValueError, match="does not match"):
        load_weights(wrong, tmp_path / "a.safetensors")


# ---- exact resume on a tiny real slice -------------------------------------------------------

@pytest.fixture(scope="module")
def slice_files(data_dir: Path, tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("slice")
    out = {}
    for split, n, name in (("train", 240, "train"), ("val", 12, "valid")):
        for lang in ("en", "de"):
            with gzip.open(data_dir / "multi30k" / f"{split}.{lang}.gz", "rt",
                           encoding="utf-8") as f:
                lines = [next(f) for _ in range(n)]
            path = root / f"{name}.{lang}"
            path.write_text("".join(lines), encoding="utf-8")
            out[f"{name}_{'src' if lang == 'en' else 'tgt'}"] = str(path)
    return out


def slice_config(files: dict[str, str], out_dir: Path, max_steps: int, scheduler: str) -> dict:
    return {
        "data": {**files, "max_len": 60},
        "tokenizer": {"kind": "char", "shared": True},
        "model": {"emb_dim": 16, "hidden_size": 24, "encoder_layers": 1, "dropout": 0.3,
                  "attention": "luong_general", "input_feeding": True},
        "train": {"out_dir": str(out_dir), "seed": 5, "max_steps": max_steps, "valid_every": 4,
                  "batch_tokens": 1600, "progress": False, "keep_last": 10, "lr": 3e-3,
                  "scheduler": {"kind": scheduler, "warmup": 3, "patience": 0}},
        "decode": {"max_len_ratio": 1.0, "max_len_offset": 2},
    }


@pytest.mark.parametrize("scheduler", ["plateau", "inverse_sqrt"])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(slice_files, tmp_path: Path,
                                                               scheduler: str):
    def quiet(_: str) -> None:
        pass

    def config(run: str, steps: int):
        return load_config(slice_config(slice_files, tmp_path / run, steps, scheduler))

    straight = Trainer.from_config(config("a", 8), log=quiet)
    assert len(straight.epoch_batches(0)) < 8  # the run crosses an epoch boundary
    straight.run()

    Trainer.from_config(config("b", 4), log=quiet).run()
    assert (tmp_path / "b" / "checkpoints" / "latest").read_text().strip() == "step-00000004"
    # as if killed after logging step 8's validation but before its checkpoint landed
    with open(tmp_path / "b" / "train_log.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"step": 8, "bleu": -1.0}) + "\n")
    messages: list[str] = []
    resumed = Trainer.from_config(config("b", 8), resume=True, log=messages.append)
    assert resumed.progress.step == 4
    assert any("resumed from" in m and "step 4" in m for m in messages), messages
    assert any("prepared data:" in m and "reused" in m for m in messages), messages
    resumed.run()

    assert resumed.progress.step == straight.progress.step == 8
    assert resumed.progress.epoch == straight.progress.epoch
    assert_same_tensors(straight.model.state_dict(), resumed.model.state_dict())
    assert_same_optimizer(straight.optimizer, resumed.optimizer)
    for run in ("a", "b"):
        assert latest_checkpoint(tmp_path / run).name == "step-00000008"
    assert_same_tensors(load_file(str(tmp_path / "a/checkpoints/step-00000008/model.safetensors")),
                        load_file(str(tmp_path / "b/checkpoints/step-00000008/model.safetensors")))
    log_a = [json.loads(x) for x in (tmp_path / "a/train_log.jsonl").read_text().splitlines()]
    log_b = [json.loads(x) for x in (tmp_path / "b/train_log.jsonl").read_text().splitlines()]
    keys = ("step", "valid_loss", "bleu", "lr", "best", "tgt_tokens")
    assert [[r[k] for k in keys] for r in log_a] == [[r[k] for k in keys] for r in log_b]
    # the trained model directory holds no pickle files at all
    for run in ("a", "b"):
        suffixes = {p.suffix for p in (tmp_path / run).rglob("*") if p.is_file()}
        assert not suffixes & {".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt"}, suffixes


def test_resume_without_a_checkpoint_starts_from_scratch(slice_files, tmp_path: Path):
    messages: list[str] = []
    cfg = load_config(slice_config(slice_files, tmp_path / "c", 1, "constant"))
    trainer = Trainer.from_config(cfg, resume=True, log=messages.append)
    assert trainer.progress.step == 0
    assert any("no checkpoint" in m and "starting from scratch" in m for m in messages)


def test_a_run_that_uses_up_its_epochs_says_so(slice_files, tmp_path: Path):
    raw = slice_config(slice_files, tmp_path / "e", 100, "constant")
    raw["train"]["max_epochs"] = 1
    messages: list[str] = []
    trainer = Trainer.from_config(load_config(raw), log=messages.append)
    trainer.run()
    assert trainer.progress.step == len(trainer.epoch_batches(0)) < 100
    assert any("training finished (max_epochs reached)" in m for m in messages), messages


def test_a_fresh_run_in_a_used_directory_does_not_lose_its_checkpoints(slice_files, tmp_path):
    # Regression: an earlier run's later checkpoints used to survive a fresh run, so pruning
    # (keep_last) deleted the new run's checkpoints right after writing them and `latest`
    # pointed at nothing; --resume then started from scratch.
    def quiet(_: str) -> None:
        pass

    out = tmp_path / "reused"
    raw = slice_config(slice_files, out, 12, "constant")
    raw["train"].update({"keep_last": 2, "valid_every": 4})
    Trainer.from_config(load_config(raw), log=quiet).run()
    assert [p.name for p in list_checkpoints(out)] == ["step-00000008", "step-00000012"]
    raw["train"]["max_steps"] = 4
    Trainer.from_config(load_config(raw), log=quiet).run()  # a new run, not --resume
    assert [p.name for p in list_checkpoints(out)] == ["step-00000004"]
    assert latest_checkpoint(out).name == "step-00000004"
    raw["train"]["max_steps"] = 8
    resumed = Trainer.from_config(load_config(raw), resume=True, log=quiet)
    assert resumed.progress.step == 4


def test_linear_decay_resumes_exactly_after_sigterm(slice_files, tmp_path: Path):
    def quiet(_: str) -> None:
        pass

    def config(run: str):
        return load_config(slice_config(slice_files, tmp_path / run, 8, "linear"))

    straight = Trainer.from_config(config("a"), log=quiet)
    assert straight.planned_steps == 8
    straight.run()
    assert straight.optimizer.param_groups[0]["lr"] == 0.0  # the budget is spent

    messages: list[str] = []
    stopped = Trainer.from_config(config("b"), log=messages.append)
    update = stopped.train_step

    def update_then_sigterm(batches):
        loss = update(batches)
        if stopped.progress.step == 3:  # this is the 4th update
            os.kill(os.getpid(), signal.SIGTERM)
        return loss

    stopped.train_step = update_then_sigterm  # type: ignore[method-assign]
    stopped.run()
    assert stopped.progress.step == 4 and latest_checkpoint(tmp_path / "b").name == "step-00000004"
    assert any("stopped by SIGTERM" in m and "not validated yet" in m for m in messages), messages
    resumed = Trainer.from_config(config("b"), resume=True, log=quiet)
    resumed.run()
    assert resumed.progress.step == 8
    assert_same_tensors(straight.model.state_dict(), resumed.model.state_dict())
    assert_same_optimizer(straight.optimizer, resumed.optimizer)

    # a time budget that runs out before the updates do sets the pace of the decay
    raw = slice_config(slice_files, tmp_path / "c", 8, "linear")
    raw["train"]["max_minutes"] = 10.0
    timed = Trainer.from_config(load_config(raw), log=quiet)
    assert timed.budget_used(2) == pytest.approx(2 / 8)
    timed.progress.elapsed_s = 450.0
    assert timed.budget_used(2) == pytest.approx(0.75)
