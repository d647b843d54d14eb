"""rnnlab.diagnostics against oracles: exact linear-algebra results for linear RNNs,
the Pascanu et al. 2013 bound, the LSTM's constant error carousel, jax.grad and
jax.jacobian of explicitly unrolled Python loops, the scalar curse-of-memory formula
of Zucchet & Orvieto 2024, and optax's global norm.

Everything runs under strict dtype promotion, so an implicit promotion fails here.
"""

import functools

import chex
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st

import rnnlab
from rnnlab import diagnostics


def final_state_loss(readout):
    """``L = sum over the batch of (h_T . readout)^2``: depends on the last output only."""
    return lambda ys: jnp.sum(jnp.square(ys[..., -1, :] @ readout))


def all_states_loss(readout):
    """``L = sum over the batch and steps of (y_t . readout)^2``."""
    return lambda ys: jnp.sum(jnp.square(ys @ readout))


RHOS = jnp.array([0.5, 0.9, 1.0, 1.3])


def linear_rnn_norms(dtype, methods=("exact",)):
    """carry_grad_norms ``[R, T]`` and jacobian_norms ``[R, 2, T]`` per method, for a
    linear RNN with ``W = rho Q`` at each ``rho`` of ``RHOS``, vmapped in one jit."""

    def norms(rho):
        cell = rnnlab.rnn(6, activation="linear", recurrent_scale=rho, param_dtype=dtype)
        keys = jax.random.split(jax.random.key(0), 3)
        params = cell.init(keys[0], 3)
        xs = jax.random.normal(keys[1], (2, 12, 3), dtype)
        readout = jax.random.normal(keys[2], (6,), dtype)
        grads = diagnostics.carry_grad_norms(cell, params, xs, final_state_loss(readout))
        jacobians = [
            diagnostics.jacobian_norms(cell, params, xs, method=method, iterations=5)
            for method in methods
        ]
        return grads, jacobians

    return jax.jit(jax.vmap(norms))(RHOS.astype(dtype))


def assert_ratios_equal_rho(norms, atol):
    rhos = np.asarray(RHOS, np.float64).reshape((4,) + (1,) * (norms.ndim - 1))
    ratios = np.asarray(norms[..., :-1] / norms[..., 1:], np.float64)
    np.testing.assert_allclose(ratios, np.broadcast_to(rhos, ratios.shape), rtol=0, atol=atol)


def test_linear_rnn_ratios_equal_rho_float32():
    """Oracle: for h_t = h_{t-1} rho Q + x_t U, dh_T/dh_t = (rho Q)^(T-1-t), whose
    singular values all equal rho^(T-1-t), so consecutive ratios are exactly rho."""
    grads, (jacobians,) = linear_rnn_norms(jnp.float32)
    chex.assert_shape([grads, jacobians], [(4, 12), (4, 2, 12)])
    assert_ratios_equal_rho(grads, atol=1e-4)
    assert_ratios_equal_rho(jacobians, atol=1e-4)
    np.testing.assert_allclose(jacobians[..., -1], 1.0, atol=1e-5)


def test_linear_rnn_ratios_equal_rho_float64():
    """Oracle: as above, to 1e-10 with float64 enabled (exact and power methods)."""
    with jax.enable_x64(True):
        grads, jacobians = linear_rnn_norms(jnp.float64, methods=("exact", "power"))
        assert grads.dtype == jnp.float64
        assert_ratios_equal_rho(grads, atol=1e-10)
        for norms in jacobians:
            assert_ratios_equal_rho(norms, atol=1e-10)


# -------------------------------------------------------------------------------------
# tanh RNN: the Pascanu bound
# -------------------------------------------------------------------------------------


@functools.cache
def tanh_rnn_norms(recurrent_init):
    """Jitted ``(rho, seed, input_scale) -> (norms [T], W_hh, eta)`` for a tanh RNN."""

    def run(rho, seed, input_scale):
        cell = rnnlab.rnn(8, recurrent_init=recurrent_init, recurrent_scale=rho)
        keys = jax.random.split(jax.random.key(seed), 3)
        params = cell.init(keys[0], 3)
        xs = input_scale * jax.random.normal(keys[1], (2, 20, 3))
        readout = jax.random.normal(keys[2], (8,))
        norms = diagnostics.carry_grad_norms(cell, params, xs, final_state_loss(readout))
        return norms, params["weight_hh"], diagnostics.pascanu_eta(cell, params)

    return jax.jit(run)


