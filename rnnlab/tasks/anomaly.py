"""Anomaly detection by forecast error (Malhotra et al. 2015) on a labelled ECG.

The series is an excerpt of an electrocardiogram from the MIT-BIH Arrhythmia
Database that sktime ships as ``datasets/data/mitdb/mitdb.csv`` (7,500 samples, a
``label`` column marking one anomalous stretch of 352 samples, 6,936 to 7,287, an
irregular beat).  sktime has no loader for it, so :func:`load_ecg` reads the file.

Malhotra et al. 2015 train a forecaster on normal data to predict the next ``l``
values at every step.  Each point then has ``l`` forecasts (made 1 to ``l`` steps
before it) and an error vector ``e_t`` in ``R^l``; a Gaussian ``N(mu, Sigma)``
fitted to the errors on normal validation data scores a point by how unlikely
its error is.  Here a window's score is the mean of its points' scores, and the
question is whether the top-scored window overlaps the labelled anomaly.
"""

from __future__ import annotations

import functools
from importlib import resources

import numpy as np

from rnnlab.tasks.base import (
    Task,
    check_fraction,
    check_int,
    fixed_split,
    import_optional,
    minibatch_sampler,
)
from rnnlab.tasks.forecasting import mse_metric, windows

__all__ = [
    "autoregressive_forecasts",
    "chance_of_hit",
    "ecg_anomaly",
    "error_vectors",
    "gaussian_scores",
    "load_ecg",
    "persistence_forecasts",
    "score_forecasts",
    "top_window_hits",
    "window_scores",
]


@functools.cache
def load_ecg() -> tuple[np.ndarray, np.ndarray]:
    """``(values [7500] float32, labels [7500] bool)`` from sktime's shipped ``mitdb.csv``."""
    import_optional("sktime")
    source = resources.files("sktime") / "datasets" / "data" / "mitdb" / "mitdb.csv"
    with source.open() as handle:
        table = np.loadtxt(handle, delimiter=",", skiprows=1)
    return table[:, 0].astype(np.float32), table[:, 1].astype(bool)


