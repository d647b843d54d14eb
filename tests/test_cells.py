"""Cells against oracles: NumPy reimplementations of torch's documented equations,
linear algebra facts about the initializers, and the factories' argument checks.

Everything runs under strict dtype promotion (as equinox's tests do), so an implicit
promotion inside a cell fails here.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import rnnlab
from rnnlab import initializers


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


NUMPY_ACTIVATIONS = {
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0.0),
    "linear": lambda z: z,
    "sigmoid": sigmoid,
}


def torch_layout(params, gates):
    """Splits our ``x @ W`` params into torch's per-gate ``W_i*: [H, F]``, ``W_h*: [H, H]``."""
    p = {name: np.asarray(value, np.float64) for name, value in params.items()}
    split = functools.partial(np.split, indices_or_sections=gates)
    return (
        split(p["weight_ih"].T, axis=0),
        split(p["weight_hh"].T, axis=0),
        split(p["bias_ih"], axis=0),
        split(p["bias_hh"], axis=0),
    )


def numpy_rnn_step(params, h, x, activation):
    """torch.nn.RNN docs: ``h' = act(W_ih x + b_ih + W_hh h + b_hh)``."""
    (w_i,), (w_h,), (b_i,), (b_h,) = torch_layout(params, 1)
    return NUMPY_ACTIVATIONS[activation](x @ w_i.T + b_i + h @ w_h.T + b_h)


def numpy_lstm_step(params, h, c, x):
    """torch.nn.LSTM docs, gates ``(i, f, g, o)``: ``c' = f c + i g``, ``h' = o tanh(c')``."""
    w_i, w_h, b_i, b_h = torch_layout(params, 4)
    pre = [x @ w_i[k].T + b_i[k] + h @ w_h[k].T + b_h[k] for k in range(4)]
    i, f, g, o = sigmoid(pre[0]), sigmoid(pre[1]), np.tanh(pre[2]), sigmoid(pre[3])
    c = f * c + i * g
    return o * np.tanh(c), c


def numpy_gru_step(params, h, x):
    """torch.nn.GRU docs, gates ``(r, z, n)``: ``n = tanh(W_in x + b_in + r (W_hn h + b_hn))``,
    ``h' = (1 - z) n + z h``."""
    w_i, w_h, b_i, b_h = torch_layout(params, 3)
    r = sigmoid(x @ w_i[0].T + b_i[0] + h @ w_h[0].T + b_h[0])
    z = sigmoid(x @ w_i[1].T + b_i[1] + h @ w_h[1].T + b_h[1])
    n = np.tanh(x @ w_i[2].T + b_i[2] + r * (h @ w_h[2].T + b_h[2]))
    return (1.0 - z) * n + z * h


HIDDEN, FEATURES, BATCH = 5, 3, (2, 3)


def random_inputs(seed):
    """``x: [2, 3, F]``, ``h, c: [2, 3, H]`` as float32 (NumPy's generator: no compiles)."""
    rng = np.random.default_rng(seed)
    shapes = [(*BATCH, FEATURES), (*BATCH, HIDDEN), (*BATCH, HIDDEN)]
    return [jnp.asarray(rng.standard_normal(shape), jnp.float32) for shape in shapes]


def as64(*arrays):
    return [np.asarray(a, np.float64) for a in arrays]


@pytest.mark.parametrize("activation", sorted(NUMPY_ACTIVATIONS))
def test_rnn_step_matches_numpy_torch_equation(activation):
    """Oracle: NumPy float64 of torch.nn.RNN's documented equation, one step, with
    non-zero biases and carry."""
    cell = rnnlab.rnn(HIDDEN, activation=activation, recurrent_init="uniform", bias_init="uniform")
    params = cell.init(jax.random.key(0), FEATURES)
    x, h, _ = random_inputs(1)
    new_h, y = cell.step(params, h, x)
    expected = numpy_rnn_step(params, *as64(h, x), activation)
    np.testing.assert_allclose(new_h, expected, atol=1e-5)
    np.testing.assert_array_equal(y, new_h)


def test_lstm_step_matches_numpy_torch_equation():
    """Oracle: NumPy float64 of torch.nn.LSTM's documented equations, one step."""
    cell = rnnlab.lstm(HIDDEN, forget_bias=0.7, bias_init="uniform")
    params = cell.init(jax.random.key(0), FEATURES)
    x, h, c = random_inputs(2)
    carry, y = cell.step(params, rnnlab.LSTMCarry(h, c), x)
    expected_h, expected_c = numpy_lstm_step(params, *as64(h, c, x))
    np.testing.assert_allclose(carry.h, expected_h, atol=1e-5)
    np.testing.assert_allclose(carry.c, expected_c, atol=1e-5)
    np.testing.assert_array_equal(y, carry.h)


