"""Model directories and resumable checkpoints, written atomically, loaded without pickle.

A model directory holds config.yaml, the tokenizer files and model.safetensors (the best
weights). Training checkpoints live in <out_dir>/checkpoints/step-N/ (weights, optimizer
tensors in safetensors; counters, scheduler and RNG state in JSON). The file `latest`
names the newest complete one and is replaced atomically only after it is fully written,
so a crash mid-write never leaves a corrupt "latest".
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

MODEL_FILE = "model.safetensors"
CHECKPOINTS = "checkpoints"


def atomic_write(path: Path, write: Any) -> None:
    """Call write(tmp_path) then rename onto `path` (same directory, so the rename is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_weights(model: torch.nn.Module, path: str | Path) -> None:
    atomic_write(Path(path), lambda tmp: save_model(model, tmp))


def load_weights(model: torch.nn.Module, path: str | Path) -> None:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        missing, unexpected = load_model(model, str(path), strict=False)
    except RuntimeError as e:  # a tensor's shape differs (torch reports it as RuntimeError)
        raise ValueError(f"{path} does not match the model in config.yaml: "
                         f"{' '.join(str(e).split())[:300]}") from None
    if unexpected or missing:
        raise ValueError(f"{path} does not match the model in config.yaml "
                         f"(missing: {sorted(missing)[:5]}, unexpected: {sorted(unexpected)[:5]})")


def _optimizer_to_files(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, meta = {}, {"param_groups": state["param_groups"], "state": {}}
    for idx, slots in state["state"].items():
        meta["state"][str(idx)] = {}
        for name, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{name}"] = value.contiguous()
            else:
                meta["state"][str(idx)][name] = value
    return tensors, meta


def _optimizer_from_files(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in meta["state"].items()}
    for key, value in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(directory: str | Path, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, scheduler: Any,
                    progress: dict[str, Any], keep_last: int) -> Path:
    """Write checkpoints/step-N/ completely, then point `latest` at it; prune old ones."""
    root = Path(directory) / CHECKPOINTS
    final = root / f"step-{progress['step']:08d}"
    tmp = root / f".tmp-{progress['step']:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(model, str(tmp / MODEL_FILE))
    opt_tensors, opt_meta = _optimizer_to_files(optimizer.state_dict())
    opt_tensors["torch_rng"] = torch.get_rng_state()
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    meta = {"progress": progress, "optimizer": opt_meta,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "python_rng": random.getstate()}
    (tmp / "state.json").write_text(json.dumps(meta), encoding="utf-8")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    atomic_write(root / "latest", lambda p: Path(p).write_text(final.name, encoding="utf-8"))
    for old in list_checkpoints(directory)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = Path(directory) / CHECKPOINTS
    return sorted(p for p in root.glob("step-*") if (p / "state.json").is_file())


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The checkpoint `latest` names; if that is missing or incomplete, the newest complete
    one (so a damaged pointer never makes --resume silently start from scratch)."""
    pointer = Path(directory) / CHECKPOINTS / "latest"
    if pointer.is_file():
        path = pointer.parent / pointer.read_text(encoding="utf-8").strip()
        if (path / "state.json").is_file():
            return path
    complete = list_checkpoints(directory)
    return complete[-1] if complete else None


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any) -> dict[str, Any]:
    """Restore model, optimizer, scheduler and RNG state; returns the saved progress."""
    load_weights(model, path / MODEL_FILE)
    meta = json.loads((path / "state.json").read_text(encoding="utf-8"))
    tensors = load_file(str(path / "optimizer.safetensors"))
    torch.set_rng_state(tensors.pop("torch_rng"))
    optimizer.load_state_dict(_optimizer_from_files(tensors, meta["optimizer"]))
    if scheduler is not None and meta["scheduler"] is not None:
        scheduler.load_state_dict(meta["scheduler"])
    state = meta["python_rng"]
    random.setstate((state[0], tuple(state[1]), state[2]))
    return meta["progress"]


def average_checkpoints(paths: list[Path], out: Path, model: torch.nn.Module) -> None:
    """Average the weights of several checkpoints into `out` (Vaswani et al. 2017)."""
    if not paths:
        raise ValueError("no checkpoints to average")
    total: dict[str, torch.Tensor] = {}
    for p in paths:
        for k, v in load_file(str(p / MODEL_FILE)).items():
            total[k] = total[k] + v.double() if k in total else v.double()
    model.load_state_dict({k: (v / len(paths)).to(torch.float32) for k, v in total.items()},
                          strict=False)
    save_weights(model, out)
