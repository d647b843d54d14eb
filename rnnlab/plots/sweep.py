"""Sweep figures: metric heatmaps with diverged cells marked, marginal effects, importance bars."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.ticker import NullFormatter

from rnnlab.plots import figure, save
from rnnlab.sweep.analysis import heatmap_table, marginal

__all__ = ["plot_heatmaps", "plot_importance", "plot_marginals", "value_labels"]

#: Cells where at least this fraction of runs diverged get hatched and an "x".
DIVERGED_MARK = 0.5


def value_labels(
    values: Sequence[float],
    *,
    reference: float | None = None,
    min_digits: int = 2,
    max_digits: int = 4,
) -> list[str]:
    """Labels of ``values`` with the fewest significant digits that tell them apart.

    The digits grow from ``min_digits`` until distinct values get distinct labels and
    none reads like ``reference`` (a baseline the values are compared with), up to
    ``max_digits`` (cells stay legible; values equal to that many digits share a label).
    With one digit, 0.168 to 0.172 all read "0.2", as does a baseline of 0.167; here
    they read "0.168" to "0.172" (the baseline "0.167").  Non-finite values are ``str``.
    """
    finite = sorted({float(v) for v in values if np.isfinite(v)})
    reference = None if reference is None or not np.isfinite(reference) else float(reference)
    digits = min_digits
    while digits < max_digits:
        labels = {f"{v:.{digits}g}" for v in finite}
        clash = reference is not None and any(
            v != reference and f"{v:.{digits}g}" == f"{reference:.{digits}g}" for v in finite
        )
        if len(labels) == len(finite) and not clash:
            break
        digits += 1
    return [f"{v:.{digits}g}" if np.isfinite(v) else str(v) for v in values]


def _label(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def plot_heatmaps(
    panels: Mapping[str, Sequence[Mapping]],
    x: str | Mapping[str, str],
    y: str | Mapping[str, str],
    metric: str,
    path,
    *,
    bins: int = 16,
    title: str = "",
    reference: float | None = None,
) -> None:
    """One heatmap per panel of the median ``log10(metric)`` over (``x``, ``y``).

    Other parameters (seeds) are pooled by the median, which is printed in each
    cell (assumes ``log=True`` tables) with the digits of :func:`value_labels`, the
    same for every panel.  Cells where at least half the runs
    diverged are hatched with a red "x"; the colour scale is shared by all
    panels so cells compare across them.

    Args:
      panels: panel title to its rows (e.g. one panel per cell type).
      x, y: column names, or per-panel names (e.g. forget bias for the LSTM,
        recurrent scale for the RNN).
      metric: the column to colour (e.g. ``"final_test_loss"``).
      path: the PNG to write.
      bins: the most levels per axis (continuous values are binned).
      title: the figure title.
      reference: a value the cells are read against (the task's baseline loss): the
        printed medians get enough digits not to read like it.
    """
    tables = {}
    for name, rows in panels.items():
        px = x[name] if isinstance(x, Mapping) else x
        py = y[name] if isinstance(y, Mapping) else y
        tables[name] = (px, py, heatmap_table(rows, px, py, metric, bins=bins))
    values = np.concatenate([t["value"].ravel() for _, _, t in tables.values()])
    vmin, vmax = np.nanmin(values), np.nanmax(values)
    texts = dict(zip(values.tolist(), value_labels(10**values, reference=reference), strict=True))
    fig, axes = figure(
        1, len(tables), figsize=(3.8 * len(tables), 3.6), squeeze=False, layout="constrained"
    )
    image = None
    for ax, (name, (px, py, table)) in zip(axes[0], tables.items(), strict=True):
        image = ax.imshow(
            table["value"], origin="lower", aspect="auto", cmap="viridis_r", vmin=vmin, vmax=vmax
        )
        ax.grid(False)
        for j, i in zip(*np.nonzero(np.isfinite(table["value"])), strict=True):
            diverged = table["diverged"][j, i] >= DIVERGED_MARK
            if diverged:
                ax.add_patch(_hatch(i, j))
            text = "x" if diverged else texts[float(table["value"][j, i])]
            dark = table["value"][j, i] > (vmin + vmax) / 2
            ax.text(
                i,
                j,
                text,
                ha="center",
                va="center",
                fontsize=9 if diverged else 6,
                color="red" if diverged else ("white" if dark else "black"),
                weight="bold" if diverged else "normal",
            )
        ax.set_xticks(range(len(table["x"])), [_label(v) for v in table["x"]], rotation=60)
        ax.set_yticks(range(len(table["y"])), [_label(v) for v in table["y"]])
        ax.set_xlabel(px)
        ax.set_ylabel(py)
        ax.set_title(name)
    colorbar = fig.colorbar(image, ax=axes[0].tolist(), shrink=0.9)
    colorbar.set_label(f"median log10 {metric}  (x = diverged)")
    if title:
        fig.suptitle(title)
    save(fig, path)


def _hatch(i, j):
    from matplotlib.patches import Rectangle

    return Rectangle((i - 0.5, j - 0.5), 1, 1, fill=False, hatch="xx", edgecolor="red", lw=0)


def plot_marginals(
    panels: Mapping[str, Sequence[Mapping]],
    params: Sequence[str],
    metric: str,
    path,
    *,
    log_params: Sequence[str] = (),
    bins: int = 8,
    title: str = "",
) -> None:
    """Marginal effect of each parameter: median and interquartile band per panel.

    A panel that lacks a parameter (one value only) is skipped in that subplot.
    The fraction of diverged runs at each level is drawn dashed on a right axis.
    """
    fig, axes = figure(
        1, len(params), figsize=(4.6 * len(params), 3.6), squeeze=False, layout="constrained"
    )
    colors = {name: f"C{k}" for k, name in enumerate(panels)}
    for ax, param in zip(axes[0], params, strict=True):
        twin = ax.twinx()
        for name, rows in panels.items():
            if len({repr(row.get(param)) for row in rows}) < 2:
                continue
            levels = marginal(rows, param, metric, bins=bins)
            xs = [level["value"] for level in levels]
            color = colors[name]
            ax.plot(xs, [lv["median"] for lv in levels], marker="o", label=name, color=color)
            ax.fill_between(
                xs,
                [lv["q25"] for lv in levels],
                [lv["q75"] for lv in levels],
                alpha=0.2,
                color=color,
            )
            twin.plot(xs, [lv["diverged"] for lv in levels], ls="--", color=color)
        if param in log_params:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
        twin.set_ylim(-0.02, 1.02)
        twin.grid(False)
        if param == params[-1]:
            twin.set_ylabel("fraction diverged (dashed)")
        else:
            twin.set_yticklabels([])
        ax.set_xlabel(param)
        ax.set_ylabel(f"log10 {metric}")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    save(fig, path)


def plot_importance(importances: Mapping[str, Mapping[str, float]], path, *, title: str = ""):
    """Grouped bars: main-effect variance fraction of each parameter, one colour per panel."""
    params = list(dict.fromkeys(p for values in importances.values() for p in values))
    params.sort(key=lambda p: p == "interactions+noise")  # the remainder goes last
    fig, ax = figure(figsize=(2 + 0.6 * len(params) * max(1, len(importances)), 3.6))
    width = 0.8 / max(len(importances), 1)
    for k, (name, values) in enumerate(importances.items()):
        positions = np.arange(len(params)) + (k - (len(importances) - 1) / 2) * width
        ax.bar(positions, [values.get(p, 0.0) for p in params], width, label=name)
    ax.set_xticks(range(len(params)), params, rotation=20)
    ax.set_ylabel("fraction of variance (main effect)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    save(fig, path)
