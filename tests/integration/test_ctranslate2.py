"""CTranslate2 export: the exported model computes what the PyTorch model computes, and a
Translator over the export gives the same translations through the same interface.

The model is a small Transformer trained for real on the demo task (word tokens, separate
source and target vocabularies; ~15 s on one core). A second variant (post-norm, learned
positions, untied output layer) is checked with fresh random weights.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import ctranslate2  # the ctranslate2 extra, in requirements.txt
import pytest
import torch

from transduce import Translator, load_config, train
from transduce.cli import main
from transduce.config import save_config
from transduce.ct2 import CTranslate2Engine, export, is_export
from transduce.data.batching import collate
from transduce.demo import demo_config, write_splits
from transduce.models import build_model
from transduce.text import load_codecs
from transduce.training.checkpoint import MODEL_FILE, save_weights


@pytest.fixture(scope="module")
def transformer_dir(tmp_path_factory: pytest.TempPathFactory, demo_splits) -> Path:
    root = tmp_path_factory.mktemp("ct2")
    raw = demo_config(write_splits(root / "data", demo_splits), root / "model", minutes=10.0,
                      seed=5)
    raw["model"] = {"arch": "transformer", "emb_dim": 64, "hidden_size": 64, "heads": 4,
                    "ff_size": 128, "encoder_layers": 2, "decoder_layers": 2, "dropout": 0.1,
                    "max_positions": 64, "tie_embeddings": True}
    raw["train"].update({"max_steps": 300, "valid_every": 300, "progress": False,
                         "threads": 1, "scheduler": {"kind": "inverse_sqrt", "warmup": 50}})
    return train(load_config(raw), log=lambda _: None).model_dir


@pytest.fixture(scope="module")
def post_norm_dir(transformer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Same vocabularies, post-norm layers, learned positions, an untied output layer;
    random weights (biases and norms too, so that a mixed-up tensor cannot go unnoticed)."""
    out = tmp_path_factory.mktemp("postnorm")
    for f in transformer_dir.iterdir():
        if f.is_file() and f.name != MODEL_FILE:
            shutil.copy2(f, out / f.name)
    cfg = load_config(transformer_dir / "config.yaml")
    cfg.model = cfg.model.model_copy(update={"pre_norm": False, "positions": "learned",
                                             "tie_embeddings": False, "heads": 2})
    save_config(cfg, out / "config.yaml")
    src, tgt = load_codecs(out)
    torch.manual_seed(0)
    model = build_model(cfg.model, len(src.vocab), len(tgt.vocab))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    save_weights(model, out / MODEL_FILE)
    return out


def teacher_forced_log_probs(model_dir: Path, pairs: list[tuple[str, str]]) -> list[list[float]]:
    """Per target token (</s> included) log P from the PyTorch model."""
    tr = Translator.load(model_dir)
    src = [tr.src.vocab.encode(tr.src.tokenize(s)) for s, _ in pairs]
    tgt = [tr.tgt.vocab.encode(tr.tgt.tokenize(t)) for _, t in pairs]
    v = tr.src.vocab
    batch = collate(src, tgt, v.pad_id, v.bos_id, v.eos_id)
    with torch.no_grad():
        logits = tr.engine.model(batch.src_ids, batch.src_mask, batch.tgt_in)
    lp = torch.log_softmax(logits.float(), -1).gather(-1, batch.tgt_out.unsqueeze(-1))[..., 0]
    return [lp[i, :len(t) + 1].tolist() for i, t in enumerate(tgt)]


@pytest.mark.parametrize("variant", ["trained pre-norm", "random post-norm"])
def test_exported_model_scores_every_token_as_pytorch_does(variant, transformer_dir,
                                                           post_norm_dir, demo_splits,
                                                           tmp_path):
    model_dir = transformer_dir if variant == "trained pre-norm" else post_norm_dir
    pairs = demo_splits["test"][:24]
    expected = teacher_forced_log_probs(model_dir, pairs)
    out = export(model_dir, tmp_path / "ct2")
    tr = Translator.load(model_dir)
    engine = ctranslate2.Translator(str(out), intra_threads=1)
    results = engine.score_batch([tr.src.tokenize(s) for s, _ in pairs],
                                 [tr.tgt.tokenize(t) for _, t in pairs])
    for want, got in zip(expected, results):
        assert len(got.log_probs) == len(want)
        assert got.log_probs == pytest.approx(want, abs=2e-4)


