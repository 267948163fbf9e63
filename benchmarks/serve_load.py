#!/usr/bin/env python3
"""Load test of `transduce serve`: throughput and latency with dynamic batching on vs off.

For each mode, starts the server on 127.0.0.1 (a free port, a child process), waits for
/health, then drives POST /v1/translate with N concurrent clients, each sending one short
sentence per request, for a bounded time. Prints requests/s, p50/p95/p99 latency and the
error count per mode, the on/off throughput ratio, and writes everything as JSON.

Without --model-dir it builds a Multi30k-size model with random weights (bi-LSTM encoder
2 x 128 per direction, 256 LSTM decoder, Luong attention, 8k word vocabulary per side) and
saves it as a model directory: untrained weights decode to the length limit, which is the
worst case for latency, and throughput does not depend on what the weights say. Sentences
are short Multi30k test sentences when the shared data is there, else made-up words.

Target (issue 4): with 32 clients, batching on gives >= 3x the throughput of batching off,
zero errors, p99 < 1 s on 2 CPU cores.

    python benchmarks/serve_load.py --clients 32 --duration 10
    python benchmarks/serve_load.py --dry-run        # tiny and quick: a smoke test
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("TRANSDUCE_DATA", ROOT.parent / "shared" / "data"))
MAX_CLIENTS, MAX_SECONDS = 256, 300.0  # bounds: this is a loopback smoke load, not a DoS tool


def build_model_dir(out: Path, vocab_size: int, hidden: int, seed: int = 0) -> list[str]:
    """Write a random-weight RNN model directory to `out`; return short source sentences."""
    import torch

    from transduce.config import load_config, save_config
    from transduce.models import build_model
    from transduce.text import Codec, Vocab, WordTokenizer, save_codecs
    from transduce.training.checkpoint import MODEL_FILE, save_weights

    src_lines, tgt_lines, sentences = _corpus(seed)
    cfg = load_config({
        "data": {"src_lang": "en", "tgt_lang": "de", "lowercase": True},
        "tokenizer": {"kind": "word", "shared": False, "max_size": vocab_size},
        "model": {"arch": "rnn", "rnn_type": "lstm", "emb_dim": hidden, "hidden_size": hidden,
                  "encoder_layers": 2, "decoder_layers": 1, "bidirectional": True,
                  "attention": "luong_general", "input_feeding": True, "dropout": 0.0},
        "decode": {"beam_size": 5, "n_best": 1},
    })
    tok = WordTokenizer()
    src = Codec(tok, Vocab.build((tok.tokenize(s.lower()) for s in src_lines),
                                 max_size=vocab_size), lowercase=True)
    tgt = Codec(tok, Vocab.build((tok.tokenize(s.lower()) for s in tgt_lines),
                                 max_size=vocab_size), lowercase=True)
    torch.manual_seed(seed)
    model = build_model(cfg.model, len(src.vocab), len(tgt.vocab), src.vocab.pad_id)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    save_codecs(src, tgt, out)
    save_weights(model, out / MODEL_FILE)
    return sentences


def _corpus(seed: int) -> tuple[list[str], list[str], list[str]]:
    """(source lines, target lines) to build vocabularies on, and short test sentences."""
    m30k = DATA / "multi30k"
    if (m30k / "train.en.gz").is_file() and (m30k / "train.de.gz").is_file():
        def read(name: str) -> list[str]:
            with gzip.open(m30k / name, "rt", encoding="utf-8") as f:
                return [line.strip() for line in f]
        test = read("test_2016_flickr.en.gz")
        short = [s for s in test if 4 <= len(s.split()) <= 10]
        return read("train.en.gz"), read("train.de.gz"), short
    rng = random.Random(seed)  # no shared data: made-up words, same sizes
    words = [f"w{i}" for i in range(9000)]
    lines = [" ".join(rng.choices(words, k=rng.randint(5, 15))) for _ in range(30000)]
    short = [" ".join(rng.choices(words[:3000], k=rng.randint(4, 10))) for _ in range(500)]
    return lines, lines, short


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(model_dir: Path, port: int, batching: bool,
                 extra: list[str]) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    """The server as a child process; its output goes to a temporary file (not a pipe that
    nobody reads while the load runs)."""
    cmd = [sys.executable, "-m", "transduce", "serve", str(model_dir), "--host", "127.0.0.1",
           "--port", str(port), "--no-access-log", *extra]
    if not batching:
        cmd.append("--no-batching")
    log = tempfile.TemporaryFile()
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: IO[bytes],
               timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            output = log.read().decode(errors="replace")
            raise RuntimeError(f"server exited with {proc.returncode}:\n{output[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server not ready after {timeout:.0f} s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def drive(url: str, sentences: list[str], clients: int, warmup: float, duration: float,
                beam: int | None) -> dict[str, Any]:
    """N clients in closed loops; only requests that start after the warm-up are counted."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    start = time.monotonic()
    measure_from, end = start + warmup, start + warmup + duration
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(k: int, http: httpx.AsyncClient) -> None:
        rng = random.Random(k)
        while (now := time.monotonic()) < end:
            body: dict[str, object] = {"texts": [rng.choice(sentences)]}
            if beam is not None:
                body["beam_size"] = beam
            try:
                r = await http.post(url + "/v1/translate", json=body)
                status = str(r.status_code) if r.status_code != 200 else ""
            except httpx.HTTPError as e:
                status = type(e).__name__
            if now >= measure_from:
                latencies.append(time.monotonic() - now)
                if status:
                    errors[status] = errors.get(status, 0) + 1

    async with httpx.AsyncClient(limits=limits, timeout=60.0) as http:
        await asyncio.gather(*(client(k, http) for k in range(clients)))
    elapsed = time.monotonic() - measure_from
    latencies.sort()

    def pct(p: float) -> float:
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))]

    n_err = sum(errors.values())
    return {"requests": len(latencies), "errors": n_err, "error_kinds": errors,
            "seconds": round(elapsed, 2),
            "throughput_rps": round((len(latencies) - n_err) / elapsed, 2),
            "p50_ms": round(pct(50) * 1000, 1), "p95_ms": round(pct(95) * 1000, 1),
            "p99_ms": round(pct(99) * 1000, 1)}


