"""``rnnlab.unroll`` against independent paths.

Oracles: a hand-stepped Python loop of ``cell.step``; each sequence unrolled alone at
its true length; the time-flipped sequence; the segments between resets run one by
one; central finite differences in float64; and Python loops over the batch for vmap.

Everything runs under strict dtype promotion (as equinox's tests do).  Inputs come
from NumPy's generator and every unroll is jitted with the cell static, so hypothesis
examples reuse a small set of compiled shapes.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import rnnlab

HIDDEN, FEATURES, TIME = 4, 3, 5
CELLS = {
    "rnn": rnnlab.rnn(HIDDEN, recurrent_init="uniform", bias_init="uniform"),
    "lstm": rnnlab.lstm(HIDDEN, bias_init="uniform"),
    "gru": rnnlab.gru(HIDDEN, bias_init="uniform"),
}
BATCH_SHAPES = [(), (3,), (2, 3)]


@functools.cache
def params_of(name):
    return jax.jit(CELLS[name].init, static_argnums=1)(jax.random.key(0), FEATURES)


# Test data and results are NumPy arrays: indexing, slicing and flipping them compiles
# nothing, while each eager jax op on a new shape costs a compilation.


def normal(seed, shape):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def random_carry(cell, batch_shape, seed):
    """A non-zero carry, so that "starts from the given carry" is observable."""
    shapes = jax.eval_shape(lambda: cell.initial_carry(batch_shape))
    leaves, treedef = jax.tree.flatten(shapes)
    return treedef.unflatten([normal(seed + i, leaf.shape) for i, leaf in enumerate(leaves)])


_jitted_unroll = jax.jit(
    rnnlab.unroll,
    static_argnums=0,
    static_argnames=("reverse", "unroll", "remat", "return_carries"),
)


def jit_unroll(cell, params, xs, **options):
    """:func:`rnnlab.unroll`, jitted with the cell static, returning NumPy arrays."""
    return jax.tree.map(np.asarray, _jitted_unroll(cell, params, xs, **options))


def hand_unroll(cell, params, xs, carry, *, reverse=False):
    """The oracle: a Python loop over ``t`` calling ``cell.step`` on ``xs[..., t, :]``.

    Returns ``(ys [..., T, H], final_carry, carries [..., T, *])`` like ``unroll``.
    """
    step = jax.jit(cell.step)
    steps = xs.shape[-2]
    batch_ndim = xs.ndim - 2
    ys, carries = [None] * steps, [None] * steps
    for t in reversed(range(steps)) if reverse else range(steps):
        carry, ys[t] = jax.tree.map(np.asarray, step(params, carry, xs[..., t, :]))
        carries[t] = carry
    stacked = jax.tree.map(lambda *leaves: np.stack(leaves, axis=batch_ndim), *carries)
    return np.stack(ys, axis=-2), carry, stacked


def assert_trees_close(actual, expected, atol=1e-6):
    chex.assert_trees_all_equal_structs(actual, expected)
    chex.assert_trees_all_close(actual, expected, atol=atol, rtol=1e-6)


def tree_index(tree, index):
    return jax.tree.map(lambda leaf: leaf[index], tree)


# -- the hand-stepped loop ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CELLS))
@pytest.mark.parametrize("batch_shape", BATCH_SHAPES, ids=str)
def test_unroll_equals_hand_stepped_loop(name, batch_shape):
    """Oracle: a Python loop of ``cell.step`` (no scan, no hoisted projection), forward
    and reverse, with a non-zero initial carry: every intermediate carry
    (``return_carries``), and the outputs and final carry of the default call (the fast
    path of :mod:`rnnlab.fused` where it applies)."""
    cell, params = CELLS[name], params_of(name)
    xs = normal(1, (*batch_shape, TIME, FEATURES))
    carry = random_carry(cell, batch_shape, 2)

    @jax.jit  # one compilation for the four calls
    def unrolls(params, xs, carry):
        return [
            [
                rnnlab.unroll(cell, params, xs, carry=carry, reverse=reverse, return_carries=True),
                rnnlab.unroll(cell, params, xs, carry=carry, reverse=reverse),
            ]
            for reverse in (False, True)
        ]

    actual = jax.tree.map(np.asarray, unrolls(params, xs, carry))
    for reverse, (with_carries, default) in zip((False, True), actual, strict=True):
        expected = hand_unroll(cell, params, xs, carry, reverse=reverse)
        chex.assert_shape(default[0], (*batch_shape, TIME, HIDDEN))
        assert_trees_close(with_carries, expected)
        assert_trees_close(default, expected[:2])


# -- padded equals unpadded -----------------------------------------------------------------


# A few shapes with 0-2 batch dimensions, and one cell with a tuple carry and one with an
# array carry, keep the number of compilations (the cost of these tests) small.
PROPERTY_BATCH_SHAPES = st.sampled_from([(), (3,), (1, 3), (2, 3)])
PROPERTY_CELLS = st.sampled_from(["lstm", "gru"])
lengths_of = functools.partial(hnp.arrays, np.int32, elements=st.integers(0, TIME))


@st.composite
def padded_batches(draw):
    """``(cell name, lengths [*batch] in [0, T], seed)``."""
    lengths = draw(lengths_of(draw(PROPERTY_BATCH_SHAPES)))
    return draw(PROPERTY_CELLS), lengths, draw(st.integers(0, 2**16))


EDGE_LENGTHS = [
    ("lstm", np.array([0, TIME, 2], np.int32), 0),
    ("gru", np.array([[TIME, 0, 1], [0, 3, TIME]], np.int32), 1),
    ("lstm", np.array(0, np.int32), 2),
]


def unpadded_oracle(cell, params, xs, carry, reverse):
    """One unbatched sequence ``[L, F]``; reverse is the forward unroll of the flipped
    sequence with its outputs flipped back."""
    if not reverse:
        return jit_unroll(cell, params, xs, carry=carry)
    ys, final = jit_unroll(cell, params, xs[::-1], carry=carry)
    return ys[::-1], final


def check_padded_equals_unpadded(name, lengths, seed, reverse):
    cell, params = CELLS[name], params_of(name)
    batch_shape = lengths.shape
    xs = normal(seed, (*batch_shape, TIME, FEATURES))
    carry = random_carry(cell, batch_shape, seed + 1)
    ys, final = jit_unroll(cell, params, xs, carry=carry, lengths=lengths, reverse=reverse)
    chex.assert_shape(ys, (*batch_shape, TIME, HIDDEN))
    for index in np.ndindex(batch_shape):
        length = int(lengths[index])
        expected_ys, expected_final = unpadded_oracle(
            cell, params, xs[index][:length], tree_index(carry, index), reverse
        )
        np.testing.assert_allclose(ys[index][:length], expected_ys, atol=1e-6, rtol=1e-6)
        np.testing.assert_array_equal(ys[index][length:], 0.0)
        assert_trees_close(tree_index(final, index), expected_final)


@given(padded_batches())
@example(EDGE_LENGTHS[0])
@example(EDGE_LENGTHS[1])
@example(EDGE_LENGTHS[2])
def test_padded_equals_unpadded_forward(case):
    """Oracle: each sequence unrolled alone at its true length ``xs[..., :L, :]``; padded
    outputs are exact zeros and the final carry is the unpadded one."""
    check_padded_equals_unpadded(*case, reverse=False)


@given(padded_batches())
@example(EDGE_LENGTHS[0])
@example(EDGE_LENGTHS[1])
@example(EDGE_LENGTHS[2])
def test_padded_equals_unpadded_reverse(case):
    """Oracle: each sequence cut to its true length, flipped, unrolled forwards and
    flipped back; padded outputs are exact zeros, and the final carry is the one after
    consuming step 0."""
    check_padded_equals_unpadded(*case, reverse=True)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_reverse_equals_flipped_sequence(name):
    """Oracle: without lengths, ``reverse=True`` equals the forward unroll of
    ``xs[..., ::-1, :]`` with the outputs flipped back, in two batch dimensions."""
    cell, params = CELLS[name], params_of(name)
    xs = normal(3, (2, 3, TIME, FEATURES))
    ys, final = jit_unroll(cell, params, xs, reverse=True)
    flipped_ys, flipped_final = jit_unroll(cell, params, xs[..., ::-1, :])
    np.testing.assert_allclose(ys, flipped_ys[..., ::-1, :], atol=1e-6)
    assert_trees_close(final, flipped_final)


# -- resets ---------------------------------------------------------------------------------


@st.composite
def reset_batches(draw):
    """``(cell name, resets [*batch, T], lengths [*batch] or None, seed)``."""
    batch_shape = draw(PROPERTY_BATCH_SHAPES)
    resets = draw(hnp.arrays(np.bool_, (*batch_shape, TIME)))
    lengths = draw(st.none() | lengths_of(batch_shape))
    return draw(PROPERTY_CELLS), resets, lengths, draw(st.integers(0, 2**16))


def segments_oracle(cell, params, xs, carry, resets, reverse):
    """One unbatched sequence ``[L, F]`` cut before every ``t > 0`` with ``resets[t]``;
    each segment is unrolled alone from ``carry`` by :func:`unpadded_oracle`."""
    bounds = [0, *[t for t in range(1, xs.shape[0]) if resets[t]], xs.shape[0]]
    outputs, finals = [], []
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        ys, final = unpadded_oracle(cell, params, xs[start:stop], carry, reverse)
        outputs.append(ys)
        finals.append(final)
    # The last segment consumed is the last one going forwards and the first in reverse.
    return np.concatenate(outputs), finals[0 if reverse else -1]


def check_resets_equal_segments(name, resets, lengths, seed, reverse):
    cell, params = CELLS[name], params_of(name)
    batch_shape = resets.shape[:-1]
    xs = normal(seed, (*batch_shape, TIME, FEATURES))
    carry = random_carry(cell, batch_shape, seed + 1)
    ys, final = jit_unroll(
        cell, params, xs, carry=carry, lengths=lengths, resets=resets, reverse=reverse
    )
    for index in np.ndindex(batch_shape):
        length = TIME if lengths is None else int(lengths[index])
        expected_ys, expected_final = segments_oracle(
            cell, params, xs[index][:length], tree_index(carry, index), resets[index], reverse
        )
        np.testing.assert_allclose(ys[index][:length], expected_ys, atol=1e-6, rtol=1e-6)
        np.testing.assert_array_equal(ys[index][length:], 0.0)
        assert_trees_close(tree_index(final, index), expected_final)


RESET_EDGES = [
    ("lstm", np.array([[0, 0, 1, 0, 1], [1, 1, 1, 1, 1]], bool), np.array([4, 2], np.int32), 0),
    ("gru", np.array([[0, 0, 0, 1, 1], [0, 1, 0, 0, 0]], bool), np.array([3, 0], np.int32), 1),
]


@given(reset_batches())
@example(RESET_EDGES[0])
@example(RESET_EDGES[1])
def test_resets_equal_separate_segments_forward(case):
    """Oracle: the segments between resets, each unrolled alone from the initial carry
    and concatenated; resets at or beyond a sequence's length change nothing."""
    check_resets_equal_segments(*case, reverse=False)


