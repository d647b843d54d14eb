"""minLSTM (``rnnlab.cells.minlstm``) against Feng et al. 2024.

Oracles:

- a NumPy transcription of the paper's equations in linear space (sigmoid gates
  normalized by their sum, the positive ``g``), stepped in float64;
- the transcription checks the sequential and the parallel path alike (the property
  that the parallel path equals the sequential one, values and gradients, for
  hypothesis-drawn lengths, resets and directions, is in test_cell_contract.py);
- torch.nn.Linear's init distribution.

The generic contract (hand loop, padding, resets, T=1000) is in test_cell_contract.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
from conftest import ks_distance_to_uniform, sequential_and_parallel

from rnnlab.cells.minlstm import minlstm

HIDDEN, FEATURES, TIME = 4, 3, 7


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def g(x):
    return np.where(x >= 0, x + 0.5, sigmoid(x))


def numpy_minlstm(params, xs, h):
    """The paper's equations, stepped in linear space: ``xs: [..., T, F]``, ``h: [..., H]``."""
    weight, bias = (np.asarray(params[k], np.float64) for k in ("weight", "bias"))
    w_f, w_i, w_h = np.split(weight, 3, axis=-1)
    b_f, b_i, b_h = np.split(bias, 3)
    hs = []
    for t in range(xs.shape[-2]):
        x = xs[..., t, :]
        f, i = sigmoid(x @ w_f + b_f), sigmoid(x @ w_i + b_i)
        h = f / (f + i) * h + i / (f + i) * g(x @ w_h + b_h)
        hs.append(h)
    return np.stack(hs, axis=-2)


def inputs(seed, batch_shape):
    rng = np.random.default_rng(seed)
    xs = 2 * rng.standard_normal((*batch_shape, TIME, FEATURES))
    carry = np.abs(rng.standard_normal((*batch_shape, HIDDEN)))  # log space: h >= 0
    carry[..., 0] = 0.0  # the default start, where the log-space fold takes its other branch
    return xs, carry


def test_numpy_transcription_equals_both_paths_in_float64():
    with jax.enable_x64(True):
        xs, carry = inputs(0, (2, 2))
        params, results = sequential_and_parallel(
            minlstm(HIDDEN, param_dtype=jnp.float64), xs, carry
        )
        want = numpy_minlstm(params, xs, carry)
        for path, (ys, final) in results.items():
            np.testing.assert_allclose(ys, want, rtol=1e-12, atol=1e-12, err_msg=path)
            np.testing.assert_allclose(final, want[..., -1, :], rtol=1e-12, atol=1e-12)


def test_normalized_gates_survive_gates_that_underflow():
    """Oracle: for ``k_f, k_i << 0``, ``sigmoid(k) = e^k`` to float64 precision, so
    ``f' = 1 / (1 + e^(k_i - k_f)) = sigmoid(k_f - k_i)``; in float32 ``sigmoid(-200)`` is
    0 and the naive ``f / (f + i)`` is 0/0."""
    cell = minlstm(1)
    k_f, k_i, candidate = -200.0, -210.0, 1.0
    params = {"weight": jnp.zeros((1, 3)), "bias": jnp.array([k_f, k_i, candidate])}
    log_a, log_b = cell.linear.coefficients(params, jnp.zeros((1,)))
    np.testing.assert_allclose(np.exp(log_a), sigmoid(k_f - k_i), rtol=1e-6)
    np.testing.assert_allclose(np.exp(log_b), sigmoid(k_i - k_f) * g(candidate), rtol=1e-6)


def test_init_is_torch_linear_uniform():
    """``U(-1/sqrt(F), 1/sqrt(F))`` weights and biases: range and a Kolmogorov-Smirnov
    distance to the uniform CDF (5% critical value 1.36/sqrt(n))."""
    features = 16
    params = minlstm(256).init(jax.random.key(0), features)
    bound = 1 / np.sqrt(features)
    for name, shape in (("weight", (features, 768)), ("bias", (768,))):
        values = np.asarray(params[name])
        assert values.shape == shape
        assert np.all(np.abs(values) <= bound)
        assert ks_distance_to_uniform(values, -bound, bound) < 1.36 / np.sqrt(values.size), name