def test_gru_step_matches_numpy_torch_equation():
    """Oracle: NumPy float64 of torch.nn.GRU's documented equations (``b_hn`` inside
    the reset gate), one step, with non-zero biases."""
    cell = rnnlab.gru(HIDDEN, bias_init="uniform")
    params = cell.init(jax.random.key(0), FEATURES)
    x, h, _ = random_inputs(3)
    new_h, y = cell.step(params, h, x)
    np.testing.assert_allclose(new_h, numpy_gru_step(params, *as64(h, x)), atol=1e-5)
    np.testing.assert_array_equal(y, new_h)


@pytest.mark.parametrize("factory, gates", [(rnnlab.rnn, 1), (rnnlab.lstm, 4), (rnnlab.gru, 3)])
def test_parameter_layout_is_torchs(factory, gates):
    """Oracle: torch.nn.RNN/LSTM/GRU's documented layout ``[F, G*H]``, ``[H, G*H]``,
    ``[G*H]`` with G = 1, 4, 3 gates."""
    cell = factory(HIDDEN, bias_init="uniform")
    params = cell.init(jax.random.key(0), FEATURES)
    assert params["weight_ih"].shape == (FEATURES, gates * HIDDEN)
    assert params["weight_hh"].shape == (HIDDEN, gates * HIDDEN)
    assert params["bias_ih"].shape == params["bias_hh"].shape == (gates * HIDDEN,)
    assert cell.input_size(params) == FEATURES
    assert cell.recurrent_weight(params) is params["weight_hh"]
    assert cell.dense is not None  # the layout gives the fused path


# -- initializers --------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def recurrent_weight(factory, hidden_size, recurrent_init, recurrent_scale, key):
    cell = factory(hidden_size, recurrent_init=recurrent_init, recurrent_scale=recurrent_scale)
    return cell.init(key, 2)["weight_hh"]


