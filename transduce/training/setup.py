"""Setting up a training run: device and precision, data and tokenizers, the model, and the
model directory. Everything the loop (trainer.py) needs, built before it starts."""

from __future__ import annotations

import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from transduce.config import Config, load_config, save_config, with_init_model
from transduce.data import read_parallel
from transduce.data.dataset import EncodedCorpus, PreparedCorpus, encode_pairs
from transduce.data.prepare import check_cache, find_cache, prepare
from transduce.evaluate import split_refs
from transduce.models import Seq2Seq, build_model, count_parameters
from transduce.models.build import load_pretrained_embeddings
from transduce.text import Codec, load_codecs, save_codecs
from transduce.training import distributed
from transduce.training.checkpoint import CHECKPOINTS, MODEL_FILE, latest_checkpoint, load_weights

Log = Callable[[str], None]


@dataclass
class Setup:
    """A run ready to train: what `set_up` built."""

    cfg: Config
    out: Path  # the model directory
    device: torch.device
    world: distributed.World
    amp_dtype: torch.dtype | None  # autocast dtype; None: fp32
    data: PreparedCorpus  # training pairs, memory-mapped
    src: Codec
    tgt: Codec
    model: Seq2Seq
    model_dim: int  # the model's width, for the noam schedule
    # validation sources and references (TAB-separated alternatives); the loss uses the first
    valid_text: tuple[list[str], list[list[str]]] | None
    valid_data: EncodedCorpus | None
    checkpoint: Path | None  # the checkpoint to resume from
    started: float  # time.time() when setting up began
    log: Log  # prints on rank 0 only


def set_up(cfg: Config, resume: bool = False, log: Log = print,
           tokenizer_dir: str | Path | None = None) -> Setup:
    """Build everything a run of `cfg` needs. `resume`: continue from the latest checkpoint
    in cfg.train.out_dir if there is one. `tokenizer_dir`: use that directory's tokenizer
    instead of training one (cross-validation folds share one this way)."""
    t = cfg.train
    started = time.time()
    device = resolve_device(t.device)
    world = distributed.init(device.type == "cuda")
    if world.size > 1 and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
    log = log if world.main else (lambda _: None)
    amp_dtype = _agreed_precision(cfg, device, world, log)
    if t.threads:
        torch.set_num_threads(t.threads)
    random.seed(t.seed)
    torch.manual_seed(t.seed)
    out = Path(t.out_dir)
    ckpt = latest_checkpoint(out) if resume else None
    if resume and ckpt is None:
        log(f"no checkpoint in {out}/checkpoints: starting from scratch")
    init = _init_dir(cfg)
    if init is not None:
        cfg = with_init_model(cfg, load_config(init / "config.yaml").model, str(init))
        tokenizer_dir = tokenizer_dir or init
    data = PreparedCorpus(_prepared(cfg, world, out if ckpt is not None else tokenizer_dir, log))
    src, tgt = load_codecs(data.path)
    valid_text, valid_data = _validation(cfg, src, tgt)
    model = build_model(cfg.model, len(src.vocab), len(tgt.vocab), src.vocab.pad_id,
                        tgt.vocab.pad_id).to(device)
    _load_pretrained(cfg, model, src, tgt, log)
    if init is not None and ckpt is None:
        load_weights(model, init / MODEL_FILE)
        log(f"starting from the weights of {init} (model.init)")
    if ckpt is None and world.main:
        _fresh_model_dir(cfg, out, src, tgt)
    log(f"model: {count_parameters(model):,} parameters; vocab src {len(src.vocab):,} "
        f"tgt {len(tgt.vocab):,}; device {device}"
        f"{'' if amp_dtype is None else f', autocast {amp_dtype}'}"
        f"{'' if world.size == 1 else f'; {world.size} processes'}")
    return Setup(cfg, out, device, world, amp_dtype, data, src, tgt, model, cfg.model.hidden_size,
                 valid_text, valid_data, ckpt, started, log)


def _init_dir(cfg: Config) -> Path | None:
    """The model directory that model.init names, checked; None without model.init."""
    if cfg.model.init is None:
        return None
    init = Path(cfg.model.init)
    for name in ("config.yaml", "tokenizer.json", MODEL_FILE):
        if not (init / name).is_file():
            raise FileNotFoundError(f"model.init: {init / name} not found; model.init must "
                                    "name a transduce model directory (trained, or written "
                                    "by 'transduce import')")
    return init


