"""Plots of the dynamics studies (``experiments/edge_of_chaos.py``, ``curse_of_memory.py``).

- :func:`edge_of_chaos_figure`: per cell family, the largest Lyapunov exponent and the
  per-step gradient growth rate against the swept hyperparameter, and one scatter of
  the two against each other.
- :func:`curse_of_memory_figure`: final loss against teacher memory per student, and
  the measured parameter sensitivity ``E[(dh/dlambda)^2]`` against its closed form.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
from matplotlib import colormaps

from rnnlab.plots import figure

__all__ = ["RateSeries", "StudentSeries", "curse_of_memory_figure", "edge_of_chaos_figure"]


class RateSeries(NamedTuple):
    """One cell family at one size: rates per step against the swept hyperparameter.

    Attributes:
      label: legend entry, e.g. ``"N = 64"``.
      values: ``[V]`` hyperparameter values.
      lyapunov: ``[V, 3]`` 10th, 50th and 90th percentile of ``lambda_max``.
      gradient_rate: ``[V, 3]`` the same of ``log(||dL/dh_1|| / ||dL/dh_T||) / (T - 1)``.
      reference: optional ``(x, y, label)`` theory curve drawn dotted.
    """

    label: str
    values: np.ndarray
    lyapunov: np.ndarray
    gradient_rate: np.ndarray
    reference: tuple | None = None


def _palette(count: int, name: str = "viridis"):
    cmap = colormaps[name]
    return [cmap(x) for x in np.linspace(0.1, 0.8, max(count, 1))]


def edge_of_chaos_figure(
    panels: Mapping[str, tuple[str, Sequence[RateSeries]]], *, length: int, title: str
):
    """One panel per family (x: its hyperparameter) and a final scatter panel.

    Each family panel shows ``lambda_max`` (solid, band 10-90%) and the gradient rate
    ``(1/(T-1)) log ||dL/dh_1|| / ||dL/dh_T||`` (dashed) against the hyperparameter,
    with 0 marked: where ``lambda_max`` crosses 0 the gradient stops vanishing.  The
    scatter puts every configuration's median gradient rate against its median
    ``lambda_max``, with the identity line.

    Args:
      panels: ``{family title: (x-axis label, [RateSeries, ...])}``.
      length: ``T`` of the gradient window.
      title: figure title.
    """
    fig, axes = figure(1, len(panels) + 1, figsize=(4.6 * (len(panels) + 1), 4.0))
    axes = np.atleast_1d(axes)
    scatter = axes[-1]
    everything = []
    for index, (ax, (name, (xlabel, series))) in enumerate(
        zip(axes[:-1], panels.items(), strict=True)
    ):
        colors = _palette(len(series), ("viridis", "plasma", "cividis")[index % 3])
        for color, s in zip(colors, series, strict=True):
            ax.plot(s.values, s.lyapunov[:, 1], "o-", color=color, label=f"{s.label}: λ_max")
            ax.fill_between(s.values, s.lyapunov[:, 0], s.lyapunov[:, 2], color=color, alpha=0.15)
            ax.plot(
                s.values, s.gradient_rate[:, 1], "s--", color=color, alpha=0.8, markersize=3,
                label=f"{s.label}: gradient rate",
            )  # fmt: skip
            if s.reference is not None:
                x, y, label = s.reference
                ax.plot(x, y, ":", color="grey", label=label)
            scatter.plot(
                s.lyapunov[:, 1], s.gradient_rate[:, 1], "osD^v"[index % 5], color=color,
                markersize=4, label=f"{name}, {s.label}",
            )  # fmt: skip
            everything += [s.lyapunov[:, 1], s.gradient_rate[:, 1]]
        ax.axhline(0.0, color="black", lw=0.8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("rate per step (nats)")
        ax.set_title(name)
        ax.legend(fontsize=7)
    values = np.concatenate(everything) if everything else np.zeros(1)
    values = values[np.isfinite(values)]
    low, high = (values.min(), values.max()) if values.size else (-1.0, 1.0)
    scatter.plot([low, high], [low, high], "k:", lw=1, label="identity")
    scatter.axhline(0.0, color="black", lw=0.5)
    scatter.axvline(0.0, color="black", lw=0.5)
    scatter.set_xlabel("largest Lyapunov exponent λ_max")
    scatter.set_ylabel(f"log(‖∂L/∂h_1‖ / ‖∂L/∂h_T‖) / (T−1),  T = {length}")
    scatter.set_title("Dynamics predict gradients")
    scatter.legend(fontsize=7)
    fig.subplots_adjust(wspace=0.3)
    fig.suptitle(title)
    return fig


class StudentSeries(NamedTuple):
    """One student's results against teacher memory.

    Attributes:
      label: legend entry.
      memories: ``[M]`` teacher memories ``|lambda|``.
      loss: ``[M, 3]`` 10th, 50th and 90th percentile over seeds of the final loss
        divided by the teacher's output power (the zero predictor's loss).
      sharpness: ``[M, 3]`` the same of the loss Hessian's top eigenvalue at the end of
        training, or ``None``.
    """

    label: str
    memories: np.ndarray
    loss: np.ndarray
    sharpness: np.ndarray | None = None


def _memory_axis(ax, ylabel: str, title: str) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("1 − teacher memory |λ|  (longer memory to the right)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)


def curse_of_memory_figure(
    students: Sequence[StudentSeries],
    lambdas: np.ndarray,
    measured: np.ndarray,
    standard_error: np.ndarray,
    theory: np.ndarray,
    *,
    title: str,
):
    """Normalized final loss (and, if measured, the Hessian's top eigenvalue) against
    ``1 - memory``, and the measured ``E[(dh/dlambda)^2]`` with 2-standard-error bars
    over ``(1+lambda^2)/(1-lambda^2)^3``; log axes."""
    with_sharpness = any(student.sharpness is not None for student in students)
    fig, axes = figure(1, 2 + with_sharpness, figsize=(5.2 * (2 + with_sharpness), 4.2))
    colors = _palette(len(students), "plasma")
    for color, student in zip(colors, students, strict=True):
        x = 1.0 - student.memories
        axes[0].plot(x, student.loss[:, 1], "o-", color=color, label=student.label)
        axes[0].fill_between(x, student.loss[:, 0], student.loss[:, 2], color=color, alpha=0.2)
        if student.sharpness is not None:
            axes[1].plot(x, student.sharpness[:, 1], "o-", color=color, label=student.label)
            axes[1].fill_between(
                x, student.sharpness[:, 0], student.sharpness[:, 2], color=color, alpha=0.2
            )
    _memory_axis(axes[0], "final loss / zero-predictor loss", "Teacher-student: final loss")
    if with_sharpness:
        _memory_axis(axes[1], "top eigenvalue of the loss Hessian", "Sharpness after training")
    right = axes[-1]
    x = 1.0 - lambdas
    right.plot(x, theory, "k-", label="(1+λ²)/(1−λ²)³")
    right.errorbar(
        x, measured, yerr=2 * standard_error, fmt="o", color="tab:red", markersize=4,
        label="measured by autodiff",
    )  # fmt: skip
    _memory_axis(right, "E[(∂h/∂λ)²]", "Sensitivity of h_{t+1} = λ h_t + x_t")
    right.set_xlabel("1 − λ")
    fig.suptitle(title)
    return fig
