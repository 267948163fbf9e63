"""MarianMT import and export (transduce/hf), against `transformers` itself.

Random MarianMT models are built locally from a MarianConfig (tests/marian_dirs.py), with
SentencePiece models trained here on Multi30k lines; nothing is downloaded.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from marian_dirs import make_marian_dir, read_lines  # tests/marian_dirs.py
from safetensors.torch import load_file, save_file

from transduce.cli import main
from transduce.config import TokenizerConfig, load_config, save_config
from transduce.data.batching import collate
from transduce.hf.marian_export import export_marian
from transduce.hf.marian_import import import_marian
from transduce.models import build_model
from transduce.models.transformer import FeedForward, PositionalEmbedding, sinusoidal_table
from transduce.search import beam_search, greedy_search, max_lengths
from transduce.text import Codec, WordTokenizer, build_codecs, load_codecs, save_codecs
from transduce.text.vocab import Vocab
from transduce.training.checkpoint import save_weights
from transduce.translator import Translator, load_model

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # "pip install sacremoses"


@pytest.fixture(scope="module")
def lines(data_dir: Path) -> dict[str, list[str]]:
    m = data_dir / "multi30k"
    return {"en": read_lines(m / "train.en.gz", 400), "de": read_lines(m / "train.de.gz", 400),
            "test": read_lines(m / "val.en.gz", 12)}


@pytest.fixture(scope="module", params=["shared", "separate"])
def marian(request, lines, tmp_path_factory) -> tuple[Path, Path]:
    """(MarianMT directory, its import) with one vocabulary or one per side."""
    root = tmp_path_factory.mktemp(f"marian-{request.param}")
    separate = request.param == "separate"
    hf_dir = make_marian_dir(root / "hf", lines["en"], lines["de"], separate=separate,
                             activation="swish" if separate else "gelu", seed=len(root.name))
    return hf_dir, import_marian(hf_dir, root / "transduce")


def hf_model(path: Path):
    return transformers.MarianMTModel.from_pretrained(path).eval()


def batch_of(texts: list[str], src: Codec, tgt: Codec, targets: list[list[int]] | None = None):
    s, t = src.vocab, tgt.vocab
    return collate([src.encode(x) for x in texts], targets, t.pad_id, t.start_id, t.eos_id,
                   s.pad_id, s.eos_id)


def generated(model, src_ids: torch.Tensor, limit: int, eos: int, **kw) -> list[int]:
    """transformers' output ids for one source (no padding), up to </s>, which transduce's
    search also leaves out; `limit` output tokens at most, </s> included, as transduce."""
    out = model.generate(input_ids=src_ids[None], attention_mask=torch.ones_like(src_ids)[None],
                         do_sample=False, max_new_tokens=limit, **kw)[0, 1:].tolist()
    return out[:out.index(eos)] if eos in out else out


def test_import_matches_transformers_logits(marian, lines) -> None:
    hf_dir, ours_dir = marian
    _, model, src, tgt = load_model(ours_dir)
    tokenizer = transformers.MarianTokenizer.from_pretrained(hf_dir)
    texts = lines["test"]
    targets = [tgt.encode(x) for x in read_like(lines["de"], len(texts))]
    b = batch_of(texts, src, tgt, targets)
    encoded = tokenizer(texts, return_tensors="pt", padding=True)
    assert torch.equal(b.src_ids, encoded.input_ids)  # same pieces, ids, </s>, padding
    labels = tokenizer(text_target=read_like(lines["de"], len(texts)), return_tensors="pt",
                       padding=True).input_ids
    assert torch.equal(b.tgt_out, labels)
    with torch.no_grad():
        ours = model.eval()(b.src_ids, b.src_mask, b.tgt_in)
        theirs = hf_model(hf_dir)(input_ids=b.src_ids, attention_mask=b.src_mask.long(),
                                  decoder_input_ids=b.tgt_in).logits
    real = b.tgt_out != tgt.vocab.pad_id
    assert (ours - theirs)[real].abs().max().item() <= 1e-4
    assert ours[real].abs().max().item() > 1.0  # not a trivially flat model


def read_like(de: list[str], n: int) -> list[str]:
    return de[-n:]


def test_greedy_and_beam_equal_generate(marian, lines) -> None:
    """Greedy equals generate(num_beams=1). Beam 4 with transduce's length_penalty 0 and
    generate(num_beams=4, length_penalty=0): both rank by log-probability and keep the same
    candidates at every step, so they agree where transduce's stopping rule (stop when the
    best candidate ends) finds generate's best; it did on every sentence here."""
    hf_dir, ours_dir = marian
    hf = hf_model(hf_dir)
    translator = Translator.load(ours_dir)
    model, src, tgt = translator.engine.model, translator.src, translator.tgt
    b = batch_of(lines["test"], src, tgt)
    limit = max_lengths(b.src_mask, 1.5, 10, 512)
    v = tgt.vocab
    greedy = greedy_search(model, b.src_ids, b.src_mask, v.start_id, v.eos_id, limit)
    beam = beam_search(model, b.src_ids, b.src_mask, v.start_id, v.eos_id, limit, beam_size=4,
                       alpha=0.0)
    tokenizer = transformers.MarianTokenizer.from_pretrained(hf_dir)
    texts = translator.translate(lines["test"], beam_size=1)
    ended = 0
    for i in range(len(lines["test"])):
        ids = b.src_ids[i][b.src_mask[i]]
        theirs = generated(hf, ids, int(limit[i]), v.eos_id, num_beams=1)
        assert greedy[i].ids == theirs
        assert texts[i].text == tokenizer.decode(theirs, skip_special_tokens=True)
        assert beam[i][0].ids == generated(hf, ids, int(limit[i]), v.eos_id, num_beams=4,
                                           length_penalty=0.0, early_stopping=True)
        ended += len(greedy[i].ids) + 1 < int(limit[i])
    assert ended >= 3  # outputs that ended with </s>, not at the length limit


