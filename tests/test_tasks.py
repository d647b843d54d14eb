"""Tests of rnnlab.tasks: data layout against each paper's definition, baselines, validation."""

from __future__ import annotations

import math
import socket

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rnnlab import tasks

SAMPLES = 20_000


def _sample(task, batch_size=SAMPLES, seed=0):
    return jax.jit(task.sample, static_argnums=1)(jax.random.key(seed), batch_size)


def _within_monte_carlo(values: np.ndarray, expected: float, sigmas: float = 5.0):
    """The mean of i.i.d. ``values`` is within ``sigmas`` standard errors of ``expected``."""
    error = values.std() / math.sqrt(values.size)
    assert abs(values.mean() - expected) < sigmas * error + 1e-7, (values.mean(), expected, error)


@pytest.mark.parametrize(
    ("task", "constant"),
    [
        (tasks.adding(100), 1.0),
        (tasks.adding(50, variant="hochreiter"), 0.5),
        (tasks.multiplication(60), 0.25),
    ],
    ids=["adding-le", "adding-hochreiter", "multiplication"],
)
def test_regression_baseline_matches_closed_form(task, constant):
    """Oracle: the closed forms Var(X1+X2)=1/6, 1/24 and E[X1^2 X2^2]-1/16=7/144 (Monte Carlo)."""
    batch = _sample(task)
    outputs = jnp.full_like(batch.targets, constant)
    squared = np.asarray(task.per_example_loss(outputs, batch))
    _within_monte_carlo(squared, task.baseline_loss)
    if task.metric_name == "accuracy":  # Hochreiter's |error| < 0.04 criterion
        hits = np.asarray(jnp.abs(outputs - batch.targets)[:, 0] < 0.04, float)
        _within_monte_carlo(hits, task.baseline_metric)
        assert float(task.metric(outputs, batch)) == pytest.approx(hits.mean())


def test_adding_le_layout():
    """Oracle: Le et al. 2015 — U[0,1] values, one marker per half, target = sum of marked."""
    batch = _sample(tasks.adding(40), 256)
    chex.assert_shape(batch.inputs, (256, 40, 2))
    values, markers = np.asarray(batch.inputs[..., 0]), np.asarray(batch.inputs[..., 1])
    assert values.min() >= 0 and values.max() <= 1
    np.testing.assert_array_equal(markers[:, :20].sum(1), 1)
    np.testing.assert_array_equal(markers[:, 20:].sum(1), 1)
    np.testing.assert_allclose(batch.targets[:, 0], (values * markers).sum(1), rtol=1e-6)


