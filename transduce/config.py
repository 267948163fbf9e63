"""The one place where configuration is read, validated and written.

A config is plain data: nested pydantic models that forbid unknown keys. `load_config`
reads YAML, applies ``--set key=value`` overrides, expands ``${VAR:-default}`` in paths
and raises `ConfigError` naming the offending key (and the closest valid one).
"""

from __future__ import annotations

import copy
import difflib
import os
import re
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    model_validator,
)

from transduce.evaluate import DEFAULT_METRICS, check_metric_names


class ConfigError(ValueError):
    """A configuration problem, with a message that names the key and the fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class CorpusConfig(_Section):
    """One training corpus: line-aligned `src`/`tgt` files, or one TSV/JSONL file (`path`)."""

    src: str | None = None  # line-aligned plain or .gz text
    tgt: str | None = None
    path: str | None = None  # one file with both sides
    format: Literal["auto", "tsv", "jsonl"] = "auto"  # auto: from the name (.tsv, .jsonl[.gz])
    # tsv: column numbers, 0-based (default 0 and 1); jsonl: keys, dotted for nested objects
    # such as translation.en (default src and tgt)
    src_field: str | None = None
    tgt_field: str | None = None
    weight: float = 1.0  # sampling weight: this corpus's share of an epoch is weight x its size

    @model_validator(mode="after")
    def _check(self) -> CorpusConfig:
        if (self.path is None) == (self.src is None or self.tgt is None):
            raise ValueError("a training corpus needs either 'src' and 'tgt' (line-aligned "
                             "files) or 'path' (one TSV or JSONL file)")
        if self.weight <= 0:
            raise ValueError(f"a corpus weight must be > 0 (got {self.weight})")
        return self


class DataConfig(_Section):
    """Where the parallel text lives, and how it is filtered and prepared."""

    train_src: str | None = None  # one line-aligned training corpus (or use `train`)
    train_tgt: str | None = None
    train: list[CorpusConfig] | None = None  # several corpora, each with a weight
    valid_src: str | None = None
    valid_tgt: str | None = None
    test_src: str | None = None
    test_tgt: str | None = None
    src_lang: str = "src"
    tgt_lang: str = "tgt"
    max_len: int = 100  # tokens per side; longer training pairs are filtered (and counted)
    max_len_ratio: float | None = 9.0  # drop pairs whose token lengths differ more (null: off)
    dedup: bool = True  # drop exact duplicate pairs (after the first)
    on_bad_line: Literal["error", "skip"] = "error"  # not UTF-8, a malformed TSV/JSONL line
    max_train_pairs: int | None = None  # use only the first N training pairs
    lowercase: bool = False
    cache_dir: str | None = None  # prepared data; default $TRANSDUCE_CACHE or ~/.cache/transduce
    # pairs the tokenizer is trained on, drawn at random: on a corpus of 4-sentence lines,
    # 100k -> 400k pairs gave 0.7% fewer pieces per sentence for 3x the time and memory
    # (benchmarks/tokenizer_sample.py); raise it for vocabularies much larger than 8k
    tokenizer_sample: int = 100_000
    shuffle_window: int = 1_000_000  # pairs sorted by length together before batching

    def corpora(self) -> list[CorpusConfig]:
        """The training corpora: `train`, or the one `train_src`/`train_tgt` pair."""
        if self.train:
            return list(self.train)
        if self.train_src and self.train_tgt:
            return [CorpusConfig(src=self.train_src, tgt=self.train_tgt)]
        return []

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if self.train and (self.train_src or self.train_tgt):
            raise ValueError("give the training data either as data.train (a list of corpora) "
                             "or as data.train_src/train_tgt, not both")
        return self


class TokenizerConfig(_Section):
    kind: Literal["char", "word", "sentencepiece"] = "sentencepiece"
    # the target side's kind where it differs (needs shared: false), e.g. G2P: char -> word
    tgt_kind: Literal["char", "word", "sentencepiece"] | None = None
    model_type: Literal["unigram", "bpe"] = "unigram"  # sentencepiece only
    vocab_size: int = 8000  # sentencepiece only
    character_coverage: float = 1.0  # sentencepiece only
    shared: bool = True  # one tokenizer and vocabulary for both sides
    min_freq: int = 1  # char/word vocabularies
    max_size: int | None = None  # char/word vocabularies


class PretrainedEmbeddings(_Section):
    src: str | None = None  # word2vec/GloVe text file
    tgt: str | None = None
    freeze: bool = False


class ModelConfig(_Section):
    arch: Literal["rnn", "transformer"] = "rnn"
    emb_dim: int = 256
    hidden_size: int = 256  # RNN decoder size (encoder total size), or Transformer d_model
    dropout: float = 0.3
    tie_embeddings: bool = True  # target embeddings == output projection
    share_embeddings: bool = False  # source embeddings == target embeddings (needs a shared vocab)
    pretrained_embeddings: PretrainedEmbeddings = PretrainedEmbeddings()
    # RNN family
    rnn_type: Literal["lstm", "gru"] = "lstm"
    encoder: Literal["rnn", "cnn"] = "rnn"
    encoder_layers: int = 2
    decoder_layers: int = 1
    bidirectional: bool = True
    attention: Literal["none", "bahdanau", "luong_dot", "luong_general"] = "luong_general"
    input_feeding: bool = True
    cnn_kernel_size: int = 3
    # Transformer
    heads: int = 4
    ff_size: int = 1024
    pre_norm: bool = True
    # sinusoidal: sin and cos interleaved (Vaswani et al.); sinusoidal_halves: all sines,
    # then all cosines (MarianMT's layout); learned: trained position embeddings
    positions: Literal["sinusoidal", "sinusoidal_halves", "learned"] = "sinusoidal"
    activation: Literal["relu", "gelu", "swish"] = "relu"  # feed-forward; swish is SiLU
    scale_embeddings: bool = True  # token embeddings times sqrt(hidden_size)
    final_logits_bias: bool = False  # a fixed bias on the output logits (MarianMT's)
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    max_positions: int = 1024
    attention_layer: int = -1  # decoder layer whose cross-attention is shown (-1: the last)
    attention_head: int | None = None  # head shown; null: the mean over heads
    # a model directory (trained, or made by `transduce import`) to start training from:
    # its weights, tokenizers and vocabularies, and its model settings, where this section
    # does not set them (README: fine-tuning)
    init: str | None = None

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if self.arch != "transformer":
            for key, default in (("activation", "relu"), ("scale_embeddings", True),
                                 ("final_logits_bias", False)):
                if getattr(self, key) != default:
                    raise ValueError(f"model.{key} applies to arch: transformer only")
            if self.positions == "sinusoidal_halves":
                raise ValueError("model.positions: sinusoidal_halves applies to arch: "
                                 "transformer only")
        if self.arch == "transformer" and self.hidden_size % self.heads:
            raise ValueError(f"model.hidden_size ({self.hidden_size}) must be divisible by "
                             f"model.heads ({self.heads})")
        if self.bidirectional and self.encoder == "rnn" and self.hidden_size % 2:
            raise ValueError("model.hidden_size must be even for a bidirectional encoder")
        return self


class SchedulerConfig(_Section):
    # linear: warmup, then linear decay to 0 at the end of the budget (max_steps, max_minutes
    # or max_epochs, whichever ends first; with max_minutes the decay follows the clock).
    kind: Literal["constant", "plateau", "noam", "inverse_sqrt", "linear"] = "plateau"
    factor: float = 0.5  # plateau: lr multiplier
    patience: int = 2  # plateau: validations without improvement
    min_lr: float = 1e-5
    warmup: int = 4000  # noam / inverse_sqrt / linear


class EarlyStoppingConfig(_Section):
    # a metric name (see transduce.evaluate.METRICS) or "loss"; null: the first of eval.metrics.
    # It also decides which model is kept as the best; each metric knows which way is better.
    metric: str | None = None
    patience: int = 5  # validations without improvement; 0 disables


class TrainConfig(_Section):
    out_dir: str = "runs/model"
    seed: int = 1234
    threads: int | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "fp32"
    optimizer: Literal["adam", "adamw", "rmsprop", "sgd"] = "adam"
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0  # L2 penalty (decoupled from the gradient with adamw)
    # L1 penalty: l1 * sum(|w|) over weight matrices and embeddings (not biases or norm
    # gains), added to the gradient as l1 * sign(w). Pushes weights to exactly-small values.
    l1: NonNegativeFloat = 0.0
    clip_grad_norm: float = 5.0
    label_smoothing: float = 0.1
    batch_tokens: int = 4096  # target tokens per batch (token-budget bucketing)
    accum_steps: int = 1
    max_steps: int | None = None
    max_epochs: int = 30
    max_minutes: float | None = None
    valid_every: int = 500
    valid_beam: int = 1
    valid_max_sentences: int | None = None
    scheduler: SchedulerConfig = SchedulerConfig()
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    keep_last: int = 3
    log_every: int = 50
    num_samples: int = 3
    progress: bool = True
    tensorboard: bool = True  # event files in MODEL_DIR/tensorboard (if tensorboard is installed)


class DecodeConfig(_Section):
    beam_size: int = 5
    n_best: int = 1
    length_penalty: float = 1.0  # GNMT alpha; 0 = raw log-probability
    max_len_ratio: float = 1.5
    max_len_offset: int = 10
    max_len: PositiveInt | None = None  # at most this many output tokens (null: the ratio's)
    batch_size: int = 64
    min_len: NonNegativeInt = 0  # output tokens before </s> is allowed
    no_repeat_ngram_size: NonNegativeInt = 0  # no n-gram of this size twice in an output
    repetition_penalty: PositiveFloat = 1.0  # > 1: tokens already in the output less likely
    coverage_penalty: NonNegativeFloat = 0.0  # beam search: GNMT's coverage penalty beta
    # int8: linear layers in int8 for CPU decoding (faster; BLEU within ~0.1 on our models)
    quantize: Literal["none", "int8"] = "none"


class EvalConfig(_Section):
    """What validation and `transduce evaluate` compute; the first metric drives early
    stopping unless train.early_stopping.metric says otherwise."""

    metrics: list[str] = list(DEFAULT_METRICS)


class Config(_Section):
    data: DataConfig = DataConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    decode: DecodeConfig = DecodeConfig()
    eval: EvalConfig = EvalConfig()


_ENV = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def expand_env(value: str) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}``; an unset VAR without default is an error."""

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is None:
            raise ConfigError(f"environment variable {name} is not set (used in {value!r})")
        return default

    return _ENV.sub(sub, value)


