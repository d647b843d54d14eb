r"""Linear recurrent unit (Orvieto et al. 2023), complex diagonal, with ring initialization."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import _checks
from rnnlab.cells import _diagonal
from rnnlab.cells._cell import Cell, check_hidden_size, check_input_size

NORMALIZATIONS = ("learned", "function", "none")


def _eigenvalues(params):
    """``lambda = exp(-exp(nu_log) + i exp(theta_log))``: ``[N]`` complex, ``|lambda| < 1``."""
    return jnp.exp(jax.lax.complex(-jnp.exp(params["nu_log"]), jnp.exp(params["theta_log"])))


def lru(
    hidden_size: int,
    *,
    state_size: int | None = None,
    r_min=0.0,
    r_max=1.0,
    max_phase=2 * math.pi,
    normalization: str = "learned",
    param_dtype=jnp.float32,
) -> Cell:
    r"""Linear recurrent unit: a complex diagonal linear recurrence (Orvieto et al. 2023)::

        lambda = exp(-exp(nu_log) + i exp(theta_log))             # [N], |lambda| < 1
        h_t = lambda * h_{t-1} + gamma * (B x_t)                   # h: [..., N] complex
        y_t = Re(C h_t) + D x_t                                    # [..., H]

    ``|lambda|`` is drawn uniformly on the ring ``[r_min, r_max]`` (uniform in
    ``|lambda|^2``, as in the paper's code) and the phase uniformly on
    ``[0, max_phase]``.  ``gamma = sqrt(1 - |lambda|^2)`` normalizes the input so the
    state's variance stays O(1) as ``|lambda| -> 1``.  ``B, C`` are complex, ``B`` with
    entries ``N(0, 1/(2F))`` per part and ``C`` ``N(0, 1/N)`` per part.

    The paper's ``D`` is a diagonal skip connection for ``F = H``; here ``D: [F, H]`` is
    a dense skip (``N(0, 1/F)``) so the input and output sizes may differ.

    The recurrence is linear in ``h`` with coefficients from the input only, so
    :func:`rnnlab.unroll` can run it with ``jax.lax.associative_scan``
    (``path="parallel"``) as well as sequentially.

    Args:
      hidden_size: ``H``, the output size.
      state_size: ``N``, the number of complex state units; default ``H``.
      r_min, r_max: the ring of ``|lambda|`` at init, ``0 <= r_min < r_max <= 1``.
        May be arrays (sweeps vmap over them).
      max_phase: the largest initial phase of ``lambda``.
      normalization: ``"learned"`` (the paper: ``gamma_log`` is a parameter initialized
        to ``log sqrt(1 - |lambda|^2)``), ``"function"`` (``gamma`` recomputed from
        ``lambda`` at every step, so gradients flow through it; the normalization
        Zucchet & Orvieto 2024 analyse) or ``"none"`` (``gamma = 1``).
      param_dtype: the real dtype of the parameters; the state is the matching complex.

    Returns:
      A :class:`Cell` with a complex carry ``h: [..., N]`` and output ``y: [..., H]``.

    References:
      A. Orvieto, S. L. Smith, A. Gu, A. Fernando, C. Gulcehre, R. Pascanu, S. De,
      "Resurrecting recurrent neural networks for long sequences", ICML 2023.
    """
    hidden_size = check_hidden_size(hidden_size)
    state_size = (
        hidden_size if state_size is None else _checks.positive_int("state_size", state_size)
    )
    _checks.choice("normalization", normalization, NORMALIZATIONS)
    _checks.hyperparameter("r_min", r_min, minimum=0.0, maximum=1.0)
    _checks.hyperparameter("r_max", r_max, minimum=0.0, maximum=1.0)
    low, high = _checks.concrete(r_min), _checks.concrete(r_max)
    if low is not None and high is not None and low >= high:
        raise ValueError(f"r_min={r_min} must be below r_max={r_max}")
    complex_dtype = jnp.complex128 if jnp.dtype(param_dtype) == jnp.float64 else jnp.complex64

    def init(key, input_size):
        input_size = check_input_size(input_size)
        keys = jax.random.split(key, 7)
        u1 = jax.random.uniform(keys[0], (state_size,), param_dtype)
        u2 = jax.random.uniform(keys[1], (state_size,), param_dtype)
        r_min2 = jnp.square(jnp.asarray(r_min, param_dtype))
        r_max2 = jnp.square(jnp.asarray(r_max, param_dtype))
        nu_log = jnp.log(-0.5 * jnp.log(u1 * (r_max2 - r_min2) + r_min2))
        theta_log = jnp.log(jnp.asarray(max_phase, param_dtype) * u2)
        modulus = jnp.exp(-jnp.exp(nu_log))
        b_scale = 1.0 / math.sqrt(2 * input_size)
        c_scale = 1.0 / math.sqrt(state_size)
        params = {
            "nu_log": nu_log,
            "theta_log": theta_log,
            "B_re": jax.random.normal(keys[2], (input_size, state_size), param_dtype) * b_scale,
            "B_im": jax.random.normal(keys[3], (input_size, state_size), param_dtype) * b_scale,
            "C_re": jax.random.normal(keys[4], (state_size, hidden_size), param_dtype) * c_scale,
            "C_im": jax.random.normal(keys[5], (state_size, hidden_size), param_dtype) * c_scale,
            "D": jax.random.normal(keys[6], (input_size, hidden_size), param_dtype)
            / math.sqrt(input_size),
        }
        if normalization == "learned":
            params["gamma_log"] = jnp.log(jnp.sqrt(1.0 - jnp.square(modulus)))
        return params

    def gamma(params):
        if normalization == "learned":
            return jnp.exp(params["gamma_log"])
        if normalization == "function":
            modulus2 = jnp.exp(-2.0 * jnp.exp(params["nu_log"]))
            return jnp.sqrt(1.0 - modulus2)
        return jnp.ones_like(params["nu_log"])

    def coefficients(params, xs):
        scale = gamma(params)
        b = jax.lax.complex(xs @ params["B_re"] * scale, xs @ params["B_im"] * scale)
        a = jnp.broadcast_to(_eigenvalues(params), b.shape)
        return a, b

    def output(params, h, x):
        real = jnp.real(h) @ params["C_re"] - jnp.imag(h) @ params["C_im"]
        return real + x @ params["D"]

    def initial_carry(batch_shape=()):
        return jnp.zeros((*tuple(batch_shape), state_size), complex_dtype)

    def units(params):
        # nu[n], theta[n], gamma[n] and column n of B drive unit n; C and D only the output.
        return {
            name: np.broadcast_to(np.arange(state_size), value.shape)
            if name in ("nu_log", "theta_log", "gamma_log", "B_re", "B_im")
            else np.zeros(value.shape, int)
            for name, value in params.items()
        }

    return _diagonal.make_cell(
        "lru",
        hidden_size,
        init=init,
        initial_carry=initial_carry,
        coefficients=coefficients,
        output=output,
        units=units,
        input_size=lambda params: params["B_re"].shape[-2],
        hyperparameters=dict(
            hidden_size=hidden_size,
            state_size=state_size,
            r_min=r_min,
            r_max=r_max,
            max_phase=max_phase,
            normalization=normalization,
        ),
    )
