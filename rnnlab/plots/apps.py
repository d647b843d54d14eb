"""Plots of the application studies: model comparisons, piano rolls, attention, forecasts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from rnnlab.plots import figure, save

__all__ = [
    "plot_anomaly",
    "plot_attention",
    "plot_by_length",
    "plot_comparison",
    "plot_curves",
    "plot_forecasts",
    "plot_piano_roll",
]


def _baseline_lines(axis, baselines: Mapping[str, float], values) -> None:
    """Horizontal lines at the baselines, and y limits that show ``values``: a baseline
    far outside their range (more than their span away) is named with its value in the
    legend instead of squashing the axis."""
    values = np.asarray([v for v in np.ravel(values) if np.isfinite(v)], np.float64)
    low, high = values.min(), values.max()
    span = max(high - low, 1e-3 * max(abs(high), 1.0))
    styles = ("--", ":", "-.", (0, (1, 4)))
    for index, (name, value) in enumerate(baselines.items()):
        style = styles[index % len(styles)]
        if low - 2 * span <= value <= high + 2 * span:
            axis.axhline(value, color="gray", ls=style, label=name)
            low, high = min(low, value), max(high, value)
        else:
            axis.plot([], [], color="gray", ls=style, label=f"{name}: {value:.3g} (off scale)")
    margin = 0.08 * max(high - low, span)
    axis.set_ylim(low - margin, high + margin)


def plot_curves(
    results: Mapping, path, *, metric_name: str, baselines: Mapping[str, float] = {}
) -> None:
    """Validation loss and test metric against step, one line per model (median over
    seeds, the band from the best to the worst seed); baselines dashed.

    Args:
      results: ``{label: rnnlab.train.compare.ModelResult}``.
      path: the PNG.
      metric_name: the task's metric, for the axis label.
      baselines: ``{name: value}`` of the metric, drawn as horizontal lines.
    """
    fig, (loss_axis, metric_axis) = figure(1, 2, figsize=(11, 3.8))
    shown = []
    for index, result in enumerate(results.values()):
        history, color = result.history, f"C{index % 10}"
        steps = history["step"][0]
        loss = history.get("validation_loss", history["test_loss"])
        for axis, values in ((loss_axis, loss), (metric_axis, history["test_metric"])):
            axis.plot(steps, np.median(values, 0), color=color, label=result.label)
            if len(values) > 1:
                axis.fill_between(steps, values.min(0), values.max(0), color=color, alpha=0.15)
        shown.append(np.median(history["test_metric"], 0))
    which = "validation" if "validation_loss" in next(iter(results.values())).history else "test"
    loss_axis.set(xlabel="step", ylabel=f"{which} loss", yscale="log", title=f"{which} loss")
    metric_axis.set(xlabel="step", ylabel=f"test {metric_name}", title=f"test {metric_name}")
    _baseline_lines(metric_axis, baselines, shown)
    metric_axis.legend(fontsize=8)
    save(fig, path)


def plot_comparison(
    rows: Sequence[Mapping],
    path,
    *,
    metric_name: str,
    baselines: Mapping[str, float] = {},
    title: str = "",
) -> None:
    """The selected test metric of each model: a dot per seed, a bar across at the mean
    over seeds, and the baselines as horizontal lines.

    Args:
      rows: :func:`rnnlab.train.compare.summary_rows`.
    """
    fig, axis = figure(figsize=(max(4.0, 1.1 * len(rows) + 2), 3.8))
    positions = np.arange(len(rows))
    for position, row in zip(positions, rows, strict=True):
        seeds = row["test_metric_per_seed"]
        axis.plot(np.full(len(seeds), position), seeds, "o", color="C0", ms=5, alpha=0.7)
        axis.plot([position - 0.3, position + 0.3], [row["test_metric"]] * 2, color="C0", lw=2)
    values = [v for row in rows for v in row["test_metric_per_seed"]]
    _baseline_lines(axis, baselines, values)
    axis.set_xticks(positions, [row["model"] for row in rows], rotation=20, ha="right")
    axis.set_xlim(-0.6, len(rows) - 0.4)
    axis.set(ylabel=f"test {metric_name} (selected on validation)", title=title)
    if baselines:
        axis.legend(fontsize=8)
    save(fig, path)


def plot_piano_roll(roll: np.ndarray, path, *, title: str = "", lowest_midi: int = 21) -> None:
    """A ``[T, 88]`` piano roll: time across, MIDI pitch up, sounding keys dark."""
    roll = np.asarray(roll, bool)
    keys = np.flatnonzero(roll.any(0))
    low, high = (keys.min(), keys.max()) if keys.size else (39, 48)
    low, high = max(0, low - 2), min(roll.shape[1] - 1, high + 2)
    fig, axis = figure(figsize=(max(6.0, roll.shape[0] / 10), 3.5))
    axis.imshow(
        roll[:, low : high + 1].T,
        origin="lower",
        aspect="auto",
        cmap="Greys",
        interpolation="nearest",
        extent=(-0.5, roll.shape[0] - 0.5, low + lowest_midi - 0.5, high + lowest_midi + 0.5),
    )
    axis.grid(False)
    axis.set(xlabel="frame (eighth notes)", ylabel="MIDI pitch", title=title)
    save(fig, path)


def plot_attention(
    examples: Sequence[tuple[np.ndarray, Sequence[str], Sequence[str]]], path, *, title: str = ""
) -> None:
    """Attention weights ``alpha_ij`` as heat maps, one panel per example.

    Args:
      examples: ``(weights [U, S], source_words [S], output_tokens [U])`` triples;
        each panel shows output tokens down and source words across.
    """
    fig, axes = figure(1, len(examples), figsize=(4.2 * len(examples), 3.8), squeeze=False)
    for axis, (weights, source, output) in zip(axes[0], examples, strict=True):
        image = axis.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        axis.grid(False)
        axis.set_xticks(np.arange(len(source)), source, rotation=60, ha="right", fontsize=8)
        axis.set_yticks(np.arange(len(output)), output, fontsize=8)
        axis.set(xlabel="source word", ylabel="output token")
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="attention weight")
    if title:
        fig.suptitle(title)
    save(fig, path)


def plot_by_length(
    table: Mapping[str, Mapping[int, Sequence[float]]],
    path,
    *,
    xlabel: str,
    ylabel: str,
    title: str = "",
) -> None:
    """A score against a length, one line per model: the mean over seeds, a band from
    the worst to the best seed.

    Args:
      table: ``{model: {length: [score per seed]}}``.
    """
    fig, axis = figure(figsize=(6.5, 3.8))
    for index, (name, by_length) in enumerate(table.items()):
        lengths = sorted(by_length)
        values = [np.asarray(by_length[length], np.float64) for length in lengths]
        color = f"C{index % 10}"
        axis.plot(lengths, [v.mean() for v in values], "o-", color=color, label=name, ms=4)
        axis.fill_between(
            lengths, [v.min() for v in values], [v.max() for v in values], color=color, alpha=0.15
        )
    axis.set(xlabel=xlabel, ylabel=ylabel, title=title)
    axis.legend(fontsize=8)
    save(fig, path)


def plot_forecasts(
    years: np.ndarray,
    series: np.ndarray,
    forecasts: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]],
    path,
    *,
    split_starts: Mapping[str, float] = {},
    title: str = "",
    ylabel: str = "",
) -> None:
    """A series with multi-step forecasts from a few origins, each with its band.

    Args:
      years: ``[N]`` the time axis of ``series``.
      series: ``[N]`` observed values.
      forecasts: ``{name: (times [K, h], mean [K, h], lower [K, h] | None, upper
        [K, h] | None)}``: ``K`` forecasts of ``h`` steps each.
      split_starts: ``{name: time}`` drawn as vertical lines (validation, test).
    """
    fig, axis = figure(figsize=(11, 4))
    axis.plot(years, series, color="black", lw=1, label="observed")
    for index, (name, (times, mean, lower, upper)) in enumerate(forecasts.items()):
        color = f"C{index % 10}"
        for row in range(len(times)):
            axis.plot(times[row], mean[row], color=color, lw=1.5, label=name if row == 0 else None)
            if lower is not None:
                axis.fill_between(times[row], lower[row], upper[row], color=color, alpha=0.15)
    for name, start in split_starts.items():
        axis.axvline(start, color="gray", ls=":", lw=1)
        axis.annotate(name, (start, 1.0), xycoords=("data", "axes fraction"), fontsize=8)
    axis.set(xlabel="year", ylabel=ylabel, title=title)
    axis.legend(fontsize=8, ncol=2)
    save(fig, path)


def plot_anomaly(
    values: np.ndarray,
    labels: np.ndarray,
    scores: Mapping[str, np.ndarray],
    top_windows: Mapping[str, int],
    window: int,
    path,
    *,
    offset: int = 0,
    title: str = "",
) -> None:
    """The test segment with its labelled anomaly shaded, and each method's point scores
    with its top-scored window marked.

    Args:
      values: ``[N]`` the series; ``labels [N]`` bool anomaly labels.
      scores: ``{name: [N - offset] point scores}``, aligned from index ``offset``.
      top_windows: ``{name: start}`` of the top-scored window (in ``scores`` indices).
    """
    fig, axes = figure(
        1 + len(scores), 1, figsize=(11, 2.2 * (1 + len(scores))), sharex=True, squeeze=False
    )
    axes = axes[:, 0]
    index = np.arange(len(values))
    anomalous = np.flatnonzero(labels)
    for axis in axes:
        if anomalous.size:
            axis.axvspan(anomalous[0], anomalous[-1], color="C3", alpha=0.15)
    axes[0].plot(index, values, color="black", lw=0.6)
    axes[0].set(ylabel="ECG (standardized)", title=title)
    for axis, (name, point_scores) in zip(axes[1:], scores.items(), strict=True):
        axis.plot(index[offset : offset + len(point_scores)], point_scores, lw=0.6)
        start = top_windows[name] + offset
        axis.axvspan(start, start + window, color="C2", alpha=0.35, label="top-scored window")
        axis.set(ylabel=f"{name}\nscore", yscale="symlog")
        axis.legend(fontsize=8, loc="upper left")
    axes[-1].set_xlabel("sample in the test segment")
    save(fig, path)