def _closest(key: str, names: list[str]) -> str | None:
    """The valid name most like `key`: a close spelling, else one that shares its first
    '_'-separated word (so 'lr_rate' suggests 'lr', which difflib alone rates too far)."""
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.5)
    if close:
        return close[0]
    head = key.split("_")[0]
    same_head = [n for n in names if n.split("_")[0] == head]
    return same_head[0] if same_head else None


def _check_keys(model: type[BaseModel], data: Any, path: str) -> None:
    """Reject unknown keys, suggesting the closest valid name."""
    if not isinstance(data, dict):
        return
    fields = model.model_fields
    for key, value in data.items():
        where = f"{path}{key}"
        if key not in fields:
            close = _closest(str(key), list(fields))
            hint = f"; did you mean '{path}{close}'?" if close else ""
            raise ConfigError(f"unknown config key '{where}'{hint} "
                              f"(valid keys here: {', '.join(fields)})")
        sub = fields[key].annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            if value is not None and not isinstance(value, dict):
                raise ConfigError(f"config key '{where}' must be a mapping of options")
            _check_keys(sub, value, f"{where}.")
        item = _list_item_model(sub)
        if item is not None and value is not None:
            if not isinstance(value, list):
                raise ConfigError(f"config key '{where}' must be a list")
            for i, entry in enumerate(value):
                if not isinstance(entry, dict):
                    raise ConfigError(f"config key '{where}[{i}]' must be a mapping of options")
                _check_keys(item, entry, f"{where}[{i}].")