def test_translations_through_the_export_match_pytorch(transformer_dir, demo_splits,
                                                       tmp_path):
    torch_tr = Translator.load(transformer_dir)
    out = export(transformer_dir, tmp_path / "ct2")
    assert is_export(out) and not is_export(transformer_dir)
    ct2_tr = Translator.load(out)
    assert isinstance(ct2_tr.engine, CTranslate2Engine) and ct2_tr.quantize == "none"
    srcs = [s for s, _ in demo_splits["test"]] + [""]
    for beam in (1, 5):
        a, b = torch_tr.translate(srcs, beam_size=beam), ct2_tr.translate(srcs, beam_size=beam)
        assert [r.source for r in b] == srcs and b[-1].text == ""
        same = sum(x.text == y.text for x, y in zip(a, b))
        # Greedy computes the same; beam search prunes by CTranslate2's length normalisation
        # before our re-ranking, so a few beams differ (183/200 on Multi30k, README).
        floor = 0.95 if beam == 1 else 0.9
        assert same >= floor * len(srcs), f"beam {beam}: {same}/{len(srcs)} identical"
        for x, y in zip(a, b):
            if x.text == y.text and x.text:  # same hypothesis: same score
                assert y.score == pytest.approx(x.score, abs=1e-3)
    [r] = ct2_tr.translate([srcs[0]], beam_size=4, n_best=3, return_attention=True)
    scores = [alt.score for alt in r.alternatives]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)
    assert r.alternatives[0].text == r.text
    assert r.attention is not None
    assert len(r.attention) == len(r.tgt_tokens) + 1
    assert all(len(row) == len(r.src_tokens) + 1 for row in r.attention)
    assert all(sum(row) == pytest.approx(1.0, abs=1e-3) for row in r.attention)


def test_export_decodes_small_batches_in_parallel_in_input_order(transformer_dir,
                                                                  demo_splits, tmp_path):
    """Two workers (one per thread) take the batches of one call concurrently; every
    translation still lands on its own source. Loading the export leaves torch's thread
    count alone (CTranslate2 sets the shared OpenMP count to its one thread per worker)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        ct2_tr = Translator.load(export(transformer_dir, tmp_path / "ct2"))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert ct2_tr.engine.translator.num_translators == 2
    srcs = [s for s, _ in demo_splits["test"]]
    want = Translator.load(transformer_dir).translate(srcs, beam_size=5, batch_size=6)
    got = ct2_tr.translate(srcs, beam_size=5, batch_size=6)
    assert [r.source for r in got] == srcs
    same = sum(x.text == y.text for x, y in zip(want, got))
    assert same >= 0.9 * len(srcs), f"{same}/{len(srcs)} identical"  # beam: see above
    # One batch (fewer than the workers) is split between them: each sentence gets the
    # translation it got in a batch of six (CTranslate2's search, so the same hypotheses).
    few = srcs[:12]
    split = ct2_tr.translate(few, beam_size=5)
    assert [r.source for r in split] == few
    same = sum(x.text == y.text for x, y in zip(got[:12], split))
    assert same >= 11, f"{same}/12 identical"


def test_seeded_sampling_through_the_export_is_reproducible(transformer_dir, demo_splits,
                                                            tmp_path):
    tr = Translator.load(export(transformer_dir, tmp_path / "ct2"))
    srcs = [s for s, _ in demo_splits["test"][:20]]

    def draw(seed: int) -> list[str]:
        return [r.text for r in tr.translate(srcs, sampling=True, temperature=2.0, seed=seed)]

    assert draw(1) == draw(1)
    assert draw(1) != draw(2)


def test_int8_export_is_smaller_and_keeps_the_translations(transformer_dir, demo_splits,
                                                           tmp_path):
    fp32 = export(transformer_dir, tmp_path / "fp32")
    int8 = export(transformer_dir, tmp_path / "int8", quantize="int8")
    assert (int8 / "model.bin").stat().st_size < 0.6 * (fp32 / "model.bin").stat().st_size
    a, b = Translator.load(fp32), Translator.load(int8)
    assert b.quantize == "int8" and Translator.load(int8, quantize="none").quantize == "none"
    srcs = [s for s, _ in demo_splits["test"]]
    same = sum(x.text == y.text for x, y in zip(a.translate(srcs), b.translate(srcs)))
    assert same >= 0.8 * len(srcs)


def test_cli_exports_and_translates_and_says_what_is_wrong(transformer_dir, demo_model_dir,
                                                           demo_splits, tmp_path, capsys):
    out = tmp_path / "ct2"
    assert main(["export", str(transformer_dir), str(out)]) == 0
    src = tmp_path / "in.txt"
    src.write_text("\n".join(s for s, _ in demo_splits["test"][:10]) + "\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["translate", str(out), "-i", str(src), "--beam", "1"]) == 0
    got = capsys.readouterr().out.splitlines()
    want = [r.text for r in Translator.load(transformer_dir).translate(
        src.read_text(encoding="utf-8").splitlines(), beam_size=1)]
    assert len(got) == 10 and sum(g == w for g, w in zip(got, want)) >= 9

    assert main(["export", str(transformer_dir), str(out)]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert main(["export", str(transformer_dir), str(out), "--force"]) == 0
    assert main(["export", str(transformer_dir), str(tmp_path), "--force"]) == 2
    assert "not a CTranslate2 export; not overwriting" in capsys.readouterr().err
    assert src.is_file() and is_export(out)  # nothing was deleted
    assert main(["export", str(demo_model_dir), str(tmp_path / "rnn")]) == 2
    assert "arch: transformer only; this model is arch: rnn" in capsys.readouterr().err
    assert not (tmp_path / "rnn").exists()
