"""benchmarks/gpu_check.py --dry-run: every step of the GPU check (train, PyTorch and
CTranslate2 beam decoding, export, 2-process torchrun) runs on CPU with tiny sizes, exits 0
and reports real numbers for each. About 40-60 s on 2 cores (seven Python processes start
torch). BLEU is not checked: the model trains for 30 updates.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STEPS = ["environment", "train", "decode_torch", "export", "decode_ct2", "torchrun"]


def test_gpu_check_dry_run_runs_every_step(data_dir: Path, tmp_path: Path):
    out = tmp_path / "x.json"
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["TRANSDUCE_DATA"] = str(data_dir)
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry-run",
                          "--work-dir", str(tmp_path / "work"), "--json-out", str(out)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                         check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["dry_run"] is True and report["ok"] is True
    assert list(report["steps"]) == STEPS
    steps = {name: s["result"] for name, s in report["steps"].items()}
    for name, s in report["steps"].items():
        assert s["ok"] and s["error"] is None and s["seconds"] > 0, (name, s)

    assert steps["environment"]["torch"] and steps["environment"]["cpu_model"]
    train = steps["train"]
    assert train["steps"] == 30 and train["tokens_per_s"] > 0 and train["tgt_tokens"] > 0
    assert len(train["validations"]) == 3  # train.valid_every 10
    assert "time_to_target_s" in train  # null: 30 updates do not reach 35 BLEU
    for name in ("decode_torch", "decode_ct2"):
        assert steps[name]["sentences"] == 50, name
        assert steps[name]["sentences_per_s"] > 0 and steps[name]["device"] == "cpu", name
    assert steps["export"]["model_bin_mb"] > 0
    ddp = steps["torchrun"]
    assert ddp["processes"] == 2 and ddp["device"] == "cpu" and ddp["backend"] == "gloo"
    assert ddp["steps"] == 6 and ddp["tokens_per_s"] > 0 and ddp["wall_s"] > 0
    assert "all steps ok" in run.stdout  # the table