@given(length=st.sampled_from([22, 37, 80]), seed=st.integers(0, 2**16))
def test_adding_hochreiter_layout(length, seed):
    """Oracle: H&S 1997 Exp. 4 — lengths in [T, T+T/10], X1 in the first 10 steps, X2 in the
    first T/2-1, target 0.5 + (X1+X2)/4, padding zero."""
    task = tasks.adding(length, variant="hochreiter")
    batch = task.sample(jax.random.key(seed), 16)
    lengths = np.asarray(batch.lengths)
    assert task.length == length + length // 10
    assert lengths.min() >= length and lengths.max() <= length + length // 10
    values, markers = np.asarray(batch.inputs[..., 0]), np.asarray(batch.inputs[..., 1])
    np.testing.assert_array_equal(markers.sum(1), 2)
    first = markers[:, :10].argmax(1)
    assert markers[:, :10].sum(1).min() >= 1
    assert np.all(np.nonzero(markers)[1] < length // 2 - 1)
    assert values.min() >= -1 and values.max() <= 1
    padding = np.arange(task.length)[None] >= lengths[:, None]
    assert np.all(values[padding] == 0)
    marked = (values * markers).sum(1)
    np.testing.assert_allclose(batch.targets[:, 0], 0.5 + marked / 4, rtol=1e-6)
    assert np.all(markers[np.arange(16), first] == 1)


@pytest.mark.parametrize("length", [1, 30])
def test_copying_layout_and_baseline(length):
    """Oracle: Arjovsky et al. 2016 — layout, and the memoryless predictor's cross-entropy
    10 log 8 / (T + 20), computed here from its definition (``length`` is the delay T)."""
    task = tasks.copying(delay=length)
    assert task.length == length + 20
    batch = _sample(task, 64)
    chex.assert_shape(batch.inputs, (64, length + 20, 10))
    codes = np.asarray(batch.inputs.argmax(-1))
    symbols = codes[:, :10]
    assert symbols.min() >= 1 and symbols.max() <= 8
    np.testing.assert_array_equal(codes[:, 10 : length + 9], 0)
    np.testing.assert_array_equal(codes[:, length + 9], 9)
    np.testing.assert_array_equal(np.asarray(batch.targets)[:, -10:], symbols)
    np.testing.assert_array_equal(np.asarray(batch.targets)[:, :-10], 0)
    # Memoryless: certain blank before the recall, uniform over the 8 symbols during it.
    blank = jnp.full((9,), -1e9).at[0].set(0.0)
    uniform = jnp.full((9,), -1e9).at[1:].set(0.0)
    logits = jnp.where((jnp.arange(length + 20) < length + 10)[None, :, None], blank, uniform)
    logits = jnp.broadcast_to(logits, (64, length + 20, 9))
    expected = 10 * math.log(8) / (length + 20)
    assert float(task.loss(logits, batch)) == pytest.approx(expected, rel=1e-5)
    assert task.baseline_loss == pytest.approx(expected)
    # The uniform recall answers symbol 1 (first arg-max): right for 1/8 of the symbols.
    hits = np.asarray(batch.targets)[:, -10:] == 1
    _within_monte_carlo(hits, 1 / 8)
    assert float(task.metric(logits, batch)) == pytest.approx(hits.mean())


@pytest.mark.parametrize("num_classes", [4, 8])
def test_temporal_order_layout_and_chance(num_classes):
    """Oracle: H&S 1997 Exp. 6 — relevant X/Y symbols inside the windows encode the class;
    classes are uniform, so always answering class 0 is right 1/K of the time."""
    length = 100
    task = tasks.temporal_order(length, num_classes=num_classes)
    batch = _sample(task, 4000)
    codes = np.asarray(batch.inputs.argmax(-1))
    assert np.all(codes[:, 0] == 6) and np.all(codes[:, -1] == 7)
    relevant = codes >= 4
    relevant[:, [0, -1]] = False
    windows = {4: [(10, 20), (50, 60)], 8: [(10, 20), (33, 43), (66, 76)]}[num_classes]
    bits = []
    for lo, hi in windows:
        in_window = relevant[:, lo : hi + 1]
        np.testing.assert_array_equal(in_window.sum(1), 1)
        bits.append(codes[:, lo : hi + 1][in_window] - 4)
    assert relevant.sum(1).max() == len(windows)
    label = sum(b * 2 ** (len(bits) - 1 - i) for i, b in enumerate(bits))
    np.testing.assert_array_equal(np.asarray(batch.targets), label)
    _within_monte_carlo(np.asarray(batch.targets) == 0, 1 / num_classes)
    uniform = jnp.zeros((4000, num_classes))
    assert float(task.loss(uniform, batch)) == pytest.approx(task.baseline_loss, rel=1e-6)


def test_latch_class_is_in_the_first_inputs_only():
    """Oracle: Bengio et al. 1994 — the sign of the first inputs is the class; the rest is
    N(0, 0.2^2) noise independent of it; classes are balanced."""
    task = tasks.latch(30, informative_steps=3)
    batch = _sample(task, 8000)
    inputs, labels = np.asarray(batch.inputs[..., 0]), np.asarray(batch.targets)
    np.testing.assert_array_equal(inputs[:, :3], np.repeat(2.0 * labels[:, None] - 1, 3, 1))
    noise = inputs[:, 3:]
    assert abs(noise.std() - 0.2) < 0.01
    assert abs(noise[labels == 1].mean() - noise[labels == 0].mean()) < 0.01
    _within_monte_carlo(labels, 0.5)


def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_digits_load_offline_and_baseline(monkeypatch):
    """Oracle: scikit-learn ships 1,797 8x8 digits; the baseline is the training prior's
    cross-entropy on the test labels, recomputed here; pixel mode reads the same pixels."""
    _no_network(monkeypatch)
    row, pixel = tasks.digits("row"), tasks.digits("pixel")
    test_row, test_pixel = row.test_set(), pixel.test_set()
    size = row.extras["test_size"]
    assert size == round(0.2 * 1797) and row.extras["train_size"] + size == 1797
    chex.assert_shape(test_row.inputs, (size, 8, 8))
    chex.assert_shape(test_pixel.inputs, (size, 64, 1))
    np.testing.assert_array_equal(test_row.inputs.reshape(size, 64), test_pixel.inputs[..., 0])
    train_labels = np.asarray(row.sample(jax.random.key(0), 50_000).targets)
    prior = np.bincount(train_labels, minlength=10) / train_labels.size
    logits = jnp.log(jnp.asarray(prior))[None].repeat(size, 0)
    assert float(row.loss(logits, test_row)) == pytest.approx(row.baseline_loss, abs=0.01)
    permuted = tasks.digits("pixel", permuted=True).test_set().inputs[..., 0]
    assert not np.array_equal(permuted, test_pixel.inputs[..., 0])
    np.testing.assert_allclose(np.sort(permuted, 1), np.sort(test_pixel.inputs[..., 0], 1))


def test_sunspots_load_offline_and_split_in_time(monkeypatch):
    """Oracle: statsmodels ships 309 yearly values (1700-2008); targets are the inputs shifted
    by one year; the baseline is the test MSE of predicting the training mean (0)."""
    _no_network(monkeypatch)
    series = tasks.forecasting.load_sunspots()
    assert series.shape == (309,) and series[0] == 5.0
    task = tasks.sunspots(length=20)
    test = task.test_set()
    np.testing.assert_array_equal(test.inputs[:, 1:], test.targets[:, :-1])
    assert float(task.loss(jnp.zeros_like(test.targets), test)) == pytest.approx(
        task.baseline_loss, rel=1e-6
    )
    std = task.extras["std"]
    first_test_value = test.inputs[0, 0, 0] * std + task.extras["mean"]
    assert first_test_value == pytest.approx(series[247], rel=1e-5)  # 80% split: year 1947


def test_dyck_text_is_balanced_and_char_lm_baseline():
    """Oracle: the Dyck grammar — every complete line is a balanced bracket word; the
    baseline is the unigram cross-entropy in bits, recomputed from character counts."""
    text = tasks.dyck_text(20_000, seed=3)
    pairs = {")": "(", "]": "[", "}": "{"}
    for line in text.split("\n")[:-1]:
        stack = []
        for char in line:
            if char in "([{":
                stack.append(char)
            elif char in pairs:
                assert stack.pop() == pairs[char]
        assert not stack
    task = tasks.char_lm(32, text=text)
    vocabulary = task.extras["vocabulary"]
    assert set(vocabulary) == set(text)
    test = task.test_set()
    codes = np.array([vocabulary.index(c) for c in text[: int(round(len(text) * 0.9))]])
    counts = np.bincount(codes, minlength=len(vocabulary)) + 1.0
    logits = jnp.log(jnp.asarray(counts / counts.sum()))
    logits = jnp.broadcast_to(logits, (*test.targets.shape, len(vocabulary)))
    assert float(task.metric(logits, test)) == pytest.approx(task.baseline_metric, rel=1e-5)
    batch = task.sample(jax.random.key(0), 4)
    np.testing.assert_array_equal(batch.inputs[:, 1:].argmax(-1), batch.targets[:, :-1])


def test_generate_follows_a_deterministic_model():
    """Oracle: a model whose logits always favour the character after the input one (mod V)
    generates the successor sequence at low temperature."""
    vocabulary = "abcd"

    def step(carry, x):
        return carry, 50.0 * jnp.roll(x, 1)

    text = tasks.generate(step, (), vocabulary, "ab", 6, temperature=0.5, key=jax.random.key(0))
    assert text == "cdabcd"
    with pytest.raises(ValueError, match="prompt"):
        tasks.generate(step, (), vocabulary, "xyz", 3, key=jax.random.key(0))


def test_samples_are_jittable_and_vmappable():
    """Oracle: chex shape checks of vmapped sampling across every synthetic task."""
    for task in (tasks.adding(12), tasks.temporal_order(20)):
        keys = jax.random.split(jax.random.key(1), 3)
        batch = jax.jit(jax.vmap(lambda k, t=task: t.sample(k, 4)))(keys)
        chex.assert_shape(batch.inputs, (3, 4, task.length, task.input_size))


def test_copying_length_is_the_total():
    """Oracle: VOCAB.md — ``length`` is the total T + 2K, so ``length=L`` is ``delay=L - 2K``:
    the same task record, and the same batch from the same key."""
    by_length, by_delay = tasks.copying(30, copy_length=5), tasks.copying(delay=20, copy_length=5)
    assert by_length.length == by_delay.length == 30
    expected = {"delay": 20, "num_symbols": 8, "copy_length": 5}
    assert by_length.describe == by_delay.describe == expected
    assert tasks.make_task("copying", 30, copy_length=5).describe == by_length.describe
    assert by_length.baseline_loss == by_delay.baseline_loss
    key = jax.random.key(3)
    np.testing.assert_array_equal(by_length.sample(key, 2).inputs, by_delay.sample(key, 2).inputs)
    with pytest.raises(ValueError, match=r"length must be an int >= 11.*delay="):
        tasks.copying(10, copy_length=5)  # T + 2K leaves no room for a delay T >= 1
    with pytest.raises(AttributeError, match="renamed Task.length"):
        _ = by_length.steps


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: tasks.adding(1), "length"),
        (lambda: tasks.adding(20, variant="hochreiter"), "length"),
        (lambda: tasks.adding(50, variant="arjovsky"), "variant"),
        (lambda: tasks.copying(0), "length"),
        (lambda: tasks.copying(30, num_symbols=1), "num_symbols"),
        (lambda: tasks.copying(delay=0), "delay"),
        (lambda: tasks.copying(copy_length=0), "copy_length"),
        (lambda: tasks.temporal_order(9), "length"),
        (lambda: tasks.temporal_order(100, num_classes=5), "num_classes"),
        (lambda: tasks.latch(3, informative_steps=3), "length"),
        (lambda: tasks.digits("column"), "mode"),
        (lambda: tasks.digits("row", length=64), "length"),
        (lambda: tasks.sunspots(length=80), "length"),
        (lambda: tasks.char_lm(64, text="ab" * 40), "length"),
        (lambda: tasks.make_task("addding"), "adding"),
        (lambda: tasks.make_task("adding", 10, varient="le"), "varient"),
    ],
)
def test_invalid_parameters_name_the_field(build, field):
    """Oracle: each task's structural constraints, stated in its docstring."""
    with pytest.raises(ValueError, match=field):
        build()
