"""coRNN against its equations and its bound.

Oracles: a NumPy transcription of the update (Rusch & Mishra 2021; the authors' code),
stepped in float64; the closed-form bound of the explicit scheme, a linear system forced
by ``|tanh| < 1``, computed by summing its impulse response in NumPy; the paper's energy
bound (Proposition 3.1).  The contract tests (hand loop against every path, padding,
resets, T=1000 gradients) run for every registered cell in ``test_cell_contract.py``.
"""

import jax
import numpy as np
import pytest

import rnnlab
from rnnlab import cells

HIDDEN, FEATURES = 5, 3
PAPER_ADDING = dict(dt=0.06, gamma=66.0, epsilon=15.0)  # the authors' adding-task defaults
PAPER_PSMNIST = dict(dt=0.076, gamma=0.4, epsilon=8.0)


_unroll = jax.jit(rnnlab.unroll, static_argnums=0, static_argnames=("return_carries",))


def random_params(cell, seed, scale=0.5):
    """The cell's init plus noise, so every parameter (the zero ``bias_hh`` too) matters."""
    params = cell.init(jax.random.key(seed), FEATURES)
    rng = np.random.default_rng(seed)
    return {
        k: np.asarray(v) + scale * rng.standard_normal(v.shape).astype(np.float32)
        for k, v in params.items()
    }


def numpy_cornn(params, xs, dt, gamma, epsilon):
    """The paper's W y + Wz z + V x + b with the code's explicit damping, per example."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    w_y, w_z = p["weight_hh"][:HIDDEN].T, p["weight_hh"][HIDDEN:].T
    v, b = p["weight_ih"].T, p["bias_ih"] + p["bias_hh"]
    y = np.zeros((xs.shape[0], HIDDEN))
    z = np.zeros_like(y)
    ys = []
    for t in range(xs.shape[1]):
        x = xs[:, t]
        force = np.tanh(y @ w_y.T + z @ w_z.T + x @ v.T + b)
        z = z + dt * (force - gamma * y - epsilon * z)
        y = y + dt * z
        ys.append(y)
    return np.stack(ys, axis=1), y, z


@pytest.mark.parametrize("hyper", [PAPER_ADDING, PAPER_PSMNIST], ids=["adding", "psmnist"])
def test_unroll_equals_numpy_transcription(hyper):
    cell = cells.make("cornn", HIDDEN, **hyper)
    params = random_params(cell, 0)
    xs = np.random.default_rng(1).standard_normal((2, 40, FEATURES))
    want_ys, want_y, want_z = numpy_cornn(params, xs, **hyper)
    ys, final = _unroll(cell, params, xs.astype(np.float32))
    scale = np.max(np.abs(want_ys))
    np.testing.assert_allclose(ys, want_ys, atol=1e-5 * scale)
    np.testing.assert_allclose(final.y, want_y, atol=1e-5 * scale)
    np.testing.assert_allclose(final.z, want_z, atol=1e-5 * np.max(np.abs(want_z)))


@pytest.mark.parametrize(
    "bad",
    [
        dict(dt=0.0),
        dict(dt=-0.1),
        dict(dt=float("nan")),
        dict(dt="fast"),
        dict(gamma=-1.0),
        dict(gamma=True),
        dict(epsilon=-0.5),
    ],
)
def test_bad_hyperparameters_raise_naming_them(bad):
    (name,) = bad
    with pytest.raises(ValueError, match=name):
        cells.make("cornn", HIDDEN, **bad)


def forced_system(dt, gamma, epsilon):
    """Per unit, ``(y_n, z_n) = M (y, z)_{n-1} + s_n b`` with ``s_n = tanh(.)``."""
    a = 1.0 - dt * epsilon
    transition = np.array([[1.0 - dt * dt * gamma, dt * a], [-dt * gamma, a]])
    return transition, np.array([dt * dt, dt])


def supremum_bound(dt, gamma, epsilon, terms=20_000):
    """``sup |y_n|, sup |z_n|`` over all forcings ``|s_n| <= 1``: ``sum_k |M^k b|``."""
    transition, forcing = forced_system(dt, gamma, epsilon)
    total, response = np.zeros(2), forcing
    for _ in range(terms):
        total += np.abs(response)
        response = transition @ response
    return total


def test_bound_at_the_papers_defaults_is_one_over_gamma():
    """The docstring's numbers: spectral radius 0.72 and ``sup |y| = 1/gamma`` at the defaults."""
    transition, _ = forced_system(**PAPER_ADDING)
    assert np.max(np.abs(np.linalg.eigvals(transition))) == pytest.approx(0.7243, abs=1e-3)
    assert supremum_bound(**PAPER_ADDING)[0] == pytest.approx(1.0 / 66.0, rel=1e-6)


@pytest.mark.parametrize("hyper", [PAPER_ADDING, PAPER_PSMNIST], ids=["adding", "psmnist"])
def test_hidden_states_stay_within_the_bound_over_1000_steps(hyper):
    """Large weights and inputs (tanh saturated, signs changing): the bound holds at every
    step, and a constant saturated forcing (bias +50) drives ``y`` to 95% of it or more."""
    cell = cells.make("cornn", 16, **hyper)
    bound_y, bound_z = supremum_bound(**hyper)
    rng = np.random.default_rng(2)
    params = {k: np.asarray(v) * 20.0 for k, v in cell.init(jax.random.key(3), 1).items()}
    xs = (10.0 * rng.standard_normal((4, 1000, 1))).astype(np.float32)
    _, _, carries = _unroll(cell, params, xs, return_carries=True)
    y, z = np.asarray(carries.y, np.float64), np.asarray(carries.z, np.float64)
    assert np.max(np.abs(y)) <= bound_y * (1 + 1e-4)
    assert np.max(np.abs(z)) <= bound_z * (1 + 1e-4)
    # The paper's Proposition 3.1 (proved for its IMEX scheme):
    # y^T y + z^T z / gamma <= H t_n / gamma.
    energy = np.sum(y**2, -1) + np.sum(z**2, -1) / hyper["gamma"]
    t_n = hyper["dt"] * np.arange(1, 1001)
    assert np.all(energy <= 16 * t_n / hyper["gamma"])

    saturated = {
        **params,
        "weight_hh": np.zeros_like(params["weight_hh"]),
        "bias_ih": np.full_like(params["bias_ih"], 50.0),
    }
    ys, _ = _unroll(cell, saturated, xs)
    assert np.max(ys) >= 0.95 * bound_y
    assert np.max(np.abs(ys)) <= bound_y * (1 + 1e-4)
