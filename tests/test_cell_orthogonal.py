"""The orthogonal (expRNN) cell against its equations and its invariants.

Oracles: a NumPy/SciPy transcription of Lezcano-Casado & Martinez-Rubio 2019 (SciPy's
``expm``, NumPy's ``solve`` for the Cayley map, NumPy modReLU) stepped in float64;
``W^T W = I`` and ``det W = +1`` after optimizer steps on the skew parameter; the
closed form of ``expm`` of a 2x2 rotation generator (the Henaff init); the exact norm
preservation of a linear orthogonal recurrence, forward and backward (REFERENCES: with
``W = Q`` orthogonal, ``||dL/dh_t|| = ||dL/dh_T||``).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import rnnlab
from rnnlab import cells

HIDDEN, FEATURES = 6, 3


_unroll = jax.jit(rnnlab.unroll, static_argnums=0)


def numpy_orthogonal_matrix(raw, parametrization):
    upper = np.triu(np.asarray(raw, np.float64), 1)
    skew = upper - upper.T
    if parametrization == "exp":
        return scipy.linalg.expm(skew)
    eye = np.eye(len(skew))
    return np.linalg.solve(eye + skew, eye - skew)


def numpy_step_all(params, xs, parametrization, activation):
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    w = numpy_orthogonal_matrix(p["skew"], parametrization)
    h, hs = np.zeros((xs.shape[0], HIDDEN)), []
    for t in range(xs.shape[1]):
        z = xs[:, t] @ p["weight_ih"] + h @ w
        if activation == "modrelu":
            h = np.sign(z) * np.maximum(np.abs(z) + p["bias"], 0.0)
        else:
            h = np.tanh(z + p["bias"])
        hs.append(h)
    return np.stack(hs, axis=1)


@pytest.mark.parametrize("parametrization, activation", [("exp", "modrelu"), ("cayley", "tanh")])
def test_unroll_equals_numpy_transcription(parametrization, activation):
    """A dense random skew parameter (not the block-diagonal init), random bias."""
    cell = cells.make("orthogonal", HIDDEN, parametrization=parametrization, activation=activation)
    params = cell.init(jax.random.key(0), FEATURES)
    rng = np.random.default_rng(1)
    params["skew"] = jnp.asarray(rng.standard_normal((HIDDEN, HIDDEN)), jnp.float32)
    params["bias"] = jnp.asarray(0.3 * rng.standard_normal(HIDDEN), jnp.float32)
    xs = rng.standard_normal((2, 30, FEATURES))
    want = numpy_step_all(params, xs, parametrization, activation)
    ys, final = _unroll(cell, params, xs.astype(np.float32))
    scale = max(1.0, np.max(np.abs(want)))
    np.testing.assert_allclose(ys, want, atol=2e-5 * scale)
    np.testing.assert_allclose(final, want[:, -1], atol=2e-5 * scale)


@pytest.mark.parametrize(
    "bad", [dict(parametrization="expm"), dict(activation="relu"), dict(skew_init="haar")]
)
def test_bad_hyperparameters_raise_naming_them(bad):
    (name,) = bad
    with pytest.raises(ValueError, match=name):
        cells.make("orthogonal", HIDDEN, **bad)


@pytest.mark.parametrize("parametrization", ["exp", "cayley"])
def test_weight_stays_orthogonal_through_training(parametrization):
    """30 normalized gradient steps (length 0.2 each) on a two-step loss move the skew
    parameter by O(1); ``W`` stays in SO(H) to 1e-5 after every step."""
    cell = cells.make("orthogonal", 8, parametrization=parametrization)
    params = cell.init(jax.random.key(2), FEATURES)
    rng = np.random.default_rng(3)
    xs = jnp.asarray(rng.standard_normal((2, 4, FEATURES)), jnp.float32)
    target = jnp.asarray(rng.standard_normal((4, 8)), jnp.float32)

    def loss(params):
        h = cell.initial_carry((4,))
        for x in xs:
            h, _ = cell.step(params, h, x)
        return jnp.mean((h - target) ** 2)

    @jax.jit
    def update(params):
        grads = jax.grad(loss)(params)
        norm = jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grads)))
        params = jax.tree.map(lambda p, g: p - 0.2 * g / norm, params, grads)
        return params, cell.recurrent_weight(params)

    start = params
    for _ in range(30):
        params, weight = update(params)
        weight = np.asarray(weight, np.float64)
        np.testing.assert_allclose(weight.T @ weight, np.eye(8), atol=1e-5)
    assert np.linalg.det(weight) == pytest.approx(1.0, abs=1e-5)
    assert np.linalg.norm(np.triu(params["skew"] - start["skew"], 1)) > 0.5


def test_henaff_init_is_block_diagonal_rotations():
    """The raw init holds angles ``t_i ~ U(-pi, pi)`` at ``(2i, 2i+1)`` and nothing else, so
    ``W = expm([[0, t], [-t, 0]]) = [[cos t, sin t], [-sin t, cos t]]`` per block; odd H
    leaves the last unit alone.  (The cell's expm against SciPy's: the first test.)"""
    cell = cells.make("orthogonal", 7)
    raw = np.asarray(cell.init(jax.random.key(4), FEATURES)["skew"], np.float64)
    rows, cols = [0, 2, 4], [1, 3, 5]
    angles = raw[rows, cols]
    assert np.all(np.abs(angles) <= np.pi) and np.ptp(angles) > 0
    raw[rows, cols] = 0.0
    np.testing.assert_array_equal(raw, 0.0)
    want = np.eye(7)
    for i, t in enumerate(angles):
        block = slice(2 * i, 2 * i + 2)
        want[block, block] = [[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]]
    skew = np.zeros((7, 7))
    skew[rows, cols] = angles
    np.testing.assert_allclose(numpy_orthogonal_matrix(skew, "exp"), want, atol=1e-12)


def test_cayley_init_gives_rotations_by_its_angles_under_the_cayley_map():
    """``s = -tan(t/2)`` with ``t ~ U(0, pi/2)``, so the Cayley map of each block is the
    rotation with ``cos = (1 - s^2) / (1 + s^2) = cos t`` in ``[0, 1]``."""
    cell = cells.make("orthogonal", 6, skew_init="cayley", parametrization="cayley")
    raw = np.asarray(cell.init(jax.random.key(9), FEATURES)["skew"], np.float64)
    values = raw[[0, 2, 4], [1, 3, 5]]
    assert np.all((values >= -1.0) & (values <= 0.0))
    weight = numpy_orthogonal_matrix(raw, "cayley")
    cosines = (1 - values**2) / (1 + values**2)
    np.testing.assert_allclose(np.diag(weight), np.repeat(cosines, 2), atol=1e-12)
    np.testing.assert_allclose(weight[[0, 2, 4], [1, 3, 5]], np.sqrt(1 - cosines**2), atol=1e-12)


def test_norms_are_preserved_forward_and_backward_over_1000_steps():
    """modReLU with ``b = 0`` is the identity, so with zero inputs ``h_t = h_0 W^t``:
    ``||h_T|| = ||h_0||`` and ``||dL/dh_0|| = ||dL/dh_T||`` for ``L = <c, h_T>``."""
    cell = cells.make("orthogonal", HIDDEN)
    params = cell.init(jax.random.key(5), FEATURES)
    params["skew"] = jnp.asarray(
        np.random.default_rng(6).standard_normal((HIDDEN, HIDDEN)), jnp.float32
    )
    params["bias"] = jnp.zeros(HIDDEN)
    xs = jnp.zeros((1000, FEATURES))
    h0 = jnp.asarray(np.random.default_rng(7).standard_normal(HIDDEN), jnp.float32)
    c = jnp.asarray(np.random.default_rng(8).standard_normal(HIDDEN), jnp.float32)
    final = lambda h: rnnlab.unroll(cell, params, xs, carry=h)[1]  # noqa: E731
    h_final, pullback = jax.vjp(jax.jit(final), h0)
    (d_h0,) = pullback(c)
    assert float(jnp.linalg.norm(h_final)) == pytest.approx(float(jnp.linalg.norm(h0)), rel=1e-4)
    assert float(jnp.linalg.norm(d_h0)) == pytest.approx(float(jnp.linalg.norm(c)), rel=1e-4)