@given(
    rho=st.floats(0.2, 1.8),
    recurrent_init=st.sampled_from(["orthogonal", "normal"]),
    seed=st.integers(0, 2**16),
    input_scale=st.floats(0.1, 3.0),
)
def test_tanh_rnn_satisfies_pascanu_bound(rho, recurrent_init, seed, input_scale):
    """Oracle: Pascanu et al. 2013, ||dL/dh_k|| <= (gamma sigma_max(W))^(T-k) ||dL/dh_T||
    with gamma = 1 for tanh, for a loss on h_T, at every k; sigma_max from NumPy's SVD."""
    norms, weight, eta = tanh_rnn_norms(recurrent_init)(
        jnp.float32(rho), jnp.int32(seed), jnp.float32(input_scale)
    )
    sigma_max = np.linalg.svd(np.asarray(weight, np.float64), compute_uv=False)[0]
    bound = sigma_max ** np.arange(19, -1, -1) * float(norms[-1])
    assert np.all(np.asarray(norms, np.float64) <= bound * (1 + 1e-4) + 1e-30)
    np.testing.assert_allclose(eta, sigma_max, rtol=1e-5)
    np.testing.assert_allclose(diagnostics.pascanu_bound(eta, 20), bound / bound[-1], rtol=1e-4)


def test_pascanu_eta_uses_the_derivative_bound_and_rejects_gated_cells():
    """Oracle: gamma = 1/4 for the sigmoid (Pascanu et al. 2013, section 2.1)."""
    cell = rnnlab.rnn(4, activation="sigmoid", recurrent_scale=2.0)
    params = cell.init(jax.random.key(0), 2)
    np.testing.assert_allclose(diagnostics.pascanu_eta(cell, params), 0.5, rtol=1e-5)
    with pytest.raises(ValueError, match="Elman RNN"):
        diagnostics.pascanu_eta(rnnlab.lstm(4), rnnlab.lstm(4).init(jax.random.key(0), 2))


# -------------------------------------------------------------------------------------
# LSTM: forget bias and the constant error carousel
# -------------------------------------------------------------------------------------


FORGET_BIASES = jnp.array([-1.0, 0.0, 1.0, 2.0, 3.0])


@jax.jit
@functools.partial(jax.vmap, in_axes=(None, 0))  # seeds
@functools.partial(jax.vmap, in_axes=(0, None))  # forget biases
def lstm_cell_state_decay(forget_bias, seed):
    """``||dL/dc_1|| / ||dL/dc_{T-1}||`` for a loss on h_T, T = 60."""
    cell = rnnlab.lstm(16, forget_bias=forget_bias)
    keys = jax.random.split(jax.random.key(seed), 3)
    params = cell.init(keys[0], 4)
    xs = jax.random.normal(keys[1], (3, 60, 4))
    readout = jax.random.normal(keys[2], (16,))
    norms = diagnostics.carry_grad_norms(cell, params, xs, final_state_loss(readout))
    # c_T cannot reach a loss on h_T (h_T is formed before c_T leaves the step), so the
    # last informative cell-state step is T-1.
    return norms.c[0] / norms.c[-2]


def test_lstm_cell_state_decay_is_monotone_in_forget_bias():
    """Oracle: dc_{t+1}/dc_t = f_{t+1} = sigmoid(b_f + ...), increasing in the bias b_f
    (Gers et al. 2000), so less decay with a larger forget bias, for every seed."""
    ratios = np.asarray(lstm_cell_state_decay(FORGET_BIASES, jnp.arange(3)))
    assert np.all(np.diff(ratios, axis=1) > 0), ratios


