"""Plots of rnnlab results; one module per study, sharing :func:`figure` and :func:`save`.

Uses matplotlib's non-interactive Agg backend so plotting works on headless
machines and in CI.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from rnnlab.io import atomic_open  # noqa: E402

STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "font.size": 10,
}


def figure(*args, **kwargs):
    """``plt.subplots`` under rnnlab's style."""
    with plt.rc_context(STYLE):
        return plt.subplots(*args, **kwargs)


def save(fig, path) -> None:
    """Saves ``fig`` as PNG atomically and closes it."""
    with plt.rc_context(STYLE), atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", bbox_inches="tight")
    plt.close(fig)
