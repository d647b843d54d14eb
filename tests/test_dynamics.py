"""rnnlab.dynamics against oracles: exact Lyapunov spectra of linear RNNs (W = rho Q, and
diagonal W, real and complex), the brute-force divergence of two nearby trajectories,
the exact inequality between QR growth and ``rnnlab.diagnostics.jacobian_norms``, the
closed-form Hessian of a quadratic loss, the full ``jax.hessian`` of a small RNN loss
written as a hand loop, the closed form and finite differences of the flossing loss, and
the argument errors.

Float64 throughout (``jax.enable_x64``), under strict dtype promotion.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import rnnlab
from rnnlab import diagnostics, dynamics
from rnnlab.cells import Cell


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


def linear_params(weight_hh: np.ndarray, input_size: int = 1) -> dict:
    """``h_t = x_t U + h_{t-1} W`` with ``U`` all ones and no biases: the Jacobian is ``W^T``."""
    hidden = weight_hh.shape[0]
    return {
        "weight_ih": jnp.ones((input_size, hidden), jnp.float64),
        "weight_hh": jnp.asarray(weight_hh, jnp.float64),
        "bias_ih": jnp.zeros(hidden, jnp.float64),
        "bias_hh": jnp.zeros(hidden, jnp.float64),
    }


def orthogonal(size: int, seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(size, size)))
    return q * np.sign(np.diag(r))


def tanh_rnn(hidden: int, gain: float) -> Cell:
    """``h_t = tanh(x_t U + h_{t-1} W)`` with ``W ~ N(0, gain^2 / H)``, float64."""
    return rnnlab.rnn(
        hidden,
        activation="tanh",
        recurrent_init="normal",
        recurrent_scale=gain,
        param_dtype=jnp.float64,
    )


HIDDEN = 6
LINEAR = rnnlab.rnn(HIDDEN, activation="linear", param_dtype=jnp.float64)


# -------------------------------------------------------------------------------------
# Linear RNNs: exact spectra
# -------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("k", "every", "transient"))
def linear_spectrum(params, xs, k, every=1, transient=0):
    return dynamics.lyapunov_spectrum(
        LINEAR, params, xs, k, reorthonormalize_every=every, transient=transient
    )


@functools.partial(jax.jit, static_argnames=("every", "transient"))
def linear_max(params, xs, every=1, transient=0):
    return dynamics.max_lyapunov(LINEAR, params, xs, renormalize_every=every, transient=transient)


def test_scaled_orthogonal_rnn_has_every_exponent_log_rho():
    """Oracle: for W = rho Q (Q orthogonal) every product of Jacobians is rho^n times an
    orthogonal matrix, so every R_ii = rho and every exponent (and every local exponent,
    from the first step) is log rho.  Batch axes [2, 3], vmapped over rho in one jit."""
    rhos = np.array([0.5, 1.0, 1.7])
    q = orthogonal(HIDDEN, 0)
    params = jax.vmap(lambda rho: linear_params(rho * q))(jnp.asarray(rhos))
    xs = jax.random.normal(jax.random.key(1), (2, 3, 24, 1), jnp.float64)
    spectrum = jax.vmap(lambda p: linear_spectrum(p, xs, HIDDEN, every=2))(params)
    maximum = jax.vmap(lambda p: linear_max(p, xs))(params)
    chex.assert_shape(spectrum.exponents, (3, 2, 3, HIDDEN))
    chex.assert_shape(spectrum.local_exponents, (3, 2, 3, 12, HIDDEN))
    chex.assert_shape([maximum.exponent, spectrum.participation_ratio], [(3, 2, 3)] * 2)
    chex.assert_shape(maximum.local_exponents, (3, 2, 3, 24))
    expected = np.log(rhos)[:, None, None, None]
    np.testing.assert_allclose(
        spectrum.exponents, np.broadcast_to(expected, (3, 2, 3, HIDDEN)), atol=1e-12
    )
    np.testing.assert_allclose(
        spectrum.local_exponents,
        np.broadcast_to(expected[..., None], (3, 2, 3, 12, HIDDEN)),
        atol=1e-12,
    )
    np.testing.assert_allclose(
        maximum.exponent, np.broadcast_to(expected[..., 0], (3, 2, 3)), atol=1e-12
    )
    ratio = np.asarray(spectrum.participation_ratio)
    assert np.all((ratio >= 1 - 1e-12) & (ratio <= HIDDEN + 1e-12))


MAGNITUDES = np.array([0.97, 0.85, 0.7, 0.5, 0.3, 0.15])


@given(
    order=st.permutations(range(HIDDEN)),
    signs=st.lists(st.sampled_from([-1.0, 1.0]), min_size=HIDDEN, max_size=HIDDEN),
)
def test_diagonal_rnn_exponents_are_sorted_log_abs_eigenvalues(order, signs):
    """Oracle: for W = diag(lambda) the exponents are log|lambda_i| in descending order,
    whatever the order and signs of the diagonal (the random start basis is not aligned
    with the axes).  The participation ratio of the first covariant vector is 1: it is
    the axis of the largest |lambda|."""
    diagonal = np.asarray(signs) * MAGNITUDES[np.asarray(order)]
    xs = jax.random.normal(jax.random.key(2), (300, 1), jnp.float64)
    params = linear_params(np.diag(diagonal))
    spectrum = linear_spectrum(params, xs, 4, every=3, transient=150)
    np.testing.assert_allclose(spectrum.exponents, np.log(MAGNITUDES[:4]), atol=1e-8)
    np.testing.assert_allclose(spectrum.participation_ratio, 1.0, atol=1e-8)
    np.testing.assert_allclose(
        linear_max(params, xs, every=5, transient=150).exponent,
        np.log(MAGNITUDES[0]),
        atol=1e-8,
    )


def complex_diagonal_cell(eigenvalues: np.ndarray) -> Cell:
    """``h_t = lambda * h_{t-1} + x_t`` with a complex ``h: [H]``: a test-only cell."""
    hidden = len(eigenvalues)

    def step(params, carry, x):
        h = params["lambda"] * carry + x.astype(jnp.complex128)
        return h, jnp.real(h)

    return Cell(
        name="complex_diagonal",
        hidden_size=hidden,
        init=lambda key, input_size: {"lambda": jnp.asarray(eigenvalues, jnp.complex128)},
        initial_carry=lambda batch_shape=(): jnp.zeros((*batch_shape, hidden), jnp.complex128),
        step=step,
        input_size=lambda params: 1,
    )


def test_complex_carry_counts_real_and_imaginary_parts():
    """Oracle: multiplying a complex coordinate by lambda is, on its real and imaginary
    parts, |lambda| times a rotation, so each log|lambda_i| appears twice in the spectrum
    of the 2H real coordinates."""
    eigenvalues = np.array([0.9 * np.exp(0.3j), 0.6 * np.exp(-2.0j), 0.3 * np.exp(1.0j)])
    cell = complex_diagonal_cell(eigenvalues)
    xs = jax.random.normal(jax.random.key(3), (200, 1), jnp.float64)
    spectrum = jax.jit(lambda p, x: dynamics.lyapunov_spectrum(cell, p, x, 6, transient=100))(
        cell.init(None, 1), xs
    )
    expected = np.repeat(np.log(np.abs(eigenvalues)), 2)
    np.testing.assert_allclose(spectrum.exponents, expected, atol=1e-8)


# -------------------------------------------------------------------------------------
# Nonlinear cells: brute force and the Jacobian norms
# -------------------------------------------------------------------------------------

BRUTE_STEPS, BRUTE_TRANSIENT, SEPARATION = 400, 120, 1e-7


def nonlinear_case(name: str):
    """(cell, params, xs, carry [2, ...]): a chaotic tanh RNN (lambda_1 ~ +0.04), an LSTM
    (lambda_1 ~ -0.03) or a GRU, each on two input-driven trajectories from random
    initial carries.  (Contracting tanh RNNs: see the Jacobian-norm test.)"""
    cell = {
        "tanh_g3": lambda: tanh_rnn(10, 3.0),
        "lstm": lambda: rnnlab.lstm(
            6,
            forget_bias=2.0,
            recurrent_init="normal",
            recurrent_scale=6.0,
            param_dtype=jnp.float64,
        ),
        "gru": lambda: rnnlab.gru(12, recurrent_scale=4.0, param_dtype=jnp.float64),
    }[name]()
    keys = jax.random.split(jax.random.key(0), 3)
    params = cell.init(keys[0], 2)
    xs = jax.random.normal(keys[1], (2, BRUTE_STEPS, 2), jnp.float64)
    carry = jax.tree.map(
        lambda leaf: jax.random.normal(keys[2], leaf.shape, jnp.float64), cell.initial_carry((2,))
    )
    return cell, params, xs, carry


def brute_force_exponent(cell, params, xs, carry):
    """Benettin's two-trajectory estimate without any derivative: run ``h`` and
    ``h + d`` (``||d|| = 1e-7``), and after every step add ``log(||d'|| / 1e-7)`` and
    rescale the separation ``d'`` back to 1e-7 (float64 keeps the error ~1e-7).  It
    starts along max_lyapunov's default direction, ``normal(jax.random.key(0), [D, 1])``, so
    the two agree at finite time even where the top exponents are nearly degenerate."""
    flat, unravel = jax.flatten_util.ravel_pytree(carry)
    direction = jax.random.normal(jax.random.key(0), (flat.size, 1), jnp.float64)[:, 0]

    def body(state, x):
        h, d = state
        h_next = jax.flatten_util.ravel_pytree(cell.step(params, unravel(h), x)[0])[0]
        moved = jax.flatten_util.ravel_pytree(cell.step(params, unravel(h + d), x)[0])[0]
        separation = moved - h_next
        growth = jnp.linalg.norm(separation) / SEPARATION
        return (h_next, separation / growth), jnp.log(growth)

    start = SEPARATION * direction / jnp.linalg.norm(direction)
    _, logs = jax.lax.scan(body, (flat, start), xs)
    return jnp.mean(logs[BRUTE_TRANSIENT:])


@pytest.mark.parametrize("name", ["tanh_g3", "lstm", "gru"])
def test_largest_exponent_matches_two_nearby_trajectories(name):
    """Oracle: the finite-difference divergence rate of two trajectories 1e-7 apart
    (brute force, no Jacobians) on the same inputs, for every trajectory of the batch:
    max_lyapunov to 1e-6, and the QR spectrum's first exponent (another start basis)
    to 2e-3."""
    cell, params, xs, carry = nonlinear_case(name)

    @jax.jit
    def measured(params, xs, carry):
        spectrum = dynamics.lyapunov_spectrum(
            cell, params, xs, 3, carry=carry, reorthonormalize_every=5, transient=BRUTE_TRANSIENT
        )
        maximum = dynamics.max_lyapunov(cell, params, xs, carry=carry, transient=BRUTE_TRANSIENT)
        brute = jax.vmap(functools.partial(brute_force_exponent, cell, params))(xs, carry)
        return spectrum.exponents, maximum.exponent, brute

    exponents, maximum, brute = measured(params, xs, carry)
    np.testing.assert_allclose(maximum, brute, atol=1e-6)
    np.testing.assert_allclose(exponents[:, 0], brute, atol=2e-3)


@pytest.mark.parametrize("scale", [0.7, 3.0])
def test_growth_matches_jacobian_norms(scale):
    """Oracle: ``rnnlab.diagnostics.jacobian_norms`` (exact ||d h_{T-1} / d h_t||_2).
    The QR local exponents after step t sum to log ||J(T-1, t) q|| for a unit vector q,
    so 0 <= log||J(T-1, t)|| - sum_{s>t} local_s (exactly), and the gap stays bounded
    as T - t grows (measured up to 6.3; the test allows 8): the growth rates agree to
    8 / (T - 1 - t), which vanishes for large T - t.  Contracting (g = 0.7,
    lambda_1 = -0.40) and chaotic (g = 3, lambda_1 = +0.12) tanh RNNs, H = 8."""
    steps = 400
    cell = tanh_rnn(8, scale)
    params = cell.init(jax.random.key(0), 1)
    xs = jax.random.normal(jax.random.key(1), (steps, 1), jnp.float64)

    @jax.jit
    def measure(params, xs):
        norms = diagnostics.jacobian_norms(cell, params, xs)
        return norms, dynamics.lyapunov_spectrum(cell, params, xs, 1, transient=0)

    norms, spectrum = measure(params, xs)
    log_norms = np.log(np.asarray(norms))
    local = np.asarray(spectrum.local_exponents[:, 0])
    t = np.arange(steps - 100)
    tail_sums = np.cumsum(local[::-1])[::-1]  # tail_sums[s] = sum of local[s:]
    gap = log_norms[t] - tail_sums[t + 1]
    assert np.all(gap >= -1e-9) and np.all(gap < 8.0), gap
    rate_error = np.abs(log_norms[t] / (steps - 1 - t) - tail_sums[t + 1] / (steps - 1 - t))
    assert np.all(rate_error <= 8.0 / (steps - 1 - t))
    assert np.sign(log_norms[0]) == np.sign(np.log(scale))  # these two vanish / explode


# -------------------------------------------------------------------------------------
# Gradient flossing
# -------------------------------------------------------------------------------------


def test_flossing_loss_value_and_gradient():
    """Oracles: for W = rho Q every exponent is log rho, so the loss is k (log rho)^2 and
    its derivative along W itself (d/de at W (1 + e)) is 2 k log rho; along a random
    direction, the reverse-mode gradient matches central finite differences (step 1e-6)
    at a W with distinct exponents."""
    rho, k = 0.7, 3
    params = linear_params(rho * orthogonal(HIDDEN, 4))
    xs = jax.random.normal(jax.random.key(5), (2, 20, 1), jnp.float64)

    @jax.jit
    @jax.value_and_grad
    def loss(weight):
        return dynamics.flossing_loss(LINEAR, {**params, "weight_hh": weight}, xs, k, transient=0)

    value, gradient = loss(params["weight_hh"])
    np.testing.assert_allclose(value, k * np.log(rho) ** 2, rtol=1e-12)
    np.testing.assert_allclose(jnp.vdot(gradient, params["weight_hh"]), 2 * k * np.log(rho))

    generic = jnp.asarray(np.random.default_rng(7).normal(size=(HIDDEN, HIDDEN)) / 2.5)
    direction = jnp.asarray(np.random.default_rng(8).normal(size=(HIDDEN, HIDDEN)))
    finite = (loss(generic + 1e-6 * direction)[0] - loss(generic - 1e-6 * direction)[0]) / 2e-6
    np.testing.assert_allclose(jnp.vdot(loss(generic)[1], direction), finite, rtol=1e-6)


# -------------------------------------------------------------------------------------
# Loss Hessian
# -------------------------------------------------------------------------------------


def quadratic(eigenvalues: np.ndarray, seed: int = 0):
    """``(A, b, params, U)`` of ``L(p) = 1/2 p^T A p + b^T p`` on
    ``p = ravel({"a": [4], "b": [2, 3]})`` with ``A = U diag(eigenvalues) U^T``: its
    Hessian is ``A`` everywhere."""
    size = len(eigenvalues)
    basis = orthogonal(size, seed)
    matrix = jnp.asarray(basis @ np.diag(eigenvalues) @ basis.T)
    linear = jnp.asarray(np.random.default_rng(seed).normal(size=size))
    params = {"a": jnp.ones(4, jnp.float64), "b": jnp.full((2, (size - 4) // 2), 0.5, jnp.float64)}
    return matrix, linear, params, basis


def quadratic_loss(matrix, linear):
    def loss(p):
        flat = jax.flatten_util.ravel_pytree(p)[0]
        return 0.5 * flat @ matrix @ flat + linear @ flat

    return loss


@jax.jit
def quadratic_top(matrix, linear, params):
    """Lanczos with m = P = 10 steps (exact; top 4) and with m = 8 (top 1)."""
    loss = quadratic_loss(matrix, linear)
    exact = dynamics.hessian_top_eigenvalues(loss, params, 4, iterations=10)
    return exact, dynamics.hessian_top_eigenvalues(loss, params, 1, iterations=8)


def test_hessian_of_quadratic_loss_matches_closed_form():
    """Oracle: the eigenvalues and eigenvectors of A; with m = P Lanczos steps exactly,
    and with m = 8 < P = 10 for the well-separated top eigenvalue."""
    eigenvalues = np.array([9.0, 5.0, 2.5, 1.0, 0.5, 0.2, 0.0, -0.3, -1.0, -2.0])
    matrix, linear, params, basis = quadratic(eigenvalues)
    exact, partial = quadratic_top(matrix, linear, params)
    np.testing.assert_allclose(exact.eigenvalues, eigenvalues[:4], atol=1e-10)
    np.testing.assert_allclose(exact.residual_norms, 0.0, atol=1e-8)
    vectors = jax.vmap(lambda v: jax.flatten_util.ravel_pytree(v)[0])(exact.eigenvectors)
    chex.assert_shape(exact.eigenvectors["b"], (4, 2, 3))
    np.testing.assert_allclose(np.abs(vectors @ basis[:, :4]), np.eye(4), atol=1e-8)
    np.testing.assert_allclose(partial.eigenvalues, eigenvalues[:1], rtol=1e-6)


def test_hessian_lanczos_restarts_on_an_invariant_subspace():
    """Oracle: A with only 4 distinct eigenvalues (3, 1, 0 and -2) makes the Krylov space
    invariant after 4 steps; the restart must keep going, so the top four are 3, 1, 1, 0
    (without the restart a spurious block would be missing or duplicated)."""
    eigenvalues = np.array([3.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, -2.0, -2.0, -2.0])
    spectrum, _ = quadratic_top(*quadratic(eigenvalues, seed=3)[:3])
    np.testing.assert_allclose(spectrum.eigenvalues, [3.0, 1.0, 1.0, 0.0], atol=1e-9)


def test_hessian_of_rnn_loss_matches_the_full_hessian():
    """Oracle: ``numpy.linalg.eigvalsh`` of the full ``jax.hessian`` of the same loss
    written as a hand loop over ``cell.step``; Lanczos (m = P steps) runs on the loss
    through ``rnnlab.unroll`` and its fused custom_vjp path."""
    cell = rnnlab.rnn(2, activation="tanh", param_dtype=jnp.float64)
    params = cell.init(jax.random.key(0), 1)
    xs = jax.random.normal(jax.random.key(1), (3, 5, 1), jnp.float64)
    targets = jax.random.normal(jax.random.key(2), (3, 2), jnp.float64)

    def unrolled_loss(p):
        ys, _ = rnnlab.unroll(cell, p, xs)
        return jnp.mean(jnp.square(ys[:, -1] - targets))

    def hand_loop_loss(flat):
        p, h = unravel(flat), cell.initial_carry((3,))
        for t in range(xs.shape[1]):
            h, _ = cell.step(p, h, xs[:, t])
        return jnp.mean(jnp.square(h - targets))

    flat, unravel = jax.flatten_util.ravel_pytree(params)
    full = jax.jit(jax.hessian(hand_loop_loss))(flat)
    expected = np.sort(np.linalg.eigvalsh(np.asarray(full)))[::-1]
    spectrum = jax.jit(
        lambda p: dynamics.hessian_top_eigenvalues(unrolled_loss, p, 3, iterations=flat.size)
    )(params)
    np.testing.assert_allclose(spectrum.eigenvalues, expected[:3], rtol=1e-9, atol=1e-12)


# -------------------------------------------------------------------------------------
# Bad input
# -------------------------------------------------------------------------------------


def test_bad_arguments_raise_errors_naming_them():
    """Oracle: each error message names the argument at fault."""
    lstm = rnnlab.lstm(4, param_dtype=jnp.float64)
    params = lstm.init(jax.random.key(0), 1)
    xs = jnp.zeros((20, 1), jnp.float64)
    # D = 2H = 8 for the LSTM's (h, c): k = 8 is allowed, 9 is not.
    allowed = jax.eval_shape(lambda: dynamics.lyapunov_spectrum(lstm, params, xs, 8))
    assert allowed.exponents.shape == (8,)
    with pytest.raises(ValueError, match=r"k=9 exceeds the state size D .*\(8\)"):
        dynamics.lyapunov_spectrum(lstm, params, xs, 9)
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="reorthonormalize_every must be an int >= 1"):
            dynamics.lyapunov_spectrum(lstm, params, xs, 2, reorthonormalize_every=bad)
        with pytest.raises(ValueError, match="renormalize_every must be an int >= 1"):
            dynamics.max_lyapunov(lstm, params, xs, renormalize_every=bad)
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        dynamics.lyapunov_spectrum(lstm, params, xs, 0)
    with pytest.raises(ValueError, match="transient=16 leaves nothing to average"):
        dynamics.lyapunov_spectrum(lstm, params, xs, 2, transient=16, reorthonormalize_every=5)
    with pytest.raises(ValueError, match="transient=20 leaves nothing"):
        dynamics.max_lyapunov(lstm, params, xs, transient=20)
    with pytest.raises(ValueError, match="transient must be an int >= 0"):
        dynamics.max_lyapunov(lstm, params, xs, transient=-1)
    with pytest.raises(ValueError, match=r"xs must have shape \[..., T, F\]"):
        dynamics.max_lyapunov(lstm, params, jnp.zeros(5, jnp.float64))
    with pytest.raises(ValueError, match="feature size 3"):
        dynamics.max_lyapunov(lstm, params, jnp.zeros((5, 3), jnp.float64))
    with pytest.raises(ValueError, match="carry leaves must start with the batch shape"):
        dynamics.max_lyapunov(lstm, params, jnp.zeros((2, 5, 1)), carry=lstm.initial_carry((3,)))

    matrix, linear, hessian_params, _ = quadratic(np.arange(10.0))
    loss = quadratic_loss(matrix, linear)
    with pytest.raises(ValueError, match=r"k=11 exceeds the number of parameters P \(10\)"):
        dynamics.hessian_top_eigenvalues(loss, hessian_params, 11)
    with pytest.raises(ValueError, match="iterations=2 must be >= k=3"):
        dynamics.hessian_top_eigenvalues(loss, hessian_params, 3, iterations=2)
    with pytest.raises(ValueError, match="iterations must be an int >= 1"):
        dynamics.hessian_top_eigenvalues(loss, hessian_params, 1, iterations=0)