def error_vectors(predictions: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Malhotra et al.'s error vectors ``e_t``: ``[S, l], [S + l] -> [S - l + 1, l]``.

    ``predictions[s, k]`` forecasts ``values[s + 1 + k]`` (made at step ``s``).  Row
    ``i`` is the point ``t = i + l``, the first with all ``l`` forecasts:
    ``e[i, k] = values[t] - predictions[t - 1 - k, k]`` (the forecast made
    ``k + 1`` steps before).
    """
    steps, horizon = predictions.shape
    if len(values) != steps + horizon:
        raise ValueError(
            f"values must have len(predictions) + horizon = {steps + horizon} entries, "
            f"got {len(values)}"
        )
    points = np.arange(horizon, steps + 1)
    ahead = np.arange(horizon)
    forecasts = predictions[points[:, None] - 1 - ahead, ahead]
    return values[points][:, None] - forecasts


def gaussian_scores(validation_errors: np.ndarray, errors: np.ndarray) -> np.ndarray:
    """``[P, l] -> [P]``: the negative log-density of each error under ``N(mu, Sigma)``.

    ``mu`` and ``Sigma`` are the mean and covariance of ``validation_errors`` (normal
    data); the score is ``0.5 (e - mu)^T Sigma^{-1} (e - mu) + 0.5 log det(2 pi Sigma)``.
    """
    validation_errors = np.atleast_2d(np.asarray(validation_errors, np.float64))
    mean = validation_errors.mean(0)
    covariance = np.atleast_2d(np.cov(validation_errors, rowvar=False))
    covariance = covariance + 1e-9 * np.eye(len(covariance))
    centred = np.asarray(errors, np.float64) - mean
    mahalanobis = np.einsum("pi,ij,pj->p", centred, np.linalg.inv(covariance), centred)
    _, log_det = np.linalg.slogdet(2 * np.pi * covariance)
    return 0.5 * (mahalanobis + log_det)


def window_scores(point_scores: np.ndarray, window: int) -> np.ndarray:
    """Mean point score of every window of ``window`` points, stride 1: ``[P] -> [P - w + 1]``."""
    check_int("window", window, 1)
    if window > len(point_scores):
        raise ValueError(f"window={window} is longer than the {len(point_scores)} scored points")
    sums = np.concatenate([[0.0], np.cumsum(point_scores, dtype=np.float64)])
    return (sums[window:] - sums[:-window]) / window


def top_window_hits(scores: np.ndarray, labels: np.ndarray, window: int) -> bool:
    """Whether the top-scored window (``scores[i]`` covers ``labels[i : i + window]``)
    contains a labelled anomalous point."""
    start = int(np.argmax(scores))
    return bool(np.any(labels[start : start + window]))


def chance_of_hit(labels: np.ndarray, window: int) -> float:
    """The probability that a window drawn uniformly (stride 1) contains an anomalous point:
    what :func:`top_window_hits` scores when the scores carry no information."""
    check_int("window", window, 1)
    hits = np.convolve(labels.astype(np.int64), np.ones(window, np.int64), mode="valid") > 0
    return float(hits.mean())


def ecg_anomaly(
    length: int = 128,
    *,
    horizon: int = 4,
    validation_fraction: float = 0.2,
    test_fraction: float = 0.2,
) -> Task:
    r"""Forecast an ECG ``horizon`` samples ahead at every step; score anomalies by the error.

    The 7,500 samples are split in time: training, validation (the next
    ``validation_fraction``) and test (the last ``test_fraction``, which must hold
    the labelled anomaly); by default samples 0 to 4,499, 4,500 to 5,999 and 6,000
    to 7,499.  Training and validation hold no labelled point.  Values are standardized with
    training statistics.  ``sample`` draws training windows ``[B, T, 1]`` with
    targets ``[B, T, horizon]`` (``targets[t, k] = x_{t+1+k}``, as
    :func:`rnnlab.tasks.forecasting.windows`).  ``validation_set()`` and
    ``test_set()`` are each one whole segment, ``[1, S, 1]`` with
    ``S = len(segment) - horizon``, for a stateful pass whose forecasts feed
    :func:`error_vectors`; ``extras["validation_values"]`` and
    ``extras["test_values"]`` are the segments (``[S + horizon]``),
    ``extras["test_labels"]`` the test labels and ``extras["scored_labels"]`` those
    of the points that :func:`error_vectors` scores (the ``horizon``-th to the
    ``horizon``-th last, ``S - horizon + 1`` points).

    The baseline loss predicts the training mean (0); ``extras["persistence_mse"]``
    the last value.

    Raises:
      ValueError: naming ``length``, ``horizon`` or a fraction.
    """
    check_int("length", length, 1)
    check_int("horizon", horizon, 1)
    check_fraction("validation_fraction", validation_fraction)
    check_fraction("test_fraction", test_fraction)
    values, labels = load_ecg()
    test_start = int(round(len(values) * (1.0 - test_fraction)))
    validation_start = int(round(len(values) * (1.0 - test_fraction - validation_fraction)))
    if validation_start <= length + horizon or labels[:test_start].any():
        raise ValueError(
            f"validation_fraction={validation_fraction} and test_fraction={test_fraction} must "
            f"leave a training part longer than length + horizon and keep every labelled point "
            f"(the first at {np.argmax(labels)}) in the test part"
        )
    train = values[:validation_start]
    mean, std = train.mean(), train.std()
    standardized = (values - mean) / std
    segments = {
        "validation": standardized[validation_start:test_start],
        "test": standardized[test_start:],
    }
    evaluation = {
        name: windows(segment, len(segment) - horizon, horizon)
        for name, segment in segments.items()
    }
    test_inputs, test_targets = evaluation["test"]
    return Task(
        name="ecg_anomaly",
        length=length,
        input_size=1,
        output_size=horizon,
        readout="every",
        objective="regression",
        metric_name="mse",
        metric=mse_metric,
        baseline_loss=float(np.mean(np.sum(test_targets**2, axis=-1))),
        baseline_metric=float(np.mean(test_targets**2)),
        sample=minibatch_sampler(*windows(standardized[:validation_start], length, horizon)),
        test_set=fixed_split(*evaluation["test"]),
        validation_set=fixed_split(*evaluation["validation"]),
        describe={
            "length": length,
            "horizon": horizon,
            "validation_fraction": validation_fraction,
            "test_fraction": test_fraction,
        },
        extras={
            "mean": float(mean),
            "std": float(std),
            "validation_values": segments["validation"],
            "test_values": segments["test"],
            "test_labels": labels[test_start:],
            "scored_labels": labels[test_start + horizon : len(values) - horizon + 1],
            "split_starts": {"train": 0, "validation": validation_start, "test": test_start},
            "persistence_mse": float(np.mean((test_targets - test_inputs) ** 2)),
        },
    )


def persistence_forecasts(values: np.ndarray, horizon: int) -> np.ndarray:
    """The naive forecast ``x_{s+1+k} = x_s``: ``[S + horizon] -> [S, horizon]``."""
    check_int("horizon", horizon, 1)
    return np.repeat(np.asarray(values)[: len(values) - horizon, None], horizon, axis=1)


def autoregressive_forecasts(
    train: np.ndarray, values: np.ndarray, *, order: int, horizon: int
) -> np.ndarray:
    r"""Linear forecasts from the last ``order`` values, fitted by least squares on ``train``.

    ``x_{s+1+k} ~ c_k + sum_j a_{kj} x_{s-j}`` (``j < order``), one least-squares fit
    per ``k`` on every window of ``train``; applied to ``values`` it gives
    ``[S, horizon]`` with ``S = len(values) - horizon`` (rows ``s < order - 1`` see
    the first value repeated before the segment).  A non-recurrent forecaster.
    """
    check_int("order", order, 1)
    check_int("horizon", horizon, 1)

    def lags(series: np.ndarray, count: int) -> np.ndarray:
        padded = np.concatenate([np.full(order - 1, series[0]), series])
        index = np.arange(count)[:, None] + np.arange(order)[None, ::-1]
        return np.concatenate([padded[index], np.ones((count, 1))], axis=1)

    train, values = np.asarray(train, np.float64), np.asarray(values, np.float64)
    count = len(train) - horizon
    targets = train[np.arange(count)[:, None] + 1 + np.arange(horizon)]
    full = slice(order - 1, None)  # fit only on rows with a whole history
    coefficients, *_ = np.linalg.lstsq(lags(train, count)[full], targets[full], rcond=None)
    return lags(values, len(values) - horizon) @ coefficients


def score_forecasts(
    task: Task, validation_predictions: np.ndarray, test_predictions: np.ndarray, window: int
) -> dict:
    """Malhotra et al. 2015's scoring of a forecaster on :func:`ecg_anomaly`'s segments.

    Args:
      task: the :func:`ecg_anomaly` task.
      validation_predictions, test_predictions: ``[S, horizon]`` forecasts along the
        validation and test segments (``predictions[s, k]`` of ``values[s + 1 + k]``).
      window: the scored windows' length.

    Returns:
      ``{"point_scores" [P], "window_scores", "top_window_start", "top_window_hits",
      "chance_of_hit", "point_auc"}``: the Gaussian scores of the test points (fitted
      on the validation errors), the mean score of every window, the top window, whether
      it overlaps the labelled anomaly, the chance that a random window does, and the
      area under the ROC curve of the point scores against the labels.
    """
    from sklearn.metrics import roc_auc_score  # optional dependency: rnnlab[data]

    validation = error_vectors(validation_predictions, task.extras["validation_values"])
    test = error_vectors(test_predictions, task.extras["test_values"])
    points = gaussian_scores(validation, test)
    labels = task.extras["scored_labels"]
    windows = window_scores(points, window)
    return {
        "point_scores": points,
        "window_scores": windows,
        "top_window_start": int(np.argmax(windows)),
        "top_window_hits": top_window_hits(windows, labels, window),
        "chance_of_hit": chance_of_hit(labels, window),
        "point_auc": float(roc_auc_score(labels, points)),
    }