def run_mode(model_dir: Path, sentences: list[str], batching: bool,
             args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    extra = ["--max-wait-ms", str(args.max_wait_ms), "--max-batch-tokens",
             str(args.max_batch_tokens)]
    if args.threads is not None:
        extra += ["--threads", str(args.threads)]
    proc, log = start_server(model_dir, port, batching, extra)
    try:
        wait_ready(url, proc, log)
        # the first decode pays one-off costs (allocator, kernels): keep it out of the numbers
        httpx.post(url + "/v1/translate", json={"texts": sentences[:1]}, timeout=120)
        result = asyncio.run(drive(url, sentences, args.clients, args.warmup, args.duration,
                                   args.beam))
        metrics = httpx.get(url + "/metrics", timeout=5.0).text
    finally:
        stop_server(proc)
        log.close()
    result["mean_batch_requests"] = _mean_batch(metrics)
    return {"batching": "on" if batching else "off", **result}


def _mean_batch(metrics: str) -> float:
    values = {}
    for line in metrics.splitlines():
        for name in ("transduce_batch_requests_sum", "transduce_batch_requests_count"):
            if line.startswith(name + " "):
                values[name] = float(line.split()[1])
    count = values.get("transduce_batch_requests_count", 0.0)
    return round(values.get("transduce_batch_requests_sum", 0.0) / count, 2) if count else 0.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--model-dir", type=Path, help="serve this model instead of a random one")
    p.add_argument("--clients", type=int, default=32, help="concurrent clients (max 256)")
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds per mode")
    p.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds per mode")
    p.add_argument("--modes", default="on,off", help="'on', 'off' or 'on,off'")
    p.add_argument("--beam", type=int, default=None, help="beam size (default: the model's)")
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--max-batch-tokens", type=int, default=4096)
    p.add_argument("--threads", type=int, default=None,
                   help="server's torch threads (default: torch's, one per core)")
    p.add_argument("--vocab", type=int, default=8000, help="vocabulary size of the built model")
    p.add_argument("--hidden", type=int, default=256, help="decoder size of the built model")
    p.add_argument("--out", type=Path, default=Path("serve_load.json"), help="JSON results")
    p.add_argument("--dry-run", action="store_true",
                   help="tiny model, 4 clients, 2 s per mode: checks that everything runs")
    args = p.parse_args(argv)
    if args.dry_run:
        args.clients, args.duration, args.warmup = 4, 2.0, 0.5
        args.vocab, args.hidden = 500, 64
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in ("on", "off") for m in modes):
        p.error("--modes must be 'on', 'off' or 'on,off'")
    if not 1 <= args.clients <= MAX_CLIENTS:
        p.error(f"--clients must be between 1 and {MAX_CLIENTS}")
    if not 0 < args.duration <= MAX_SECONDS or not 0 <= args.warmup <= MAX_SECONDS:
        p.error(f"--duration and --warmup must be at most {MAX_SECONDS:.0f} s")

    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        if args.model_dir:
            model_dir = args.model_dir
            sentences = _corpus(0)[2]
        else:
            model_dir = Path(tmp) / "model"
            print(f"building a random model (vocab {args.vocab}, hidden {args.hidden}) ...")
            sentences = build_model_dir(model_dir, args.vocab, args.hidden)
        runs = []
        for mode in modes:
            print(f"batching {mode}: {args.clients} clients, {args.warmup:g} s warm-up + "
                  f"{args.duration:g} s ...", flush=True)
            runs.append(run_mode(model_dir, sentences, mode == "on", args))

    print(f"\n{'batching':<9} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
          f"{'errors':>7} {'reqs/batch':>10}")
    for r in runs:
        print(f"{r['batching']:<9} {r['throughput_rps']:>8} {r['p50_ms']:>8} {r['p95_ms']:>8} "
              f"{r['p99_ms']:>8} {r['errors']:>7} {r['mean_batch_requests']:>10}")
    by_mode = {r["batching"]: r for r in runs}
    report: dict[str, Any] = {
        "clients": args.clients, "duration_s": args.duration, "warmup_s": args.warmup,
        "beam": args.beam, "threads": args.threads,
        "model_dir": str(args.model_dir) if args.model_dir else "random",
        "cpus": os.cpu_count(), "platform": platform.platform(),
        "python": platform.python_version(), "runs": runs,
    }
    if "on" in by_mode and "off" in by_mode and float(by_mode["off"]["throughput_rps"]) > 0:
        speedup = float(by_mode["on"]["throughput_rps"]) / float(by_mode["off"]["throughput_rps"])
        report["speedup"] = round(speedup, 2)
        print(f"\nbatching on / off throughput: {speedup:.2f}x")
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
