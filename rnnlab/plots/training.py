"""Plots of training runs: learning curves with the task's trivial baseline, and sweeps over T."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from rnnlab.plots import figure, save

__all__ = ["plot_gradients", "plot_learning_curves", "plot_run", "plot_success_vs_length"]


def _column(records: Sequence[Mapping], name: str) -> np.ndarray:
    return np.array([float(record[name]) for record in records])


def plot_learning_curves(records: Sequence[Mapping], task, path) -> None:
    """Train and test loss, and the test metric, against step, with the baseline dashed.

    Args:
      records: ``metrics.jsonl`` records (``step``, ``train_loss``, ``test_loss``,
        ``test_metric``).
      task: the :class:`rnnlab.tasks.Task` (name, metric and baselines).
      path: the PNG to write.
    """
    steps = _column(records, "step")
    fig, (loss_axis, metric_axis) = figure(1, 2, figsize=(10, 3.6))
    loss_axis.plot(steps, _column(records, "train_loss"), label="train (chunk mean)")
    loss_axis.plot(steps, _column(records, "test_loss"), label="test")
    loss_axis.axhline(task.baseline_loss, color="gray", ls="--", label="trivial baseline")
    loss_axis.set(xlabel="step", ylabel="loss", yscale="log", title=f"{task.name}: loss")
    loss_axis.legend()
    metric_axis.plot(steps, _column(records, "test_metric"), color="C1", label="test")
    metric_axis.axhline(task.baseline_metric, color="gray", ls="--", label="trivial baseline")
    metric_axis.set(xlabel="step", ylabel=task.metric_name)
    metric_axis.set_title(f"{task.name}: {task.metric_name}")
    metric_axis.legend()
    save(fig, path)


def plot_gradients(records: Sequence[Mapping], path) -> None:
    """Mean gradient norm (before clipping) and clipping rate per chunk against step."""
    steps = _column(records, "step")
    fig, (norm_axis, clip_axis) = figure(1, 2, figsize=(10, 3.6))
    norm_axis.plot(steps, _column(records, "grad_norm"))
    norm_axis.set(xlabel="step", ylabel="||g|| (chunk mean)", yscale="log", title="gradient norm")
    clip_axis.plot(steps, _column(records, "clip_rate"), color="C2")
    clip_axis.set(xlabel="step", ylabel="fraction of steps clipped", ylim=(-0.02, 1.02))
    clip_axis.set_title("clipping rate")
    save(fig, path)


def plot_run(records: Sequence[Mapping], task, out) -> list[Path]:
    """Writes ``learning_curves.png`` and ``gradients.png`` into ``out``."""
    out = Path(out)
    paths = [out / "learning_curves.png", out / "gradients.png"]
    plot_learning_curves(records, task, paths[0])
    plot_gradients(records, paths[1])
    return paths


def plot_success_vs_length(rows: Sequence[Mapping], path) -> None:
    """Learnability against ``T``: one column per task, one line per cell.

    Top: the success rate over seeds.  Bottom: each seed's final test loss
    (dots), the median (line), the trivial baseline (dashed, a function of ``T``)
    and the success threshold (dotted).

    Args:
      rows: dicts with ``task``, ``cell``, ``length``, ``success_rate``,
        ``final_test_losses`` (one per seed), ``baseline_loss`` and
        ``success_threshold``.
      path: the PNG to write.
    """
    task_names = list(dict.fromkeys(row["task"] for row in rows))
    width = len(task_names)
    fig, axes = figure(2, width, figsize=(6 * width, 7), squeeze=False, sharex="col")
    for column, task_name in enumerate(task_names):
        rate_axis, loss_axis = axes[0][column], axes[1][column]
        task_rows = sorted((r for r in rows if r["task"] == task_name), key=lambda r: r["length"])
        for index, cell in enumerate(dict.fromkeys(row["cell"] for row in task_rows)):
            cell_rows = [row for row in task_rows if row["cell"] == cell]
            lengths = [row["length"] for row in cell_rows]
            color = f"C{index}"
            rate_axis.plot(lengths, [r["success_rate"] for r in cell_rows], "o-", color=color)
            losses = [np.asarray(r["final_test_losses"], float) for r in cell_rows]
            for length, seed_losses in zip(lengths, losses, strict=True):
                loss_axis.plot([length] * len(seed_losses), seed_losses, ".", color=color)
            medians = [np.median(seed_losses) for seed_losses in losses]
            loss_axis.plot(lengths, medians, "-", color=color, label=cell)
        lengths = sorted({row["length"] for row in task_rows})
        by_length = {row["length"]: row for row in task_rows}
        loss_axis.plot(
            lengths, [by_length[t]["baseline_loss"] for t in lengths], "k--", label="baseline"
        )
        loss_axis.plot(
            lengths, [by_length[t]["success_threshold"] for t in lengths], "k:", label="success"
        )
        rate_axis.set(ylabel="success rate over seeds", ylim=(-0.05, 1.05), title=task_name)
        loss_axis.set(xlabel="sequence length T", ylabel="final test loss", yscale="log")
        loss_axis.set_xscale("log")
        loss_axis.legend()
    save(fig, path)
