"""TensorBoard event files in MODEL_DIR/tensorboard: `tensorboard --logdir MODEL_DIR`.

Scalars: train/loss, train/lr, train/tokens_per_s, train/grad_norm (every train.log_every
updates); valid/loss, valid/ppl and valid/<metric> for each metric (every validation).
Images: attention/valid_0, the cross-attention of the first validation sentence.
Text: samples, the validation samples. HParams: the config with the best score at the end.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
from torch.utils.tensorboard import SummaryWriter

from transduce.plots import attention_figure
from transduce.training.callbacks import Callback, Sample, TrainStats, Validation

if TYPE_CHECKING:
    from transduce.training.trainer import Trainer, TrainResult

DIR = "tensorboard"


class TensorBoardLog(Callback):
    def __init__(self, out: Path):
        self.dir = Path(out) / DIR
        self.writer: SummaryWriter | None = None

    def on_train_begin(self, trainer: Trainer) -> None:
        if not trainer.resumed:
            shutil.rmtree(self.dir, ignore_errors=True)
        # On resume, events logged after the checkpoint's step are dropped (purge_step).
        self.writer = SummaryWriter(str(self.dir),
                                    purge_step=trainer.progress.step if trainer.resumed else None)

    def on_log(self, trainer: Trainer, stats: TrainStats) -> None:
        assert self.writer is not None
        for name in ("loss", "lr", "tokens_per_s", "grad_norm"):
            self.writer.add_scalar(f"train/{name}", getattr(stats, name), stats.step)

    def on_validation(self, trainer: Trainer, valid: Validation, samples: list[Sample]) -> None:
        w = self.writer
        assert w is not None
        w.add_scalar("valid/loss", valid.loss, valid.step)
        w.add_scalar("valid/ppl", valid.ppl, valid.step)
        for name, value in valid.scores.items():
            w.add_scalar(f"valid/{name}", value, valid.step)
        if samples:
            rows = ["| source | reference | output |", "|---|---|---|"]
            rows += [f"| {_cell(s.src)} | {_cell(' / '.join(s.refs))} | {_cell(s.hyp)} |"
                     for s in samples]
            w.add_text("samples", "\n".join(rows), valid.step)
        self._attention(trainer, valid.step)
        w.flush()

    def _attention(self, trainer: Trainer, step: int) -> None:
        """The attention heatmap of the first validation sentence, decoded greedily."""
        assert self.writer is not None
        if trainer.valid_text is None or not trainer.valid_text[0]:
            return
        source = trainer.valid_text[0][0]
        tr = trainer.translator().translate([source], beam_size=1, return_attention=True)[0]
        if tr.attention is None:  # a model without attention
            return
        fig = attention_figure(tr.src_tokens, tr.tgt_tokens, tr.attention, title=source[:80])
        self.writer.add_figure("attention/valid_0", fig, step, close=True)
        plt.close(fig)

    def on_train_end(self, trainer: Trainer, result: TrainResult) -> None:
        assert self.writer is not None
        metrics = {"hparam/steps": float(result.steps), "hparam/minutes": result.minutes}
        if result.best_score is not None:
            metrics[f"hparam/best_{result.metric}"] = result.best_score
        self.writer.add_hparams(hparams(trainer.cfg.model_dump(mode="json")), metrics,
                                run_name=".")
        self.writer.close()


def hparams(config: dict[str, Any]) -> dict[str, Any]:
    """The model, tokenizer and training settings as flat `section.key` scalars."""
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else key)
        elif isinstance(node, bool | int | float | str):
            flat[prefix] = node
        elif node is None:
            flat[prefix] = "none"
        else:  # lists and tuples
            flat[prefix] = str(node)

    walk({k: config[k] for k in ("tokenizer", "model", "train")}, "")
    flat.pop("train.out_dir", None)
    return flat


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
