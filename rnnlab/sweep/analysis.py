r"""Sweep analysis: metric values, levels, marginals, heatmap tables and main-effect importance.

Importance follows the functional-ANOVA view of Hutter et al. 2014, used by
Greff et al. 2017 (*LSTM: A Search Space Odyssey*) to rank LSTM hyperparameters.
Our estimator works on the sweep's rows directly instead of a random-forest
surrogate:

.. math::

    y_i = \log_{10} m_i, \qquad
    \mathrm{importance}(p) = \frac{\sum_\ell \tfrac{n_\ell}{N}\,(\bar y_\ell - \bar y)^2}
                                  {\tfrac1N \sum_i (y_i - \bar y)^2}

where :math:`\ell` runs over the levels of hyperparameter :math:`p` (its distinct
values, or ``bins`` equal-count bins when it has more), :math:`n_\ell` is the
number of rows at that level and :math:`\bar y_\ell` their mean.  This is the
correlation ratio :math:`\eta^2` of each main effect.  On a full factorial
design (every product of the sweep's values present once) it equals the
fANOVA first-order variance fraction of the empirical response; ``1 - sum``
is the share of interactions and noise.  Sweeping ``seed`` as a parameter
makes its share the seed noise.

Diverged runs whose metric is not finite are scored as the worst finite value
in the rows ("at least as bad as the worst run"), so every row counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "findings",
    "heatmap_table",
    "importance",
    "levels",
    "marginal",
    "metric_values",
    "panel_name",
    "select",
    "varying",
]


def select(rows: Sequence[Mapping], **equals) -> list[Mapping]:
    """The rows whose fields equal every ``key=value`` given."""
    return [row for row in rows if all(row.get(k) == v for k, v in equals.items())]


def varying(rows: Sequence[Mapping], names: Sequence[str]) -> list[str]:
    """The names among ``names`` that take more than one value in ``rows``."""
    return [n for n in names if len({repr(row.get(n)) for row in rows}) > 1]


def metric_values(rows: Sequence[Mapping], metric: str, *, log: bool = True) -> np.ndarray:
    """``[N]`` metric per row (``log10`` if ``log``); non-finite -> the worst finite value.

    Raises:
      ValueError: if no row has a finite ``metric`` or the column is missing.
    """
    if not rows or metric not in rows[0]:
        raise ValueError(f"metric={metric!r} is not a column of the rows; pick a final_* column")
    values = np.array([float(row[metric]) for row in rows])
    finite = np.isfinite(values) & (values > 0 if log else True)
    if not finite.any():
        raise ValueError(f"metric={metric!r} has no finite{' positive' if log else ''} value")
    values = np.where(finite, values, values[finite].max())
    return np.log10(values) if log else values


def levels(values: Sequence[Any], bins: int = 8) -> tuple[np.ndarray, list]:
    """Assigns each value a level: itself if at most ``bins`` distinct, else an equal-count bin.

    Args:
      values: ``[N]`` hyperparameter values (numbers or strings).
      bins: the most levels a numeric parameter keeps.

    Returns:
      ``(index [N], centers)``: the level of each value, and each level's value
      (the distinct value, or the median of a bin's members).
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1; got {bins}")
    values = list(values)
    distinct = sorted(set(values), key=lambda v: (isinstance(v, str), v))
    numeric = all(isinstance(v, (int, float, np.number)) for v in distinct)
    if len(distinct) <= bins or not numeric:
        lookup = {repr(v): i for i, v in enumerate(distinct)}
        return np.array([lookup[repr(v)] for v in values]), distinct
    # Rank-based bins: invariant to monotone transforms (log-uniform draws bin evenly).
    array = np.asarray(values, dtype=float)
    ranks = np.searchsorted(np.sort(np.unique(array)), array)
    index = ranks * bins // len(np.unique(array))
    centers = [float(np.median(array[index == b])) for b in range(bins)]
    return index, centers


def marginal(
    rows: Sequence[Mapping], param: str, metric: str, *, bins: int = 8, log: bool = True
) -> list[dict]:
    """The metric's distribution at each level of ``param`` (others marginalized).

    Returns:
      One dict per level: ``value``, ``count``, ``mean``, ``median``, ``q25``,
      ``q75`` (of the metric, ``log10`` if ``log``) and ``diverged`` (fraction).
    """
    y = metric_values(rows, metric, log=log)
    index, centers = levels([row[param] for row in rows], bins)
    diverged = np.array([bool(row.get("diverged", False)) for row in rows])
    out = []
    for level, center in enumerate(centers):
        members = index == level
        q25, median, q75 = np.quantile(y[members], [0.25, 0.5, 0.75])
        out.append(
            {
                "value": center,
                "count": int(members.sum()),
                "mean": float(y[members].mean()),
                "median": float(median),
                "q25": float(q25),
                "q75": float(q75),
                "diverged": float(diverged[members].mean()),
            }
        )
    return out


def importance(
    rows: Sequence[Mapping],
    params: Sequence[str],
    metric: str = "final_test_loss",
    *,
    bins: int = 8,
    log: bool = True,
) -> dict[str, float]:
    """Main-effect variance fractions (see the module docstring), largest first.

    Args:
      rows: result rows.
      params: hyperparameters to rank (those with a single value get 0).
      metric: the response column.
      bins: levels per continuous parameter.
      log: analyse ``log10(metric)`` (losses span decades).

    Returns:
      ``{param: fraction}`` sorted by fraction, plus ``"interactions+noise"``:
      ``1 - sum`` (clipped at 0).
    """
    y = metric_values(rows, metric, log=log)
    total = y.var()
    fractions = {}
    for param in params:
        index, _ = levels([row[param] for row in rows], bins)
        counts = np.bincount(index)
        means = np.bincount(index, weights=y) / np.maximum(counts, 1)
        between = np.sum(counts / len(y) * (means - y.mean()) ** 2)
        fractions[param] = float(between / total) if total > 0 else 0.0
    ranked = dict(sorted(fractions.items(), key=lambda item: -item[1]))
    ranked["interactions+noise"] = max(0.0, 1.0 - sum(fractions.values()))
    return ranked


def heatmap_table(
    rows: Sequence[Mapping],
    x: str,
    y: str,
    metric: str,
    *,
    bins: int = 16,
    log: bool = True,
) -> dict[str, Any]:
    """The median metric over every (``x``, ``y``) level pair, others (e.g. seeds) pooled.

    Returns:
      ``{"x": centers [X], "y": centers [Y], "value": [Y, X] median (nan where
      empty), "diverged": [Y, X] fraction of diverged rows, "count": [Y, X]}``.
    """
    values = metric_values(rows, metric, log=log)
    ix, xs = levels([row[x] for row in rows], bins)
    iy, ys = levels([row[y] for row in rows], bins)
    diverged = np.array([bool(row.get("diverged", False)) for row in rows], float)
    value = np.full((len(ys), len(xs)), np.nan)
    fraction = np.full_like(value, np.nan)
    count = np.zeros(value.shape, int)
    for j in range(len(ys)):
        for i in range(len(xs)):
            members = (iy == j) & (ix == i)
            count[j, i] = members.sum()
            if members.any():
                value[j, i] = np.median(values[members])
                fraction[j, i] = diverged[members].mean()
    return {"x": xs, "y": ys, "value": value, "diverged": fraction, "count": count}


def panel_name(cell: str, length: int) -> str:
    """The name of one (cell, T) group of rows in figures and summaries: ``"lstm T=50"``."""
    return f"{cell} T={length}"


def findings(
    rows: Sequence[Mapping],
    *,
    main_length: int,
    second_axes: Mapping[str, str],
    metric: str = "final_test_loss",
) -> dict[str, dict]:
    """Importance per cell at the main ``T``, and where each (cell, ``T``) trains or explodes.

    Per (cell, ``T``), over its rows:

    - ``trained``: reached the row's threshold (``steps_to_threshold`` is not ``None``)
      without diverging;
    - ``learned``: final ``metric`` below half the row's ``baseline`` (the constant
      predictor's loss);
    - ``blew_up``: final ``metric`` above twice the baseline (or not finite), or
      diverged: far worse than predicting the mean; with clipping, explosions show up
      here rather than as NaN.

    Args:
      rows: result rows with ``cell``, ``length``, ``learning_rate``, ``seed``,
        ``steps_to_threshold``, ``diverged``, ``baseline`` and ``metric`` (the rows of
        :func:`rnnlab.sweep.run_sweep` with a ``baseline`` added).
      main_length: the ``T`` at which :func:`importance` ranks each cell's
        hyperparameters.
      second_axes: the swept hyperparameter of each cell beside the learning rate (a
        cell not in it uses ``"seed"``).
      metric: the response column.

    Returns:
      ``{"importance": {cell: importance(...)}, "regions": {panel_name(cell, T): {"runs",
      "trained_fraction", "diverged_fraction", "learned_fraction", "blew_up_fraction",
      "trained_learning_rates", "diverged_learning_rates", "best": {"learning_rate",
      second axis, "seed", metric}}}}``, ``best`` being the row of lowest ``metric``.
    """
    out = {"importance": {}, "regions": {}}
    for cell in dict.fromkeys(r["cell"] for r in rows):
        second = second_axes.get(cell, "seed")
        main = select(rows, cell=cell, length=main_length)
        if len(main) > 1:
            out["importance"][cell] = importance(
                main, varying(main, ["learning_rate", second, "seed"]), metric
            )
        for length in sorted({r["length"] for r in select(rows, cell=cell)}):
            group = select(rows, cell=cell, length=length)
            count = len(group)
            trained = [
                r for r in group if r["steps_to_threshold"] is not None and not r["diverged"]
            ]
            best = min(group, key=lambda r: r[metric] if r[metric] == r[metric] else float("inf"))
            out["regions"][panel_name(cell, length)] = {
                "runs": count,
                "trained_fraction": len(trained) / count,
                "diverged_fraction": sum(r["diverged"] for r in group) / count,
                "learned_fraction": sum(r[metric] < 0.5 * r["baseline"] for r in group) / count,
                "blew_up_fraction": sum(
                    r["diverged"] or not r[metric] <= 2 * r["baseline"] for r in group
                )
                / count,
                "trained_learning_rates": sorted({r["learning_rate"] for r in trained}),
                "diverged_learning_rates": sorted(
                    {r["learning_rate"] for r in group if r["diverged"]}
                ),
                "best": {k: best.get(k) for k in ("learning_rate", second, "seed", metric)},
            }
    return out
