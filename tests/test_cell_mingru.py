"""minGRU (``rnnlab.cells.mingru``) against Feng et al. 2024.

Oracles:

- a NumPy transcription of the paper's equations in linear space (sigmoid gate, the
  positive ``g``), stepped in float64;
- a NumPy transcription of the paper's log-space parallel code (``cumsum`` and
  ``logcumsumexp``), which starts from ``g(h_0)``;
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

from rnnlab.cells.mingru import mingru

HIDDEN, FEATURES, TIME = 4, 3, 7


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def g(x):
    return np.where(x >= 0, x + 0.5, sigmoid(x))


def numpy_mingru(params, xs, h):
    """The paper's equations, stepped in linear space: ``xs: [..., T, F]``, ``h: [..., H]``."""
    weight, bias = (np.asarray(params[k], np.float64) for k in ("weight", "bias"))
    w_z, w_h = np.split(weight, 2, axis=-1)
    b_z, b_h = np.split(bias, 2)
    hs = []
    for t in range(xs.shape[-2]):
        x = xs[..., t, :]
        z = sigmoid(x @ w_z + b_z)
        h = (1 - z) * h + z * g(x @ w_h + b_h)
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
            mingru(HIDDEN, param_dtype=jnp.float64), xs, carry
        )
        want = numpy_mingru(params, xs, carry)
        for path, (ys, final) in results.items():
            np.testing.assert_allclose(ys, want, rtol=1e-12, atol=1e-12, err_msg=path)
            np.testing.assert_allclose(final, want[..., -1, :], rtol=1e-12, atol=1e-12)


def test_paper_log_space_code_starts_from_g_of_h0():
    """The paper's ``parallel_scan_log`` with ``log_values[0] = log g(0)`` equals unroll
    from ``h_0 = g(0) = 1/2``: the documented difference in ``h_0``."""
    with jax.enable_x64(True):
        xs, _ = inputs(1, (2, 2))
        carry = np.full((2, 2, HIDDEN), 0.5)
        params, results = sequential_and_parallel(
            mingru(HIDDEN, param_dtype=jnp.float64), xs, carry
        )
        weight, bias = params["weight"], params["bias"]
        k, pre = np.split(xs @ weight + bias, 2, axis=-1)
        log_coeffs = -np.logaddexp(0, k)  # -softplus(k)
        log_values = np.concatenate(
            [np.log(np.broadcast_to(g(np.zeros(HIDDEN)), (2, 2, 1, HIDDEN))),
             -np.logaddexp(0, -k) + np.log(g(pre))], axis=-2)  # fmt: skip
        a_star = np.pad(np.cumsum(log_coeffs, axis=-2), ((0, 0), (0, 0), (1, 0), (0, 0)))
        log_h = a_star + np.logaddexp.accumulate(log_values - a_star, axis=-2)
        want = np.exp(log_h)[..., 1:, :]
        for path, (ys, _) in results.items():
            np.testing.assert_allclose(ys, want, rtol=1e-12, atol=1e-12, err_msg=path)


def test_init_is_torch_linear_uniform():
    """``U(-1/sqrt(F), 1/sqrt(F))`` weights and biases: range and a Kolmogorov-Smirnov
    distance to the uniform CDF (5% critical value 1.36/sqrt(n))."""
    features = 16
    params = mingru(512).init(jax.random.key(0), features)
    bound = 1 / np.sqrt(features)
    for name, shape in (("weight", (features, 1024)), ("bias", (1024,))):
        values = np.asarray(params[name])
        assert values.shape == shape
        assert np.all(np.abs(values) <= bound)
        assert ks_distance_to_uniform(values, -bound, bound) < 1.36 / np.sqrt(values.size), name
