"""The search space: plain YAML over config keys, checked before any training.

    train.lr: {low: 1.0e-4, high: 3.0e-3, log: true}    # a range (float)
    model.encoder_layers: {low: 1, high: 3}             # integers where low and high are
    train.batch_tokens: {low: 512, high: 2048, step: 512}
    model.dropout: [0.1, 0.2, 0.3]                      # a list of choices
    model.attention: [bahdanau, luong_general]

Grid search takes lists, and ranges with a `step` (expanded to their values; integer
ranges have step 1).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml

from transduce.config import ConfigError, config_from_dict

Scalar = bool | int | float | str | None
_RANGE_KEYS = {"low", "high", "log", "step"}


@dataclass(frozen=True)
class Param:
    """One searched config key: a list of `choices`, or a range [low, high]."""

    key: str  # dotted config key, e.g. train.lr
    choices: tuple[Scalar, ...] | None = None
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float | None = None
    integer: bool = False

    def suggest(self, trial: optuna.Trial) -> Scalar:
        if self.choices is not None:
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.key, int(self.low), int(self.high),
                                     step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def grid_values(self) -> list[Scalar]:
        """The values a grid search tries."""
        if self.choices is not None:
            return list(self.choices)
        step = self.step or (1.0 if self.integer and not self.log else None)
        if step is None:
            raise ConfigError(f"search space key '{self.key}': grid search needs a list of "
                              "values or a range with a step, e.g. {low: 1, high: 3, step: 1}")
        n = round((self.high - self.low) / step) + 1
        values = [self.low + i * step for i in range(n)]
        return [int(v) if self.integer else round(v, 12) for v in values]


def load_space(source: str | Path | dict[str, Any], base: dict[str, Any]) -> list[Param]:
    """Read a space (a YAML file or a dict) and check every key and value against `base`,
    the raw config of the study; raises ConfigError naming the key."""
    if isinstance(source, dict):
        raw: Any = source
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"search space file not found: {path}")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict) or not raw:
        raise ConfigError("the search space must be a mapping of config keys to a list of "
                          "values or a range {low, high}")
    params = [_param(str(key), spec) for key, spec in raw.items()]
    for p in params:
        for value in p.grid_values() if p.choices is not None else [p.low, p.high]:
            _check_value(base, p.key, value)
    return params


def _param(key: str, spec: Any) -> Param:
    where = f"search space key '{key}'"
    if isinstance(spec, list):
        if not spec:
            raise ConfigError(f"{where}: the list of values is empty")
        for v in spec:
            if not isinstance(v, bool | int | float | str | type(None)):
                raise ConfigError(f"{where}: values must be numbers, strings, booleans or "
                                  f"null, got {v!r}")
        return Param(key, choices=tuple(spec))
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: give a list of values or a range {{low, high}}, "
                          f"got {spec!r}")
    unknown = set(spec) - _RANGE_KEYS
    if unknown or not {"low", "high"} <= set(spec):
        raise ConfigError(f"{where}: a range has 'low' and 'high' (and optional 'log', "
                          f"'step'); got keys {sorted(spec)}")
    low, high, step = spec["low"], spec["high"], spec.get("step")
    log = spec.get("log", False)
    for name, v in (("low", low), ("high", high), ("step", step)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
            raise ConfigError(f"{where}: '{name}' must be a number, got {v!r}")
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: 'log' must be true or false, got {log!r}")
    if not low < high:
        raise ConfigError(f"{where}: low ({low}) must be less than high ({high})")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0 (got {low})")
    if step is not None and (step <= 0 or log):
        raise ConfigError(f"{where}: 'step' must be > 0 and cannot go with log: true")
    integer = all(isinstance(v, int) for v in (low, high, step) if v is not None)
    return Param(key, low=float(low), high=float(high), log=log,
                 step=None if step is None else float(step), integer=integer)


def _check_value(base: dict[str, Any], key: str, value: Scalar) -> None:
    try:
        config_from_dict(apply(base, {key: value}))
    except ConfigError as e:
        raise ConfigError(f"search space key '{key}' (value {value!r}): {e}") from None


def apply(raw: dict[str, Any], values: dict[str, Scalar]) -> dict[str, Any]:
    """A copy of the raw config with dotted `values` set (train.lr=..., model.dropout=...)."""
    out = copy.deepcopy(raw)
    for key, value in values.items():
        *sections, name = key.split(".")
        node = out
        for section in sections:
            child = node.setdefault(section, {})
            if not isinstance(child, dict):
                raise ConfigError(f"search space key '{key}': '{section}' is not a section")
            node = child
        node[name] = value
    return out
