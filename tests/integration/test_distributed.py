"""Data-parallel training under torchrun (gloo on CPU) computes the same updates as one
process accumulating the same batches, and only rank 0 writes.

Two processes that each take every other batch, with gradients averaged by DDP and the
loss normalised by the tokens of both, take exactly the steps of one process with
train.accum_steps 2 over the same batch order: the weights must agree to float rounding.
About 30 s (two torchrun processes start Python and torch).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file
from test_transformer_train import tiny_transformer_config  # tests/integration

from transduce import load_config, train
from transduce.training.checkpoint import MODEL_FILE, list_checkpoints
from transduce.training.trainer import LOG_FILE


def tiny_config(data: Path, out: Path, accum: int) -> dict:
    """test_transformer_train's tiny Transformer, smaller still, without dropout (whose
    masks would differ between one and two processes), for 6 updates."""
    cfg = tiny_transformer_config(data, out)
    cfg["data"].update(max_train_pairs=800, max_len=40)
    cfg["tokenizer"]["vocab_size"] = 300
    cfg["model"].update(emb_dim=32, hidden_size=32, heads=2, ff_size=64, encoder_layers=1,
                        decoder_layers=1, dropout=0.0, max_positions=64)
    cfg["train"].update(seed=7, lr=0.003, batch_tokens=400, accum_steps=accum, max_steps=6,
                        valid_every=3, valid_max_sentences=20,
                        scheduler={"kind": "inverse_sqrt", "warmup": 2})
    cfg["decode"]["beam_size"] = 1
    return cfg


def test_two_processes_update_as_one_process_accumulating_their_batches(data_dir: Path,
                                                                        tmp_path: Path):
    threads = torch.get_num_threads()
    try:
        single = train(load_config(tiny_config(data_dir, tmp_path / "single", accum=2)),
                       log=lambda _: None).model_dir
    finally:
        torch.set_num_threads(threads)

    config = tmp_path / "ddp.yaml"
    ddp_cfg = tiny_config(data_dir, tmp_path / "ddp", accum=1)
    ddp_cfg["data"]["cache_dir"] = str(tmp_path / "cache")  # empty: rank 0 must prepare it
    config.write_text(yaml.safe_dump(ddp_cfg))
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node", "2", "-m", "transduce", "train", str(config)],
                         check=False, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "2 processes" in run.stdout + run.stderr  # rank 0 says so; rank 1 prints nothing
    assert (run.stdout + run.stderr).count("training finished") == 1
    # rank 0 prepared the data once; both processes read the one cache
    assert (run.stdout + run.stderr).count("preparing the training data") == 1
    assert len(list((tmp_path / "cache").iterdir())) == 1

    ddp = tmp_path / "ddp"
    one = [json.loads(x) for x in (single / LOG_FILE).read_text().splitlines()]
    two = [json.loads(x) for x in (ddp / LOG_FILE).read_text().splitlines()]
    assert [r["step"] for r in two] == [r["step"] for r in one] == [3, 6]  # written once
    assert [r["tgt_tokens"] for r in two] == [r["tgt_tokens"] for r in one]  # all processes'
    for a, b in zip(one, two):
        assert abs(a["valid_loss"] - b["valid_loss"]) < 1e-3
    assert [p.name for p in list_checkpoints(ddp)] == [p.name for p in list_checkpoints(single)]

    want, got = load_file(single / MODEL_FILE), load_file(ddp / MODEL_FILE)
    assert want.keys() == got.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], atol=2e-5, rtol=1e-4, msg=name)
