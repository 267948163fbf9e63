"""What a study found: a table of its trials, the best config as YAML, and plots."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from transduce.config import config_from_dict
from transduce.tune.space import apply
from transduce.tune.study import interrupted


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One row per trial (duplicates left out): number, state, parameters, score, steps,
    minutes, and with cross-validation the spread over folds."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("duplicate"):
            continue
        state = t.state.name.lower()
        if interrupted(study, t):
            state = "interrupted"
        score = t.value if t.state == TrialState.COMPLETE else _last_report(t)
        rows.append({"trial": t.number, "state": state, **t.params,
                     "score": None if score is None else round(score, 3),
                     "cv_std": t.user_attrs.get("cv_std"), "steps": t.user_attrs.get("steps"),
                     "minutes": t.user_attrs.get("minutes")})
    return rows


def _last_report(t: FrozenTrial) -> float | None:
    return t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None


def format_table(rows: list[dict[str, Any]], metric: str) -> str:
    if not rows:
        return "(no trials yet)"
    columns = [c for c in rows[0] if any(r.get(c) is not None for r in rows)]
    for r in rows:  # trials of other spaces may add columns
        columns += [c for c in r if c not in columns and r[c] is not None]
    header = [metric if c == "score" else c for c in columns]
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def best_config(study: optuna.Study) -> dict[str, Any] | None:
    """The study's base config with the best trial's parameters: the full training budget
    of the base config, not the trials' budget."""
    if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        return None
    raw = apply(study.user_attrs["base_config"], study.best_trial.params)
    config_from_dict(raw)  # still valid
    return raw


def write_report(study: optuna.Study, out: Path) -> str:
    """Write trials.json, best.yaml and the plots into `out`; returns the text to print."""
    metric = study.user_attrs.get("metric", "score")
    rows = trial_rows(study)
    (out / "trials.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    text = [f"study '{study.study_name}': {len(rows)} trials "
            f"({', '.join(f'{n} {s}' for s, n in _states(rows).items())})",
            format_table(rows, metric)]
    raw = best_config(study)
    if raw is not None:
        best = study.best_trial
        raw.setdefault("train", {})["out_dir"] = str(out / "best_model")
        head = (f"# The best of study '{study.study_name}': trial {best.number}, {metric} "
                f"{best.value:.3f} with {best.params}\n# transduce train {out / 'best.yaml'}\n")
        (out / "best.yaml").write_text(head + yaml.safe_dump(raw, sort_keys=False),
                                       encoding="utf-8")
        text.append(f"best: trial {best.number}, {metric} {best.value:.3f}: "
                    f"{', '.join(f'{k}={v}' for k, v in best.params.items())}\n"
                    f"best config: {out / 'best.yaml'}  (transduce train {out / 'best.yaml'})")
    text += plot_study(study, out)
    return "\n".join(text)


def _states(rows: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    return counts


def plot_study(study: optuna.Study, out: Path) -> list[str]:
    """history.png (the optimisation history) and importance.png (parameter importances,
    fANOVA) where there are enough finished trials; one line per written plot."""
    from transduce.plots import Figure, plt  # with the non-interactive backend

    draw = optuna.visualization.matplotlib
    plots_: list[tuple[str, Callable[[optuna.Study], Any]]] = [
        ("history.png", draw.plot_optimization_history)]
    if sum(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)) >= 2:
        plots_.append(("importance.png", draw.plot_param_importances))
    lines = []
    for name, plot in plots_:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ax = plot(study)
            except (ValueError, RuntimeError) as e:  # e.g. one value of each parameter
                lines.append(f"{name}: not drawn ({e})")
                continue
        fig = ax.get_figure(root=True)
        assert isinstance(fig, Figure)
        fig.set_size_inches(8, 5)
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        lines.append(f"plot: {out / name}")
    return lines
