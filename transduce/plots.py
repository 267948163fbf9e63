"""Pictures people would rather look at than read: attention heatmaps, training curves."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from transduce.evaluate import METRICS


def attention_figure(src_tokens: Sequence[str], tgt_tokens: Sequence[str],
                     weights: Sequence[Sequence[float]], title: str | None = None) -> Figure:
    """Heatmap of attention weights: rows are output tokens (and </s>), columns source tokens
    (and </s>). The caller closes the figure (plt.close)."""
    cols = list(src_tokens) + ["</s>"]
    rows = list(tgt_tokens) + ["</s>"]
    data = [list(r[: len(cols)]) for r in weights[: len(rows)]]
    fig_w = min(2.0 + 0.45 * len(cols), 24)
    fig_h = min(1.5 + 0.4 * len(rows), 24)
    fig, ax = plt.subplots(figsize=(fig_w, fig_h))
    image = ax.imshow(data, cmap="viridis", aspect="auto", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right", fontsize=9)
    ax.set_yticks(range(len(data)), rows[: len(data)], fontsize=9)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    if title:
        ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02)
    fig.tight_layout()
    return fig


def plot_attention(src_tokens: Sequence[str], tgt_tokens: Sequence[str],
                   weights: Sequence[Sequence[float]], path: str | Path,
                   title: str | None = None) -> Path:
    """`attention_figure` written to `path` (PNG, SVG or PDF by suffix); returns the path."""
    fig = attention_figure(src_tokens, tgt_tokens, weights, title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_training(log_path: str | Path, path: str | Path) -> Path:
    """Validation loss and the logged metrics against training steps, from a train_log.jsonl."""
    records = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line]
    if not records:
        raise ValueError(f"{log_path} has no validation records yet")
    steps = [r["step"] for r in records]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(steps, [r["valid_loss"] for r in records], marker="o", color="tab:red")
    left.set_xlabel("step")
    left.set_ylabel("validation loss (nats/token)")
    left.grid(alpha=0.3)
    names = [m for m in METRICS if m in records[-1] and m != "exact_match"] or ["exact_match"]
    for name, marker in zip(names, "osD^v<>px*h"):
        right.plot(steps, [r.get(name, float("nan")) for r in records], marker=marker,
                   label=name)
    right.set_xlabel("step")
    right.set_ylabel("score (%)")
    right.legend()
    right.grid(alpha=0.3)
    fig.suptitle(f"training curves: {Path(log_path).parent.name}")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