def gate_blocks(weight):
    """``[H, G*H] -> [G, H, H]``, one square block per gate."""
    hidden = weight.shape[0]
    return np.stack(np.split(np.asarray(weight, np.float64), weight.shape[1] // hidden, axis=1))


@given(
    factory=st.sampled_from([rnnlab.rnn, rnnlab.lstm]),
    hidden_size=st.sampled_from([1, 16]),
    rho=st.floats(0.05, 4.0),
    seed=st.integers(0, 2**16),
)
def test_scaled_orthogonal_has_all_singular_values_rho(factory, hidden_size, rho, seed):
    """Oracle: ``rho * Q`` with ``Q`` orthogonal has every singular value equal to ``rho``
    (each gate block for the LSTM), checked by NumPy's SVD to 1e-5."""
    weight = recurrent_weight(factory, hidden_size, "orthogonal", rho, jax.random.key(seed))
    singular_values = np.linalg.svd(gate_blocks(weight), compute_uv=False)
    np.testing.assert_allclose(singular_values, rho, atol=1e-5, rtol=0)


@pytest.mark.parametrize("factory", [rnnlab.rnn, rnnlab.lstm, rnnlab.gru])
def test_identity_init_is_scaled_identity_per_gate(factory):
    """Oracle: ``np.eye`` times the scale, one block per gate (IRNN, Le et al. 2015)."""
    weight = recurrent_weight(factory, 6, "identity", 0.9, jax.random.key(0))
    blocks = gate_blocks(weight)
    np.testing.assert_array_equal(
        blocks, np.broadcast_to(np.float32(0.9) * np.eye(6), blocks.shape)
    )


def test_normal_init_has_variance_one_over_hidden_size():
    """Oracle: ``N(0, 1/H)``; the sample variance of 65536 entries is within 5% (about
    nine standard errors) and the mean within four standard errors of zero."""
    hidden = 256
    weight = np.asarray(recurrent_weight(rnnlab.rnn, hidden, "normal", 1.0, jax.random.key(1)))
    assert abs(weight.var() * hidden - 1.0) < 0.05
    assert abs(weight.mean()) < 4 * np.sqrt(1.0 / hidden / weight.size)


@pytest.mark.parametrize("factory", [rnnlab.rnn, rnnlab.gru])
def test_uniform_init_is_bounded_by_one_over_sqrt_hidden(factory):
    """Oracle: torch's ``U(-1/sqrt(H), 1/sqrt(H))``: bounded, filling the interval, with
    variance ``bound^2 / 3``."""
    hidden = 64
    bound = 1.0 / np.sqrt(hidden)
    weight = np.asarray(recurrent_weight(factory, hidden, "uniform", 1.0, jax.random.key(2)))
    assert np.abs(weight).max() <= bound
    assert np.abs(weight).max() > 0.98 * bound
    assert abs(weight.var() / (bound**2 / 3) - 1.0) < 0.05


def test_forget_bias_lands_in_the_f_slice_only():
    """Oracle: torch's gate order ``(i, f, g, o)``: only ``b_ih[H:2H]`` moves, by exactly
    ``forget_bias``, against the same key with ``forget_bias=0``."""
    hidden = 4
    key = jax.random.key(3)
    base = rnnlab.lstm(hidden, forget_bias=0.0, bias_init="uniform").init(key, 3)
    shifted = rnnlab.lstm(hidden, forget_bias=2.5, bias_init="uniform").init(key, 3)
    delta = np.asarray(shifted["bias_ih"]) - np.asarray(base["bias_ih"])
    expected = np.zeros(4 * hidden, np.float32)
    expected[hidden : 2 * hidden] = 2.5
    np.testing.assert_allclose(delta, expected, atol=1e-6)
    for name in ("weight_ih", "weight_hh", "bias_hh"):
        np.testing.assert_array_equal(shifted[name], base[name])
    zeros = rnnlab.lstm(hidden, forget_bias=1.0).init(key, 3)["bias_ih"]
    np.testing.assert_array_equal(zeros, np.where(np.arange(4 * hidden) // hidden == 1, 1.0, 0.0))


def test_traced_recurrent_scale_and_forget_bias_under_vmap():
    """Oracle: the same factory called with each concrete value, one at a time; vmap
    over the factory call (a sweep) must give the same params and outputs."""
    key = jax.random.key(4)
    xs = jnp.asarray(np.random.default_rng(5).standard_normal((2, 6, 3)), jnp.float32)
    scales = jnp.array([0.5, 1.0, 1.7])
    biases = jnp.array([0.0, 1.0, 2.0])

    def run(scale, forget_bias):
        cell = rnnlab.lstm(
            4, forget_bias=forget_bias, recurrent_init="orthogonal", recurrent_scale=scale
        )
        params = cell.init(key, 3)
        return params, rnnlab.unroll(cell, params, xs)[0]

    swept_params, swept_ys = jax.jit(jax.vmap(run))(scales, biases)
    # The outputs depend on the hyperparameters only through the params.
    unroll = jax.jit(functools.partial(rnnlab.unroll, rnnlab.lstm(4)))
    for index, (scale, bias) in enumerate(zip(scales.tolist(), biases.tolist(), strict=True)):
        params = rnnlab.lstm(
            4, forget_bias=bias, recurrent_init="orthogonal", recurrent_scale=scale
        ).init(key, 3)
        for name in params:
            np.testing.assert_allclose(swept_params[name][index], params[name], atol=1e-6)
        np.testing.assert_allclose(swept_ys[index], unroll(params, xs)[0], atol=1e-5)

    rnn_weights = jax.vmap(lambda s: rnnlab.rnn(4, recurrent_scale=s).init(key, 3)["weight_hh"])(
        scales
    )
    for index, scale in enumerate(scales.tolist()):
        expected = rnnlab.rnn(4, recurrent_scale=scale).init(key, 3)["weight_hh"]
        np.testing.assert_allclose(rnn_weights[index], expected, atol=1e-6)


def test_initializer_callable_passes_through():
    """Oracle: a user callable ``init(key, shape, dtype)`` is used as given."""
    weight = rnnlab.rnn(3, recurrent_init=lambda key, shape, dtype: jnp.full(shape, 0.25, dtype))
    np.testing.assert_array_equal(weight.init(jax.random.key(0), 2)["weight_hh"], 0.25)


# -- argument checks (sizes and unknown names for every cell: test_cell_contract.py) ------


@pytest.mark.parametrize("factory", [rnnlab.rnn, rnnlab.lstm, rnnlab.gru])
@pytest.mark.parametrize("argument", ["recurrent_init", "input_init", "bias_init"])
def test_unknown_initializer_raises_naming_the_argument(factory, argument):
    """Oracle: the ValueError names the argument, the bad value and the known names,
    at construction time."""
    with pytest.raises(ValueError, match=rf"{argument}='glorot'.*orthogonal"):
        factory(4, **{argument: "glorot"})


def test_unknown_activation_raises_naming_the_argument():
    """Oracle: the ValueError names ``activation`` and the supported choices."""
    with pytest.raises(ValueError, match=r"activation='gelu'.*tanh"):
        rnnlab.rnn(4, activation="gelu")


def test_resolve_reports_unknown_name():
    """Oracle: :func:`rnnlab.initializers.resolve` names the caller's argument."""
    with pytest.raises(ValueError, match="my_argument='nope'"):
        initializers.resolve("nope", 4, argument="my_argument")