def test_special_ids_and_decoder_start(marian) -> None:
    hf_dir, ours_dir = marian
    config = json.loads((hf_dir / "config.json").read_text())
    src, tgt = load_codecs(ours_dir)
    for v in {id(src.vocab): src.vocab, id(tgt.vocab): tgt.vocab}.values():
        assert (v.eos_id, v.unk_id, v.pad_id, v.bos_id) == (0, 1, len(v) - 1, None)
        assert v.itos[v.pad_id] == "<pad>" and v.decode([v.pad_id, 5, 0, 6]) == [v.itos[5]]
    assert tgt.vocab.start_id == config["decoder_start_token_id"] == tgt.vocab.pad_id
    b = batch_of(["a dog"], src, tgt, [[7, 8]])
    assert b.tgt_in[0].tolist() == [tgt.vocab.start_id, 7, 8]
    assert b.src_ids[0, -1].item() == src.vocab.eos_id == 0 and bool(b.src_mask.all())
    shared = (ours_dir / "shared.vocab.json").is_file()
    assert shared == config["share_encoder_decoder_embeddings"]
    saved = json.loads((ours_dir / ("shared" if shared else "tgt")
                        ).with_suffix(".vocab.json").read_text())
    assert saved["specials"] == {"pad": len(tgt.vocab) - 1, "unk": 1, "bos": None, "eos": 0,
                                 "start": len(tgt.vocab) - 1}
    cfg = load_config(ours_dir / "config.yaml").model
    assert (cfg.pre_norm, cfg.positions, cfg.final_logits_bias) == (False, "sinusoidal_halves",
                                                                    True)


def test_vocab_files_old_and_new(tmp_path: Path) -> None:
    old = Vocab(["a", "b"])
    old.save(tmp_path / "old.json")
    assert json.loads((tmp_path / "old.json").read_text())[:4] == ["<pad>", "<unk>", "<s>",
                                                                    "</s>"]
    assert Vocab.load(tmp_path / "old.json").start_id == old.bos_id == 2
    (tmp_path / "bad.json").write_text(json.dumps({"tokens": ["</s>", "x"],
                                                   "specials": {"pad": 7, "unk": 1, "eos": 0}}))
    with pytest.raises(ValueError, match="bad.json: bad special ids.*pad = 7"):
        Vocab.load(tmp_path / "bad.json")