def test_lstm_constant_error_carousel():
    """Oracle: with f = 1, i = 0 (and o = 1, so h_t = tanh(c_t) feeds no open gate), the
    cell state is carried unchanged and so is its error: ||dL/dc_t|| is constant
    (Hochreiter & Schmidhuber 1997), and c_T, formed after h_T, has no gradient."""
    hidden, steps = 8, 30
    cell = rnnlab.lstm(hidden, forget_bias=0.0)
    params = cell.init(jax.random.key(0), 3)
    pin = jnp.concatenate([jnp.full(hidden, -60.0), jnp.full(hidden, 60.0)])
    params["bias_ih"] = params["bias_ih"].at[: 2 * hidden].set(pin)  # i shut, f open
    params["bias_ih"] = params["bias_ih"].at[3 * hidden :].set(60.0)  # o open
    start = rnnlab.LSTMCarry(
        h=jnp.zeros((2, hidden)), c=jax.random.normal(jax.random.key(1), (2, hidden))
    )
    xs = jax.random.normal(jax.random.key(2), (2, steps, 3))
    readout = jax.random.normal(jax.random.key(3), (hidden,))
    norms = diagnostics.carry_grad_norms(cell, params, xs, final_state_loss(readout), carry=start)
    np.testing.assert_allclose(norms.c[:-1], norms.c[0], rtol=1e-6)
    assert float(norms.c[0]) > 0.1
    assert float(norms.c[-1]) == 0.0


# -------------------------------------------------------------------------------------
# Agreement with jax.grad / jax.jacobian of an explicitly unrolled Python loop
# -------------------------------------------------------------------------------------


def output_of(carry):
    """The output y_t of every rnnlab cell is the h leaf of its carry."""
    return carry.h if isinstance(carry, rnnlab.LSTMCarry) else carry


def flat(carry):
    return jnp.concatenate([leaf.ravel() for leaf in jax.tree.leaves(carry)])


def loop_oracle(cell, loss_of_outputs):
    """Jitted ``(params, xs [T, F]) -> (||dL/dcarry_t|| per leaf, ||dcarry_T/dcarry_t||_2)``,
    each ``[T]``, from jax.grad and jax.jacobian of plain Python loops over ``cell.step``:
    for each t the loss is an explicit function of carry_t (outputs before t fixed,
    y_t = h_t, then a Python-loop rollout)."""

    @jax.jit
    def oracle(params, xs):
        steps = xs.shape[0]
        carries, carry = [], cell.initial_carry()
        for t in range(steps):
            carry, _ = cell.step(params, carry, xs[t])
            carries.append(carry)

        def rollout(carry, t):
            outputs = [output_of(carry)]
            for s in range(t + 1, steps):
                carry, y = cell.step(params, carry, xs[s])
                outputs.append(y)
            return carry, outputs

        grad_norms, jacobian_norms = [], []
        for t, carry_t in enumerate(carries):

            def loss_from(carry, t=t):
                before = [output_of(c) for c in carries[:t]]
                return loss_of_outputs(jnp.stack(before + rollout(carry, t)[1]))

            grad = jax.grad(loss_from)(carry_t)
            grad_norms.append(jax.tree.map(jnp.linalg.norm, grad))
            flat_t, unflatten = jax.flatten_util.ravel_pytree(carry_t)
            jacobian = jax.jacobian(lambda v, t=t, u=unflatten: flat(rollout(u(v), t)[0]))(flat_t)
            jacobian_norms.append(jnp.linalg.norm(jacobian, 2))
        return jax.tree.map(lambda *n: jnp.stack(n), *grad_norms), jnp.stack(jacobian_norms)

    return oracle


CELLS = {
    "tanh": lambda: rnnlab.rnn(5, recurrent_scale=1.2),
    "lstm": lambda: rnnlab.lstm(4, forget_bias=0.5),
    "gru": lambda: rnnlab.gru(5),
}


