"""RG-LRU (``rnnlab.cells.rglru``) against De et al. 2024 (Griffin) and recurrentgemma.

Oracles:

- a NumPy transcription of the paper's equations (``a_t = sigmoid(-Lambda)^(c r_t)``,
  ``sqrt(1 - a_t^2)`` input normalization), stepped in float64;
- the transcription checks the sequential and the parallel path alike (the property
  that the parallel path equals the sequential one, values and gradients, for
  hypothesis-drawn lengths, resets and directions, is in test_cell_contract.py);
- ``min(1 / (2 sqrt(x)), 1000)``, the bounded derivative of the square root, and the
  chain rule through one step at ``a_t -> 1``, in closed form;
- the uniform distributions of the two initializations (Kolmogorov-Smirnov distance).

The generic contract (hand loop, padding, resets, T=1000) is in test_cell_contract.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ks_distance_to_uniform, sequential_and_parallel

from rnnlab.cells import rglru as rglru_module
from rnnlab.cells.rglru import MAX_SQRT_GRADIENT, rglru, sqrt_bounded_derivative

HIDDEN, FEATURES, TIME = 4, 3, 7


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_rglru(params, xs, h, c=8.0):
    """The paper's equations after the input projection, stepped in float64."""
    p = {key: np.asarray(value, np.float64) for key, value in params.items()}
    w_a, w_x = np.split(p["weight_gates"], 2, axis=-1)
    b_a, b_x = np.split(p["bias_gates"], 2)
    a = sigmoid(-p["a_param"])  # the paper's a = sigmoid(Lambda), Lambda = -a_param
    hs = []
    for t in range(xs.shape[-2]):
        u = xs[..., t, :] @ p["weight_in"] + p["bias_in"]
        r, i = sigmoid(u @ w_a + b_a), sigmoid(u @ w_x + b_x)
        a_t = a ** (c * r)
        h = a_t * h + np.sqrt(1 - a_t**2) * (i * u)
        hs.append(h)
    return np.stack(hs, axis=-2)


def inputs(seed, batch_shape):
    rng = np.random.default_rng(seed)
    xs = 2 * rng.standard_normal((*batch_shape, TIME, FEATURES))
    return xs, rng.standard_normal((*batch_shape, HIDDEN))


