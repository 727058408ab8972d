"""Training curves: how each run of a table trained, so an undertrained or diverging model is
seen at a glance rather than guessed from its accuracy.

Read from the ``metrics.csv`` every training run writes beside its checkpoint
(``repro.runs.train``: one row per epoch), never from the checkpoint. One figure per accuracy
table: train and validation loss, train and validation accuracy per epoch; one colour per
table row, its seeds overlaid in that colour; on the validation lines a dot marks the epoch
whose weights were kept (the best validation loss, ``best``) and a cross the epoch training
stopped at (early stopping or ``training.max_epochs``). "Train" is what training logged: the
defense's own objective (its adversarial, TRADES or contrastive terms included) and the
accuracy of the logits it trained on, in training mode; "validation" is the clean
cross-entropy and accuracy in eval mode, the early-stopping criterion.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

from repro.config import RunSpec
from repro.errors import UserError
from repro.grid import DATASET_NAMES, Table
from repro.runs.artifacts import rebuild_hint
from repro.runtime.io import atomic_path

COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "best")


def read_metrics(path: str | Path) -> list[dict]:
    """The epochs of one run's ``metrics.csv``, checked: the columns of :data:`COLUMNS`,
    epochs 1, 2, ..., finite numbers; an error names the file and how to remake it."""
    path = Path(path)
    hint = rebuild_hint(path, "train")
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise UserError(f"{path}: cannot read the training metrics ({error}); {hint}") from None
    missing = [c for c in COLUMNS if not rows or c not in rows[0]]
    if missing:
        raise UserError(f"{path}: no epochs or no column {missing[0]!r} in the training "
                        f"metrics; {hint}")
    epochs = []
    for number, row in enumerate(rows, start=1):
        try:
            values = {c: float(row[c]) for c in COLUMNS if c != "best"}
        except (TypeError, ValueError):
            values = {}
        if int(values.get("epoch", -1)) != number or not all(map(math.isfinite,
                                                                  values.values())):
            raise UserError(f"{path}: epoch {number} is not a row of finite numbers "
                            f"numbered {number}; {hint}")
        epochs.append({**values, "epoch": number, "best": row["best"] == "True"})
    return epochs


def kept_epoch(epochs: list[dict]) -> int:
    """The epoch whose weights the checkpoint holds: the last one that improved."""
    return max(e["epoch"] for e in epochs if e["best"]) if any(e["best"] for e in epochs) else 1


def plot_curves(table: Table, metrics: dict[RunSpec, list[dict]], source: str,
                outputs: list[str | Path]) -> None:
    """Table ``table``'s training curves (``metrics``: every run of the table -> its epochs)
    as PNG/PDF ``outputs``; ``source`` names the data (a stand-in says so)."""
    from matplotlib.figure import Figure  # not pyplot: its current figure is process-wide

    missing = [run for run in table.runs() if run not in metrics]
    if missing:
        raise ValueError(f"table {table.number}: no training metrics for {missing[0]}")
    fig = Figure(figsize=(11, 4.5))
    axes = fig.subplots(1, 2)
    colours = [f"C{i % 10}" for i in range(len(table.rows))]
    for row, colour in zip(table.rows, colours):
        for seed in table.seeds:
            epochs = metrics[row.run(table.dataset, seed)]
            x = [e["epoch"] for e in epochs]
            kept, last = kept_epoch(epochs) - 1, len(epochs) - 1
            for ax, key in zip(axes, ("loss", "acc")):
                ax.plot(x, [e[f"train_{key}"] for e in epochs], color=colour, linewidth=1,
                        alpha=0.8, label=row.label if seed == table.seeds[0] else None)
                val = [e[f"val_{key}"] for e in epochs]
                ax.plot(x, val, color=colour, linewidth=1, alpha=0.8, linestyle="--")
                ax.plot(x[kept], val[kept], "o", color=colour, markersize=4)
                ax.plot(x[last], val[last], "x", color=colour, markersize=5)
    _legend_of_styles(axes[0])
    axes[0].set_ylabel("loss (train: the defense's objective; val.: clean CE)")
    axes[1].set_ylabel("top-1 accuracy (%)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[1].legend(fontsize=7, title="row (seeds overlaid)", title_fontsize=7)
    seeds = ", ".join(map(str, table.seeds))
    fig.suptitle(f"Table {table.number}: training curves of its {len(table.runs())} runs, "
                 f"{DATASET_NAMES[table.dataset]} ({source}), seeds {seeds}", fontsize=9)
    fig.tight_layout()
    for out in outputs:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format=Path(out).suffix[1:])


def _legend_of_styles(ax) -> None:
    """What the line styles and markers mean (the colours are in the other panel's legend)."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color="grey", label="train"),
               Line2D([], [], color="grey", linestyle="--", label="validation"),
               Line2D([], [], color="grey", marker="o", linestyle="",
                      label="kept (best val. loss)"),
               Line2D([], [], color="grey", marker="x", linestyle="", label="stopped")]
    ax.legend(handles=handles, fontsize=7)
