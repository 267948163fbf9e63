"""An imported MarianMT model, fine-tuned with model.init and served through the
LibreTranslate API (random MarianMT weights built locally; nothing is downloaded)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from marian_dirs import make_marian_dir, read_lines  # tests/marian_dirs.py

from transduce import Translator, load_config
from transduce.config import ConfigError
from transduce.hf.marian_import import import_marian
from transduce.serve import Settings, create_app, resolve_models
from transduce.training.checkpoint import list_checkpoints
from transduce.training.trainer import LOG_FILE, Trainer, train

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


@pytest.fixture(scope="module", params=["shared", "separate"])
def imported(request, data_dir: Path, tmp_path_factory) -> tuple[Path, Path, Path]:
    """(MarianMT directory, its import, a folder of Multi30k text files), with one
    vocabulary, or one per side (then <pad> has another id on each side)."""
    root = tmp_path_factory.mktemp(f"marian-ft-{request.param}")
    m = data_dir / "multi30k"
    text = root / "text"
    text.mkdir()
    for split, source, n in (("train", "train", 300), ("valid", "val", 20)):
        for lang in ("en", "de"):
            lines = read_lines(m / f"{source}.{lang}.gz", n)
            (text / f"{split}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    en, de = read_lines(m / "train.en.gz", 400), read_lines(m / "train.de.gz", 400)
    hf_dir = make_marian_dir(root / "hf", en, de, d_model=32, init_std=0.05,
                             separate=request.param == "separate", tgt_vocab_size=200)
    return hf_dir, import_marian(hf_dir, root / "transduce"), text


def finetune_config(text: Path, init: Path, out: Path, **train) -> dict:
    return {
        "data": {"train_src": str(text / "train.en"), "train_tgt": str(text / "train.de"),
                 "valid_src": str(text / "valid.en"), "valid_tgt": str(text / "valid.de"),
                 "src_lang": "en", "tgt_lang": "de"},
        "model": {"init": str(init), "dropout": 0.0},
        "train": {"out_dir": str(out), "seed": 1, "threads": 1, "lr": 1e-3,
                  "label_smoothing": 0.1, "batch_tokens": 600, "max_steps": 4,
                  "valid_every": 2, "scheduler": {"kind": "constant"}, "progress": False,
                  "num_samples": 0, "tensorboard": False, **train},
        "decode": {"beam_size": 2, "max_len_ratio": 1.0, "max_len_offset": 3},
    }


def hf_valid_loss(hf_dir: Path, text: Path) -> float:
    """transformers' own loss on the validation pairs: labels = target ids + </s>, the
    decoder input shifted right from decoder_start_token_id (one batch: the token mean)."""
    tokenizer = transformers.MarianTokenizer.from_pretrained(hf_dir)
    model = transformers.MarianMTModel.from_pretrained(hf_dir).eval()
    src = (text / "valid.en").read_text(encoding="utf-8").splitlines()
    tgt = (text / "valid.de").read_text(encoding="utf-8").splitlines()
    batch = tokenizer(src, text_target=tgt, return_tensors="pt", padding=True)
    # MarianTokenizer pads labels with the source vocabulary's <pad> id
    target_vocab = tokenizer.target_encoder if tokenizer.separate_vocabs else tokenizer.encoder
    labels = batch["labels"]
    labels[(labels == target_vocab["<pad>"]) | (labels == tokenizer.pad_token_id)] = -100
    with torch.no_grad():
        return float(model(**batch).loss)


def test_finetuning_starts_from_the_imported_weights(imported, tmp_path: Path) -> None:
    hf_dir, model_dir, text = imported
    cfg = load_config(finetune_config(text, model_dir, tmp_path / "ft"))
    trainer = Trainer.from_config(cfg, log=lambda _: None, callbacks=[])
    assert trainer.valid_loss() == pytest.approx(hf_valid_loss(hf_dir, text), rel=1e-5)
    imported_cfg = load_config(model_dir / "config.yaml").model
    assert trainer.cfg.model.activation == imported_cfg.activation  # the model's settings
    assert trainer.cfg.model.dropout == 0.0  # ... except what the run sets itself
    for name in ("tokenizer.json", "src.spm.model", "tgt.spm.model"):
        assert (tmp_path / "ft" / name).read_bytes() == (model_dir / name).read_bytes()
    src, tgt = trainer.src.vocab, trainer.tgt.vocab
    assert (src.pad_id != tgt.pad_id) == ("separate" in str(model_dir))


def test_finetune_resume_translate_and_a_changed_architecture(imported, tmp_path: Path) -> None:
    _, model_dir, text = imported
    out = tmp_path / "ft"
    train(load_config(finetune_config(text, model_dir, out, max_steps=2)), log=lambda _: None)
    result = train(load_config(finetune_config(text, model_dir, out)), resume=True,
                   log=lambda _: None)
    records = [json.loads(line) for line in (out / LOG_FILE).read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]  # resumed at 2, not restarted
    assert [p.name for p in list_checkpoints(out)][-1] == "step-00000004"
    saved = load_config(out / "config.yaml").model
    assert (saved.positions, saved.final_logits_bias, saved.init) == (
        "sinusoidal_halves", True, str(model_dir))
    [t] = Translator.load(result.model_dir).translate(["A dog runs."])
    assert isinstance(t.text, str)
    bad = finetune_config(text, model_dir, tmp_path / "bad")
    bad["model"]["hidden_size"] = 64
    with pytest.raises(ConfigError, match="'model.hidden_size' is 64 but the model.init model"):
        train(load_config(bad), log=lambda _: None)


def test_serve_an_imported_model_through_the_libretranslate_api(imported) -> None:
    _, model_dir, _ = imported
    offline = Translator.load(model_dir)
    app = create_app(resolve_models([str(model_dir)]), Settings(), Translator.load)
    with TestClient(app) as client:
        for _ in range(300):
            if client.get("/health").status_code == 200:
                break
            time.sleep(0.05)
        assert client.get("/languages").json()[0]["code"] == "en"
        sentences = ["A man in a blue shirt.", "Two dogs play in the snow."]
        answer = client.post("/translate", json={"q": sentences, "source": "en",
                                                 "target": "de"})
        assert answer.status_code == 200, answer.text
        want = [r.text for r in offline.translate(sentences)]
        assert answer.json()["translatedText"] == want


def test_ctranslate2_export_of_an_imported_model_equals_transformers(data_dir: Path,
                                                                      tmp_path: Path) -> None:
    """HF -> transduce -> CTranslate2: greedy outputs as transformers' generate gives them."""
    pytest.importorskip("ctranslate2")
    from transduce.ct2 import export

    en = read_lines(data_dir / "multi30k" / "train.en.gz", 400)
    de = read_lines(data_dir / "multi30k" / "train.de.gz", 400)
    hf_dir = make_marian_dir(tmp_path / "hf", en, de, activation="gelu", eos_bias=2.0)
    model_dir = import_marian(hf_dir, tmp_path / "transduce")
    ct2 = Translator.load(export(model_dir, tmp_path / "ct2"))
    torch_engine = Translator.load(model_dir)
    hf = transformers.MarianMTModel.from_pretrained(hf_dir).eval()
    tokenizer = transformers.MarianTokenizer.from_pretrained(hf_dir)
    sentences = read_lines(data_dir / "multi30k" / "val.en.gz", 8)
    d, texts = ct2.decode, []
    for sentence in sentences:  # one at a time: the length limit is the sentence's own
        [ours] = ct2.translate([sentence], beam_size=1)
        assert ours.text == torch_engine.translate([sentence], beam_size=1)[0].text
        ids = tokenizer(sentence, return_tensors="pt").input_ids
        # transduce's limit counts </s>, as generate's max_new_tokens does with MarianMT's
        # forced </s> at the last position (this model's outputs reach the limit)
        limit = int(ids.size(1) * d.max_len_ratio) + d.max_len_offset
        theirs = hf.generate(input_ids=ids, num_beams=1, do_sample=False, max_new_tokens=limit)
        assert ours.text == tokenizer.decode(theirs[0], skip_special_tokens=True)
        texts.append(ours.text)
    assert len(set(texts)) > 1 and all(texts), texts


def test_export_needs_one_pad_id(imported, tmp_path: Path) -> None:
    """MarianMT has one pad_token_id, which is also the encoder embedding's padding_idx:
    a model whose two vocabularies put <pad> at different ids cannot be exported."""
    from transduce.hf.marian_export import export_marian

    _, model_dir, _ = imported
    if "separate" not in str(model_dir):
        assert (export_marian(model_dir, tmp_path / "hf") / "config.json").is_file()
        return
    with pytest.raises(ValueError, match="the source and target <pad> ids differ"):
        export_marian(model_dir, tmp_path / "hf")