def test_numpy_transcription_equals_both_paths_in_float64():
    with jax.enable_x64(True):
        xs, carry = inputs(0, (2, 2))
        params, results = sequential_and_parallel(rglru(HIDDEN, param_dtype=jnp.float64), xs, carry)
        want = numpy_rglru(params, xs, carry)
        for path, (ys, final) in results.items():
            np.testing.assert_allclose(ys, want, rtol=1e-12, atol=1e-12, err_msg=path)
            np.testing.assert_allclose(final, want[..., -1, :], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("x", [0.0, 1e-12, 1e-8, 1 / (4 * MAX_SQRT_GRADIENT**2), 1e-6, 0.25, 4.0])
def test_sqrt_bounded_derivative_is_clipped_at_1000(x):
    """Oracle: ``sqrt(x)`` and ``min(1 / (2 sqrt(x)), 1000)``, in reverse and forward mode."""
    with jax.enable_x64(True):
        want = 1000.0 if x == 0 else min(0.5 / np.sqrt(x), 1000.0)
        x = jnp.float64(x)
        assert jax.grad(sqrt_bounded_derivative)(x) == pytest.approx(want, rel=1e-12)
        value, tangent = jax.jvp(sqrt_bounded_derivative, (x,), (jnp.float64(1.0),))
        assert value == pytest.approx(np.sqrt(x), rel=1e-12)
        assert tangent == pytest.approx(want, rel=1e-12)


def one_step_params(a_param, gate_bias):
    """``F = H = 1``, ``u = x``, gates ``sigmoid(gate_bias)``: ``h_1 = sqrt(1 - a^2) i x``."""
    return {
        "weight_in": jnp.ones((1, 1)),
        "bias_in": jnp.zeros((1,)),
        "weight_gates": jnp.zeros((1, 2)),
        "bias_gates": jnp.asarray(gate_bias),
        "a_param": jnp.asarray([a_param]),
    }


def first_output_gradient(params):
    """``dh_1/dparams`` from ``h_0 = 0`` and ``x = 1``."""
    cell = rglru(1, param_dtype=jnp.float64)
    first_output = lambda p: cell.step(p, jnp.zeros((1,)), jnp.ones((1,)))[1][0]  # noqa: E731
    return jax.jit(jax.grad(first_output))(params)


def test_gradient_at_a_near_one_is_the_clipped_chain_rule():
    """At ``Lambda = -30``, ``1 - a^2 ~ 7e-13``, whose true sqrt derivative is ~6e5; the
    oracle is the closed-form chain rule with 1000 in its place:
    ``dh_1/dLambda = i x * 1000 * 2 c r sigmoid(Lambda) a^2``."""
    with jax.enable_x64(True):
        a_param, (b_r, b_x), c = -30.0, (0.0, 0.5), 8.0
        grads = first_output_gradient(one_step_params(a_param, [b_r, b_x]))
        r, i = sigmoid(b_r), sigmoid(b_x)
        log_a = -c * r * np.log1p(np.exp(a_param))
        s = -np.expm1(2 * log_a)
        assert 0.5 / np.sqrt(s) > 100 * MAX_SQRT_GRADIENT  # the clip is active
        want = i * MAX_SQRT_GRADIENT * 2 * c * r * sigmoid(a_param) * np.exp(2 * log_a)
        np.testing.assert_allclose(grads["a_param"], [want], rtol=1e-9)


def test_gradients_finite_at_a_equal_one_only_with_the_bound(monkeypatch):
    """At ``Lambda = -800`` softplus underflows: ``a = 1`` and ``1 - a^2 = 0`` exactly.
    The chain rule is then ``0 * 1000 = 0``; with a plain ``jnp.sqrt`` it is ``0 * inf``."""
    with jax.enable_x64(True):
        params = one_step_params(-800.0, [0.0, 0.5])
        for leaf in jax.tree.leaves(first_output_gradient(params)):
            assert np.all(np.isfinite(leaf))
        monkeypatch.setattr(rglru_module, "sqrt_bounded_derivative", jnp.sqrt)
        leaves = jax.tree.leaves(first_output_gradient(params))
        assert not all(np.all(np.isfinite(leaf)) for leaf in leaves)


@pytest.mark.parametrize("a_init", ["paper", "recurrentgemma"])
def test_init_draws_the_stated_uniform(a_init):
    """``paper``: ``a^c`` uniform on ``[a_min, a_max]``; ``recurrentgemma``: ``a^2`` uniform
    on ``[a_min^2, a_max^2]``, with ``a = exp(-softplus(Lambda))``.  KS distance below the
    1% critical value 1.63/sqrt(n); non-default ends and ``c`` show they are used."""
    a_min, a_max, c, size = 0.5, 0.8, 4.0, 1024
    params = rglru(size, a_min=a_min, a_max=a_max, c=c, a_init=a_init).init(jax.random.key(0), 2)
    log_a = -np.logaddexp(0.0, np.asarray(params["a_param"], np.float64))
    power = c if a_init == "paper" else 2.0
    low, high = (a_min, a_max) if a_init == "paper" else (a_min**2, a_max**2)
    values = np.exp(power * log_a)
    assert np.all((values > low - 1e-6) & (values < high + 1e-6))
    assert ks_distance_to_uniform(values, low, high) < 1.63 / np.sqrt(size)
    assert params["weight_in"].shape == (2, size) and params["weight_gates"].shape == (
        size,
        2 * size,
    )
    np.testing.assert_array_equal(params["bias_gates"], 0.0)


@pytest.mark.parametrize(
    "hyperparameters,named",
    [
        (dict(a_min=0.0), "a_min"),
        (dict(a_max=1.0), "a_max"),
        (dict(a_min=0.99, a_max=0.9), "a_min"),
        (dict(a_min=True), "a_min"),
        (dict(c=0.0), "c"),
        (dict(c=-8.0), "c"),
        (dict(a_init="griffin"), "a_init"),
    ],
)
def test_bad_hyperparameters_raise_naming_them(hyperparameters, named):
    with pytest.raises(ValueError, match=named):
        rglru(3, **hyperparameters)