@given(reset_batches())
@example(RESET_EDGES[0])
@example(RESET_EDGES[1])
def test_resets_equal_separate_segments_reverse(case):
    """Oracle: the segments between resets, each unrolled alone in reverse from the
    initial carry; the final carry is the first segment's."""
    check_resets_equal_segments(*case, reverse=True)


# -- remat, unroll, transformations ------------------------------------------------------


@pytest.mark.parametrize(
    "name,masked", [("rnn", False), ("lstm", False), ("gru", False), ("lstm", True)]
)
def test_remat_and_unroll_match_defaults_in_value_and_gradient(name, masked):
    """Oracle: the default ``unroll(remat=False, unroll=1)``; ``remat=True`` and
    ``unroll=2`` (T=5, so with a remainder) change neither values nor gradients, in
    reverse, with or without (``masked``) lengths and resets.  Without them the default
    is the fast path of :mod:`rnnlab.fused` and the others the generic scan."""
    cell, params = CELLS[name], params_of(name)
    xs = normal(4, (3, TIME, FEATURES))
    weights = normal(5, (3, TIME, HIDDEN))
    masks = {}
    if masked:
        resets = np.zeros((3, TIME), bool)
        resets[:, 2] = True
        masks = dict(lengths=np.array([TIME, 2, 0], np.int32), resets=resets)

    def loss(params, xs, **options):
        ys, final = rnnlab.unroll(cell, params, xs, reverse=True, **masks, **options)
        return jnp.sum(ys * weights) + sum(jnp.sum(leaf) for leaf in jax.tree.leaves(final))

    @jax.jit  # one compilation for the three variants
    def values_and_grads(params, xs):
        return [
            jax.value_and_grad(functools.partial(loss, **options), (0, 1))(params, xs)
            for options in ({}, {"remat": True}, {"unroll": 2})
        ]

    default, *others = values_and_grads(params, xs)
    for other in others:
        assert_trees_close(other, default, atol=1e-5)


