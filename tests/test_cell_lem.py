"""LEM against its equations and its bound.

Oracles: a NumPy transcription of eq. (3) of Rusch et al. 2022 in the paper's own
notation (column vectors, ``W_1, V_1, b_1`` ...), stepped in float64, with the
parameter blocks mapped from the authors' code layout; the convex-combination bound
``max|y_n| <= max(max|y_0|, 1)``, ``max|z_n| <= max(max|z_0|, 1)`` for ``dt <= 1``.
"""

import jax
import numpy as np
import pytest

import rnnlab
from rnnlab import cells
from rnnlab.cells._lem import LEMCarry

HIDDEN, FEATURES = 4, 3


_unroll = jax.jit(rnnlab.unroll, static_argnums=0, static_argnames=("return_carries",))


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def paper_weights(params):
    """The code's blocks as the paper's matrices (acting on column vectors)."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    v_2, v_1, v_y, v_z = np.split(p["weight_ih"].T, 4, axis=0)
    b_ih = np.split(p["bias_ih"], 4)
    w_2, w_1, w_z = np.split(p["weight_hh"].T, 3, axis=0)
    b_hh = np.split(p["bias_hh"], 3)
    return dict(
        W1=w_1,
        V1=v_1,
        b1=b_ih[1] + b_hh[1],
        W2=w_2,
        V2=v_2,
        b2=b_ih[0] + b_hh[0],
        Wz=w_z,
        Vz=v_z,
        bz=b_ih[3] + b_hh[2],
        Wy=p["weight_zy"].T,
        Vy=v_y,
        by=b_ih[2] + p["bias_zy"],
    )


def numpy_lem(params, xs, dt, y0, z0):
    """Eq. (3): dt_n, dtbar_n, then z_n, then y_n from the new z_n; one example at a time."""
    m = paper_weights(params)
    ys, finals = [], []
    for u_seq, y, z in zip(xs, y0, z0, strict=True):
        out = []
        for u in u_seq:
            dt_n = dt * sigmoid(m["W1"] @ y + m["V1"] @ u + m["b1"])
            dtbar_n = dt * sigmoid(m["W2"] @ y + m["V2"] @ u + m["b2"])
            z = (1 - dt_n) * z + dt_n * np.tanh(m["Wz"] @ y + m["Vz"] @ u + m["bz"])
            y = (1 - dtbar_n) * y + dtbar_n * np.tanh(m["Wy"] @ z + m["Vy"] @ u + m["by"])
            out.append(y)
        ys.append(out)
        finals.append((y, z))
    return np.array(ys), finals


@pytest.mark.parametrize("dt", [0.0242, 0.31, 1.0])
def test_unroll_equals_numpy_transcription(dt):
    cell = cells.make("lem", HIDDEN, dt=dt)
    params = cell.init(jax.random.key(0), FEATURES)
    rng = np.random.default_rng(1)
    xs = rng.standard_normal((2, 30, FEATURES))
    y0, z0 = 0.5 * rng.standard_normal((2, 2, HIDDEN))
    carry = LEMCarry(y=y0.astype(np.float32), z=z0.astype(np.float32))
    want_ys, finals = numpy_lem(params, xs, dt, y0, z0)
    ys, final = _unroll(cell, params, xs.astype(np.float32), carry=carry)
    np.testing.assert_allclose(ys, want_ys, atol=2e-6)
    np.testing.assert_allclose(final.y, [y for y, _ in finals], atol=2e-6)
    np.testing.assert_allclose(final.z, [z for _, z in finals], atol=2e-6)


@pytest.mark.parametrize("dt", [0.0, -0.1, 1.5, float("inf"), "0.1", None])
def test_bad_dt_raises_naming_it(dt):
    with pytest.raises(ValueError, match="dt"):
        cells.make("lem", HIDDEN, dt=dt)


@pytest.mark.parametrize("dt", [0.0242, 1.0])
def test_hidden_states_stay_within_the_bound_over_1000_steps(dt):
    """Weights x10, inputs N(0, 10^2), a start outside [-1, 1]: every |z_n| <= max(|z_0|, 1)
    and |y_n| <= max(|y_0|, 1); with dt = 1 the states reach 0.9 of the bound."""
    cell = cells.make("lem", 16, dt=dt)
    params = jax.tree.map(lambda p: 10.0 * p, cell.init(jax.random.key(2), 1))
    rng = np.random.default_rng(3)
    xs = (10.0 * rng.standard_normal((4, 1000, 1))).astype(np.float32)
    y0 = rng.uniform(-0.5, 0.5, (4, 16)).astype(np.float32)
    z0 = rng.uniform(-3.0, 3.0, (4, 16)).astype(np.float32)
    _, _, carries = _unroll(cell, params, xs, carry=LEMCarry(y0, z0), return_carries=True)
    bound_y = np.maximum(np.max(np.abs(y0), -1), 1.0)[:, None, None]
    bound_z = np.maximum(np.max(np.abs(z0), -1), 1.0)[:, None, None]
    assert np.all(np.abs(carries.y) <= bound_y)
    assert np.all(np.abs(carries.z) <= bound_z)
    if dt == 1.0:
        assert np.max(np.abs(carries.y)) >= 0.9
