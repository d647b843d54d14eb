r"""minGRU (Feng et al. 2024): a GRU whose gate and candidate read the input only, in log space.

Also the shared construction of minLSTM (:mod:`rnnlab.cells._minlstm`), from the same paper.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import initializers
from rnnlab.cells import _diagonal
from rnnlab.cells._cell import Cell, check_hidden_size, check_input_size


def log_g(x: jax.Array) -> jax.Array:
    """``log g(x)`` for the paper's positive activation ``g(x) = x + 1/2 (x >= 0), sigmoid(x)``.

    Both branches are finite everywhere (``log(relu(x) + 1/2)`` and ``-softplus(-x)``),
    so ``jnp.where`` passes no NaN into the gradient.
    """
    return jnp.where(x >= 0, jnp.log(jax.nn.relu(x) + 0.5), -jax.nn.softplus(-x))


def make_min_cell(
    name: str, hidden_size: int, *, blocks: int, log_coefficients, param_dtype, hyperparameters
) -> Cell:
    """A minGRU-family cell: ``blocks`` linear maps of ``x_t`` in one ``[F, blocks*H]`` matmul.

    ``log_coefficients(*pre)`` maps the ``blocks`` pre-activations ``[..., H]`` to
    ``(log a_t, log b_t)``.  The init is torch.nn.Linear's, as in the paper's code:
    weight and bias ``U(-1/sqrt(F), 1/sqrt(F))``.  The carry ``h >= 0`` starts at zeros.
    """
    hidden_size = check_hidden_size(hidden_size)

    def init(key, input_size):
        input_size = check_input_size(input_size)
        uniform = initializers.torch_uniform(input_size)
        k_weight, k_bias = jax.random.split(key)
        width = blocks * hidden_size
        return {
            "weight": uniform(k_weight, (input_size, width), param_dtype),
            "bias": uniform(k_bias, (width,), param_dtype),
        }

    def coefficients(params, xs):
        pre = xs @ params["weight"] + params["bias"]
        return log_coefficients(*jnp.split(pre, blocks, axis=-1))

    def initial_carry(batch_shape=()):
        return jnp.zeros((*tuple(batch_shape), hidden_size), param_dtype)

    def units(params):  # column j of the [F, blocks*H] weight (and bias j) drives unit j mod H
        return {
            name: np.broadcast_to(np.arange(p.shape[-1]) % hidden_size, p.shape)
            for name, p in params.items()
        }

    return _diagonal.make_cell(
        name,
        hidden_size,
        init=init,
        initial_carry=initial_carry,
        coefficients=coefficients,
        log_space=True,
        units=units,
        input_size=lambda params: params["weight"].shape[-2],
        hyperparameters=dict(hidden_size=hidden_size, **hyperparameters),
    )


def _log_coefficients(k, candidate):
    # log(1 - z) = -softplus(k) and log z = -softplus(-k): no log of a rounded sigmoid.
    return -jax.nn.softplus(k), -jax.nn.softplus(-k) + log_g(candidate)


def mingru(hidden_size: int, *, param_dtype=jnp.float32) -> Cell:
    r"""minGRU (Feng et al. 2024), in the paper's log-space form::

        z_t = sigmoid(x_t W_z + b_z)                       # [..., H], from x_t only
        h~_t = x_t W_h + b_h                               # [..., H]
        h_t = (1 - z_t) * h_{t-1} + z_t * g(h~_t)          # h: [..., H], h >= 0
        y_t = h_t
        g(x) = x + 1/2 if x >= 0 else sigmoid(x)           # positive, continuous

    Neither ``z_t`` nor ``h~_t`` reads ``h_{t-1}``, so the recurrence is linear,
    ``h_t = a_t h_{t-1} + b_t``, and :func:`rnnlab.unroll` runs it sequentially or as a
    ``logaddexp`` associative scan (``path="parallel"``).  Its coefficients are
    computed in log space, as in the paper: ``log a_t = -softplus(k_t)``,
    ``log b_t = -softplus(-k_t) + log g(h~_t)`` with ``k_t = x_t W_z + b_z``; the carry
    stays in linear space.

    Params: ``weight: [F, 2H]`` (columns ``W_z | W_h``) and ``bias: [2H]``, drawn as
    torch.nn.Linear draws them (``U(-1/sqrt(F), 1/sqrt(F))``), like the paper's code.

    Initial state: ``h_0 = 0`` (``initial_carry``).  The paper's log-space code instead
    takes ``h_0`` as a pre-activation and starts from ``g(h_0)``, so its zero start is
    ``g(0) = 1/2``; pass ``carry=jnp.full(..., 0.5)`` to :func:`rnnlab.unroll` to match
    it.  REFERENCES.md states no ``h_0``.  A given carry must be ``>= 0`` (log space).

    The paper's minGRU module also has an expansion factor and the surrounding block
    (norms, residuals, an output projection); this cell is the recurrence alone.

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
        "mingru",
        hidden_size,
        blocks=2,
        log_coefficients=_log_coefficients,
        param_dtype=param_dtype,
        hyperparameters={},
    )