def test_padding_values_reach_neither_outputs_nor_gradients():
    """Oracle: the same batch padded with zeros.  NaN and inf in the padded steps change
    neither the outputs nor the gradients, forwards or in reverse."""
    cell, params = CELLS["lstm"], params_of("lstm")
    lengths = np.array([2, TIME, 0], np.int32)
    clean = normal(9, (3, TIME, FEATURES))
    clean[np.arange(TIME) >= lengths[:, None]] = 0.0
    dirty = clean.copy()
    dirty[0, 2:] = np.nan
    dirty[2] = np.inf

    def loss(params, xs):
        forward = rnnlab.unroll(cell, params, xs, lengths=lengths)
        backward = rnnlab.unroll(cell, params, xs, lengths=lengths, reverse=True)
        outputs = (forward, backward)
        return sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree.leaves(outputs)), outputs

    value_and_grad = jax.jit(jax.value_and_grad(loss, (0, 1), has_aux=True))
    expected = jax.tree.map(np.asarray, value_and_grad(params, clean))
    actual = jax.tree.map(np.asarray, value_and_grad(params, dirty))
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(actual))
    assert_trees_close(actual, expected, atol=0)


def test_jit_vmap_grad_compose():
    """Oracle: a Python loop over examples.  ``jit(vmap(grad))`` of a per-example loss
    (traced lengths) equals the per-example gradients one at a time, and ``vmap`` of an
    unbatched unroll equals the batched unroll."""
    cell, params = CELLS["lstm"], params_of("lstm")
    xs = normal(6, (3, TIME, FEATURES))
    lengths = np.array([1, TIME, 3], np.int32)

    def loss(params, x, length):
        ys, final = rnnlab.unroll(cell, params, x, lengths=length)
        return jnp.sum(ys**2) + jnp.sum(final.c)

    per_example = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0, 0)))(params, xs, lengths)
    per_example = jax.tree.map(np.asarray, per_example)
    grad = jax.jit(jax.grad(loss))
    for index in range(3):
        assert_trees_close(tree_index(per_example, index), grad(params, xs[index], lengths[index]))

    vmapped = jax.vmap(lambda x, length: rnnlab.unroll(cell, params, x, lengths=length))
    assert_trees_close(jax.jit(vmapped)(xs, lengths), jit_unroll(cell, params, xs, lengths=lengths))


