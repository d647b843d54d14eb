"""rnnlab.diagnostics.carry_grad_norms_grid (and init_grid) against a closed form: for a linear RNN
``h_t = x_t W_ih + h_{t-1} W_hh + b`` and ``L = 1/2 sum_b (h_T w + c - y_b)^2``, the carry
gradient is ``dL/dh_T = (h_T w + c - y) w^T`` and ``dL/dh_t = dL/dh_{t+1} W_hh^T``, written
here in NumPy float64 for every value and seed of the grid (``W_hh`` drawn Gaussian, so
that ``W_hh`` and ``W_hh^T`` give different norms); and Pascanu et al. 2013's ``eta`` is
``sigma_max(W_hh)`` by NumPy's SVD.  Two compiles, tiny shapes."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

import rnnlab
from rnnlab import diagnostics

C, S, B, T, F, H = 2, 2, 3, 5, 2, 4
RHOS = np.array([0.5, 1.2])


def make_linear_rnn(value, hidden_size, dtype):
    return rnnlab.rnn(
        hidden_size, activation="linear", recurrent_init="normal", recurrent_scale=value,
        param_dtype=dtype,
    )  # fmt: skip


def readout_loss(ys, readout, targets):
    return 0.5 * jnp.sum(jnp.square(ys[..., -1, :] @ readout["weight"] + readout["bias"] - targets))


def closed_form(params, readout, carry, xs, targets):
    """``[B, T]`` norms of one configuration, by the backward recursion in NumPy."""
    params, readout = jax.tree.map(np.asarray, (params, readout))
    h = np.asarray(carry)  # [B, H]
    for t in range(T):
        h = xs[:, t] @ params["weight_ih"] + h @ params["weight_hh"]
        h = h + params["bias_ih"] + params["bias_hh"]
    grad = (h @ readout["weight"] + readout["bias"] - targets) @ readout["weight"].T  # [B, H]
    norms = [np.linalg.norm(grad, axis=-1)]
    for _ in range(T - 1):
        grad = grad @ params["weight_hh"].T
        norms.append(np.linalg.norm(grad, axis=-1))
    return np.stack(norms[::-1], axis=-1)


def test_grid_matches_the_closed_form_of_a_linear_rnn():
    """Oracles: the NumPy backward recursion per (value, seed), with a given initial
    carry; ``eta`` is the largest singular value of ``W_hh`` (NumPy's SVD); init_grid's
    params at ``[c, s]`` are the unvmapped ``init`` of value ``c`` with key ``s``."""
    with jax.enable_x64(True):
        keys = jax.random.split(jax.random.key(0), 6)
        values = jnp.asarray(RHOS)
        seed_keys = jax.random.split(keys[0], S)
        params = diagnostics.init_grid(make_linear_rnn, H, values, seed_keys, F)
        weights = jax.random.normal(keys[4], (C, S, H, 1), jnp.float64)
        readouts = {"weight": weights, "bias": jnp.ones((C, S, 1), jnp.float64)}
        carry = jax.random.normal(keys[1], (C, S, B, H), jnp.float64)
        xs = jax.random.normal(keys[2], (S, B, T, F), jnp.float64)
        targets = jax.random.normal(keys[3], (S, B, 1), jnp.float64)
        norms, eta = diagnostics.carry_grad_norms_grid(
            make_linear_rnn, H, values, params, xs, readout_loss, readouts, targets,
            carry=carry, per_example=True,
        )  # fmt: skip
        assert norms.shape == (C, S, B, T)
        for c in range(C):
            for s in range(S):
                one = jax.tree.map(lambda leaf, c=c, s=s: leaf[c, s], (params, readouts))
                expected = closed_form(*one, carry[c, s], np.asarray(xs[s]), targets[s])
                np.testing.assert_allclose(norms[c, s], expected, rtol=1e-10)
                sigma = np.linalg.svd(np.asarray(one[0]["weight_hh"]), compute_uv=False)
                np.testing.assert_allclose(eta[c, s], sigma[0], rtol=1e-10)
        # init_grid against the plain, unvmapped init of one value and seed.
        direct = make_linear_rnn(RHOS[1], H, jnp.float64).init(seed_keys[0], F)
        chex.assert_trees_all_close(jax.tree.map(lambda p: p[1, 0], params), direct)


def test_gated_cells_have_no_eta_and_one_curve_per_leaf():
    """Oracle: the LSTM's carry ``(h, c)``: one ``[C, S, T]`` curve each (the batch summed
    into one norm), and no Pascanu eta (its Jacobian is not ``diag(sigma') W``); the loss
    on ``y_T`` cannot see ``c_T``, so its last norm is exactly 0."""
    with jax.enable_x64(True):

        def make_lstm(value, hidden_size, dtype):
            return rnnlab.lstm(hidden_size, forget_bias=value, param_dtype=dtype)

        values = jnp.asarray([0.0, 1.0])
        keys = jax.random.split(jax.random.key(1), S)
        params = diagnostics.init_grid(make_lstm, H, values, keys, F)
        xs = jax.random.normal(jax.random.key(2), (S, B, T, F), jnp.float64)
        norms, eta = diagnostics.carry_grad_norms_grid(
            make_lstm, H, values, params, xs, lambda ys, _, __: jnp.sum(ys[..., -1, :])
        )
        assert eta is None
        assert norms.h.shape == norms.c.shape == (2, S, T)
        assert np.all(np.asarray(norms.c[..., -1]) == 0) and np.all(np.asarray(norms.h) > 0)