@pytest.mark.parametrize("name", sorted(CELLS))
def test_norms_agree_with_python_loop(name):
    """Oracle: jax.grad / jax.jacobian of explicitly unrolled Python loops, per example,
    for a loss on every output, with lengths (padded steps get 0) and with reverse."""
    cell = CELLS[name]()
    keys = jax.random.split(jax.random.key(7), 3)
    params = cell.init(keys[0], 3)
    xs = jax.random.normal(keys[1], (2, 6, 3))
    lengths = np.array([6, 3])
    loss = all_states_loss(jax.random.normal(keys[2], (cell.hidden_size,)))

    @jax.jit
    def diagnose(params, xs, lengths):
        results = {}
        for reverse in (False, True):
            options = dict(lengths=lengths, reverse=reverse)
            results[reverse] = (
                diagnostics.carry_grad_norms(cell, params, xs, loss, per_example=True, **options),
                diagnostics.jacobian_norms(cell, params, xs, method="exact", **options),
                # The power method is slow to compile; one cell (the LSTM) checks it.
                diagnostics.jacobian_norms(cell, params, xs, method="power", **options)
                if name == "lstm"
                else None,
            )
        pooled = diagnostics.carry_grad_norms(cell, params, xs, loss, lengths=lengths)
        return results, pooled

    results, pooled = diagnose(params, xs, lengths)
    oracle = loop_oracle(cell, loss)
    for reverse, (norms, exact, power) in results.items():
        for b, length in enumerate(lengths):
            sequence = xs[b, :length][::-1] if reverse else xs[b, :length]
            expected, expected_jacobian = oracle(params, sequence)
            order = slice(None, None, -1) if reverse else slice(None)
            for got, want in zip(jax.tree.leaves(norms), jax.tree.leaves(expected), strict=True):
                np.testing.assert_allclose(got[b, :length], want[order], rtol=2e-5, atol=1e-7)
                np.testing.assert_array_equal(got[b, length:], 0.0)
            np.testing.assert_allclose(exact[b, :length], expected_jacobian[order], rtol=2e-5)
            np.testing.assert_array_equal(exact[b, length:], 0.0)
            if power is not None:  # a lower bound, within the documented 1e-2
                np.testing.assert_array_less(power[b, :length], exact[b, :length] * (1 + 1e-5))
                np.testing.assert_allclose(power[b, :length], expected_jacobian[order], rtol=1e-2)
    # Without per_example, the norm at step t is over the batch and features together.
    per_example = results[False][0]
    for a, b in zip(jax.tree.leaves(pooled), jax.tree.leaves(per_example), strict=True):
        np.testing.assert_allclose(a, jnp.sqrt(jnp.sum(jnp.square(b), axis=0)), rtol=1e-6)


# -------------------------------------------------------------------------------------
# Scalar curse of memory (Zucchet & Orvieto 2024)
# -------------------------------------------------------------------------------------


def test_scalar_curse_of_memory_matches_closed_form():
    """Oracle: for h_{t+1} = lam h_t + x_t, x ~ N(0, 1) i.i.d., the stationary
    E[(dh/dlam)^2] = (1 + lam^2) / (1 - lam^2)^3; Monte Carlo over 20,000 sequences
    (relative standard error sqrt(2/N) = 1%) must be within 5% at lam = 0.9."""
    lam, samples, steps = 0.9, 20_000, 250
    cell = rnnlab.rnn(1, activation="linear")
    params = {
        "weight_ih": jnp.ones((1, 1)),
        "weight_hh": jnp.full((1, 1), lam),
        "bias_ih": jnp.zeros(1),
        "bias_hh": jnp.zeros(1),
    }
    xs = jax.random.normal(jax.random.key(0), (samples, steps, 1))

    def final_state(weight_hh, x):
        _, final = rnnlab.unroll(cell, {**params, "weight_hh": weight_hh}, x)
        return final[0]

    sensitivity = jax.vmap(jax.grad(final_state), (None, 0))(params["weight_hh"], xs)
    estimate = float(jnp.mean(jnp.square(sensitivity)))
    theory = (1 + lam**2) / (1 - lam**2) ** 3
    assert abs(estimate / theory - 1) < 0.05, (estimate, theory)


# -------------------------------------------------------------------------------------
# Recurrent spectrum
# -------------------------------------------------------------------------------------


def test_recurrent_spectrum_matches_numpy():
    """Oracle: NumPy's SVD and eigvals of each [H, H] gate block; rho Q has all singular
    values rho (orthogonal init, Saxe et al. 2014)."""
    cell = rnnlab.lstm(5, recurrent_init="orthogonal", recurrent_scale=0.7)
    params = cell.init(jax.random.key(0), 2)
    spectrum = diagnostics.recurrent_spectrum(cell, params)
    chex.assert_shape(
        [spectrum.singular_values, spectrum.eigenvalues, spectrum.spectral_radius],
        [(4, 5), (4, 5), (4,)],
    )
    np.testing.assert_allclose(spectrum.singular_values, 0.7, rtol=1e-5)
    weight = np.asarray(params["weight_hh"], np.float64)
    for gate in range(4):
        block = weight[:, 5 * gate : 5 * (gate + 1)]
        eig = np.linalg.eigvals(block)
        np.testing.assert_allclose(
            np.sort_complex(spectrum.eigenvalues[gate]), np.sort_complex(eig), atol=1e-5
        )
        np.testing.assert_allclose(spectrum.spectral_radius[gate], np.max(np.abs(eig)), rtol=1e-5)

    rnn = rnnlab.rnn(6, recurrent_init="normal")
    rnn_params = rnn.init(jax.random.key(1), 2)
    spectrum = diagnostics.recurrent_spectrum(rnn, rnn_params)
    weight = np.asarray(rnn_params["weight_hh"], np.float64)
    np.testing.assert_allclose(spectrum.singular_values[0], np.linalg.svd(weight)[1], rtol=1e-5)


