"""Every registered cell against the contract, so a new cell is tested by registering it.

Oracles, per cell in ``rnnlab.cells.available()``:

- a hand-stepped Python loop of ``cell.step`` equals ``unroll`` on every path the cell
  supports (sequential, fused, parallel), forwards and in reverse, values and gradients;
- for cells with a parallel path: parallel equals sequential to 1e-5 in float32 and 1e-10
  in float64, values and gradients (params, inputs, initial carry of any sign), over
  random lengths, resets (restoring a carry of their own), directions and batch shapes
  (hypothesis);
- padded sequences equal the unpadded ones, forwards and in reverse;
- a packed sequence with resets equals the vmapped batch of its segments;
- ``y_t == cell.output_of(params, carry_t, x_t)`` (the output contract);
- gradients stay finite at T=1000 at the default init;
- every sweepable hyperparameter can be a traced array (jit over it).

Each cell's own test file checks its equations against a NumPy transcription of its paper.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import rnnlab
from rnnlab import cells
from rnnlab.unrolling import supported_paths

HIDDEN, FEATURES = 3, 2
NAMES = cells.available()
#: Both sides of every comparison compile alike; XLA's backend optimizations would only
#: double the compile time, which dominates these tests.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


@functools.cache
def built(name):
    cell = cells.make(name, HIDDEN)
    params = cell.init(jax.random.key(1), FEATURES)
    return cell, params


def normal(seed, shape):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@functools.cache
def jitted_step(cell):
    return jax.jit(cell.step)


def hand_loop(cell, params, xs, carry=None, *, reverse=False):
    """The oracle: ``cell.step`` in a Python loop over ``xs: [B, T, F]``."""
    carry = cell.initial_carry(xs.shape[:-2]) if carry is None else carry
    order = range(xs.shape[-2])
    ys = {}
    for t in reversed(order) if reverse else order:
        carry, ys[t] = jitted_step(cell)(params, carry, xs[..., t, :])
    if not ys:
        return np.zeros((*xs.shape[:-2], 0, cell.hidden_size), np.float32), carry
    return np.stack([np.asarray(ys[t]) for t in order], axis=-2), carry


def paths_of(cell):
    return [path for path, why in supported_paths(cell).items() if why is None]


def _squares(ys, final):
    return jnp.sum(ys**2) + sum(jnp.sum(jnp.abs(leaf) ** 2) for leaf in jax.tree.leaves(final))


@functools.cache
def every_path(name):
    """``{reverse: {path: (ys, final, (ys, final), grads)}}`` for ``unroll`` on ``xs[2, 6, F]``
    in both directions on every path, from ONE compiled program per cell: the plain
    forward, and the forward values and params-gradient of ``sum(ys**2) + sum(|final|**2)``
    under ``value_and_grad`` (a path's custom VJP runs its own forward there)."""
    cell, params = built(name)
    paths = paths_of(cell)

    @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
    def run(params, xs):
        results = {}
        for reverse in (False, True):
            results[reverse] = {}
            for path in paths:

                def loss(params, path=path, reverse=reverse):
                    ys, final = rnnlab.unroll(cell, params, xs, path=path, reverse=reverse)
                    return _squares(ys, final), (ys, final)

                ys, final = rnnlab.unroll(cell, params, xs, path=path, reverse=reverse)
                (_, under_grad), grads = jax.value_and_grad(loss, has_aux=True)(params)
                results[reverse][path] = (ys, final, under_grad, grads)
        return results

    return run(params, jnp.asarray(HAND_LOOP_XS))


HAND_LOOP_XS = normal(0, (2, 6, FEATURES))


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_hand_loop_equals_every_path(name, reverse):
    """Oracle: the hand loop's ys and final carry; every path's gradient equals the
    sequential path's (the plain scan of ``cell.step``)."""
    cell, params = built(name)
    xs = jnp.asarray(HAND_LOOP_XS)
    carry = cell.initial_carry((2,))
    want_ys, want_final = hand_loop(cell, params, xs, carry, reverse=reverse)
    results = every_path(name)[reverse]
    want_grads = results["sequential"][3]
    for path, (ys, final, under_grad, grads) in results.items():
        for got_ys, got_final in ((ys, final), under_grad):
            np.testing.assert_allclose(got_ys, want_ys, atol=2e-5, err_msg=f"{name} {path}")
            leaves = zip(jax.tree.leaves(got_final), jax.tree.leaves(want_final), strict=True)
            for got, want in leaves:
                np.testing.assert_allclose(got, want, atol=2e-5, err_msg=f"{name} {path}")
        for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=f"{name} {path}")


