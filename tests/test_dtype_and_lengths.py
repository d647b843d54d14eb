"""The dtype policy and traced lengths outside [0, T]: x64, float16 params, a float16 carry,
torch half modules, and clipping under jit (rnnlab.unroll, layers, nn).

Policy (rnnlab.unrolling): compute in the params' floating dtype; ``xs`` is cast to it
and a given ``carry`` to the dtypes of ``cell.initial_carry``.  Traced ``lengths`` are
clipped to ``[0, T]`` (concrete ones outside it raise).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import rnnlab
from rnnlab import diagnostics, interop, nn
from rnnlab.layers import bidirectional

T = 5
LENGTHS = np.array([-3, 0, 2, 9])  # two below 0, one above T
CLIPPED = np.clip(LENGTHS, 0, T)


def _inputs(batch=4, features=2, dtype=jnp.float32):
    return jax.random.normal(jax.random.key(1), (batch, T, features), dtype)


@pytest.mark.parametrize("reverse", [False, True])
def test_unroll_clips_traced_lengths(reverse):
    """Oracle: each sequence cut to its clipped length and unrolled alone, without lengths
    (a length-0 sequence outputs zeros and keeps the initial carry); padded outputs are 0.
    Under jit the out-of-range lengths give no NaN."""
    cell = rnnlab.gru(3)
    params = cell.init(jax.random.key(0), 2)
    xs = _inputs()
    run = jax.jit(lambda xs, lengths: rnnlab.unroll(cell, params, xs, lengths=lengths,
                                                     reverse=reverse))  # fmt: skip
    ys, final = run(xs, jnp.asarray(LENGTHS))
    assert np.all(np.isfinite(ys)) and np.all(np.isfinite(final))
    for b, length in enumerate(CLIPPED):
        if length == 0:
            np.testing.assert_array_equal(ys[b], 0.0)
            np.testing.assert_array_equal(final[b], cell.initial_carry(()))
            continue
        alone, last = rnnlab.unroll(cell, params, xs[b, :length], reverse=reverse)
        np.testing.assert_allclose(ys[b, :length], alone, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(ys[b, length:], 0.0)
        np.testing.assert_allclose(final[b], last, rtol=1e-5, atol=1e-6)


def test_bidirectional_layer_and_nnx_module_clip_traced_lengths():
    """Oracle: the same call with the lengths clipped by hand (concrete, in range): the
    bidirectional layer and nn.Bidirectional, whose backward half runs reversed from each
    sequence's last valid step, agree under jit with no NaN."""
    cell = rnnlab.gru(3)
    layer = bidirectional(cell)
    params = layer.init(jax.random.key(0), 2)
    xs = _inputs()
    ys, _ = jax.jit(lambda lengths: layer.apply(params, xs, lengths=lengths))(LENGTHS)
    expected, _ = layer.apply(params, xs, lengths=CLIPPED)
    assert np.all(np.isfinite(ys))
    np.testing.assert_allclose(ys, expected, rtol=1e-6, atol=1e-7)

    rngs = nnx.Rngs(0)
    model = nn.Bidirectional(nn.GRU(2, 3, rngs=rngs), nn.GRU(2, 3, rngs=rngs))
    ys = jax.jit(lambda lengths: model(xs, lengths=lengths))(LENGTHS)
    assert np.all(np.isfinite(ys))
    np.testing.assert_allclose(ys, model(xs, lengths=CLIPPED), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["lstm", "rnn"])
def test_x64_unroll_grad_and_carry_grad_norms(name):
    """Oracle: the float32 computation: with x64 on, float32 params and float64 inputs
    compute in float32 (the params' dtype) and equal the float32-input result, with finite
    gradients; a float64 cell gives float64 outputs and carry_grad_norms that match the
    float32 ones to float32 precision."""
    with jax.enable_x64(True):
        cell = rnnlab.cells.make(name, 4)
        params = cell.init(jax.random.key(0), 2)
        xs = _inputs(dtype=jnp.float64)
        ys, _ = rnnlab.unroll(cell, params, xs)
        assert ys.dtype == jnp.float32
        single, _ = rnnlab.unroll(cell, params, xs.astype(jnp.float32))
        np.testing.assert_array_equal(ys, single)

        def loss(params, xs):
            return jnp.sum(jnp.square(rnnlab.unroll(cell, params, xs)[0]))

        grads = jax.grad(loss)(params, xs)
        assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))

        cell64 = rnnlab.cells.make(name, 4, param_dtype=jnp.float64)
        params64 = jax.tree.map(lambda p: p.astype(jnp.float64), params)
        ys64, _ = rnnlab.unroll(cell64, params64, xs)
        assert ys64.dtype == jnp.float64
        np.testing.assert_allclose(ys64, ys, rtol=1e-5, atol=1e-6)
        last = lambda ys: jnp.sum(ys[..., -1, :])  # noqa: E731
        norms64 = diagnostics.carry_grad_norms(cell64, params64, xs, last)
        norms32 = diagnostics.carry_grad_norms(cell, params, xs.astype(jnp.float32), last)
        for a, b in zip(jax.tree.leaves(norms64), jax.tree.leaves(norms32), strict=True):
            assert a.dtype == jnp.float64
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["lstm"])
def test_float16_params_with_float32_inputs_and_a_float16_carry(name):
    """Oracle: the float32 computation with the same (float16-representable) params: float16
    params compute in float16 to its precision, gradients are finite; a float16 carry given
    to float32 params is cast to float32 (the initial carry's dtype)."""
    cell16 = rnnlab.cells.make(name, 4, param_dtype=jnp.float16)
    params16 = cell16.init(jax.random.key(0), 2)
    cell = rnnlab.cells.make(name, 4)
    params = jax.tree.map(lambda p: p.astype(jnp.float32), params16)
    xs = _inputs()
    ys16, _ = rnnlab.unroll(cell16, params16, xs)
    ys, _ = rnnlab.unroll(cell, params, xs)
    assert ys16.dtype == jnp.float16
    np.testing.assert_allclose(ys16.astype(jnp.float32), ys, atol=5e-3)
    grads = jax.grad(
        lambda p: jnp.sum(rnnlab.unroll(cell16, p, xs)[0].astype(jnp.float32))
    )(params16)  # fmt: skip
    assert all(g.dtype == jnp.float16 and np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))

    carry = jax.tree.map(
        lambda leaf: jax.random.normal(jax.random.key(2), leaf.shape, jnp.float16),
        cell.initial_carry((4,)),
    )
    ys_half_carry, final = rnnlab.unroll(cell, params, xs, carry=carry)
    as32 = jax.tree.map(lambda leaf: leaf.astype(jnp.float32), carry)
    ys_carry32, final32 = rnnlab.unroll(cell, params, xs, carry=as32)
    np.testing.assert_array_equal(ys_half_carry, ys_carry32)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(final))


@pytest.mark.parametrize("module", [torch.nn.LSTM, torch.nn.GRU])
def test_from_torch_half_module(module):
    """Oracle: torch itself: a ``.half()`` module imports as float16 params whose outputs on
    float32 inputs match torch's float32 forward to float16 precision."""
    torch.manual_seed(0)
    layer = module(2, 4, batch_first=True)
    cell, params = interop.from_torch(layer.half())
    assert all(p.dtype == jnp.float16 for p in jax.tree.leaves(params))
    xs = _inputs()
    ys, _ = rnnlab.unroll(cell, params, xs)
    with torch.no_grad():
        expected, _ = layer.float()(torch.from_numpy(np.array(xs)))
    np.testing.assert_allclose(np.asarray(ys, np.float32), expected.numpy(), atol=1e-2)
