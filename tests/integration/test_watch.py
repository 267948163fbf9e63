"""Watching and steering training: TensorBoard event files, the L1 penalty, callbacks, and
training from Python lists (`transduce.fit`), with tiny models on the demo task."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import transduce
from transduce.config import load_config
from transduce.demo import make_splits, write_splits
from transduce.training.callbacks import Callback, Validation
from transduce.training.tensorboard import DIR
from transduce.training.trainer import Trainer, train


@pytest.fixture(scope="module")
def splits() -> dict[str, list[tuple[str, str]]]:
    return make_splits(n_train=800, n_valid=30, n_test=5, seed=4)


@pytest.fixture(scope="module")
def base(splits, tmp_path_factory: pytest.TempPathFactory) -> dict:
    paths = write_splits(tmp_path_factory.mktemp("watch") / "data", splits)
    return {"data": {k: str(v) for k, v in paths.items() if not k.startswith("test")},
            "tokenizer": {"kind": "word", "shared": False},
            "model": {"arch": "rnn", "emb_dim": 16, "hidden_size": 32, "encoder_layers": 1,
                      "decoder_layers": 1, "dropout": 0.0},
            "train": {"lr": 3e-3, "batch_tokens": 400, "max_steps": 12, "valid_every": 6,
                      "log_every": 3, "progress": False, "num_samples": 2, "threads": 1},
            "decode": {"beam_size": 1}}


def with_(raw: dict, out: Path, **train: object) -> dict:
    return {**raw, "train": {**raw["train"], "out_dir": str(out), **train}}


def test_tensorboard_gets_scalars_an_attention_image_samples_and_hparams(base, tmp_path):
    result = train(load_config(with_(base, tmp_path / "tb")), log=lambda _: None)
    events = EventAccumulator(str(result.model_dir / DIR),
                              size_guidance={"images": 0, "tensors": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    for name in ("train/loss", "train/lr", "train/tokens_per_s", "train/grad_norm",
                 "valid/loss", "valid/ppl", "valid/bleu", "valid/chrf"):
        assert name in tags["scalars"], tags["scalars"]
    assert [e.step for e in events.Scalars("train/loss")] == [1, 3, 6, 9, 12]
    assert [e.step for e in events.Scalars("valid/bleu")] == [6, 12]
    assert [e.value for e in events.Scalars("valid/bleu")] == pytest.approx(
        [r["bleu"] for r in result.history], abs=0.01)
    assert all(e.value > 0 for e in events.Scalars("train/grad_norm"))
    (image, _) = events.Images("attention/valid_0")
    assert image.step == 6 and image.encoded_image_string.startswith(b"\x89PNG")
    text = events.Tensors("samples/text_summary")
    assert [t.step for t in text] == [6, 12]
    assert b"| source | reference | output |" in text[0].tensor_proto.string_val[0]
    hparams = events.PluginTagToContent("hparams")
    assert "_hparams_/session_start_info" in hparams
    assert b"model.hidden_size" in hparams["_hparams_/session_start_info"]


def test_tensorboard_can_be_switched_off(base, tmp_path):
    result = train(load_config(with_(base, tmp_path / "off", tensorboard=False)),
                   log=lambda _: None)
    assert not (result.model_dir / DIR).exists()


def l1_norm(model: torch.nn.Module) -> float:
    return sum(p.abs().sum().item() for p in model.parameters() if p.dim() >= 2)


def test_a_large_l1_penalty_shrinks_the_weights_faster(base, tmp_path):
    norms = {}
    for l1 in (0.0, 1.0):
        trainer = Trainer.from_config(load_config(with_(base, tmp_path / f"l1-{l1}", l1=l1,
                                                        tensorboard=False)),
                                      log=lambda _: None, callbacks=[])
        before = l1_norm(trainer.model)
        trainer.run()
        norms[l1] = l1_norm(trainer.model) / before
    assert norms[1.0] < 0.9 * norms[0.0], norms
    assert norms[1.0] < 0.95  # 12 Adam steps of lr 3e-3 against sign(w): a clear drop


class StopAtFirstValidation(Callback):
    def __init__(self) -> None:
        self.seen: list[int] = []

    def on_validation(self, trainer: Trainer, valid: Validation, samples: list) -> None:
        self.seen.append(valid.step)
        trainer.request_stop("enough")


def test_a_callback_sees_validations_and_can_stop_the_run(base, tmp_path):
    hook = StopAtFirstValidation()
    result = train(load_config(with_(base, tmp_path / "cb", tensorboard=False)),
                   log=lambda _: None, callbacks=[hook])
    assert hook.seen == [6]
    assert (result.steps, result.stop_reason) == (6, "enough")
    assert result.best_step == 6 and result.best_score == result.history[0]["chrf"]


def test_fit_trains_from_python_lists_and_returns_a_translator(splits, tmp_path):
    src, tgt = zip(*splits["train"])
    valid_src, valid_tgt = zip(*splits["valid"])
    translator = transduce.fit(list(src), list(tgt), valid=(list(valid_src), list(valid_tgt)),
                               out_dir=tmp_path / "fit", log=lambda _: None,
                               tokenizer={"kind": "word", "shared": False},
                               model={"emb_dim": 32, "hidden_size": 64, "encoder_layers": 1,
                                      "decoder_layers": 1, "dropout": 0.0},
                               train={"max_steps": 300, "valid_every": 150, "lr": 5e-3,
                                      "batch_tokens": 800, "progress": False, "threads": 1,
                                      "num_samples": 0})
    out = translator.translate(list(valid_src), beam_size=1)
    chrf = transduce.score([t.text for t in out], list(valid_tgt)).chrf
    assert chrf > 12  # observed 20.4 (12.4 after 150 steps; untrained: below 5)
    assert (tmp_path / "fit" / "train_log.jsonl").is_file()


def test_fit_refuses_misaligned_lists_and_bad_sections(tmp_path):
    with pytest.raises(ValueError, match="3 source texts but 2 target texts"):
        transduce.fit(["a", "b", "c"], ["x", "y"], out_dir=tmp_path)
    with pytest.raises(ValueError, match="line break"):
        transduce.fit(["a\nb"], ["x"], out_dir=tmp_path)
    with pytest.raises(transduce.ConfigError, match="trian"):
        transduce.fit(["a"], ["x"], out_dir=tmp_path, trian={"lr": 1.0})