PADDED_LENGTHS = np.array([6, 3, 1, 0])
PADDED_XS = normal(1, (4, 6, FEATURES))


@functools.cache
def padded(name):
    """``{(path, reverse): (ys, final)}`` for ``PADDED_XS`` with ``PADDED_LENGTHS`` (traced),
    every path but fused, both directions, from one compiled program per cell."""
    cell, params = built(name)
    paths = [p for p in paths_of(cell) if p != "fused"]

    @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
    def run(params, xs, lengths):
        return {
            (path, reverse): rnnlab.unroll(
                cell, params, xs, lengths=lengths, reverse=reverse, path=path
            )
            for path in paths
            for reverse in (False, True)
        }

    return run(params, PADDED_XS, PADDED_LENGTHS)


@pytest.mark.parametrize("name", NAMES)
def test_padded_equals_unpadded_both_directions(name):
    cell, params = built(name)
    for (path, reverse), (ys, final) in padded(name).items():
        for b, length in enumerate(PADDED_LENGTHS):
            want_ys, want_final = hand_loop(cell, params, PADDED_XS[b : b + 1, :length],
                                            reverse=reverse)  # fmt: skip
            np.testing.assert_allclose(ys[b, :length], want_ys[0], atol=2e-5)
            np.testing.assert_array_equal(ys[b, length:], 0.0)
            for got, want in zip(jax.tree.leaves(final), jax.tree.leaves(want_final), strict=True):
                np.testing.assert_allclose(got[b], want[0], atol=2e-5, err_msg=f"{name} {path}")


@pytest.mark.parametrize("name", NAMES)
def test_packed_with_resets_equals_separate_segments(name):
    """A stream continued from a carried state: the first segment starts from ``carry``,
    and every reset restores ``reset_carry`` (the cell's initial carry), as a stream of
    documents carried across chunks needs."""
    cell, params = built(name)
    segments = [normal(2, (3, FEATURES)), normal(3, (2, FEATURES)), normal(4, (3, FEATURES))]
    packed = np.concatenate(segments)[None]
    resets = np.zeros((1, 8), bool)
    resets[0, [3, 5]] = True
    fresh = cell.initial_carry((1,))
    carried = hand_loop(cell, params, normal(9, (1, 4, FEATURES)))[1]  # any reachable state
    paths = [p for p in paths_of(cell) if p != "fused"]

    @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
    def run(params, packed, carried, resets, fresh):
        return {
            path: rnnlab.unroll(
                cell, params, packed, carry=carried, resets=resets, reset_carry=fresh, path=path
            )[0]
            for path in paths
        }

    for path, ys in run(params, packed, carried, resets, fresh).items():
        start = 0
        for index, segment in enumerate(segments):
            want, _ = hand_loop(cell, params, segment[None], carried if index == 0 else fresh)
            np.testing.assert_allclose(
                ys[0, start : start + len(segment)], want[0], atol=2e-5, err_msg=f"{name} {path}"
            )
            start += len(segment)


@pytest.mark.parametrize("name", NAMES)
def test_output_contract(name):
    """``step``'s ``y`` is ``output_of(params, new_carry, x)``; diagnostics depend on it."""
    cell, params = built(name)
    carry = jax.tree.map(
        lambda leaf: jnp.asarray(normal(5, leaf.shape)).astype(leaf.dtype) * 0.5,
        cell.initial_carry((2,)),
    )
    carry = jax.tree.map(jnp.abs, carry) if cell.linear and cell.linear.log_space else carry
    x = jnp.asarray(normal(6, (2, FEATURES)))
    new_carry, y = cell.step(params, carry, x)
    np.testing.assert_allclose(cell.output_of(params, new_carry, x), y, atol=1e-6)
    assert y.shape == (2, cell.hidden_size)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_finite_at_length_1000(name):
    cell, params = built(name)
    xs = jnp.asarray(normal(7, (1, 1000, FEATURES)))

    @jax.jit
    def grads(params):
        return jax.grad(lambda p: jnp.mean(rnnlab.unroll(cell, p, xs)[0][:, -1] ** 2))(params)

    for leaf in jax.tree.leaves(grads(params)):
        assert np.all(np.isfinite(leaf)), name


@pytest.mark.parametrize("name", NAMES)
def test_sweepable_hyperparameters_may_be_traced(name):
    spec = cells.spec(name)
    xs = jnp.asarray(normal(8, (2, 4, FEATURES)))

    @jax.jit
    def run(values):
        cell = spec.make(HIDDEN, **values)
        params = cell.init(jax.random.key(0), FEATURES)
        return rnnlab.unroll(cell, params, xs)[0]

    values = {key: jnp.asarray(spec.defaults[key], jnp.float32) for key in spec.sweepable}
    traced = run(values)
    cell = spec.make(HIDDEN)
    eager = rnnlab.unroll(cell, cell.init(jax.random.key(0), FEATURES), xs)[0]
    np.testing.assert_allclose(traced, eager, atol=1e-5)