@pytest.mark.parametrize(
    "factory,reverse,masked",
    [
        (rnnlab.rnn, False, False),
        (rnnlab.lstm, True, True),
        (rnnlab.gru, True, False),
        (rnnlab.gru, False, True),
    ],
)
def test_gradient_matches_central_finite_differences_in_float64(factory, reverse, masked):
    """Oracle: central finite differences ``(L(p + e d) - L(p - e d)) / 2e`` in float64,
    along random directions in params and inputs; through lengths and resets when
    ``masked`` (the generic scan), else through the fast path of :mod:`rnnlab.fused`."""
    with jax.enable_x64(True):
        cell = factory(HIDDEN, bias_init="uniform", param_dtype=jnp.float64)
        init = jax.jit(cell.init, static_argnums=1)
        params = jax.tree.map(np.asarray, init(jax.random.key(1), FEATURES))
        rng = np.random.default_rng(7)
        xs = rng.standard_normal((2, TIME, FEATURES))
        weights = rng.standard_normal((2, TIME, HIDDEN))
        options = {}
        if masked:
            options = dict(
                lengths=np.array([TIME, 3]),
                resets=np.array([[0, 0, 1, 0, 0], [0, 1, 0, 0, 0]], bool),
            )

        # One compilation serves both the gradient and the finite differences.
        @jax.jit
        @functools.partial(jax.value_and_grad, argnums=(0, 1))
        def loss(params, xs):
            ys, final = rnnlab.unroll(cell, params, xs, reverse=reverse, **options)
            return jnp.sum(jnp.tanh(ys) * weights) + jnp.sum(jax.tree.leaves(final)[-1] ** 2)

        gradient = loss(params, xs)[1]
        epsilon = 1e-6
        for seed in range(3):
            leaves, treedef = jax.tree.flatten((params, xs))
            direction = treedef.unflatten(
                [np.random.default_rng(seed).standard_normal(x.shape) for x in leaves]
            )
            plus, minus = (
                jax.tree.map(lambda p, d, s=sign: p + s * epsilon * d, (params, xs), direction)
                for sign in (1.0, -1.0)
            )
            numeric = (loss(*plus)[0] - loss(*minus)[0]) / (2 * epsilon)
            analytic = sum(
                np.vdot(g, d)
                for g, d in zip(jax.tree.leaves(gradient), jax.tree.leaves(direction), strict=True)
            )
            np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


