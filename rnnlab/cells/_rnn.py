"""Vanilla (Elman) RNN cell."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnnlab.cells import _dense
from rnnlab.cells._cell import Cell, check_hidden_size

ACTIVATIONS = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "linear": lambda z: z,
    "sigmoid": jax.nn.sigmoid,
}

#: Bound on |sigma'| used by Pascanu et al. 2013 (eta = gamma * sigma_max(W_hh)).
DERIVATIVE_BOUND = {"tanh": 1.0, "relu": 1.0, "linear": 1.0, "sigmoid": 0.25, "modrelu": 1.0}


def _identity(h):
    return h


def rnn(
    hidden_size: int,
    *,
    activation: str = "tanh",
    recurrent_init="orthogonal",
    recurrent_scale=1.0,
    input_init="uniform",
    bias_init="zeros",
    param_dtype=jnp.float32,
) -> Cell:
    r"""Elman RNN: ``h_t = sigma(x_t W_ih + b_ih + h_{t-1} W_hh + b_hh)``.

    This is torch.nn.RNN's equation (torch writes ``W x``; we store ``W^T``).
    Pascanu et al. 2013 write the same recurrence on pre-activations; its
    Jacobian is ``dh_t/dh_{t-1} = diag(sigma'(z_t)) W_hh^T``.

    Args:
      hidden_size: ``H``.
      activation: ``"tanh"`` (default), ``"relu"`` (with ``recurrent_init="identity"``
        this is the IRNN of Le et al. 2015), ``"linear"`` or ``"sigmoid"``.
      recurrent_init: name or callable for ``W_hh [H, H]``: ``"orthogonal"``
        (default), ``"identity"``, ``"normal"`` (variance 1/H), ``"uniform"``
        (torch's ``U(+-1/sqrt(H))``); see :mod:`rnnlab.initializers`.
      recurrent_scale: multiplies ``W_hh`` after initialization, so
        ``recurrent_init="orthogonal", recurrent_scale=rho`` gives a matrix whose
        singular values all equal ``rho``.  May be an array (vmapped sweeps).
      input_init: initializer of ``W_ih [F, H]``; default torch's uniform.
      bias_init: initializer of both biases; default zeros.
      param_dtype: dtype of the parameters.

    Returns:
      A :class:`Cell` whose carry and output are ``h: [..., H]``.
    """
    hidden_size = check_hidden_size(hidden_size)
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"activation={activation!r} is not supported; use one of {tuple(ACTIVATIONS)}"
        )
    sigma = ACTIVATIONS[activation]
    init = _dense.make_init(
        hidden_size,
        1,
        input_init=input_init,
        recurrent_init=recurrent_init,
        bias_init=bias_init,
        recurrent_scale=recurrent_scale,
        param_dtype=param_dtype,
    )

    initial_carry = _dense.zeros(hidden_size, param_dtype)

    def pointwise(px, hh, h):
        h = sigma(px + hh)
        return h, h

    return _dense.make_cell(
        "rnn",
        hidden_size,
        init=init,
        initial_carry=initial_carry,
        hidden=_identity,
        pointwise=pointwise,
        additive=True,
        exports={"torch": "RNN", "flax": "SimpleCell"},
        hyperparameters=dict(
            hidden_size=hidden_size,
            activation=activation,
            recurrent_init=recurrent_init,
            recurrent_scale=recurrent_scale,
            input_init=input_init,
            bias_init=bias_init,
        ),
    )