def test_activations_embedding_scale_and_positions() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8)
    for name, f in (("relu", lambda z: z.clamp(min=0)),
                    ("gelu", lambda z: 0.5 * z * (1 + torch.erf(z / math.sqrt(2)))),
                    ("swish", lambda z: z * torch.sigmoid(z))):
        ff = FeedForward(8, 16, 0.0, name)
        assert torch.allclose(ff(x), ff.outer(f(ff.inner(x))), atol=1e-6), name
    with pytest.raises(ValueError, match="model.activation"):
        FeedForward(8, 16, 0.0, "tanh")
    emb = torch.randn(2, 5, 8)
    for scale, factor in ((True, math.sqrt(8)), (False, 1.0)):
        pe = PositionalEmbedding(8, 16, False, 0.0, scale, "halves").eval()
        assert torch.allclose(pe(emb), emb * factor + pe.table[:5])
    theirs = transformers.models.marian.modeling_marian.MarianSinusoidalPositionalEmbedding(
        64, 10).create_weight()
    assert torch.equal(sinusoidal_table(64, 10, "halves"), theirs)
    inter = sinusoidal_table(64, 10)  # the same sinusoids, interleaved
    assert torch.allclose(inter[:, 0::2], theirs[:, :5], atol=1e-5)
    assert torch.allclose(inter[:, 1::2], theirs[:, 5:], atol=1e-5)


def own_model(directory: Path, codecs: tuple[Codec, Codec], **model) -> Path:
    """A random post-norm transduce Transformer with these codecs, saved as a model dir."""
    cfg = load_config({"model": {"arch": "transformer", "emb_dim": 32, "hidden_size": 32,
                                 "heads": 4, "ff_size": 64, "encoder_layers": 2,
                                 "decoder_layers": 2, "pre_norm": False, **model},
                       "tokenizer": {"shared": codecs[0].vocab is codecs[1].vocab},
                       "data": {"src_lang": "en", "tgt_lang": "de"}})
    src, tgt = codecs
    torch.manual_seed(1)
    net = build_model(cfg.model, len(src.vocab), len(tgt.vocab), src.vocab.pad_id,
                      tgt.vocab.pad_id)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 1.0 if p.dim() == 2 and p.size(0) > 100 else 0.3)  # embeddings: peaked
        if net.final_logits_bias is not None:
            net.final_logits_bias.normal_()
    directory.mkdir(parents=True)
    save_config(cfg, directory / "config.yaml")
    save_codecs(src, tgt, directory)
    save_weights(net, directory / "model.safetensors")
    return directory


@pytest.mark.parametrize("variant", [
    {},  # transduce's defaults: relu, interleaved sinusoids (exported permuted), no bias
    {"activation": "gelu", "final_logits_bias": True, "scale_embeddings": False,
     "share_embeddings": False, "tie_embeddings": False},
])
def test_export_round_trip(marian, lines, tmp_path: Path, variant: dict) -> None:
    _, imported = marian
    codecs = load_codecs(imported)
    if not variant.get("share_embeddings", True) or codecs[0].vocab is not codecs[1].vocab:
        variant = {**variant, "share_embeddings": False}
    else:
        variant = {**variant, "share_embeddings": True}
    ours_dir = own_model(tmp_path / "own", codecs, **variant)
    out = export_marian(ours_dir, tmp_path / "hf")
    hf = hf_model(out)
    tokenizer = transformers.MarianTokenizer.from_pretrained(out)
    translator = Translator.load(ours_dir)
    src, tgt = translator.src, translator.tgt
    texts = lines["test"][:6]
    b = batch_of(texts, src, tgt, [tgt.encode(x) for x in lines["de"][:6]])
    assert torch.equal(tokenizer(texts, return_tensors="pt", padding=True).input_ids,
                       b.src_ids)
    with torch.no_grad():
        ours = translator.engine.model(b.src_ids, b.src_mask, b.tgt_in)
        theirs = hf(input_ids=b.src_ids, attention_mask=b.src_mask.long(),
                    decoder_input_ids=b.tgt_in).logits
    assert (ours - theirs).abs().max().item() <= 1e-4
    limit = max_lengths(b.src_mask, 1.5, 10, 512)
    greedy = translator.translate(texts, beam_size=1)
    for i in range(len(texts)):
        theirs_ids = generated(hf, b.src_ids[i][b.src_mask[i]], int(limit[i]), tgt.vocab.eos_id,
                               num_beams=1)
        assert greedy[i].text == tokenizer.decode(theirs_ids, skip_special_tokens=True)
    # as users call it: generate's output starts with the start token, which batch_decode
    # must drop (<s> of transduce's vocabularies is registered as a special token)
    with torch.no_grad():
        full = hf.generate(input_ids=b.src_ids[:1, : int(b.src_mask[0].sum())], num_beams=1,
                           do_sample=False, max_new_tokens=int(limit[0]))
    assert tokenizer.batch_decode(full, skip_special_tokens=True) == [greedy[0].text]
    assert hf.generation_config.num_beams == translator.decode.beam_size  # the model's default
    back = import_marian(out, tmp_path / "back")  # and in again: the same function
    _, again, _, _ = load_model(back)
    with torch.no_grad():
        assert (again.eval()(b.src_ids, b.src_mask, b.tgt_in) - ours).abs().max() <= 1e-4


