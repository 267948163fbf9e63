"""A tiny Transformer learns from a real slice of Multi30k through the public `train` entry.

About 25 s on one core (the first 3000 pairs, an 800-piece SentencePiece vocabulary,
300 updates of ~830 target tokens). Observed with seed 1 on the development machine, at
steps 150 and 300: valid loss 3.84 -> 3.35, BLEU 2.0 -> 6.2 on the first 100 validation
sentences (identical on reruns); the floors below leave room for other CPUs' arithmetic.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from transduce import Translator, load_config, train
from transduce.training.trainer import LOG_FILE


def tiny_transformer_config(data: Path, out: Path) -> dict:
    m30k = data / "multi30k"
    return {
        "data": {"train_src": str(m30k / "train.en.gz"), "train_tgt": str(m30k / "train.de.gz"),
                 "valid_src": str(m30k / "val.en.gz"), "valid_tgt": str(m30k / "val.de.gz"),
                 "max_train_pairs": 3000, "max_len": 50, "src_lang": "en", "tgt_lang": "de"},
        "tokenizer": {"kind": "sentencepiece", "vocab_size": 800, "shared": True},
        "model": {"arch": "transformer", "emb_dim": 96, "hidden_size": 96, "heads": 4,
                  "ff_size": 192, "encoder_layers": 2, "decoder_layers": 2, "dropout": 0.1,
                  "attention_dropout": 0.0, "activation_dropout": 0.0, "max_positions": 128,
                  "share_embeddings": True, "tie_embeddings": True},
        "train": {"out_dir": str(out), "seed": 1, "threads": 1, "precision": "fp32",
                  "lr": 0.004, "betas": [0.9, 0.98], "label_smoothing": 0.1,
                  "batch_tokens": 1000, "max_steps": 300, "valid_every": 150,
                  "valid_max_sentences": 100, "scheduler": {"kind": "inverse_sqrt", "warmup": 80},
                  "early_stopping": {"metric": "bleu", "patience": 0}, "progress": False,
                  "num_samples": 0},
        "decode": {"beam_size": 3, "max_len_ratio": 1.3, "max_len_offset": 5},
    }


@pytest.fixture
def one_thread():
    """Train on one thread, and give the rest of the session its thread count back.

    One thread on purpose: on a shared 2-core machine, two OpenMP threads run up to 10x
    slower than one whenever another process holds a core (measured 1,100 vs 10,000 tok/s).
    """
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_tiny_transformer_learns_multi30k(data_dir: Path, tmp_path: Path, one_thread):
    model_dir = train(load_config(tiny_transformer_config(data_dir, tmp_path / "model")),
                      log=lambda _: None).model_dir
    records = [json.loads(line) for line in (model_dir / LOG_FILE).read_text().splitlines()]
    assert [r["step"] for r in records] == [150, 300]
    first, last = records
    assert last["valid_loss"] < first["valid_loss"] - 0.3
    assert last["valid_loss"] < 3.7
    assert last["bleu"] > first["bleu"]
    assert last["bleu"] > 3.0

    translator = Translator.load(model_dir)
    [out] = translator.translate(["A man is playing a guitar."], return_attention=True)
    assert out.text and out.attention is not None
    assert len(out.attention) == len(out.tgt_tokens) + 1
