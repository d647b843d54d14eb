r"""minLSTM (Feng et al. 2024): normalized forget and input gates that read the input only."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnnlab.cells._cell import Cell
from rnnlab.cells._mingru import log_g, make_min_cell


def _log_coefficients(k_forget, k_input, candidate):
    # log(i / f) from log-sigmoids, then log f' = log sigmoid(-d), log i' = log sigmoid(d):
    # the ratio f / (f + i) is never formed, so tiny gates cannot round it to 0/0.
    d = jax.nn.softplus(-k_forget) - jax.nn.softplus(-k_input)
    return -jax.nn.softplus(d), -jax.nn.softplus(-d) + log_g(candidate)


def minlstm(hidden_size: int, *, param_dtype=jnp.float32) -> Cell:
    r"""minLSTM (Feng et al. 2024), in the paper's log-space form::

        f_t = sigmoid(x_t W_f + b_f),  i_t = sigmoid(x_t W_i + b_i)    # [..., H]
        f'_t = f_t / (f_t + i_t),      i'_t = i_t / (f_t + i_t)         # sum to 1
        h~_t = x_t W_h + b_h
        h_t = f'_t * h_{t-1} + i'_t * g(h~_t)                           # h >= 0
        y_t = h_t
        g(x) = x + 1/2 if x >= 0 else sigmoid(x)

    The gates read ``x_t`` only, so the recurrence is linear and :func:`rnnlab.unroll`
    runs it sequentially or as a ``logaddexp`` associative scan (``path="parallel"``).
    In log space, with ``d_t = log i_t - log f_t = softplus(-k_f) - softplus(-k_i)``:
    ``log a_t = -softplus(d_t)``, ``log b_t = -softplus(-d_t) + log g(h~_t)``, as in
    the paper's code.  Normalizing the gates makes the output time-independent in
    scale (the paper's choice); the unnormalized minLSTM is not offered.

    Params: ``weight: [F, 3H]`` (columns ``W_f | W_i | W_h``) and ``bias: [3H]``,
    torch.nn.Linear's init ``U(-1/sqrt(F), 1/sqrt(F))`` as in the paper's code; no
    forget-gate bias.  Initial state ``h_0 = 0``; the paper's log-space code starts from
    ``g(h_0)`` instead (see :func:`rnnlab.cells.mingru`).

    Args:
      hidden_size: ``H``, the state and output size.
      param_dtype: the dtype of the parameters and the state.

    Returns:
      A :class:`Cell` whose carry and output are ``h: [..., H]``.

    References:
      L. Feng, F. Tung, M. O. Ahmed, Y. Bengio, H. Hajimirsadeghi, "Were RNNs all we
      needed?", arXiv:2410.01201, 2024.
    """
    return make_min_cell(
        "minlstm",
        hidden_size,
        blocks=3,
        log_coefficients=_log_coefficients,
        param_dtype=param_dtype,
        hyperparameters={},
    )
