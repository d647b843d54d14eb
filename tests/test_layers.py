"""``rnnlab.layers`` against manual compositions of :func:`rnnlab.unroll`.

Oracles: forward plus reverse unrolls merged by hand (bidirectional), a hand-written
chain of unrolls (stacked), and pass-through probe layers that expose the dropout mask
between layers.  Everything runs under strict dtype promotion.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnlab
from rnnlab.layers import BidirectionalCarry, Layer

FEATURES, TIME = 3, 5
LSTM = rnnlab.lstm(4, bias_init="uniform")
GRU = rnnlab.gru(3, bias_init="uniform")
RNN = rnnlab.rnn(4, recurrent_init="uniform", bias_init="uniform")
LENGTHS = np.array([[TIME, 0, 2], [1, 4, TIME]], np.int32)  # batch shape [2, 3]


def normal(seed, shape):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


XS = normal(0, (*LENGTHS.shape, TIME, FEATURES))

_jitted_unroll = jax.jit(rnnlab.unroll, static_argnums=0, static_argnames=("reverse",))
_jitted_apply = jax.jit(
    lambda layer, params, xs, **options: layer.apply(params, xs, **options),
    static_argnums=0,
    static_argnames=("deterministic",),
)


def unroll(cell, params, xs, **options):
    """The oracle's building block: jitted :func:`rnnlab.unroll`, as NumPy arrays."""
    return jax.tree.map(np.asarray, _jitted_unroll(cell, params, xs, **options))


def apply(layer, params, xs, **options):
    """``layer.apply`` jitted with the layer static, as NumPy arrays."""
    return jax.tree.map(np.asarray, _jitted_apply(layer, params, xs, **options))


def init(layer, seed=0):
    # Eager: each random op is compiled once per shape, and the shapes repeat across layers.
    return layer.init(jax.random.key(seed), FEATURES)


def assert_trees_close(actual, expected, atol=1e-6):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(a, e, atol=atol, rtol=1e-6)


def assert_padding_is_zero(ys, lengths):
    padded = np.arange(ys.shape[-2]) >= lengths[..., None]
    np.testing.assert_array_equal(ys[padded], 0.0)


def passthrough(size=FEATURES):
    """A probe layer returning its inputs, so a stack of them exposes its dropout."""

    def apply(params, xs, *, carry=None, lengths=None, key=None, deterministic=False, **opts):
        return xs, ()

    return Layer(
        name="passthrough",
        kind="passthrough",
        output_size=size,
        init=lambda key, input_size: {},
        initial_carry=lambda batch_shape=(): (),
        apply=apply,
    )


def assert_ratios_in(ratios, allowed):
    """Every ratio is one of ``allowed`` (to 1e-5), and each of them occurs."""
    allowed = np.asarray(allowed)
    nearest = np.abs(ratios[..., None] - allowed).argmin(axis=-1)
    np.testing.assert_allclose(ratios, allowed[nearest], atol=1e-5)
    assert set(np.unique(nearest)) == set(range(len(allowed)))


# -- one direction and bidirectional ------------------------------------------------------


def test_recurrent_layer_is_unroll():
    """Oracle: :func:`rnnlab.unroll` with the same params, lengths and direction."""
    for reverse in (False, True):
        layer = rnnlab.recurrent(GRU, reverse=reverse)
        params = init(layer)
        expected = unroll(GRU, params, XS, lengths=LENGTHS, reverse=reverse)
        assert layer.output_size == expected[0].shape[-1]
        assert_trees_close(apply(layer, params, XS, lengths=LENGTHS), expected)


MERGES = {
    "concat": (lambda f, b: np.concatenate([f, b], axis=-1), 8),
    "sum": (lambda f, b: f + b, 4),
    "mean": (lambda f, b: (f + b) / 2, 4),
}


@pytest.mark.parametrize("merge", [*MERGES, "callable"])
def test_bidirectional_equals_forward_plus_reverse_unrolls(merge):
    """Oracle: ``unroll(params["forward"])`` and ``unroll(params["backward"],
    reverse=True)`` with the same lengths, merged by NumPy; the final carry is the pair of
    final carries, padded steps stay zero, and the two directions get their own params."""
    if merge == "callable":
        layer = rnnlab.bidirectional(LSTM, merge=lambda f, b: f * b, merged_size=4)
        numpy_merge, size = (lambda f, b: f * b), 4
    else:
        layer = rnnlab.bidirectional(LSTM, merge=merge)
        numpy_merge, size = MERGES[merge]
    params = init(layer)
    assert not np.allclose(params["forward"]["weight_hh"], params["backward"]["weight_hh"])
    forward, forward_final = unroll(LSTM, params["forward"], XS, lengths=LENGTHS)
    backward, backward_final = unroll(LSTM, params["backward"], XS, lengths=LENGTHS, reverse=True)
    ys, final = apply(layer, params, XS, lengths=LENGTHS)
    assert layer.output_size == size == ys.shape[-1]
    np.testing.assert_allclose(ys, numpy_merge(forward, backward), atol=1e-6)
    assert_trees_close(final, BidirectionalCarry(forward_final, backward_final))
    assert_padding_is_zero(ys, LENGTHS)