def _list_item_model(annotation: Any) -> type[BaseModel] | None:
    """M for annotations list[M] and Optional[list[M]], where M is a config section."""
    for arg in (annotation, *typing.get_args(annotation)):
        if typing.get_origin(arg) is list:
            (inner,) = typing.get_args(arg)
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return inner
    return None


def _format_validation(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        got = e.get("input")
        lines.append(f"config key '{key}': {e['msg']} (got {got!r})" if key != "(top level)"
                     else e["msg"])
    return "; ".join(lines)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` strings; values are parsed as YAML scalars."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        dotted, raw = item.split("=", 1)
        keys = dotted.strip().split(".")
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: '{k}' is not a section")
        node[keys[-1]] = yaml.safe_load(raw) if raw.strip() else None
    return data


def config_from_dict(data: dict[str, Any]) -> Config:
    _check_keys(Config, data, "")
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_validation(e)) from None
    d = cfg.data
    for name in ("train_src", "train_tgt", "valid_src", "valid_tgt", "test_src", "test_tgt",
                 "cache_dir"):
        value = getattr(d, name)
        if value is not None:
            setattr(d, name, expand_env(value))
    for corpus in d.train or []:
        for name in ("src", "tgt", "path"):
            value = getattr(corpus, name)
            if value is not None:
                setattr(corpus, name, expand_env(value))
    cfg.train.out_dir = expand_env(cfg.train.out_dir)
    pre = cfg.model.pretrained_embeddings
    for name in ("src", "tgt"):
        value = getattr(pre, name)
        if value is not None:
            setattr(pre, name, expand_env(value))
    if cfg.model.share_embeddings and not cfg.tokenizer.shared and cfg.model.init is None:
        raise ConfigError("model.share_embeddings needs tokenizer.shared: true")
    if cfg.model.init is not None:
        cfg.model.init = expand_env(cfg.model.init)
    tok = cfg.tokenizer
    if tok.shared and tok.tgt_kind not in (None, tok.kind):
        raise ConfigError(f"tokenizer.tgt_kind ({tok.tgt_kind}) differs from tokenizer.kind "
                          f"({tok.kind}): that needs tokenizer.shared: false")
    _check_metrics(cfg)
    return cfg


# model settings a run that starts from model.init may change: they leave the weights' shapes
# and meaning alone (pretrained_embeddings would be overwritten by the model's weights)
_FREE_WITH_INIT = {"init", "dropout", "attention_dropout", "activation_dropout",
                   "attention_layer", "attention_head"}


def with_init_model(cfg: Config, init: ModelConfig, where: str) -> Config:
    """`cfg` with the model settings of the model it starts from (`init`, read from
    `where`), except regularisation and display settings that `cfg` sets itself; a
    ConfigError names any other setting that `cfg` sets to something else."""
    own = cfg.model
    for key in sorted(own.model_fields_set - _FREE_WITH_INIT):
        if getattr(own, key) != getattr(init, key):
            raise ConfigError(f"config key 'model.{key}' is {getattr(own, key)!r} but the "
                              f"model.init model ({where}) has {getattr(init, key)!r}: "
                              "fine-tuning keeps the architecture (leave the key out)")
    data = init.model_dump()
    data.update({k: getattr(own, k) for k in own.model_fields_set & _FREE_WITH_INIT})
    data["init"] = own.init
    merged = cfg.model_copy(deep=True)
    merged.model = ModelConfig.model_validate(data)
    return merged


def _check_metrics(cfg: Config) -> None:
    """The one check of metric names; resolves early_stopping.metric to a name."""
    try:
        check_metric_names(cfg.eval.metrics, "config key 'eval.metrics'")
        stop = cfg.train.early_stopping
        if stop.metric is None:
            stop.metric = cfg.eval.metrics[0]
        check_metric_names([stop.metric], "config key 'train.early_stopping.metric'",
                           extra=["loss"])
    except ValueError as e:
        raise ConfigError(str(e)) from None


def read_config(source: str | Path | dict[str, Any],
                overrides: list[str] | None = None) -> dict[str, Any]:
    """The raw config (a YAML file or a dict) with overrides applied, not yet validated."""
    if isinstance(source, dict):
        data = source
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return apply_overrides(copy.deepcopy(data), overrides or [])


def load_config(source: str | Path | dict[str, Any], overrides: list[str] | None = None) -> Config:
    """Read a YAML file (or a dict), apply overrides and validate."""
    return config_from_dict(read_config(source, overrides))


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False),
                          encoding="utf-8")
