"""Config validation: typos and wrong types name the key; overrides and ${VAR} expansion work."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from transduce.config import Config, ConfigError, load_config, save_config


@pytest.mark.parametrize("raw, key, suggestion", [
    ({"train": {"lr_rate": 1e-3}}, "train.lr_rate", "train.lr"),
    ({"train": {"max_step": 10}}, "train.max_step", "train.max_steps"),
    ({"model": {"hiden_size": 64}}, "model.hiden_size", "model.hidden_size"),
    ({"trian": {"lr": 1e-3}}, "trian", "train"),
    ({"model": {"pretrained_embeddings": {"frezee": True}}},
     "model.pretrained_embeddings.frezee", "model.pretrained_embeddings.freeze"),
])
def test_unknown_key_names_it_and_the_closest_valid_one(raw, key, suggestion):
    with pytest.raises(ConfigError) as err:
        load_config(raw)
    message = str(err.value)
    assert f"'{key}'" in message
    assert f"did you mean '{suggestion}'" in message
    assert "\n" not in message


def test_unknown_key_without_any_near_name_still_lists_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown config key 'decode\.zzz'.*beam_size"):
        load_config({"decode": {"zzz": 1}})


@pytest.mark.parametrize("raw, key", [
    ({"train": {"lr": "fast"}}, "train.lr"),
    ({"model": {"attention": "luong_fancy"}}, "model.attention"),
    ({"decode": {"beam_size": [1, 2]}}, "decode.beam_size"),
    ({"train": "oops"}, "train"),
])
def test_wrong_type_names_the_key(raw, key):
    with pytest.raises(ConfigError, match=rf"'{key}'"):
        load_config(raw)


def test_cross_field_checks_raise_config_error():
    with pytest.raises(ConfigError, match="hidden_size"):
        load_config({"model": {"bidirectional": True, "hidden_size": 33}})
    with pytest.raises(ConfigError, match="tokenizer.shared"):
        load_config({"model": {"share_embeddings": True}, "tokenizer": {"shared": False}})


def test_set_overrides_win_over_the_file_and_parse_yaml_scalars(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"train": {"lr": 0.5, "max_steps": 3}}), encoding="utf-8")
    cfg = load_config(path, ["train.lr=2e-4", "model.rnn_type=gru", "train.max_minutes=",
                             "model.pretrained_embeddings.freeze=true", "decode.beam_size=3"])
    assert cfg.train.lr == pytest.approx(2e-4)
    assert cfg.train.max_steps == 3  # untouched keys keep the file's value
    assert cfg.model.rnn_type == "gru"
    assert cfg.train.max_minutes is None
    assert cfg.model.pretrained_embeddings.freeze is True
    assert cfg.decode.beam_size == 3


def test_bad_overrides_are_config_errors():
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config({}, ["train.lr"])
    with pytest.raises(ConfigError, match="'train.lr_rate'.*did you mean 'train.lr'"):
        load_config({}, ["train.lr_rate=0.1"])
    with pytest.raises(ConfigError, match="'train.lr'"):
        load_config({}, ["train.lr=abc"])


def test_override_does_not_mutate_the_callers_dict():
    raw = {"train": {"lr": 0.1}}
    load_config(raw, ["train.lr=0.2"])
    assert raw == {"train": {"lr": 0.1}}


def test_env_vars_expand_in_paths(monkeypatch):
    monkeypatch.setenv("TRANSDUCE_TEST_DATA", "/data/x")
    monkeypatch.delenv("TRANSDUCE_TEST_UNSET", raising=False)
    cfg = load_config({
        "data": {"train_src": "${TRANSDUCE_TEST_DATA}/train.en",
                 "train_tgt": "${TRANSDUCE_TEST_UNSET:-/fallback}/train.de"},
        "train": {"out_dir": "${TRANSDUCE_TEST_DATA}/runs"},
        "model": {"pretrained_embeddings": {"src": "${TRANSDUCE_TEST_DATA}/vec.en.txt"}},
    })
    assert cfg.data.train_src == "/data/x/train.en"
    assert cfg.data.train_tgt == "/fallback/train.de"
    assert cfg.train.out_dir == "/data/x/runs"
    assert cfg.model.pretrained_embeddings.src == "/data/x/vec.en.txt"


def test_unset_env_var_without_default_names_the_variable(monkeypatch):
    monkeypatch.delenv("TRANSDUCE_TEST_UNSET", raising=False)
    with pytest.raises(ConfigError, match="TRANSDUCE_TEST_UNSET"):
        load_config({"data": {"train_src": "${TRANSDUCE_TEST_UNSET}/a"}})


def test_file_errors_name_the_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found.*nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="list.yaml"):
        load_config(listy)


def test_save_and_load_round_trip(tmp_path: Path):
    cfg = load_config({"model": {"rnn_type": "gru", "attention": "bahdanau"},
                       "train": {"betas": [0.8, 0.9], "lr": 3e-4}})
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == cfg
    assert isinstance(again, Config)


def test_model_init_takes_the_models_settings_but_own_regularisation():
    from transduce.config import ModelConfig, with_init_model

    init = ModelConfig(arch="transformer", hidden_size=64, emb_dim=64, heads=4, pre_norm=False,
                       activation="swish", dropout=0.1)
    cfg = load_config({"model": {"init": "runs/opus", "dropout": 0.3}})
    merged = with_init_model(cfg, init, "runs/opus").model
    assert (merged.arch, merged.hidden_size, merged.activation, merged.pre_norm) == (
        "transformer", 64, "swish", False)
    assert (merged.dropout, merged.init) == (0.3, "runs/opus")
    for key, value in (("hidden_size", 128), ("pretrained_embeddings", {"src": "v.txt"})):
        other = load_config({"model": {"init": "runs/opus", key: value}})
        with pytest.raises(ConfigError, match=f"'model.{key}' is .* but the model.init model "
                                              r"\(runs/opus\) has"):
            with_init_model(other, init, "runs/opus")


def test_transformer_variant_keys_are_checked():
    with pytest.raises(ConfigError, match="'model.activation'.*'relu', 'gelu' or 'swish'"):
        load_config({"model": {"arch": "transformer", "activation": "tanh"}})
    with pytest.raises(ConfigError, match="model.activation applies to arch: transformer"):
        load_config({"model": {"arch": "rnn", "activation": "gelu"}})
    with pytest.raises(ConfigError, match="sinusoidal_halves applies to arch: transformer"):
        load_config({"model": {"positions": "sinusoidal_halves"}})
    default = load_config({}).model
    assert (default.activation, default.scale_embeddings, default.final_logits_bias,
            default.positions) == ("relu", True, False, "sinusoidal")