# -------------------------------------------------------------------------------------
# Training-time gradient statistics
# -------------------------------------------------------------------------------------


def test_gradient_statistics_inside_jit_with_traced_clip_norm():
    """Oracle: optax.tree.norm (the global norm), NumPy per-leaf norms, Pascanu's clipping."""
    grads = {
        "cell": {"weight_hh": jnp.full((3, 3), 0.5), "bias_hh": jnp.arange(3.0)},
        "readout": {"weight": -jnp.ones((3, 1))},
    }
    stats = jax.jit(diagnostics.gradient_statistics)(grads, jnp.float32(2.0))
    norm = float(optax.tree.norm(grads))
    np.testing.assert_allclose(stats["global_norm"], norm, rtol=1e-6)
    assert bool(stats["clipped"]) == (norm > 2.0)
    assert set(stats["group_norms"]) == {"cell/weight_hh", "cell/bias_hh", "readout/weight"}
    np.testing.assert_allclose(stats["group_norms"]["cell/bias_hh"], np.sqrt(5.0), rtol=1e-6)
    assert not bool(
        jax.jit(diagnostics.gradient_statistics, static_argnums=1)(grads, 100.0)["clipped"]
    )
    assert not bool(diagnostics.gradient_statistics(grads)["clipped"])


def test_bad_arguments_raise_value_errors():
    """Oracle: the documented ValueErrors name the argument."""
    cell = rnnlab.gru(3)
    params = cell.init(jax.random.key(0), 2)
    xs = jnp.zeros((5, 2))
    with pytest.raises(ValueError, match="method"):
        diagnostics.jacobian_norms(cell, params, xs, method="svd")
    with pytest.raises(ValueError, match="iterations"):
        diagnostics.jacobian_norms(cell, params, xs, method="power", iterations=0)
    with pytest.raises(ValueError, match="return_carries"):
        diagnostics.carry_grad_norms(cell, params, xs, jnp.sum, return_carries=True)
    with pytest.raises(ValueError, match="xs"):
        diagnostics.carry_grad_norms(cell, params, jnp.zeros(2), jnp.sum)
    with pytest.raises(ValueError, match="feature size"):
        diagnostics.carry_grad_norms(cell, params, jnp.zeros((5, 4)), jnp.sum)


def test_resets_cut_the_gradient_path():
    """Oracle: after a reset before step k the carry restarts from its initial value, so
    steps before k get no gradient from a loss on h_T, and steps from k on get exactly
    the norms of the suffix run alone."""
    cell = rnnlab.gru(4)
    params = cell.init(jax.random.key(0), 2)
    xs = jax.random.normal(jax.random.key(1), (8, 2))
    loss = final_state_loss(jnp.ones(4))
    resets = jnp.arange(8) == 5

    @jax.jit
    def norms(xs, resets):
        return diagnostics.carry_grad_norms(cell, params, xs, loss, resets=resets)

    with_reset = norms(xs, resets)
    suffix = norms(xs[5:], jnp.zeros(3, bool))
    np.testing.assert_array_equal(with_reset[:5], 0.0)
    np.testing.assert_allclose(with_reset[5:], suffix, rtol=1e-6)


# -- the output contract -------------------------------------------------------------------


def scaled_output_cell(scale, declare_output, returned=None):
    """A user's tanh RNN whose output is ``scale * h``, built from init/initial_carry/step."""
    base = rnnlab.rnn(3)

    def step(params, h, x):
        h, _ = base.step(params, h, x)
        return h, (scale * h) if returned is None else returned(h)

    return rnnlab.Cell(
        name="scaled",
        hidden_size=3,
        init=base.init,
        initial_carry=base.initial_carry,
        step=step,
        output=(lambda params, h, x: scale * h) if declare_output else None,
    )