LINEAR = [name for name in NAMES if built(name)[0].linear is not None]
# (dtype, batch shape, reverse, lengths?): each compiles once per cell, so three cover
# both dtypes, both directions (in place, and per sequence within lengths) and 0, 1 and
# 2 batch dimensions.
CONFIGURATIONS = [("float64", (2, 2), False, True), ("float64", (), True, False),
                  ("float32", (3,), True, True)]  # fmt: skip
TOLERANCE = {"float32": 1e-5, "float64": 1e-10}
TIME = 7


@functools.cache
def both_paths(name, dtype_name):
    """The cell in ``dtype``, its params, and one jitted function giving both paths'
    values and gradients with respect to params, inputs and the initial carry."""
    dtype = jnp.dtype(dtype_name)
    spec = cells.spec(name)
    options = {"param_dtype": dtype} if "param_dtype" in spec.defaults else {}
    cell = spec.make(HIDDEN, **options)
    params = jax.tree.map(np.asarray, cell.init(jax.random.key(3), FEATURES))

    @functools.partial(jax.jit, static_argnames="reverse", compiler_options=FAST_COMPILE)
    def run(params, xs, carry, lengths, resets, reset_carry, weights, reverse):
        results = {}
        for path in ("sequential", "parallel"):

            def loss(params, xs, carry, path=path):
                ys, final = rnnlab.unroll(cell, params, xs, carry=carry, lengths=lengths,
                                          resets=resets, reset_carry=reset_carry,
                                          reverse=reverse, path=path)  # fmt: skip
                return jnp.sum(jnp.sin(ys) * weights) + jnp.sum(jnp.abs(final) ** 2), (ys, final)

            grad = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)
            (_, values), grads = grad(params, xs, carry)
            results[path] = (values, grads)
        return results

    return cell, params, run


@pytest.mark.parametrize("name", LINEAR)
@settings(max_examples=4, deadline=None)
@given(data=st.data())
def test_parallel_equals_sequential(name, data):
    dtype, batch_shape, reverse, with_lengths = data.draw(st.sampled_from(CONFIGURATIONS))
    lengths = None
    if with_lengths:
        lengths = data.draw(hnp.arrays(np.int64, batch_shape, elements=st.integers(0, TIME)))
    resets = data.draw(hnp.arrays(np.bool_, (*batch_shape, TIME)))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    with jax.enable_x64(dtype == "float64"):
        cell, params, run = both_paths(name, dtype)
        carry_template = jax.eval_shape(lambda: cell.initial_carry(batch_shape))
        carry = rng.standard_normal(carry_template.shape)  # any sign
        if jnp.issubdtype(carry_template.dtype, jnp.complexfloating):
            carry = carry + 1j * rng.standard_normal(carry_template.shape)
        carry = carry.astype(carry_template.dtype)
        real = jnp.finfo(carry_template.dtype).dtype
        xs = (2 * rng.standard_normal((*batch_shape, TIME, FEATURES))).astype(real)
        weights = rng.standard_normal((*batch_shape, TIME, cell.hidden_size)).astype(real)
        # Resets restore a carry of their own (a stream's fresh start), of any sign too.
        reset_carry = (rng.standard_normal(carry_template.shape) * 0.5).astype(carry.dtype)
        results = run(params, xs, carry, lengths, resets, reset_carry, weights, reverse=reverse)
    tolerance = TOLERANCE[dtype]
    want, got = results["sequential"], results["parallel"]
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        scale = max(1.0, float(np.max(np.abs(b))))
        np.testing.assert_allclose(a, b, rtol=0, atol=tolerance * scale, err_msg=name)


@pytest.mark.parametrize("name", NAMES)
def test_bad_sizes_and_unknown_hyperparameters_raise_naming_them(name):
    """Oracle: the documented ValueError naming the argument, for every registered cell."""
    for hidden_size in (0, -2, 2.5, True):
        with pytest.raises(ValueError, match="hidden_size"):
            cells.make(name, hidden_size)
    for input_size in (0, -1):
        with pytest.raises(ValueError, match="input_size"):
            cells.make(name, HIDDEN).init(jax.random.key(0), input_size)
    with pytest.raises(ValueError, match=f"cell '{name}' takes no hyperparameter 'leek'"):
        cells.make(name, HIDDEN, leek=1.0)