def resolve_device(setting: str) -> torch.device:
    if setting == "cuda" or (setting == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def resolve_precision(setting: str, device: torch.device, log: Log = print) -> torch.dtype | None:
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


def _agreed_precision(cfg: Config, device: torch.device, world: distributed.World,
                      log: Log) -> torch.dtype | None:
    amp_dtype = resolve_precision(cfg.train.precision, device, log)
    # CPU timings differ between processes: all of them take bf16 if any chose it.
    timed = cfg.train.precision == "auto" and device.type == "cpu" and world.size > 1
    if timed and distributed.reduce(world, [float(amp_dtype is not None)], "max")[0]:
        return torch.bfloat16
    return amp_dtype


def _cap_onednn_cache() -> None:
    """Cap the two caches of compiled bf16 kernels that grow with the number of batch shapes
    seen (a value the user set is kept; both are read when first used):
    - oneDNN's primitive cache (`ONEDNN_PRIMITIVE_CACHE_CAPACITY`, default 1,024): 16. With
      1,024 the Multi30k Transformer ran at the same tokens/s and its RssAnon reached 2.3 GB
      after 200 updates (0.75 GB with 16). An LSTM replays more than 16 primitives per update:
      the bf16 G2P recipe ran 1.24x its fp32 speed at first with 1,024 (~1.0x with 16), but
      the gain fell to 1.16x and RssAnon passed 2.1 GB over 30 minutes as batch shapes kept
      coming, for the same test scores (benchmarks/README.md, G2P);
    - ideep's cache of matrix-product kernels and their weight layouts (`LRU_CACHE_CAPACITY`,
      default 1,024): it grew the small Transformer's RssAnon from 0.8 to 1.44 GB over 150
      updates of Multi30k; with 64 it stays at 0.83 GB, at the same tokens/s."""
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "16")
    os.environ.setdefault("LRU_CACHE_CAPACITY", "64")


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


def _prepared(cfg: Config, world: distributed.World, tokenizer_dir: str | Path | None,
              log: Log) -> Path:
    """The prepared cache of the training data: rank 0 prepares (or reuses) it while the
    other processes wait, then every process memory-maps the same files."""
    threads = cfg.train.threads or os.cpu_count() or 1
    if world.main:
        path = prepare(cfg, tokenizer_dir, threads, log)
    distributed.barrier(world)
    if not world.main:
        path, _ = find_cache(cfg, tokenizer_dir)
        problem = check_cache(path)
        if problem is not None:
            raise ValueError(f"rank {world.rank} cannot read the prepared data at {path} "
                             f"({problem}): data.cache_dir must be on a filesystem that every "
                             "machine shares")
    return path


def _validation(cfg: Config, src: Codec, tgt: Codec
                ) -> tuple[tuple[list[str], list[list[str]]] | None, EncodedCorpus | None]:
    d = cfg.data
    if not (d.valid_src and d.valid_tgt):
        return None, None
    valid_src, valid_tgt = read_parallel(d.valid_src, d.valid_tgt)
    refs = [split_refs(line) for line in valid_tgt]
    return (valid_src, refs), encode_pairs(valid_src, [r[0] for r in refs], src, tgt)


def _load_pretrained(cfg: Config, model: Seq2Seq, src: Codec, tgt: Codec, log: Log) -> None:
    pre = cfg.model.pretrained_embeddings
    for path, embed, codec in ((pre.src, model.src_embed, src), (pre.tgt, model.tgt_embed, tgt)):
        if path:
            n = load_pretrained_embeddings(embed, path, codec.vocab.itos, pre.freeze)
            log(f"loaded {n:,} pretrained vectors from {path}")


def _fresh_model_dir(cfg: Config, out: Path, src: Codec, tgt: Codec) -> None:
    """A fresh run owns the directory: an earlier run's checkpoints sort after ours, so
    pruning would delete ours and `latest`, --resume and `average` would mix runs."""
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    save_config(cfg, out / "config.yaml")
    save_codecs(src, tgt, out)
    (out / MODEL_FILE).unlink(missing_ok=True)