def test_bidirectional_with_its_own_backward_cell_and_carry():
    """Oracle: the manual composition with a different backward cell (GRU, ``H=3``) and a
    given carry."""
    layer = rnnlab.bidirectional(LSTM, GRU)
    params = init(layer)
    carry = layer.initial_carry(LENGTHS.shape)
    carry = BidirectionalCarry(
        rnnlab.LSTMCarry(*(normal(seed, leaf.shape) for seed, leaf in enumerate(carry.forward))),
        normal(2, carry.backward.shape),
    )
    forward, forward_final = unroll(LSTM, params["forward"], XS, carry=carry.forward)
    backward, backward_final = unroll(
        GRU, params["backward"], XS, carry=carry.backward, reverse=True
    )
    ys, final = apply(layer, params, XS, carry=carry)
    assert layer.output_size == 7
    np.testing.assert_allclose(ys, np.concatenate([forward, backward], axis=-1), atol=1e-6)
    assert_trees_close(final, BidirectionalCarry(forward_final, backward_final))


# -- stacked -------------------------------------------------------------------------------


def test_stacked_equals_manual_chain():
    """Oracle: a hand-written chain of unrolls, each consuming the previous outputs with
    the same lengths; params and carries are per-layer tuples."""
    layer = rnnlab.stacked([LSTM, rnnlab.bidirectional(GRU, merge="sum"), RNN])
    params = init(layer)
    assert params[1]["forward"]["weight_ih"].shape == (4, 9)
    assert params[2]["weight_ih"].shape == (3, 4)
    ys, finals = apply(layer, params, XS, lengths=LENGTHS)

    hidden, first = unroll(LSTM, params[0], XS, lengths=LENGTHS)
    forward, second_forward = unroll(GRU, params[1]["forward"], hidden, lengths=LENGTHS)
    backward, second_backward = unroll(
        GRU, params[1]["backward"], hidden, lengths=LENGTHS, reverse=True
    )
    expected, third = unroll(RNN, params[2], forward + backward, lengths=LENGTHS)
    assert layer.output_size == 4
    np.testing.assert_allclose(ys, expected, atol=1e-6)
    assert_trees_close(finals, (first, BidirectionalCarry(second_forward, second_backward), third))
    assert_padding_is_zero(ys, LENGTHS)


# -- dropout -------------------------------------------------------------------------------


def test_dropout_acts_between_layers_only():
    """Oracle: pass-through probes.  Three probes give ``xs`` times two independent
    inverted-dropout masks at rate 0.5: ratios ``{0, 4}`` with about 1/4 kept (a mask on
    the input or the output would give 8, a reused mask 1/2 kept).  Behind an LSTM the
    mask multiplies the LSTM's own outputs by ``{0, 1/(1-rate)}``.  A one-layer stack has
    no dropout at all."""
    key = jax.random.key(1)
    xs = normal(3, (64, TIME, FEATURES))
    probes = rnnlab.stacked([passthrough()] * 3, dropout_rate=0.5)
    ratios = apply(probes, ({},) * 3, xs, key=key)[0] / xs
    assert_ratios_in(ratios, [0.0, 4.0])
    assert abs(np.mean(ratios != 0) - 0.25) < 0.05

    rate = 0.25
    lstm_then_probe = rnnlab.stacked([LSTM, passthrough(4)], dropout_rate=rate)
    params = init(lstm_then_probe)
    ys = apply(lstm_then_probe, params, XS, key=key)[0]
    ratios = ys / unroll(LSTM, params[0], XS)[0]
    assert_ratios_in(ratios, [0.0, 1.0 / (1.0 - rate)])

    alone = rnnlab.stacked([LSTM], dropout_rate=0.9)
    np.testing.assert_array_equal(
        apply(alone, (params[0],), XS, key=key)[0], unroll(LSTM, params[0], XS)[0]
    )


