"""Plots of the gradient-estimator studies (``experiments/gradient_quality.py``, ``cliff.py``).

- :func:`cosine_figure`: cosine to the BPTT gradient against ``T``, one panel per cell.
- :func:`cost_figure`: time and XLA temporary memory per step of each estimator.
- :func:`cliff_figure`: an error surface over two parameters with optimizer paths on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import LogNorm

from rnnlab.plots import figure

__all__ = ["CosineSeries", "Path", "cliff_figure", "cosine_figure", "cost_figure"]


class CosineSeries(NamedTuple):
    """One estimator's cosine to the BPTT gradient against the sequence length.

    Attributes:
      label: legend entry, e.g. ``"tbptt:8"``.
      lengths: ``[L]`` sequence lengths ``T``.
      median, low, high: ``[L]`` median and percentile band over draws.
    """

    label: str
    lengths: np.ndarray
    median: np.ndarray
    low: np.ndarray
    high: np.ndarray


def _estimator_colors(labels: Sequence[str]) -> dict[str, tuple]:
    palette = colormaps["tab10"]
    return {label: palette(i % 10) for i, label in enumerate(dict.fromkeys(labels))}


def cosine_figure(panels: Mapping[str, Sequence[CosineSeries]], *, band: str, title: str):
    """Cosine to the BPTT gradient against ``T`` (log axis), one panel per cell."""
    labels = [series.label for panel in panels.values() for series in panel]
    colors = _estimator_colors(labels)
    fig, axes = figure(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    for axis, (name, panel) in zip(axes[0], panels.items(), strict=True):
        for series in panel:
            color = colors[series.label]
            axis.plot(series.lengths, series.median, "o-", color=color, label=series.label, ms=3)
            axis.fill_between(series.lengths, series.low, series.high, color=color, alpha=0.15)
        axis.axhline(1.0, color="gray", lw=0.8, ls=":")
        axis.axhline(0.0, color="gray", lw=0.8)
        axis.set_xscale("log", base=2)
        axis.set(title=name, xlabel="sequence length T", ylim=(-0.25, 1.05))
    axes[0][0].set_ylabel("cosine to the BPTT gradient")
    axes[0][-1].legend(loc="lower left", fontsize=8, title=f"median, band {band}",
                       title_fontsize=8)  # fmt: skip
    fig.suptitle(title, fontsize=10, y=1.02)
    return fig


def cost_figure(rows: Sequence[Mapping], *, title: str):
    """Time per step and XLA temporary memory of each estimator, grouped by cell and H.

    Args:
      rows: ``{"cell", "hidden", "estimator", "seconds_per_step", "temp_bytes"}``;
        a row with ``"refused"`` instead (an estimator that declined the model) is
        marked "refused" where its bar would be.
    """
    groups = list(dict.fromkeys((row["cell"], row["hidden"]) for row in rows))
    estimators = list(dict.fromkeys(row["estimator"] for row in rows))
    colors = _estimator_colors(estimators)
    width = 0.8 / len(estimators)
    fig, axes = figure(1, 2, figsize=(11, 3.8))
    lookup = {(row["cell"], row["hidden"], row["estimator"]): row for row in rows}
    for axis, field, scale, unit in (
        (axes[0], "seconds_per_step", 1e3, "ms per step"),
        (axes[1], "temp_bytes", 2.0**-20, "XLA temporary memory, MiB"),
    ):
        for i, estimator in enumerate(estimators):
            values = [(lookup.get((*group, estimator)) or {}).get(field) for group in groups]
            heights = [np.nan if v is None else v * scale for v in values]
            positions = np.arange(len(groups)) + (i - (len(estimators) - 1) / 2) * width
            axis.bar(positions, heights, width, color=colors[estimator], label=estimator)
            for position, group in zip(positions, groups, strict=True):
                if "refused" in (lookup.get((*group, estimator)) or {}):
                    axis.annotate("refused", (position, 0), xycoords=("data", "axes fraction"),
                                  xytext=(0, 4), textcoords="offset points", rotation=90,
                                  ha="center", va="bottom", fontsize=7,
                                  color=colors[estimator])  # fmt: skip
        axis.set_xticks(np.arange(len(groups)), [f"{cell}\nH={hidden}" for cell, hidden in groups])
        axis.set(yscale="log", ylabel=unit)
    axes[0].legend(fontsize=8, ncol=2)
    fig.suptitle(title, fontsize=10)
    return fig


class Path(NamedTuple):
    """An optimizer's path over the surface.

    Attributes:
      label: legend entry.
      points: ``[N, 2]`` parameter values ``(x, y)`` after each step (``N >= 1``).
      dashed: draw the path dashed.
    """

    label: str
    points: np.ndarray
    dashed: bool = False


def cliff_figure(
    x: np.ndarray,
    y: np.ndarray,
    error: np.ndarray,
    paths: Sequence[Path],
    *,
    labels: tuple[str, str],
    title: str,
    axis=None,
):
    """``error [len(y), len(x)]`` as a log-scaled colour map with ``paths`` drawn on it.

    Returns the figure (a new one unless ``axis`` is given, then ``None``).
    """
    fig = None
    if axis is None:
        fig, axis = figure(figsize=(6, 5))
    positive = error[np.isfinite(error) & (error > 0)]
    norm = LogNorm(vmin=max(positive.min(), positive.max() * 1e-8), vmax=positive.max())
    mesh = axis.pcolormesh(x, y, np.clip(error, norm.vmin, None), norm=norm, cmap="viridis",
                           shading="auto")  # fmt: skip
    axis.figure.colorbar(mesh, ax=axis, label="error")
    colors = _estimator_colors([path.label for path in paths])
    # Solid paths first and wider, so that a dashed path over the same points stays visible.
    for path in sorted(paths, key=lambda path: path.dashed):
        points = np.asarray(path.points)
        style, width = ("--", 1.2) if path.dashed else ("-", 2.6)
        axis.plot(points[:, 0], points[:, 1], style, color=colors[path.label], lw=width,
                  marker="o", ms=2.0, label=path.label)  # fmt: skip
        axis.plot(*points[0], "o", color="white", mec="black", ms=6)
    axis.set(xlabel=labels[0], ylabel=labels[1], title=title, xlim=(x[0], x[-1]),
             ylim=(y[0], y[-1]))  # fmt: skip
    axis.legend(fontsize=7, loc="upper right", framealpha=0.85)
    return fig