def test_export_of_transduce_vocabularies_decodes_as_users_call_it(lines, tmp_path: Path
                                                                  ) -> None:
    """transduce's own SentencePiece vocabulary (<s> at id 2, the decoder's start): generate's
    outputs begin with <s>, which batch_decode(skip_special_tokens=True) must drop."""
    codecs = build_codecs(TokenizerConfig(kind="sentencepiece", vocab_size=400),
                          lines["en"], lines["de"])
    assert codecs[1].vocab.start_id == codecs[1].vocab.bos_id == 2
    ours_dir = own_model(tmp_path / "own", codecs, share_embeddings=True)
    out = export_marian(ours_dir, tmp_path / "hf")
    hf, tokenizer = hf_model(out), transformers.MarianTokenizer.from_pretrained(out)
    translator = Translator.load(ours_dir)
    texts = lines["test"][:4]
    want = [t.text for t in translator.translate(texts, beam_size=1)]
    d = translator.decode
    for text, ours in zip(texts, want):
        ids = tokenizer(text, return_tensors="pt").input_ids
        with torch.no_grad():
            full = hf.generate(input_ids=ids, num_beams=1, do_sample=False,
                               max_new_tokens=int(ids.size(1) * d.max_len_ratio) +
                               d.max_len_offset)
        assert full[0, 0].item() == 2  # the start token, <s>
        assert tokenizer.batch_decode(full, skip_special_tokens=True) == [ours]


def test_export_refuses_what_marian_cannot_compute(marian, tmp_path: Path) -> None:
    _, imported = marian
    codecs = load_codecs(imported)
    cases = [({"pre_norm": True}, "pre_norm is true; MarianMT's layers are post-norm"),
             ({"positions": "learned"}, "sinusoidal positions only")]
    for i, (model, why) in enumerate(cases):
        d = own_model(tmp_path / f"m{i}", codecs, **model)
        with pytest.raises(ValueError, match=why):
            export_marian(d, tmp_path / f"out{i}")
        assert not (tmp_path / f"out{i}").exists()
    word = Codec(WordTokenizer(), Vocab(["a", "b"]))
    d = own_model(tmp_path / "word", (word, word), share_embeddings=True)
    with pytest.raises(ValueError, match="word/word; MarianTokenizer needs SentencePiece"):
        export_marian(d, tmp_path / "word-out")


def test_demo_rnn_cannot_be_exported(demo_model_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["export", str(demo_model_dir), str(tmp_path / "x"), "--format", "hf"]) == 2
    err = capsys.readouterr().err
    assert "model.arch is rnn; MarianMT is a Transformer" in err and err.count("\n") == 1