def test_no_retracing_on_repeated_calls_with_the_same_shapes():
    """Oracle: ``chex.assert_max_traces``: new values of xs, carry and lengths with the
    same shapes reuse the compiled unroll; a new T traces again (so the check can fail)."""
    cell, params = CELLS["gru"], params_of("gru")

    @jax.jit
    @chex.assert_max_traces(n=1)
    def run(params, xs, carry, lengths):
        return rnnlab.unroll(cell, params, xs, carry=carry, lengths=lengths)

    for seed in range(3):
        xs = normal(seed, (2, TIME, FEATURES))
        run(params, xs, random_carry(cell, (2,), seed), np.array([seed, TIME], np.int32))
    with pytest.raises(AssertionError, match="traced"):
        xs = normal(0, (2, TIME + 1, FEATURES))
        run(params, xs, random_carry(cell, (2,), 0), np.array([1, 2], np.int32))


@pytest.mark.parametrize("dtype", [np.int8, np.uint16])
def test_any_integer_lengths_dtype_under_strict_promotion(dtype):
    """Oracle: int32 lengths.  Any integer dtype gives the same result, with strict dtype
    promotion on (the fixture), forwards and in reverse with resets."""
    cell, params = CELLS["rnn"], params_of("rnn")
    xs = normal(8, (3, TIME, FEATURES))
    resets = np.zeros((3, TIME), bool)
    resets[:, 2] = True
    for reverse in (False, True):
        options = dict(resets=resets, reverse=reverse)
        expected = jit_unroll(cell, params, xs, lengths=np.array([0, 2, TIME], np.int32), **options)
        actual = jit_unroll(cell, params, xs, lengths=np.array([0, 2, TIME], dtype), **options)
        assert_trees_close(actual, expected, atol=0)


# -- bad inputs -----------------------------------------------------------------------------


def bad_inputs():
    """``(keyword arguments of unroll, pattern the ValueError must match)``, by description."""
    xs = np.zeros((2, TIME, FEATURES), np.float32)
    cases = [
        ("feature size", dict(xs=np.zeros((2, TIME, FEATURES + 1))), r"xs has feature size 4"),
        ("xs 1-d", dict(xs=np.zeros(FEATURES)), r"xs must have shape \[\.\.\., T, F\]"),
        ("xs 0-d", dict(xs=np.float32(1.0)), r"xs must have shape"),
        ("carry batch", dict(xs=xs, carry=CELLS["lstm"].initial_carry((3,))), r"carry has"),
        ("carry tree", dict(xs=xs, carry=np.zeros((2, HIDDEN), np.float32)), r"carry has"),
        ("lengths batch", dict(xs=xs, lengths=np.array([1, 2, 3])), r"lengths has shape"),
        ("lengths negative", dict(xs=xs, lengths=np.array([-1, 2])), r"lengths must lie in"),
        ("lengths > T", dict(xs=xs, lengths=np.array([1, TIME + 1])), r"lengths must lie in"),
        ("lengths float", dict(xs=xs, lengths=np.array([1.0, 2.0])), r"lengths must be integ"),
        ("lengths bool", dict(xs=xs, lengths=np.array([True, False])), r"lengths must be integ"),
        ("resets batch", dict(xs=xs, resets=np.zeros((3, TIME), bool)), r"resets has shape"),
        ("resets time", dict(xs=xs, resets=np.zeros((2, TIME - 1), bool)), r"resets has shape"),
    ]
    return [
        pytest.param(arguments, pattern, id=description)
        for description, arguments, pattern in cases
    ]


@pytest.mark.parametrize("arguments,pattern", bad_inputs())
def test_bad_input_raises_documented_value_error(arguments, pattern):
    """Oracle: the documented ValueError, naming the argument."""
    with pytest.raises(ValueError, match=pattern):
        rnnlab.unroll(CELLS["lstm"], params_of("lstm"), **arguments)