def test_dropout_is_deterministic_given_the_key_and_off_when_deterministic():
    """Oracle: the same key gives the same outputs, another key others;
    ``deterministic=True`` equals the stack without dropout (no key needed); padded
    outputs stay exact zeros through the masks."""
    layer = rnnlab.stacked([LSTM, GRU], dropout_rate=0.3)
    without_dropout = rnnlab.stacked([LSTM, GRU])
    params = init(layer)
    first = apply(layer, params, XS, lengths=LENGTHS, key=jax.random.key(2))
    again = apply(layer, params, XS, lengths=LENGTHS, key=jax.random.key(2))
    other = apply(layer, params, XS, lengths=LENGTHS, key=jax.random.key(3))
    assert_trees_close(again, first, atol=0)
    assert not np.allclose(other[0], first[0])
    assert_padding_is_zero(first[0], LENGTHS)

    expected = apply(without_dropout, params, XS, lengths=LENGTHS)
    assert not np.allclose(first[0], expected[0])
    assert_trees_close(apply(layer, params, XS, lengths=LENGTHS, deterministic=True), expected)


def test_nested_stacks_with_dropout_never_reuse_a_key():
    """Oracle: JAX's key-reuse checker (``jax.debug_key_reuse``), through a stack with
    dropout nested inside another: each layer and each mask gets its own key."""
    inner = rnnlab.stacked([GRU, GRU], dropout_rate=0.5)
    outer = rnnlab.stacked([inner, GRU], dropout_rate=0.5)
    params = init(outer)
    with jax.debug_key_reuse(True):
        ys = apply(outer, params, XS, key=jax.random.key(6))[0]
    assert ys.shape == (*LENGTHS.shape, TIME, GRU.hidden_size)


def test_dropout_rate_may_be_traced():
    """Oracle: concrete rates through the probes: a vmapped rate of 0 keeps every input,
    and 0.5 gives ratios ``{0, 2}``."""
    xs = normal(4, (16, TIME, FEATURES))

    def run(rate):
        layer = rnnlab.stacked([passthrough()] * 2, dropout_rate=rate)
        return layer.apply(({}, {}), xs, key=jax.random.key(5))[0]

    outputs = np.asarray(jax.jit(jax.vmap(run))(jnp.array([0.0, 0.5])))
    np.testing.assert_array_equal(outputs[0], xs)
    assert_ratios_in(outputs[1] / xs, [0.0, 2.0])


# -- bad inputs ----------------------------------------------------------------------------


def test_dropout_without_key_raises():
    """Oracle: the documented ValueError naming ``key`` and ``deterministic``."""
    layer = rnnlab.stacked([LSTM, GRU], dropout_rate=0.1)
    with pytest.raises(ValueError, match=r"key=.*deterministic=True"):
        layer.apply((None, None), XS)  # raised before the params are read


@pytest.mark.parametrize(
    "build,pattern",
    [
        (lambda: rnnlab.bidirectional(LSTM, merge="max"), r"merge='max' is unknown"),
        (lambda: rnnlab.bidirectional(LSTM, merge=lambda f, b: f), r"merged_size is required"),
        (lambda: rnnlab.bidirectional(LSTM, GRU, merge="sum"), r"merge='sum' needs equal"),
        (lambda: rnnlab.stacked([]), r"layers must contain"),
        (lambda: rnnlab.stacked([LSTM, "gru"]), r"expected an rnnlab Layer or Cell"),
        (lambda: rnnlab.stacked([LSTM, GRU], dropout_rate=1.0), r"dropout_rate must lie"),
        (lambda: rnnlab.stacked([LSTM, GRU], dropout_rate=-0.1), r"dropout_rate must lie"),
        (lambda: rnnlab.stacked([LSTM]).init(jax.random.key(0), 0), r"input_size"),
    ],
    ids=["merge", "merged_size", "merge sizes", "empty", "not a layer", "rate 1", "rate<0", "F=0"],
)
def test_bad_layer_arguments_raise(build, pattern):
    """Oracle: the documented ValueError, naming the argument."""
    with pytest.raises(ValueError, match=pattern):
        build()


def test_stacked_carry_of_the_wrong_length_raises():
    """Oracle: the ValueError naming ``carry`` and the number of layers."""
    layer = rnnlab.stacked([LSTM, GRU])
    with pytest.raises(ValueError, match=r"carry has 1 entries but the stack has 2"):
        layer.apply((None, None), XS, carry=(None,))  # raised before the params are read
