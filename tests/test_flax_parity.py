"""rnnlab against flax.linen's and flax.nnx's own cells (rnnlab.interop).

The oracle is flax's implementation, run with its own ``RNN`` wrapper: outputs and
final carries of a converted cell must equal ours in float32.  Max errors are
printed at the end of the module (run with ``-s``).
"""

import collections
import functools

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import rnnlab
from rnnlab.interop import from_linen, from_nnx, to_linen, to_nnx

ATOL = 2e-6
MAX_ERRORS = collections.defaultdict(float)
XS = jax.random.normal(jax.random.key(0), (2, 6, 3))
CELLS = {"lstm": rnnlab.lstm(5), "gru": rnnlab.gru(5), "rnn_tanh": rnnlab.rnn(5)}


def _random_params(cell, input_size=3, seed=1):
    """Params of ``cell`` with every entry, biases included, drawn from N(0, 0.5^2)."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda key: cell.init(key, input_size), jax.random.key(0))
    return jax.tree.map(lambda s: jnp.asarray(0.5 * rng.normal(size=s.shape), s.dtype), shapes)


@pytest.fixture(scope="module", autouse=True)
def _print_max_errors():
    yield
    for name, error in sorted(MAX_ERRORS.items()):
        print(f"flax parity, max abs error, {name}: {error:.3g}")


def _assert_close(name, ours, theirs):
    error = float(jnp.max(jnp.abs(jnp.asarray(ours) - jnp.asarray(theirs))))
    MAX_ERRORS[name] = max(MAX_ERRORS[name], error)
    assert error <= ATOL, f"{name}: max abs error {error}"


def _h(carry):
    """The hidden state of an rnnlab or flax carry (flax's LSTM carry is ``(c, h)``)."""
    if isinstance(carry, rnnlab.LSTMCarry):
        return carry.h
    return carry[1] if isinstance(carry, tuple) else carry


@functools.partial(jax.jit, static_argnums=0)
def _linen_run(module, variables, xs):
    """linen's own ``nn.RNN`` scan over ``xs: [B, T, F]`` (the cell is its ``cell`` child)."""
    return linen.RNN(module, return_carry=True).apply({"params": {"cell": variables["params"]}}, xs)


@nnx.jit
def _nnx_run(module, xs):
    """nnx's own ``nnx.RNN`` scan over ``xs: [B, T, F]``."""
    return nnx.RNN(module, return_carry=True)(xs)


def _assert_same_run(name, cell, params, flax_final, flax_ys):
    ys, final = jax.jit(rnnlab.unroll, static_argnums=0)(cell, params, XS)
    _assert_close(f"{name} outputs", ys, flax_ys)
    _assert_close(f"{name} final h", _h(final), _h(flax_final))
    if isinstance(final, rnnlab.LSTMCarry):
        _assert_close(f"{name} final c", final.c, flax_final[0])


@pytest.mark.parametrize("kind", CELLS)
def test_to_linen_matches_linen_cells(kind):
    """Our cell (two biases, non-zero b_hn for the GRU) equals the linen cell built by
    to_linen, run by ``linen.RNN``; from_linen maps it back to the same function."""
    cell = CELLS[kind]
    params = _random_params(cell)
    module, variables = to_linen(cell, params)
    flax_final, flax_ys = _linen_run(module, variables, XS)
    _assert_same_run(f"linen {kind}", cell, params, flax_final, flax_ys)
    back_cell, back_params = from_linen(module, variables)
    _assert_same_run(f"linen {kind}", back_cell, back_params, flax_final, flax_ys)
    again = to_linen(back_cell, back_params)[1]
    assert jax.tree.all(jax.tree.map(jnp.array_equal, again, variables))


@pytest.mark.parametrize(
    "module",
    [
        linen.LSTMCell(5, bias_init=jax.nn.initializers.normal()),
        linen.OptimizedLSTMCell(5, bias_init=jax.nn.initializers.normal()),
        linen.GRUCell(5, bias_init=jax.nn.initializers.normal()),
        linen.SimpleCell(5, bias_init=jax.nn.initializers.normal(), activation_fn=jax.nn.relu),
    ],
    ids=lambda module: type(module).__name__,
)
def test_from_linen_matches_linen_initialized_cells(module):
    """A linen-initialized cell (random biases, linen's own init) converts to an
    rnnlab cell with linen's outputs."""
    variables = module.init(
        jax.random.key(2), module.initialize_carry(jax.random.key(3), XS[:, 0].shape), XS[:, 0]
    )
    flax_final, flax_ys = _linen_run(module, variables, XS)
    cell, params = from_linen(module, variables)
    _assert_same_run(f"linen {type(module).__name__}", cell, params, flax_final, flax_ys)


def _without_b_hn(cell, params):
    if cell.name != "gru":
        return params
    return {**params, "bias_hh": params["bias_hh"].at[2 * cell.hidden_size :].set(0.0)}


@pytest.mark.parametrize("kind", CELLS)
def test_to_nnx_matches_nnx_cells(kind):
    """Our cell equals the nnx cell built by to_nnx, run by ``nnx.RNN`` (GRU with
    ``b_hn = 0``, the only case nnx's GRUCell can express); from_nnx maps it back."""
    cell = CELLS[kind]
    params = _without_b_hn(cell, _random_params(cell))
    module = to_nnx(cell, params)
    flax_final, flax_ys = _nnx_run(module, XS)
    _assert_same_run(f"nnx {kind}", cell, params, flax_final, flax_ys)
    back_cell, back_params = from_nnx(module)
    _assert_same_run(f"nnx {kind}", back_cell, back_params, flax_final, flax_ys)
    assert not nnx.state(module, nnx.RngState)


@pytest.mark.parametrize("name", ["LSTMCell", "OptimizedLSTMCell", "GRUCell", "SimpleCell"])
def test_from_nnx_matches_nnx_initialized_cells(name):
    """An nnx-initialized cell (random biases) converts to an rnnlab cell with nnx's
    outputs."""
    module = getattr(nnx, name)(3, 5, bias_init=jax.nn.initializers.normal(), rngs=nnx.Rngs(4))
    flax_final, flax_ys = _nnx_run(module, XS)
    cell, params = from_nnx(module)
    _assert_same_run(f"nnx {name}", cell, params, flax_final, flax_ys)


def test_nnx_gru_cannot_hold_b_hn():
    """nnx's GRUCell has no b_hn: to_nnx refuses a non-zero one, and such a GRU really
    differs from nnx's (the refusal is not over-cautious)."""
    cell = CELLS["gru"]
    params = _random_params(cell)
    with pytest.raises(ValueError, match="b_hn"):
        to_nnx(cell, params)
    zeroed = to_nnx(cell, _without_b_hn(cell, params))
    assert not np.allclose(nnx.RNN(zeroed)(XS), rnnlab.unroll(cell, params, XS)[0], atol=1e-3)


def test_flax_converters_reject_cells_with_other_equations():
    """Non-default gate functions, residual SimpleCells, unknown activations and
    non-cell modules raise ValueError."""
    key = jax.random.key(0)
    carry = linen.GRUCell(5).initialize_carry(key, XS[:, 0].shape)
    hard = linen.GRUCell(5, gate_fn=jax.nn.hard_sigmoid)
    with pytest.raises(ValueError, match="gate_fn"):
        from_linen(hard, hard.init(key, carry, XS[:, 0]))
    residual = linen.SimpleCell(5, residual=True)
    with pytest.raises(ValueError, match="residual"):
        from_linen(residual, residual.init(key, carry, XS[:, 0]))
    gelu = nnx.SimpleCell(3, 5, activation_fn=jax.nn.gelu, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="activation_fn"):
        from_nnx(gelu)
    with pytest.raises(ValueError, match="module must be one of"):
        from_nnx(nnx.Linear(3, 5, rngs=nnx.Rngs(0)))
