"""The LRU against a NumPy transcription of Orvieto et al. 2023 on both paths, its ring
initialization, and its argument checks.  Parallel against sequential over random lengths,
resets, directions and dtypes is in ``test_cell_contract.py`` (for every linear cell)."""

import jax
import numpy as np
import pytest

import rnnlab
from rnnlab import cells


def numpy_lru(params, xs, normalization="learned"):
    """The paper's equations in complex128: ``h_t = lambda h_{t-1} + gamma (B x_t)``,
    ``y_t = Re(C h_t) + D x_t``."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    lam = np.exp(-np.exp(p["nu_log"]) + 1j * np.exp(p["theta_log"]))
    gamma = {
        "learned": lambda: np.exp(p["gamma_log"]),
        "function": lambda: np.sqrt(1 - np.abs(lam) ** 2),
        "none": lambda: np.ones(lam.shape),
    }[normalization]()
    B = p["B_re"] + 1j * p["B_im"]  # [F, N]
    C = p["C_re"] + 1j * p["C_im"]  # [N, H]
    h = np.zeros((xs.shape[0], lam.shape[0]), complex)
    ys = []
    for t in range(xs.shape[1]):
        h = lam * h + gamma * (xs[:, t] @ B)
        ys.append(np.real(h @ C) + xs[:, t] @ p["D"])
    return np.stack(ys, axis=1), h


@pytest.mark.parametrize("normalization", ["learned", "function", "none"])
def test_matches_numpy_transcription(normalization):
    cell = cells.make("lru", 5, state_size=4, r_min=0.4, r_max=0.9, normalization=normalization)
    params = cell.init(jax.random.key(0), 3)
    xs = np.random.default_rng(0).standard_normal((2, 9, 3))
    want_ys, want_h = numpy_lru(params, xs, normalization)
    for path in ("sequential", "parallel"):
        ys, h = rnnlab.unroll(cell, params, xs, path=path)
        np.testing.assert_allclose(ys, want_ys, atol=1e-5, err_msg=path)
        np.testing.assert_allclose(h, want_h, atol=1e-5, err_msg=path)


def test_ring_initialization():
    """Oracle: the ring's definition: |lambda| in [r_min, r_max], |lambda|^2 uniform."""
    cell = cells.make("lru", 4000, r_min=0.5, r_max=0.9, max_phase=1.0)
    params = cell.init(jax.random.key(1), 2)
    modulus = np.exp(-np.exp(np.asarray(params["nu_log"], np.float64)))
    phase = np.exp(np.asarray(params["theta_log"], np.float64))
    assert modulus.min() >= 0.5 - 1e-6 and modulus.max() <= 0.9 + 1e-6
    assert phase.min() >= 0 and phase.max() <= 1.0 + 1e-6
    # |lambda|^2 ~ U[0.25, 0.81]: mean 0.53, std 0.56/sqrt(12) = 0.162 (4000 draws: 3 s.e.)
    assert abs(np.mean(modulus**2) - 0.53) < 3 * 0.162 / np.sqrt(4000)
    gamma = np.exp(np.asarray(params["gamma_log"], np.float64))
    np.testing.assert_allclose(gamma, np.sqrt(1 - modulus**2), rtol=1e-5)


def test_bad_hyperparameters_name_them():
    with pytest.raises(ValueError, match="r_max"):
        cells.make("lru", 4, r_max=1.5)
    with pytest.raises(ValueError, match="r_min=0.9 must be below r_max=0.5"):
        cells.make("lru", 4, r_min=0.9, r_max=0.5)
    with pytest.raises(ValueError, match="normalization"):
        cells.make("lru", 4, normalization="batch")
    with pytest.raises(ValueError, match="state_size"):
        cells.make("lru", 4, state_size=0)