def broken_copy(hf_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "broken"
    shutil.copytree(hf_dir, copy)
    return copy


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def drop_tensor(path: Path, name: str) -> None:
    tensors = load_file(str(path))
    del tensors[name]
    save_file(tensors, str(path))


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "source.spm").unlink(), r"source.spm not found: transduce imports "
                                            "SentencePiece-based MarianMT models"),
    (lambda d: (d / "config.json").unlink(), r"config.json not found"),
    (lambda d: edit_json(d / "config.json", activation_function="tanh"),
     r"config.json: field 'activation_function' = 'tanh' is unsupported"),
    (lambda d: edit_json(d / "config.json", normalize_before=True),
     r"config.json: field 'normalize_before' = True is unsupported"),
    (lambda d: edit_json(d / "config.json", model_type="bart"), r"field 'model_type' is 'bart'"),
    (lambda d: edit_json(d / "config.json", d_model="wide"),
     r"field 'd_model' has an unsupported value 'wide'"),
    (lambda d: edit_json(d / "config.json", encoder_layers=1),
     r"model.safetensors: unexpected tensor 'model.encoder.layers.1"),
    (lambda d: drop_tensor(d / "model.safetensors", "model.decoder.layers.0.fc1.weight"),
     r"model.safetensors: tensor 'model.decoder.layers.0.fc1.weight' is missing"),
    (lambda d: (d / "model.safetensors").unlink(), r"no weights in .*: expected "
                                                   "model.safetensors or pytorch_model.bin"),
    (lambda d: (d / "source.spm").write_bytes(b"not a model"),
     r"source.spm: not a SentencePiece model"),
    (lambda d: edit_json(d / "vocab.json", **{">>fra<<": 10_000}), r"vocab.json: ids must be"),
])
def test_malformed_directories_give_one_line_errors(marian, tmp_path, damage, message) -> None:
    hf_dir, _ = marian
    broken = broken_copy(hf_dir, tmp_path)
    damage(broken)
    with pytest.raises((ValueError, FileNotFoundError), match=message) as e:
        import_marian(broken, tmp_path / "out")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()


def test_pytorch_bin_weights_load_only_as_tensors(lines, tmp_path: Path) -> None:
    hf_dir = make_marian_dir(tmp_path / "bin", lines["en"][:200], lines["de"][:200],
                             weights="bin")
    assert not (hf_dir / "model.safetensors").exists()
    _, model, src, tgt = load_model(import_marian(hf_dir, tmp_path / "ours"))
    b = batch_of(lines["test"][:3], src, tgt, [[5, 6]] * 3)
    with torch.no_grad():
        theirs = hf_model(hf_dir)(input_ids=b.src_ids, attention_mask=b.src_mask.long(),
                                  decoder_input_ids=b.tgt_in).logits
        assert (model.eval()(b.src_ids, b.src_mask, b.tgt_in) - theirs).abs().max() <= 1e-4
    torch.save({"weights": object()}, hf_dir / "pytorch_model.bin")  # a pickled object
    with pytest.raises(ValueError, match="pytorch_model.bin: not loadable with weights_only"):
        import_marian(hf_dir, tmp_path / "again")


def test_cli_import_and_export(marian, tmp_path: Path, capsys) -> None:
    hf_dir, _ = marian
    out = tmp_path / "imported"
    assert main(["import", str(hf_dir), str(out)]) == 0
    assert main(["import", str(hf_dir), str(out)]) == 2  # exists: --force
    assert "already exists; pass --force" in capsys.readouterr().err
    assert main(["export", str(out), str(tmp_path / "hf"), "--format", "hf"]) == 0
    assert main(["import", str(tmp_path / "nowhere"), str(tmp_path / "x")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_import_and_export_do_not_need_transformers(marian, tmp_path: Path) -> None:
    hf_dir, _ = marian
    code = ("import sys; sys.modules['transformers'] = None\n"
            "from transduce.hf.marian_import import import_marian\n"
            "from transduce.hf.marian_export import export_marian\n"
            f"d = import_marian({str(hf_dir)!r}, {str(tmp_path / 'a')!r})\n"
            f"export_marian(d, {str(tmp_path / 'b')!r})\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "b" / "config.json").is_file()