def test_output_that_is_not_a_carry_leaf_is_followed():
    """The issue's case: a cell returning ``(h, h * 1.0)`` gets the norms of ``(h, h)``
    (0 before the contract), and ``y = 2h`` doubles them; oracle: the RNN whose output
    is its carry."""
    plain = rnnlab.rnn(3)
    params = plain.init(jax.random.key(0), 2)
    xs = jax.random.normal(jax.random.key(1), (6, 2))
    loss = all_states_loss(jnp.ones(3))
    want = diagnostics.carry_grad_norms(plain, params, xs, loss)
    same = diagnostics.carry_grad_norms(scaled_output_cell(1.0, False), params, xs, loss)
    np.testing.assert_allclose(same, want, rtol=1e-6)
    assert float(same[-1]) > 0
    # y = 2h: L(2h) = 4 L(h) for this quadratic loss, so every gradient doubles twice.
    doubled = diagnostics.carry_grad_norms(scaled_output_cell(2.0, True), params, xs, loss)
    np.testing.assert_allclose(doubled, 4.0 * want, rtol=1e-5)


def test_output_disagreeing_with_step_is_refused():
    """A wrong (or missing) ``output`` must never give numbers: ValueError eagerly, NaN
    under jit."""
    cell = scaled_output_cell(2.0, declare_output=False)  # y = 2h but output says y = h
    params = cell.init(jax.random.key(0), 2)
    xs = jax.random.normal(jax.random.key(1), (5, 2))
    loss = all_states_loss(jnp.ones(3))
    with pytest.raises(ValueError, match="output"):
        diagnostics.carry_grad_norms(cell, params, xs, loss)
    with pytest.raises(ValueError, match="output"):
        diagnostics.jacobian_norms(cell, params, xs)
    traced = jax.jit(lambda p: diagnostics.carry_grad_norms(cell, p, xs, loss))(params)
    assert np.all(np.isnan(traced))


def test_pytree_carry_without_output_is_refused():
    lstm = rnnlab.lstm(3)
    cell = rnnlab.Cell(
        name="bare_lstm", hidden_size=3, init=lstm.init, initial_carry=lstm.initial_carry,
        step=lstm.step,
    )  # fmt: skip
    params = cell.init(jax.random.key(0), 2)
    with pytest.raises(ValueError, match="output="):
        diagnostics.carry_grad_norms(cell, params, jnp.ones((4, 2)), jnp.sum)


# -- layers --------------------------------------------------------------------------------


