"""Multi-step forecasting of a real time series shipped with statsmodels (no download)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab.tasks.base import (
    Batch,
    Task,
    check_fraction,
    check_int,
    fixed_split,
    minibatch_sampler,
)

__all__ = ["forecast_baselines", "load_sunspots", "sunspots", "windows"]


def load_sunspots() -> np.ndarray:
    """Yearly mean sunspot numbers, 1700-2008 (309 values), from ``statsmodels.datasets``."""
    from statsmodels.datasets import sunspots as dataset  # optional dependency: rnnlab[data]

    return dataset.load_pandas().data["SUNACTIVITY"].to_numpy(np.float32)


def windows(series: np.ndarray, length: int, horizon: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """All windows of ``length + horizon`` consecutive values, stride 1.

    Returns:
      ``(inputs [N, T, 1], targets [N, T, horizon])`` with
      ``targets[n, t, k] = series[n + t + 1 + k]``: at every step, the next
      ``horizon`` values; ``N = len(series) - length - horizon + 1``.
    """
    count = len(series) - length - horizon + 1
    index = np.arange(count)[:, None] + np.arange(length)[None, :]
    ahead = index[..., None] + 1 + np.arange(horizon)
    return series[index][..., None], series[ahead]


def mse_metric(outputs: jax.Array, batch: Batch) -> jax.Array:
    """Mean squared error per forecast value (over windows, steps and horizons)."""
    return jnp.mean(jnp.square(outputs - batch.targets))


def sunspots(
    length: int = 20,
    test_fraction: float = 0.2,
    *,
    horizon: int = 1,
    validation_fraction: float = 0.0,
) -> Task:
    r"""Predict the next ``horizon`` years' sunspot numbers from the years so far, at every step.

    The series is split in time: training years, then ``validation_fraction`` of the
    years (none by default), then the last ``test_fraction``; it is standardized with
    the training mean and standard deviation.  Inputs are ``[B, T, 1]`` windows and
    targets ``[B, T, horizon]`` with ``targets[t, k] = x_{t+1+k}``; readout
    ``"every"``; the loss sums the horizons' squared errors, the metric (``"mse"``)
    averages them, both in standardized units.  Each split's windows lie in its own
    years (stride 1).

    The baseline predicts the training mean (0 after standardizing), so its MSE is
    the mean squared standardized test target.  ``extras["persistence_mse"]`` gives
    the naive forecast ``x_{t+1+k} = x_t``; :func:`forecast_baselines` fits
    statsmodels' seasonal-naive and ARIMA forecasts on the training years.

    Raises:
      ValueError: naming ``length`` if a held-out split holds no window of
        ``length + horizon`` values, ``horizon`` below 1, or ``test_fraction`` /
        ``validation_fraction`` outside their ranges.
    """
    check_fraction("test_fraction", test_fraction)
    check_fraction("validation_fraction", validation_fraction, allow_zero=True)
    if test_fraction + validation_fraction >= 1.0:
        raise ValueError(
            f"test_fraction + validation_fraction must be below 1, got "
            f"{test_fraction} + {validation_fraction}"
        )
    check_int("length", length, 1)
    check_int("horizon", horizon, 1)
    series = load_sunspots()
    test_start = int(round(len(series) * (1.0 - test_fraction)))
    validation_start = int(round(len(series) * (1.0 - test_fraction - validation_fraction)))
    parts = {"train": series[:validation_start], "test": series[test_start:]}
    if validation_fraction > 0:
        parts["validation"] = series[validation_start:test_start]
    shortest = min(parts, key=lambda name: len(parts[name]))
    if length + horizon > len(parts[shortest]):
        raise ValueError(
            f"length={length} is too long: the {len(parts[shortest])} {shortest} years hold no "
            f"window of length + horizon = {length + horizon} values; use length <= "
            f"{len(parts[shortest]) - horizon}"
        )
    mean, std = parts["train"].mean(), parts["train"].std()
    standardized = (series - mean) / std
    splits = {name: windows((part - mean) / std, length, horizon) for name, part in parts.items()}
    test_inputs, test_targets = splits["test"]
    baseline = float(np.mean(np.sum(test_targets**2, axis=-1)))
    return Task(
        name="sunspots",
        length=length,
        input_size=1,
        output_size=horizon,
        readout="every",
        objective="regression",
        metric_name="mse",
        metric=mse_metric,
        baseline_loss=baseline,
        baseline_metric=float(np.mean(test_targets**2)),
        sample=minibatch_sampler(*splits["train"]),
        test_set=fixed_split(*splits["test"]),
        validation_set=fixed_split(*splits["validation"]) if "validation" in splits else None,
        describe={
            "length": length,
            "test_fraction": test_fraction,
            "horizon": horizon,
            "validation_fraction": validation_fraction,
        },
        extras={
            "persistence_mse": float(np.mean((test_targets - test_inputs) ** 2)),
            "mean": float(mean),
            "std": float(std),
            "series": standardized,
            "split_starts": {"train": 0, "validation": validation_start, "test": test_start},
        },
    )


def _window_origins(task: Task, split: str) -> np.ndarray:
    """``[N, T]`` index in the series of the last value seen at each step of ``split``."""
    batch = task.validation_set() if split == "validation" else task.test_set()
    count, steps = batch.inputs.shape[:2]
    start = task.extras["split_starts"][split]
    return start + np.arange(count)[:, None] + np.arange(steps)[None, :]


def forecast_baselines(
    task: Task,
    *,
    split: str = "test",
    season: int = 11,
    order: tuple[int, int, int] = (2, 0, 0),
    interval: float = 0.95,
) -> dict[str, np.ndarray]:
    r"""Statistical forecasts aligned with ``split``'s targets ``[N, T, horizon]``.

    Both are fitted on the training years only and forecast from every origin of the
    split with the data up to that origin (standardized units):

    - ``"seasonal_naive"``: ``x_{o+k} = x_{o+k-m\lceil k/m \rceil}`` with period
      ``season`` (the solar cycle is about 11 years);
    - ``"arima"``: statsmodels' ``ARIMA(order)`` (default AR(2), Yule 1927's model
      of the sunspot series) fitted by maximum likelihood on the training years,
      then applied without refitting to the series up to each origin; its
      ``interval`` prediction band is ``"arima_lower"`` / ``"arima_upper"``.

    Raises:
      ValueError: naming ``split`` if the task has no such split, or ``season``.
    """
    from statsmodels.tsa.arima.model import ARIMA  # optional dependency: rnnlab[data]

    if task.name != "sunspots":
        raise ValueError(f"forecast_baselines needs a sunspots task, got {task.name!r}")
    if split not in ("validation", "test") or (
        split == "validation" and task.validation_set is None
    ):
        raise ValueError(
            f"split={split!r} must be 'test', or 'validation' for a task built with one"
        )
    check_int("season", season, 1)
    series, horizon = task.extras["series"], task.output_size
    origins = _window_origins(task, split)
    ahead = np.arange(1, horizon + 1)
    seasonal = series[origins[..., None] + ahead - season * np.ceil(ahead / season).astype(int)]
    train = series[: task.extras["split_starts"]["validation"]]
    fitted = ARIMA(train, order=order).fit()
    applied = fitted.apply(series)  # the training fit's parameters on the whole series
    forecasts = {}
    for origin in np.unique(origins):
        prediction = applied.get_prediction(start=origin + 1, end=origin + horizon, dynamic=True)
        band = prediction.conf_int(alpha=1.0 - interval)
        forecasts[origin] = (prediction.predicted_mean, band[:, 0], band[:, 1])
    stacked = {
        name: np.stack([forecasts[o][index] for o in origins.ravel()]).reshape(seasonal.shape)
        for index, name in enumerate(("arima", "arima_lower", "arima_upper"))
    }
    return {"seasonal_naive": seasonal.astype(np.float32), **stacked}
