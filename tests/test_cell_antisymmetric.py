"""AntisymmetricRNN against its equations and its spectrum.

Oracles: a NumPy transcription of Chang et al. 2019 (eqs. for the plain and the gated
cell) in the paper's column-vector form, with the paper's ``W`` the transpose of
``weight_hh``; NumPy eigenvalues of the recurrent matrix and of the Jacobian of the
ODE's right-hand side, against the facts that an antisymmetric matrix times a positive
diagonal has a purely imaginary spectrum and that ``-gamma I`` moves it into the left
half-plane; the closed form ``diag(d) M`` of the gated cell's Jacobian.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnlab
from rnnlab import cells

HIDDEN, FEATURES = 6, 3


_unroll = jax.jit(rnnlab.unroll, static_argnums=0)


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def random_params(cell, seed):
    params = cell.init(jax.random.key(seed), FEATURES)
    rng = np.random.default_rng(seed)
    return {
        k: np.asarray(v) + 0.3 * rng.standard_normal(v.shape).astype(np.float32)
        for k, v in params.items()
    }


def numpy_antisymmetric(params, xs, epsilon, gamma, gated):
    """``h <- h + eps [sigmoid(M h + V_z x + b_z) *] tanh(M h + V_h x + b_h)``, per example."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    w = p["weight_hh"].T  # the paper's W
    m = w - w.T - gamma * np.eye(HIDDEN)
    v_h, v_z = np.split(p["weight_ih"].T, 2, axis=0) if gated else (p["weight_ih"].T, None)
    b_h, b_z = np.split(p["bias"], 2) if gated else (p["bias"], None)
    out = []
    for sequence in xs:
        h, hs = np.zeros(HIDDEN), []
        for x in sequence:
            update = np.tanh(m @ h + v_h @ x + b_h)
            if gated:
                update = sigmoid(m @ h + v_z @ x + b_z) * update
            h = h + epsilon * update
            hs.append(h)
        out.append(hs)
    return np.array(out)


@pytest.mark.parametrize("gated, epsilon, gamma", [(False, 0.01, 0.01), (True, 1.0, 0.1)])
def test_unroll_equals_numpy_transcription(gated, epsilon, gamma):
    cell = cells.make("antisymmetric", HIDDEN, epsilon=epsilon, gamma=gamma, gated=gated)
    params = random_params(cell, 0)
    xs = np.random.default_rng(1).standard_normal((2, 25, FEATURES))
    want = numpy_antisymmetric(params, xs, epsilon, gamma, gated)
    ys, final = _unroll(cell, params, xs.astype(np.float32))
    np.testing.assert_allclose(ys, want, atol=1e-5 * max(1.0, np.max(np.abs(want))))
    np.testing.assert_allclose(final, want[:, -1], atol=1e-5 * max(1.0, np.max(np.abs(want))))


@pytest.mark.parametrize(
    "bad",
    [
        dict(epsilon=0.0),
        dict(epsilon=-1.0),
        dict(gamma=-0.1),
        dict(recurrent_std=-1.0),
        dict(gated="yes"),
        dict(epsilon=True),
    ],
)
def test_bad_hyperparameters_raise_naming_them(bad):
    (name,) = bad
    with pytest.raises(ValueError, match=name):
        cells.make("antisymmetric", HIDDEN, **bad)


def test_init_follows_the_papers_appendix():
    """``V ~ N(0, 1/F)``, ``W ~ N(0, sigma_w^2 / H)``, biases 0 (large sizes, 5% tolerance)."""
    cell = cells.make("antisymmetric", 200, recurrent_std=2.0, gated=True)
    params = cell.init(jax.random.key(0), 100)
    assert np.std(params["weight_ih"]) == pytest.approx(1 / np.sqrt(100), rel=0.05)
    assert np.std(params["weight_hh"]) == pytest.approx(2 / np.sqrt(200), rel=0.05)
    assert params["weight_ih"].shape == (100, 400)
    np.testing.assert_array_equal(params["bias"], 0.0)


@pytest.mark.parametrize("gamma", [0.0, 0.5])
def test_recurrent_matrix_spectrum_has_real_part_minus_gamma(gamma):
    cell = cells.make("antisymmetric", HIDDEN, gamma=gamma)
    params = random_params(cell, 2)
    eigenvalues = np.linalg.eigvals(np.asarray(cell.recurrent_weight(params), np.float64))
    np.testing.assert_allclose(eigenvalues.real, -gamma, atol=1e-5)
    spectrum = rnnlab.diagnostics.recurrent_spectrum(cell, params)
    np.testing.assert_allclose(np.real(spectrum.eigenvalues), -gamma, atol=1e-5)


def ode_jacobian(cell, params, h, x):
    """``d/dh (h_t - h_{t-1}) / epsilon``: the Jacobian of the ODE's right-hand side."""
    epsilon = cell.hyperparameters["epsilon"]
    rhs = lambda h: (cell.step(params, h, x)[0] - h) / epsilon  # noqa: E731
    return np.asarray(jax.jacobian(rhs)(h), np.float64)


def test_ode_jacobian_eigenvalues_are_imaginary_without_diffusion():
    """``diag(tanh') (W - W^T)`` at a random state: real parts 0; with gamma = 0.3 they
    lie in ``[-gamma max tanh', -gamma min tanh']``."""
    rng = np.random.default_rng(3)
    h = jnp.asarray(rng.standard_normal(HIDDEN).astype(np.float32))
    x = jnp.asarray(rng.standard_normal(FEATURES).astype(np.float32))
    for gamma in (0.0, 0.3):
        cell = cells.make("antisymmetric", HIDDEN, gamma=gamma, epsilon=0.5)
        params = random_params(cell, 4)
        jacobian = ode_jacobian(cell, params, h, x)
        eigenvalues = np.linalg.eigvals(jacobian)
        scale = np.max(np.abs(eigenvalues))
        assert scale > 0.1
        pre = np.asarray(
            h @ cell.recurrent_weight(params) + x @ params["weight_ih"] + params["bias"], np.float64
        )
        slope = 1 - np.tanh(pre) ** 2
        assert np.all(eigenvalues.real <= -gamma * slope.min() + 1e-5 * scale)
        assert np.all(eigenvalues.real >= -gamma * slope.max() - 1e-5 * scale)


def test_gated_jacobian_is_a_diagonal_times_the_shared_matrix():
    """The gate reuses ``M``: ``J = diag(sigmoid(a) tanh'(c) + tanh(c) sigmoid'(a)) M^T``
    in column form, with ``a, c`` the gate's and the candidate's pre-activations."""
    cell = cells.make("antisymmetric", HIDDEN, gamma=0.2, epsilon=0.5, gated=True)
    params = random_params(cell, 5)
    rng = np.random.default_rng(6)
    h = jnp.asarray(rng.standard_normal(HIDDEN).astype(np.float32))
    x = jnp.asarray(rng.standard_normal(FEATURES).astype(np.float32))
    m = np.asarray(cell.recurrent_weight(params), np.float64)
    inputs = np.asarray(x @ params["weight_ih"] + params["bias"], np.float64)
    recurrent = np.asarray(h, np.float64) @ m
    c, a = recurrent + inputs[:HIDDEN], recurrent + inputs[HIDDEN:]
    gate = sigmoid(a)
    d = gate * (1 - np.tanh(c) ** 2) + np.tanh(c) * gate * (1 - gate)
    np.testing.assert_allclose(ode_jacobian(cell, params, h, x), d[:, None] * m.T, atol=1e-5)