def test_stacked_and_bidirectional_norms_match_a_hand_loop():
    """Oracle: jax.grad of a Python loop over both directions of a bidirectional GRU under
    a tanh RNN, with an explicit additive perturbation of every carry at every step."""
    bottom = rnnlab.layers.bidirectional(rnnlab.gru(3), merge="concat")
    top = rnnlab.rnn(2)
    layer = rnnlab.stacked([bottom, top])
    params = layer.init(jax.random.key(0), 2)
    xs = jax.random.normal(jax.random.key(1), (5, 2), jnp.float32)
    steps = xs.shape[0]
    loss_of_outputs = all_states_loss(jnp.array([1.0, -0.5]))
    gru, rnn = bottom.children[0].cell, top

    def loop(eps):
        forward, backward, upper = eps
        h, outputs_f = jnp.zeros(3), []
        for t in range(steps):
            h = gru.step(params[0]["forward"], h, xs[t])[0] + forward[t]
            outputs_f.append(h)
        h, outputs_b = jnp.zeros(3), [None] * steps
        for t in reversed(range(steps)):
            h = gru.step(params[0]["backward"], h, xs[t])[0] + backward[t]
            outputs_b[t] = h
        h, ys = jnp.zeros(2), []
        for t in range(steps):
            h = rnn.step(params[1], h, jnp.concatenate([outputs_f[t], outputs_b[t]]))[0] + upper[t]
            ys.append(h)
        return loss_of_outputs(jnp.stack(ys))

    zeros = (jnp.zeros((steps, 3)), jnp.zeros((steps, 3)), jnp.zeros((steps, 2)))
    want = [jnp.linalg.norm(g, axis=-1) for g in jax.grad(loop)(zeros)]
    got = diagnostics.carry_grad_norms(layer, params, xs, loss_of_outputs)
    np.testing.assert_allclose(got[0].forward, want[0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got[0].backward, want[1], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got[1], want[2], rtol=1e-5, atol=1e-7)
    jacobians = diagnostics.jacobian_norms(layer, params, xs)
    assert jacobians.shape == (steps,) and np.all(np.isfinite(jacobians))


def test_lru_complex_state_norms_match_closed_form():
    """Oracle: the LRU is linear in h, so for a loss on ``y_T`` the gradient at step t is
    ``g_T`` scaled per unit by ``|lambda_n|^(T-t)`` (a rotation keeps the norm): with
    ``g_n`` the complex gradient at T, ``||dL/dh_t||^2 = sum_n |lambda_n|^(2(T-t)) |g_n|^2``."""
    cell = rnnlab.cells.make("lru", 4, r_min=0.5, r_max=0.95)
    params = cell.init(jax.random.key(0), 2)
    xs = jax.random.normal(jax.random.key(1), (7, 2))
    weights = jnp.array([1.0, -2.0, 0.5, 1.5])
    norms = diagnostics.carry_grad_norms(cell, params, xs, lambda ys: jnp.sum(ys[-1] * weights))
    modulus = np.exp(-np.exp(np.asarray(params["nu_log"], np.float64)))
    # dL/d(Re h_T) = C_re w, dL/d(Im h_T) = -C_im w.
    g2 = np.asarray(params["C_re"] @ weights) ** 2 + np.asarray(params["C_im"] @ weights) ** 2
    distance = np.arange(6, -1, -1)[:, None]
    want = np.sqrt(np.sum(modulus[None, :] ** (2 * distance) * g2[None, :], axis=-1))
    np.testing.assert_allclose(norms, want, rtol=1e-5)


def test_curve_summaries_of_geometric_curves():
    """Oracle: curves r^(T-1-t) in closed form, their per-step rate fitted by numpy polyfit
    on log norms, and the closed-form median, linear-interpolation percentiles and
    geometric mean of three such curves."""
    length, rates = 12, np.array([0.5, 0.9, 1.3])
    t = np.arange(length)
    curves = rates[:, None] ** (length - 1 - t)  # [3, T], 1 at the last step
    fitted = np.array([np.exp(-np.polyfit(t, np.log(curve), 1)[0]) for curve in curves])
    np.testing.assert_allclose(fitted, rates, rtol=1e-10)
    np.testing.assert_allclose(diagnostics.decay_ratio(curves), fitted ** (length - 1), rtol=1e-9)
    # A leaf the loss cannot see at T ends in an exact 0: anchored at its step T - 1.
    hidden_last = np.concatenate([curves, np.zeros((3, 1))], axis=1)
    np.testing.assert_allclose(diagnostics.decay_ratio(hidden_last), rates ** (length - 1))
    normalized = diagnostics.normalized_curves(hidden_last)
    np.testing.assert_allclose(normalized[:, :length], curves)
    assert np.isnan(normalized[:, length]).all()

    stats = diagnostics.band_stats(curves, band=(10, 90), axis=0)
    powers = length - 1 - t
    low, middle, high = (r**powers for r in (0.5, 0.9, 1.3))  # sorted at every t
    np.testing.assert_allclose(stats["median"], middle)
    np.testing.assert_allclose(stats["low"], low + 0.2 * (middle - low))  # rank 0.2 of 0..2
    np.testing.assert_allclose(stats["high"], middle + 0.8 * (high - middle))
    np.testing.assert_allclose(stats["geomean"], np.prod(rates) ** (powers / 3))


def test_carry_leaf_names_follow_the_carry_structure():
    """Oracle: the carries' declared structure (LSTM fields h, c; coRNN y, z; one array)."""
    assert diagnostics.carry_leaf_names(rnnlab.lstm(3)) == ["h", "c"]
    assert diagnostics.carry_leaf_names(rnnlab.rnn(3)) == ["h"]
    assert diagnostics.carry_leaf_names(rnnlab.cells.make("cornn", 3)) == ["y", "z"]
