"""Plots of the gradient-norm study (``experiments/grad_norms.py``).

- :func:`curves_figure`: ``||dL/dh_t|| / ||dL/dh_T||`` against ``t`` on a log scale, one
  panel per cell family, median over seeds and inputs with a percentile band, and the
  Pascanu et al. 2013 bound where it applies.
- :func:`decay_figure`: the decay ratio ``||dL/dh_1|| / ||dL/dh_T||`` against ``T``.
- :func:`panel_curves` and :func:`decay_series`: those figures' series from measured
  per-sample curves (:func:`rnnlab.diagnostics.carry_grad_norms`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
from matplotlib import colormaps

from rnnlab import diagnostics
from rnnlab.plots import figure

__all__ = ["Curve", "DecaySeries", "curves_figure", "decay_figure", "decay_series", "panel_curves"]


class Curve(NamedTuple):
    """One configuration's normalized gradient-norm curve over ``t = 1..T``.

    Attributes:
      label: legend entry, e.g. ``"rho = 0.9"``.
      median: ``[T]`` median over samples of ``||dL/dh_t|| / ||dL/dh_T||``.
      low, high: ``[T]`` percentile band (e.g. 10th and 90th).
      bound: ``[T]`` the Pascanu bound ``eta^(T-t)``, or ``None``.
      dashed: draw the median dashed (e.g. the LSTM's ``h`` beside its ``c``).
    """

    label: str
    median: np.ndarray
    low: np.ndarray
    high: np.ndarray
    bound: np.ndarray | None = None
    dashed: bool = False


class DecaySeries(NamedTuple):
    """One configuration's decay ratio against the sequence length ``T``.

    Attributes:
      label: legend entry.
      lengths: ``[L]`` sequence lengths.
      median, low, high: ``[L]`` median and percentile band of the ratio.
      dashed: draw it dashed, in the colour of the previous solid series with the
        same label before ``" ("`` (e.g. the LSTM's ``h`` beside its ``c``).
    """

    label: str
    lengths: np.ndarray
    median: np.ndarray
    low: np.ndarray
    high: np.ndarray
    dashed: bool = False


def panel_curves(
    labels: Sequence[str],
    leaves: Mapping[str, np.ndarray],
    eta: np.ndarray | None = None,
    band: tuple[float, float] = (10, 90),
) -> list[Curve]:
    """One normalized curve per configuration and carry leaf, configurations outermost.

    Args:
      labels: ``[C]`` legend entries of the configurations.
      leaves: ``{leaf: [C, N, T]}`` per-sample ``||dL/dcarry_t||``; with several leaves
        the first is dashed and each label names its leaf (``"rho = 0.9 (c)"``).
      eta: ``[C, S]`` Pascanu ``eta`` per sample (an Elman RNN), whose median gives the
        bound; ``None`` for none.
      band: the percentiles of the band.
    """
    curves = []
    for c, name in enumerate(labels):
        for index, (leaf, samples) in enumerate(leaves.items()):
            stats = diagnostics.band_stats(diagnostics.normalized_curves(samples[c]), band)
            bound = None
            if eta is not None:
                steps = samples.shape[-1]
                bound = np.asarray(diagnostics.pascanu_bound(np.median(eta[c]), steps))
            label = name + (f" ({leaf})" if len(leaves) > 1 else "")
            dashed = index == 0 and len(leaves) > 1
            curves.append(Curve(label, stats["median"], stats["low"], stats["high"], bound, dashed))
    return curves


def decay_series(
    labels: Sequence[str],
    lengths: Sequence[int],
    leaves_by_length: Sequence[Mapping[str, np.ndarray]],
    band: tuple[float, float] = (10, 90),
) -> list[DecaySeries]:
    """The decay ratio (:func:`rnnlab.diagnostics.decay_ratio`) against ``T``, one series per
    configuration and carry leaf, configurations outermost.

    Args:
      labels: ``[C]`` legend entries of the configurations.
      lengths: ``[L]`` sequence lengths.
      leaves_by_length: per length, ``{leaf: [C, N, T]}`` per-sample curves.
      band: the percentiles of the band.
    """
    series = []
    leaves = list(leaves_by_length[0])
    for c, name in enumerate(labels):
        for index, leaf in enumerate(leaves):
            stats = [
                diagnostics.band_stats(diagnostics.decay_ratio(by_length[leaf][c]), band)
                for by_length in leaves_by_length
            ]
            label = name + (f" ({leaf})" if len(leaves) > 1 else "")
            median, low, high = (np.array([s[k] for s in stats]) for k in ("median", "low", "high"))
            dashed = len(leaves) > 1 and index == 0
            series.append(DecaySeries(label, np.array(lengths), median, low, high, dashed))
    return series


def _colors(count: int, family_index: int):
    cmap = colormaps[("viridis", "plasma", "cividis", "magma")[family_index % 4]]
    return [cmap(x) for x in np.linspace(0.05, 0.8, max(count, 1))]


def _color_for(label: str, palette, assigned: dict) -> tuple:
    """One colour per configuration: labels that differ only after ``" ("`` share it."""
    key = label.split(" (")[0]
    return assigned.setdefault(key, palette[len(assigned) % len(palette)])


def _log_limits(arrays: Sequence[np.ndarray], floor: float = 1e-300) -> tuple[float, float]:
    values = np.concatenate([np.ravel(a) for a in arrays])
    values = values[np.isfinite(values) & (values > floor)]
    if values.size == 0:
        return 1e-3, 10.0
    return float(values.min()) / 5, float(values.max()) * 5


def curves_figure(panels: Mapping[str, Sequence[Curve]], *, length: int, band: str, title: str):
    """``||dL/dh_t|| / ||dL/dh_T||`` against ``t``, one log-scale panel per family.

    Args:
      panels: ``{panel title: curves}``.
      length: ``T``, the common length of the curves.
      band: what the shaded band is, for the caption, e.g. ``"10-90th percentile"``.
      title: the figure title.

    Returns:
      The matplotlib figure.
    """
    fig, axes = figure(1, len(panels), figsize=(5.2 * len(panels), 4.4), squeeze=False)
    t = np.arange(1, length + 1)
    for index, (ax, (name, curves)) in enumerate(zip(axes[0], panels.items(), strict=True)):
        palette, assigned = _colors(len([c for c in curves if not c.dashed]), index), {}
        data = []
        for curve in curves:
            color = _color_for(curve.label, palette, assigned)
            style = "--" if curve.dashed else "-"
            ax.plot(t, curve.median, style, color=color, lw=1.8, label=curve.label)
            ax.fill_between(t, curve.low, curve.high, color=color, alpha=0.18, lw=0)
            data += [curve.low, curve.high]
            if curve.bound is not None:
                ax.plot(t, curve.bound, ":", color=color, lw=1.4, alpha=0.9)
        ax.set_yscale("log")
        low, high = _log_limits(data)
        ax.set_ylim(low, max(high, 10.0))
        ax.set_xlim(1, length)
        ax.set_title(name)
        ax.set_xlabel("time step t")
        if any(curve.bound is not None for curve in curves):
            ax.plot([], [], ":", color="0.3", label=r"Pascanu bound $\eta^{T-t}$")
        ax.legend(fontsize=8, loc="lower right")
    axes[0, 0].set_ylabel(
        r"$\|\partial L/\partial s_t\| \,/\, \|\partial L/\partial s_T\|$ (s: a carry leaf)"
    )
    fig.suptitle(f"{title}\nmedian over seeds and inputs, band: {band}", fontsize=11)
    fig.tight_layout()
    return fig


def decay_figure(panels: Mapping[str, Sequence[DecaySeries]], *, band: str, title: str):
    """The decay ratio ``||dL/dh_1|| / ||dL/dh_T||`` against ``T``, one panel per family.

    Args:
      panels: ``{panel title: series}``.
      band: what the error bars are, for the caption.
      title: the figure title.

    Returns:
      The matplotlib figure.
    """
    fig, axes = figure(1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False)
    markers = "osD^v<>p"
    for index, (ax, (name, series)) in enumerate(zip(axes[0], panels.items(), strict=True)):
        palette, assigned = _colors(len([s for s in series if not s.dashed]), index), {}
        data = []
        for item in series:
            color = _color_for(item.label, palette, assigned)
            ax.plot(
                item.lengths, item.median, "--" if item.dashed else "-", color=color, lw=1.8,
                marker=markers[(len(assigned) - 1) % len(markers)], label=item.label,
            )  # fmt: skip
            ax.fill_between(item.lengths, item.low, item.high, color=color, alpha=0.18, lw=0)
            data += [item.low, item.high]
        ax.set_yscale("log")
        low, high = _log_limits(data)
        ax.set_ylim(low, max(high, 10.0))
        ax.axhline(1.0, color="0.5", lw=0.8)
        ax.set_xticks(series[0].lengths)
        ax.set_title(name)
        ax.set_xlabel("sequence length T")
        ax.legend(fontsize=8, loc="lower left")
    axes[0, 0].set_ylabel(
        r"decay ratio $\|\partial L/\partial s_1\| \,/\, \|\partial L/\partial s_T\|$"
        " (s: a carry leaf)"
    )
    fig.suptitle(f"{title}\nmedian over seeds and inputs, band: {band}", fontsize=11)
    fig.tight_layout()
    return fig


def comparison_figure(series: Sequence[DecaySeries], *, band: str, title: str):
    """Many cells' decay ratios against ``T`` in one log-log panel, legend outside.

    A ratio of exactly 0 (every path through the step cut, e.g. dead ReLU units, or
    float64 underflow below 1e-308) is drawn on the panel's bottom edge with an open
    marker, and its legend entry says so.

    Returns:
      The matplotlib figure.
    """
    from matplotlib.ticker import NullFormatter

    fig, axes = figure(1, 1, figsize=(10.5, 5.6), squeeze=False)
    ax = axes[0, 0]
    low, high = _log_limits([a for item in series for a in (item.low, item.high, item.median)])
    low, high = low / 10, max(high, 10.0)
    cmap = colormaps["tab20"]
    markers = "osD^v<>pPX*hH"
    colors = {}
    for item in series:
        key = item.label.split(" (")[0]
        color = colors.setdefault(key, cmap(len(colors) % 20))
        marker = markers[(len(colors) - 1) % len(markers)]
        zero = ~(item.median > 0)
        median = np.where(zero, low, item.median)
        label = item.label + (" (0 at some T)" if zero.any() else "")
        ax.plot(item.lengths, median, "--" if item.dashed else "-", color=color, lw=1.6,
                marker=marker, label=label)  # fmt: skip
        if zero.any():
            ax.plot(item.lengths[zero], median[zero], marker, ms=11, mfc="none", color=color,
                    clip_on=False)  # fmt: skip
        ax.fill_between(item.lengths, np.maximum(item.low, low), np.maximum(item.high, low),
                        color=color, alpha=0.12, lw=0)  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(low, high)
    ax.axhline(1.0, color="0.5", lw=0.8)
    ax.set_xticks(series[0].lengths, [str(t) for t in series[0].lengths])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("sequence length T")
    ax.set_ylabel(
        r"decay ratio $\|\partial L/\partial s_1\| \,/\, \|\partial L/\partial s_T\|$"
        " (s: a carry leaf)"
    )
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set_title(f"{title}\nmedian over seeds and inputs, band: {band}", fontsize=10)
    fig.tight_layout()
    return fig
