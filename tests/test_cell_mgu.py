"""MGU against its equations and its limits.

Oracles: a NumPy transcription of Zhou et al. 2016 in the paper's concatenated form
``W_f [h, x]``, stepped in float64; the two limits of the gate: ``f = 0`` freezes ``h``
exactly, and ``f = 1`` makes the cell an Elman tanh RNN, checked against
``rnnlab.rnn`` with the same weights.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnlab
from rnnlab import cells

HIDDEN, FEATURES = 5, 3


_unroll = jax.jit(rnnlab.unroll, static_argnums=0)


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def numpy_mgu(params, xs):
    """``f = sigmoid(W_f [h, x] + b_f)``, ``hc = tanh(W_h [f h, x] + b_h)``,
    ``h = (1 - f) h + f hc``, with ``W_f, W_h: [H, H + F]`` built from the blocks."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    w_if, w_ih = np.split(p["weight_ih"], 2, axis=1)
    w_hf, w_hh = np.split(p["weight_hh"], 2, axis=1)
    w_f = np.concatenate([w_hf, w_if], axis=0).T
    w_h = np.concatenate([w_hh, w_ih], axis=0).T
    b_f, b_h = np.split(p["bias"], 2)
    h, hs = np.zeros((xs.shape[0], HIDDEN)), []
    for t in range(xs.shape[1]):
        x = xs[:, t]
        f = sigmoid(np.concatenate([h, x], -1) @ w_f.T + b_f)
        candidate = np.tanh(np.concatenate([f * h, x], -1) @ w_h.T + b_h)
        h = (1 - f) * h + f * candidate
        hs.append(h)
    return np.stack(hs, axis=1)


def test_unroll_equals_numpy_transcription():
    cell = cells.make("mgu", HIDDEN, bias_init="uniform")
    params = cell.init(jax.random.key(0), FEATURES)
    xs = np.random.default_rng(1).standard_normal((2, 40, FEATURES))
    want = numpy_mgu(params, xs)
    ys, final = _unroll(cell, params, xs.astype(np.float32))
    np.testing.assert_allclose(ys, want, atol=2e-6)
    np.testing.assert_allclose(final, want[:, -1], atol=2e-6)


@pytest.mark.parametrize(
    "bad", [dict(recurrent_init="bogus"), dict(input_init="bogus"), dict(bias_init="bogus")]
)
def test_bad_initializers_raise_naming_them(bad):
    (name,) = bad
    with pytest.raises(ValueError, match=name):
        cells.make("mgu", HIDDEN, **bad)


def test_closed_gate_freezes_the_state():
    """Forget-gate bias -200: ``f = 0`` in float32, so ``h_t = h_0`` exactly."""
    cell = cells.make("mgu", HIDDEN)
    params = cell.init(jax.random.key(2), FEATURES)
    params["bias"] = params["bias"].at[:HIDDEN].set(-200.0)
    rng = np.random.default_rng(3)
    h0 = rng.standard_normal((2, HIDDEN)).astype(np.float32)
    ys, final = _unroll(
        cell, params, rng.standard_normal((2, 20, FEATURES)).astype(np.float32), carry=h0
    )
    np.testing.assert_array_equal(final, h0)
    np.testing.assert_array_equal(ys, np.broadcast_to(h0[:, None], ys.shape))


def test_open_gate_is_an_elman_rnn():
    """Forget-gate bias +200: ``f = 1``, so ``h_t = tanh(h W_hh + x W_ih + b_h)``, which is
    ``rnnlab.rnn`` with ``weight_hh = W_hh``, ``weight_ih = W_ih``, ``bias_ih = b_h``."""
    cell = cells.make("mgu", HIDDEN, bias_init="uniform")
    params = cell.init(jax.random.key(4), FEATURES)
    params["bias"] = params["bias"].at[:HIDDEN].set(200.0)
    elman = rnnlab.rnn(HIDDEN)
    elman_params = {
        "weight_ih": params["weight_ih"][:, HIDDEN:],
        "weight_hh": params["weight_hh"][:, HIDDEN:],
        "bias_ih": params["bias"][HIDDEN:],
        "bias_hh": jnp.zeros(HIDDEN),
    }
    xs = np.random.default_rng(5).standard_normal((2, 20, FEATURES)).astype(np.float32)
    np.testing.assert_allclose(
        _unroll(cell, params, xs)[0], _unroll(elman, elman_params, xs)[0], atol=1e-6
    )


def test_recurrent_spectrum_has_two_blocks():
    cell = cells.make("mgu", HIDDEN, recurrent_init="orthogonal", recurrent_scale=0.5)
    params = cell.init(jax.random.key(6), FEATURES)
    spectrum = rnnlab.diagnostics.recurrent_spectrum(cell, params)
    np.testing.assert_allclose(spectrum.singular_values, 0.5, rtol=1e-5)
    assert spectrum.singular_values.shape == (2, HIDDEN)
