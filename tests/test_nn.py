"""The Flax NNX modules of rnnlab.nn against the pure functions they wrap."""

import doctest

import chex
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

import rnnlab
import rnnlab.interop
from rnnlab import nn

XS = jax.random.normal(jax.random.key(0), (3, 6, 4))
LENGTHS = jnp.array([6, 2, 4])


def _assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize(
    "build_module, cell",
    [
        (
            lambda rngs: nn.LSTM(4, 5, forget_bias=2.0, rngs=rngs, recurrent_init="orthogonal"),
            rnnlab.lstm(5, forget_bias=2.0, recurrent_init="orthogonal"),
        ),
        (
            lambda rngs: nn.GRU(4, 5, rngs=rngs, bias_init="uniform"),
            rnnlab.gru(5, bias_init="uniform"),
        ),
        (
            lambda rngs: nn.RNN(
                4, 5, "relu", rngs=rngs, recurrent_init="identity", recurrent_scale=0.5
            ),
            rnnlab.rnn(5, activation="relu", recurrent_init="identity", recurrent_scale=0.5),
        ),
    ],
    ids=["lstm", "gru", "rnn"],
)
def test_cell_modules_equal_the_pure_path(build_module, cell):
    """A module's params equal the factory's ``cell.init`` with the same key and options,
    and its calls (lengths, reverse, carry, resets) equal ``rnnlab.unroll``."""
    module = build_module(nnx.Rngs(0))
    params = cell.init(nnx.Rngs(0).params(), 4)
    _assert_trees_equal(module.param_values(), params)

    carry = jax.tree.map(lambda a: a + 0.1, cell.initial_carry((3,)))
    resets = jnp.zeros((3, 6), bool).at[0, 3].set(True)
    for options in [
        dict(lengths=LENGTHS, reverse=True, carry=carry),
        dict(resets=resets, carry=carry),
    ]:
        ys, final = module(XS, return_carry=True, **options)
        expected_ys, expected_final = rnnlab.unroll(cell, params, XS, **options)
        _assert_trees_equal((ys, final), (expected_ys, expected_final))
    _assert_trees_equal(module(XS), rnnlab.unroll(cell, params, XS)[0])


def _deep_model(rngs, dropout_rate=0.5):
    bidirectional = nn.Bidirectional(nn.GRU(4, 3, rngs=rngs), nn.GRU(4, 3, rngs=rngs))
    return nn.Stacked([bidirectional, nn.LSTM(6, 5, rngs=rngs)], dropout_rate=dropout_rate)


def test_stacked_bidirectional_under_nnx_jit_equals_the_pure_layer():
    """Under ``nnx.jit(nnx.grad(...))``, Stacked/Bidirectional outputs equal
    ``stacked``/``bidirectional`` ``Layer.apply`` with the same params and dropout
    key, every Param gets a gradient, params are shared with the sub-modules, and
    new param values do not retrace."""
    rngs = nnx.Rngs(0)
    forward, backward = nn.GRU(4, 3, rngs=rngs), nn.GRU(4, 3, rngs=rngs)
    top = nn.LSTM(6, 5, rngs=rngs)
    model = nn.Stacked([nn.Bidirectional(forward, backward), top], dropout_rate=0.5)
    assert model.output_size == 5 and model.input_size == 4
    params = (
        {"forward": forward.param_values(), "backward": backward.param_values()},
        top.param_values(),
    )
    _assert_trees_equal(model.param_values(), params)
    layer = rnnlab.stacked(
        [rnnlab.bidirectional(rnnlab.gru(3), rnnlab.gru(3)), rnnlab.lstm(5)], dropout_rate=0.5
    )
    key = jax.random.key(7)

    def loss(module):
        ys, final = module(XS, lengths=LENGTHS, key=key, return_carry=True)
        return jnp.sum(ys**2) + jnp.sum(final[1].c), (ys, final)

    step = nnx.jit(nnx.grad(chex.assert_max_traces(loss, n=1), has_aux=True))
    step(model)
    top.params["bias_hh"][...] = top.params["bias_hh"][...] + 0.5  # new values, no retrace
    params = model.param_values()
    grads, outputs = step(model)
    expected = jax.jit(lambda p: layer.apply(p, XS, lengths=LENGTHS, key=key))(params)
    assert jax.tree.structure(outputs) == jax.tree.structure(expected)
    for a, b in zip(jax.tree.leaves(outputs), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    # The pure gradients are checked against torch's autograd in test_torch_parity;
    # here every Param must receive a finite, non-zero gradient through the module.
    grad_leaves = jax.tree.leaves(grads)
    assert len(grad_leaves) == len(jax.tree.leaves(params))
    assert all(np.isfinite(g).all() and np.any(g) for g in grad_leaves)


def test_orbax_round_trip(tmp_path):
    """``nnx.state`` saved with ``ocp.StandardCheckpointer`` restores into a freshly
    built model (different seed) that then equals the saved one exactly."""
    model = _deep_model(nnx.Rngs(2))
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "state", nnx.state(model))
    checkpointer.wait_until_finished()

    graphdef, abstract_state = nnx.split(nnx.eval_shape(lambda: _deep_model(nnx.Rngs(9))))
    restored = nnx.merge(graphdef, checkpointer.restore(tmp_path / "state", abstract_state))
    _assert_trees_equal(nnx.state(restored), nnx.state(model))
    fresh = _deep_model(nnx.Rngs(9))
    assert not np.allclose(fresh(XS, deterministic=True), model(XS, deterministic=True))
    _assert_trees_equal(restored(XS, deterministic=True), model(XS, deterministic=True))


