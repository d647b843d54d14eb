"""The fast path of rnnlab.unroll (rnnlab.fused) against plain autodiff of a Python loop.

Oracle: an explicit Python loop over ``cell.step`` (no scan, no hoisting, no custom
rule), differentiated by ``jax.grad``.  Values and gradients must agree to float32
rounding (1e-5 relative).  Dispatch is checked by counting calls to ``fused_scan``.
"""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rnnlab
import rnnlab.cells._lstm as lstm_cell
from rnnlab import fused
from rnnlab.cells import DenseRecurrence

CELLS = {
    "lstm": lambda: rnnlab.lstm(5),
    "gru": lambda: rnnlab.gru(5),
    "rnn": lambda: rnnlab.rnn(5),
    "rnn-relu": lambda: rnnlab.rnn(5, activation="relu", recurrent_scale=0.9),
}


def python_loop(cell, params, xs, carry, reverse):
    """``(ys [..., T, H], final)`` by stepping ``cell.step`` in Python, time axis -2."""
    ys = [None] * xs.shape[-2]
    order = range(xs.shape[-2] - 1, -1, -1) if reverse else range(xs.shape[-2])
    for t in order:
        carry, ys[t] = cell.step(params, carry, xs[..., t, :])
    return jnp.stack(ys, axis=-2), carry


def random_problem(cell, batch_shape, steps, seed):
    keys = jax.random.split(jax.random.key(seed), 6)
    params = cell.init(keys[0], 3)
    # Non-zero biases, so that both bias gradients are exercised.
    params = {
        k: v + 0.3 * jax.random.normal(keys[1], v.shape) if k.startswith("bias") else v
        for k, v in params.items()
    }
    xs = jax.random.normal(keys[2], (*batch_shape, steps, 3))
    carry = jax.tree.map(
        lambda a: 0.5 * jax.random.normal(keys[3], a.shape), cell.initial_carry(batch_shape)
    )
    # A random linear read-out of all outputs and the final carry.
    y_weights = jax.random.normal(keys[4], (*batch_shape, steps, cell.hidden_size))
    carry_weights = jax.tree.map(lambda a: jax.random.normal(keys[5], a.shape), carry)
    return params, xs, carry, y_weights, carry_weights


def loss_and_grads(run, cell, problem):
    """Jitted value and gradients (params, xs, carry) of a random read-out of ``run``."""
    return jax.jit(lambda problem: _loss_and_grads(run, cell, problem))(problem)


def _loss_and_grads(run, cell, problem):
    params, xs, carry, y_weights, carry_weights = problem

    def loss(params, xs, carry):
        ys, final = run(cell, params, xs, carry)
        readout = sum(
            jnp.sum(w * c)
            for w, c in zip(jax.tree.leaves(carry_weights), jax.tree.leaves(final), strict=True)
        )
        return jnp.sum(jnp.tanh(ys) * y_weights) + readout, (ys, final)

    (value, (ys, final)), grads = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(
        params, xs, carry
    )
    return {"loss": value, "ys": ys, "final": final, "grads": grads}


def assert_close(actual, expected, rtol=1e-5):
    """Each leaf within ``rtol`` of the leaf's largest magnitude (relative error)."""
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        scale = max(float(jnp.max(jnp.abs(e))), 1e-6)
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=0, atol=rtol * scale)


