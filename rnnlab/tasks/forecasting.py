"""One-step-ahead forecasting of a real time series shipped with statsmodels (no download)."""

from __future__ import annotations

import numpy as np

from rnnlab.tasks.base import Task, check_int, fixed_split, minibatch_sampler, mse_metric

__all__ = ["load_sunspots", "sunspots", "windows"]


def load_sunspots() -> np.ndarray:
    """Yearly mean sunspot numbers, 1700-2008 (309 values), from ``statsmodels.datasets``."""
    from statsmodels.datasets import sunspots as dataset  # optional dependency: rnnlab[data]

    return dataset.load_pandas().data["SUNACTIVITY"].to_numpy(np.float32)


def windows(series: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """All windows of ``length + 1`` consecutive values, stride 1.

    Returns:
      ``(inputs [N, T, 1], targets [N, T, 1])`` with ``targets[n, t] = inputs[n, t+1]``
      shifted by one step, ``N = len(series) - length``.
    """
    count = len(series) - length
    index = np.arange(count)[:, None] + np.arange(length + 1)[None, :]
    chunks = series[index][..., None]
    return chunks[:, :-1], chunks[:, 1:]


def sunspots(length: int = 20, test_fraction: float = 0.2) -> Task:
    r"""Predict next year's sunspot number from the years so far, at every step.

    The series is split in time: the first ``1 - test_fraction`` for training,
    the rest for testing, and standardized with the training mean and standard
    deviation.  Inputs and targets are ``[B, T, 1]`` windows with
    ``targets[t] = x_{t+1}``; readout ``"every"``; loss and metric: MSE in
    standardized units.  Training windows lie in the training years and test
    windows in the test years (stride 1).

    The baseline predicts the training mean (0 after standardizing), so its MSE
    is the mean squared standardized test target.  ``extras["persistence_mse"]``
    gives the naive forecast ``x_{t+1} = x_t`` for comparison.

    Raises:
      ValueError: naming ``length`` if the test years hold no window of
        ``length + 1`` values, or ``test_fraction`` outside ``(0, 1)``.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    series = load_sunspots()
    split = int(round(len(series) * (1.0 - test_fraction)))
    train, test = series[:split], series[split:]
    check_int("length", length, 1)
    if length + 1 > len(test):
        raise ValueError(
            f"length={length} is too long: the {len(test)} test years (test_fraction="
            f"{test_fraction}) hold no window of length + 1 values; use length <= {len(test) - 1}"
        )
    mean, std = train.mean(), train.std()
    train, test = (train - mean) / std, (test - mean) / std
    train_inputs, train_targets = windows(train, length)
    test_inputs, test_targets = windows(test, length)
    return Task(
        name="sunspots",
        steps=length,
        input_size=1,
        output_size=1,
        readout="every",
        objective="regression",
        metric_name="mse",
        metric=mse_metric,
        baseline_loss=float(np.mean(test_targets**2)),
        baseline_metric=float(np.mean(test_targets**2)),
        sample=minibatch_sampler(train_inputs, train_targets),
        test_set=fixed_split(test_inputs, test_targets),
        describe={"length": length, "test_fraction": test_fraction},
        extras={
            "persistence_mse": float(np.mean((test_targets - test_inputs) ** 2)),
            "mean": float(mean),
            "std": float(std),
        },
    )