@pytest.mark.parametrize(
    "build",
    [
        lambda rngs: nn.LSTM(4, 5, rngs=rngs),
        lambda rngs: nn.RNN(4, 5, rngs=rngs),
        _deep_model,
    ],
    ids=["lstm", "rnn", "stacked"],
)
def test_no_rng_state_in_modules(build):
    """flax issue #4509: after construction from ``nnx.Rngs(params=..., dropout=...)``
    the state holds only ``nnx.Param`` arrays, no RNG keys or counts."""
    module = build(nnx.Rngs(params=0, dropout=1))
    variables = jax.tree.leaves(nnx.state(module), is_leaf=lambda x: isinstance(x, nnx.Variable))
    assert variables and {type(v) for v in variables} == {nnx.Param}
    assert not nnx.state(module, nnx.RngState)
    for variable in variables:
        assert not jax.dtypes.issubdtype(variable[...].dtype, jax.dtypes.prng_key)


def test_stacked_dropout_takes_a_key_or_eval_mode():
    """With dropout, a training call needs ``key=``; ``.eval()`` makes calls
    deterministic (equal to ``deterministic=True``) and ``.train()`` undoes it."""
    model = _deep_model(nnx.Rngs(0))
    with pytest.raises(ValueError, match="key"):
        model(XS)
    deterministic = model(XS, deterministic=True)
    assert not np.allclose(model(XS, key=jax.random.key(0)), deterministic)
    model.eval()
    _assert_trees_equal(model(XS), deterministic)
    model.train()
    with pytest.raises(ValueError, match="key"):
        model(XS)


def test_bad_compositions_raise():
    """Mismatched feature sizes and non-rnnlab modules raise ValueError naming the fix."""
    rngs = nnx.Rngs(0)
    with pytest.raises(ValueError, match="input_size=5"):
        nn.Stacked([nn.LSTM(4, 5, rngs=rngs), nn.LSTM(4, 5, rngs=rngs)])
    with pytest.raises(ValueError, match="same input_size"):
        nn.Bidirectional(nn.GRU(4, 3, rngs=rngs), nn.GRU(2, 3, rngs=rngs))
    with pytest.raises(ValueError, match="layers\\[0\\]"):
        nn.Stacked([nnx.Linear(4, 5, rngs=rngs)])
    with pytest.raises(ValueError, match="forward"):
        nn.Bidirectional(nnx.Linear(4, 5, rngs=rngs), nn.GRU(4, 3, rngs=rngs))


@pytest.mark.parametrize("module", [nn, rnnlab.interop], ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
    """Every docstring example runs and prints what it claims."""
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