@pytest.fixture
def count_fused_calls(monkeypatch):
    calls = []
    original = fused.fused_scan

    def counting(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(fused, "fused_scan", counting)
    return calls


@pytest.mark.parametrize(
    ("name", "reverse"),
    [("lstm", False), ("lstm", True), ("gru", False), ("gru", True), ("rnn", True)],
)
def test_fast_path_matches_python_loop(name, reverse, count_fused_calls):
    """Oracle: jax.grad of a Python loop over cell.step; values and gradients to 1e-5."""
    cell = CELLS[name]()
    problem = random_problem(cell, (2, 3), 6, seed=len(name) + reverse)

    def fast(cell, params, xs, carry):
        return rnnlab.unroll(cell, params, xs, carry=carry, reverse=reverse)

    def reference(cell, params, xs, carry):
        return python_loop(cell, params, xs, carry, reverse)

    got = loss_and_grads(fast, cell, problem)
    want = loss_and_grads(reference, cell, problem)
    assert len(count_fused_calls) == 1, "unroll did not take the fast path"
    chex.assert_trees_all_equal_shapes(got, want)
    assert_close(got, want)


@settings(max_examples=3, deadline=None)
@given(
    name=st.sampled_from(sorted(CELLS)),
    batch_shape=st.sampled_from([(), (1,), (4,), (2, 2)]),
    steps=st.integers(1, 9),
    seed=st.integers(0, 2**16),
)
def test_fast_path_property(name, batch_shape, steps, seed):
    """Oracle: jax.grad of a Python loop, for any batch shape (none included) and T >= 1."""
    cell = CELLS[name]()
    problem = random_problem(cell, batch_shape, steps, seed)
    got = loss_and_grads(lambda c, p, x, h: rnnlab.unroll(c, p, x, carry=h), cell, problem)
    want = loss_and_grads(lambda c, p, x, h: python_loop(c, p, x, h, False), cell, problem)
    assert_close(got, want)


@pytest.mark.parametrize(
    "options",
    [
        {"lengths": np.array([3, 1])},
        {"resets": np.zeros((2, 4), bool)},
        {"remat": True},
        {"return_carries": True},
        {"unroll": 2},
    ],
    ids=lambda options: next(iter(options)),
)
def test_generic_fallback(options, count_fused_calls):
    """Options the fused path does not implement: "auto" takes the sequential scan (zero
    fused calls), and an explicit ``path="fused"`` raises naming the option."""
    cell = rnnlab.lstm(4)
    params = cell.init(jax.random.key(0), 3)
    rnnlab.unroll(cell, params, jnp.ones((2, 4, 3)), **options)
    assert count_fused_calls == []
    with pytest.raises(ValueError, match=f"path='fused'.*{next(iter(options))}"):
        rnnlab.unroll(cell, params, jnp.ones((2, 4, 3)), path="fused", **options)


def test_dispatch_rules(count_fused_calls):
    """On CPU, "auto" takes the fused path for the built-in cells; a cell declaring no
    DenseRecurrence, or ``path="sequential"``, does not."""
    xs = jnp.ones((2, 4, 3))
    for factory in (rnnlab.lstm, rnnlab.gru, rnnlab.rnn):
        cell = factory(4)
        rnnlab.unroll(cell, cell.init(jax.random.key(0), 3), xs)
    assert len(count_fused_calls) == 3

    lstm = rnnlab.lstm(4)
    impostor = dataclasses.replace(lstm, dense=None)
    rnnlab.unroll(impostor, lstm.init(jax.random.key(0), 3), xs)
    rnnlab.unroll(lstm, lstm.init(jax.random.key(0), 3), xs, path="sequential")
    assert len(count_fused_calls) == 3
    with pytest.raises(ValueError, match="declares no DenseRecurrence"):
        rnnlab.unroll(impostor, lstm.init(jax.random.key(0), 3), xs, path="fused")


def test_declared_recurrence_is_used(count_fused_calls):
    """A cell that declares a DenseRecurrence gets the fused path; oracle: the Python loop
    of its own (separately written) step."""
    base = rnnlab.rnn(4)
    recurrence = DenseRecurrence(
        hidden=lambda h: h,
        pointwise=lambda px, hh, h: (jnp.sin(px + hh), jnp.sin(px + hh)),
        additive=True,
    )

    def step(params, h, x):
        h = jnp.sin(
            x @ params["weight_ih"]
            + params["bias_ih"]
            + h @ params["weight_hh"]
            + params["bias_hh"]
        )
        return h, h

    cell = dataclasses.replace(base, step=step, dense=recurrence)
    problem = random_problem(cell, (3,), 5, seed=1)
    got = loss_and_grads(lambda c, p, x, h: rnnlab.unroll(c, p, x, carry=h), cell, problem)
    want = loss_and_grads(lambda c, p, x, h: python_loop(c, p, x, h, False), cell, problem)
    assert len(count_fused_calls) == 1 and count_fused_calls[0] is recurrence
    assert_close(got, want)


def test_remat_cuts_temporary_memory():
    """Oracle: XLA's own memory analysis; remat must cut temporaries by >= 40% (T=300)."""
    cell = rnnlab.lstm(64)
    params = cell.init(jax.random.key(0), 16)
    xs = jnp.ones((16, 300, 16))

    def temp_bytes(remat):
        loss = lambda p: jnp.mean(rnnlab.unroll(cell, p, xs, remat=remat)[0] ** 2)  # noqa: E731
        compiled = jax.jit(jax.grad(loss)).lower(params).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    assert temp_bytes(True) <= 0.6 * temp_bytes(False)


def test_lstm_pullback_matches_autodiff():
    """The LSTM's hand-written pointwise VJP; oracle: ``jax.vjp`` of its pointwise part."""
    keys = jax.random.split(jax.random.key(3), 5)
    s = 2.0 * jax.random.normal(keys[0], (3, 4 * 5))
    carry = rnnlab.LSTMCarry(*jax.random.normal(keys[1], (2, 3, 5)))
    cotangents = (rnnlab.LSTMCarry(*jax.random.normal(keys[2], (2, 3, 5))),) + (
        jax.random.normal(keys[3], (3, 5)),
    )
    got_out, got_pullback = lstm_cell.pointwise_vjp(s, carry)
    want_out, want_pullback = jax.vjp(lambda s, c: lstm_cell.pointwise(s, 0.0, c), s, carry)
    assert_close(got_out, want_out)
    assert_close(got_pullback(cotangents), want_pullback(cotangents))


def test_hypergradient_through_the_fused_path():
    """A hyperparameter the pointwise part closes over (coRNN's dt) is differentiable
    through the fused path; oracle: the sequential scan's gradient."""
    xs = jax.random.normal(jax.random.key(0), (2, 12, 3))

    @jax.jit
    def grads(dt):
        def loss(dt, path):
            cell = rnnlab.cells.make("cornn", 4, dt=dt)
            params = cell.init(jax.random.key(1), 3)
            return jnp.sum(jnp.tanh(rnnlab.unroll(cell, params, xs, path=path)[0]))

        return [jax.grad(loss)(dt, path) for path in ("sequential", "fused")]

    sequential, fused_grad = grads(jnp.float32(0.06))
    assert abs(float(sequential)) > 0
    np.testing.assert_allclose(fused_grad, sequential, rtol=1e-4)
