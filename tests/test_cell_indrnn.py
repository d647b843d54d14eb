"""IndRNN against its equations, its gradient structure and its constraint.

Oracles: a NumPy transcription of Li et al. 2018, stepped in float64 (with
the constraint as NumPy's ``clip``); the closed form ``dh_T/dh_0 = diag(u^T)`` of a ReLU
IndRNN whose units stay active (the paper's gradient analysis); the unconstrained cell's
gradient, which the constrained one must equal inside and on the bound; order
statistics of the uniform init.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnlab
from rnnlab import cells

HIDDEN, FEATURES = 5, 3
NUMPY_ACTIVATIONS = {"relu": lambda v: np.maximum(v, 0.0), "tanh": np.tanh}


_unroll = jax.jit(rnnlab.unroll, static_argnums=0)


def numpy_indrnn(params, xs, activation, bound):
    """``h_t = sigma(W x_t + u * h_{t-1} + b)`` with ``u`` clipped to ``[-bound, bound]``."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    u = np.clip(p["weight_hh"], -bound, bound)
    h, hs = np.zeros((xs.shape[0], HIDDEN)), []
    for t in range(xs.shape[1]):
        h = NUMPY_ACTIVATIONS[activation](xs[:, t] @ p["weight_ih"] + u * h + p["bias"])
        hs.append(h)
    return np.stack(hs, axis=1)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_unroll_equals_numpy_transcription(activation):
    """Random weights, with two recurrent weights outside the bound 1.1 (clipped)."""
    cell = cells.make(
        "indrnn", HIDDEN, activation=activation, recurrent_min=-1.1, recurrent_max=1.1
    )
    rng = np.random.default_rng(0)
    params = {
        "weight_ih": rng.standard_normal((FEATURES, HIDDEN)).astype(np.float32),
        "weight_hh": np.array([0.5, -0.9, 1.05, 1.7, -2.0], np.float32),
        "bias": 0.1 * rng.standard_normal(HIDDEN).astype(np.float32),
    }
    xs = rng.standard_normal((2, 40, FEATURES))
    want = numpy_indrnn(params, xs, activation, 1.1)
    ys, final = _unroll(cell, params, xs.astype(np.float32))
    np.testing.assert_allclose(ys, want, atol=1e-5 * max(1.0, np.max(np.abs(want))))
    np.testing.assert_allclose(final, want[:, -1], atol=1e-5 * max(1.0, np.max(np.abs(want))))


@pytest.mark.parametrize(
    "bad",
    [
        dict(activation="sigmoid"),
        dict(recurrent_max=0.0),
        dict(recurrent_max=-1.0),
        dict(recurrent_min=-1.5),
        dict(recurrent_min=1.2),
        dict(input_std=-0.1),
        dict(constrain="yes"),
        dict(recurrent_max="1"),
    ],
)
def test_bad_hyperparameters_raise_naming_them(bad):
    (name,) = bad
    with pytest.raises(ValueError, match=name):
        cells.make("indrnn", HIDDEN, **bad)


def test_init_ranges():
    """``u ~ U(min, max)``: all 4096 draws inside, the extremes within 1% of the ends;
    ``W ~ N(0, input_std^2)``; ``b = 0``."""
    cell = cells.make("indrnn", 4096, recurrent_min=0.25, recurrent_max=1.25, input_std=0.5)
    params = cell.init(jax.random.key(1), 8)
    u = np.asarray(params["weight_hh"])
    assert u.min() >= 0.25 and u.max() <= 1.25
    assert u.min() < 0.26 and u.max() > 1.24
    assert np.std(params["weight_ih"]) == pytest.approx(0.5, rel=0.03)
    np.testing.assert_array_equal(params["bias"], 0.0)


def test_gradient_through_time_is_a_power_of_u_while_units_are_active():
    """Bias +10 keeps every ReLU unit active over T=50 steps, so ``dh_T/dh_0 = diag(u^T)``:
    each unit's gradient is regulated by its own ``u`` alone (no mixing across units)."""
    cell = cells.make("indrnn", HIDDEN)
    params = cell.init(jax.random.key(2), FEATURES)
    params["bias"] = jnp.full((HIDDEN,), 10.0)
    xs = jnp.asarray(np.random.default_rng(3).standard_normal((50, FEATURES)), jnp.float32)

    def final_state(h0):
        return rnnlab.unroll(cell, params, xs, carry=h0, path="sequential")[1]

    jacobian = jax.jacobian(final_state)(jnp.zeros(HIDDEN))
    u = np.asarray(params["weight_hh"], np.float64)
    np.testing.assert_allclose(jacobian, np.diag(u**50), rtol=1e-4, atol=1e-12)


def test_constraint_gradient_is_whole_on_the_bound_and_zero_beyond():
    """Against the unconstrained cell: equal gradients for ``u`` inside or exactly on the
    bound (``jnp.clip`` would halve the latter), zero for ``u`` beyond it."""
    constrained = cells.make("indrnn", 3, recurrent_max=1.0)
    free = cells.make("indrnn", 3, recurrent_max=1.0, constrain=False)
    params = constrained.init(jax.random.key(4), FEATURES)
    params["weight_ih"] = params["weight_ih"] * 1000.0  # visible activity
    params["weight_hh"] = jnp.array([0.5, 1.0, 1.5])
    xs = jnp.asarray(np.random.default_rng(5).standard_normal((2, 10, FEATURES)), jnp.float32)

    def grad_u(cell, params):
        loss = lambda p: jnp.sum(rnnlab.unroll(cell, p, xs)[0] ** 2)  # noqa: E731
        return np.asarray(jax.grad(loss)(params)["weight_hh"])

    got, want = grad_u(constrained, params), grad_u(free, params)
    assert np.all(np.abs(want) > 0)
    np.testing.assert_allclose(got[:2], want[:2], rtol=1e-5)
    assert got[2] == 0.0


def test_recurrent_weight_feeds_the_spectrum_diagnostics():
    """``recurrent_weight = diag(clip(u))``, so ``pascanu_eta = max |u|`` (ReLU's
    ``|sigma'| <= 1``)."""
    cell = cells.make("indrnn", 4, recurrent_max=1.0)
    params = cell.init(jax.random.key(6), FEATURES)
    params["weight_hh"] = jnp.array([0.3, -0.8, 1.4, 0.9])
    np.testing.assert_allclose(cell.recurrent_weight(params), np.diag([0.3, -0.8, 1.0, 0.9]))
    assert float(rnnlab.diagnostics.pascanu_eta(cell, params)) == pytest.approx(1.0)
