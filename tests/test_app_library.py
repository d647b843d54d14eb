"""Tests of the library pieces the application studies use: sampling a chorale, the ECG
forecasters and scoring, the translation linear baseline, and single-threaded BLAS."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab.tasks import anomaly, chorales, translation
from rnnlab.tasks.base import single_threaded_blas


def test_generate_feeds_each_sampled_frame_back_and_samples_keys_independently():
    """Oracle: a model whose logits are +-40 (probabilities 1 and 0 to float32 precision):
    key k+1 sounds exactly when key k sounded in the previous frame, so from the all-off
    start frame the roll is a rising staircase fed by key 0, which is always on — any
    other input would break the staircase.  With logits 0 about half the keys sound."""

    def staircase(carry, frame):
        logits = jnp.where(jnp.concatenate([jnp.ones(1), frame[:-1]]) > 0.5, 40.0, -40.0)
        return carry, logits

    roll = chorales.generate(staircase, (), 5, key=jax.random.key(0))
    expected = np.tril(np.ones((5, 5), bool))
    assert roll.dtype == bool and roll.shape == (5, 88)
    np.testing.assert_array_equal(roll[:, :5], expected)
    assert not roll[:, 5:].any()
    coin = chorales.generate(lambda c, x: (c, jnp.zeros(88)), (), 50, key=jax.random.key(1))
    assert abs(coin.mean() - 0.5) < 0.02
    with pytest.raises(ValueError, match="num_frames"):
        chorales.generate(staircase, (), 0, key=jax.random.key(0))


def test_persistence_and_autoregressive_forecasts():
    """Oracle: a noiseless sinusoid about 0.3, x_t = a x_{t-1} - x_{t-2} + (2 - a) 0.3 with
    a = 2 cos 0.3 — a least-squares AR(2) fit recovers it, so its forecasts equal the
    recursion rolled forward by hand; persistence repeats the last value."""
    a, c = 2 * np.cos(0.3), (2 - 2 * np.cos(0.3)) * 0.3
    series = [1.0, 0.5]
    for _ in range(200):
        series.append(a * series[-1] - series[-2] + c)
    series = np.array(series)
    horizon = 3
    forecasts = anomaly.autoregressive_forecasts(series[:150], series[150:], order=2, horizon=3)
    assert forecasts.shape == (len(series) - 150 - horizon, horizon)
    for row in (1, 10, 40):
        history = list(series[150 + row - 1 : 150 + row + 1])
        for _ in range(horizon):
            history.append(a * history[-1] - history[-2] + c)
        np.testing.assert_allclose(forecasts[row], history[-horizon:], rtol=1e-6, atol=1e-8)
    persistence = anomaly.persistence_forecasts(series[:10], 3)
    np.testing.assert_array_equal(persistence, np.repeat(series[:7, None], 3, axis=1))


def test_score_forecasts_finds_an_error_burst_in_the_labelled_anomaly():
    """Oracle: exact forecasts except a burst of large errors inside the labelled anomaly —
    the top window overlaps it, the point scores separate it perfectly (AUC 1 against a
    hand count of pairs), and the scores are aligned with scored_labels."""
    task = anomaly.ecg_anomaly(16, horizon=2)
    rng = np.random.default_rng(0)

    def exact(values):
        index = np.arange(len(values) - 2)[:, None] + 1 + np.arange(2)
        return values[index] + 0.01 * rng.normal(size=index.shape)

    validation = exact(task.extras["validation_values"])
    test = exact(task.extras["test_values"])
    labels = task.extras["scored_labels"]
    inside = np.flatnonzero(labels)[100:110] + 2  # scored point t sits at row t - 2 + k ...
    test[inside - 1, 0] += 5.0  # ... whose one-step forecast was made at t - 1
    report = anomaly.score_forecasts(task, validation, test, window=32)
    assert len(report["point_scores"]) == len(labels)
    assert report["top_window_hits"]
    hot = report["point_scores"][labels]
    cold = report["point_scores"][~labels]
    assert report["point_auc"] == pytest.approx(np.mean(hot[:, None] > cold[None, :]), abs=0.02)
    assert np.argmax(report["point_scores"]) in set(np.flatnonzero(labels))


def test_linear_baseline_scores_its_own_predictions():
    """Oracle: the closed-form input-blind baseline as a floor — on 1-3 digit numbers each
    digit is a word's lookup at a position, so per-position logistic regression must beat
    it by far; the reported rate is the mean of its per-example bools."""
    task = translation.number_words_to_digits(max_digits=3, evaluation_size=90)
    result = translation.linear_baseline(task, train_size=3000)
    correct = result["test_correct"]
    assert correct.dtype == bool and correct.shape == (len(task.test_set().targets),)
    assert result["test_exact_match"] == pytest.approx(correct.mean())
    assert result["test_exact_match"] > task.baseline_metric + 0.3


def test_single_threaded_blas_limits_and_restores_the_thread_pools():
    """Oracle: threadpoolctl's own report of the BLAS pools inside and after the context."""
    from threadpoolctl import threadpool_info

    before = [pool["num_threads"] for pool in threadpool_info()]
    with single_threaded_blas():
        assert all(pool["num_threads"] == 1 for pool in threadpool_info())
    assert [pool["num_threads"] for pool in threadpool_info()] == before
