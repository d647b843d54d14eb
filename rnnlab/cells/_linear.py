"""Shared parameter layout of the gated cells: ``x @ W_ih + b_ih`` and ``h @ W_hh + b_hh``.

Layout (jax convention ``x @ W``; torch stores the transposes):

- ``weight_ih``: ``[F, G*H]``, ``bias_ih``: ``[G*H]``
- ``weight_hh``: ``[H, G*H]``, ``bias_hh``: ``[G*H]``

where ``G`` is the number of gates, stacked in torch's order.  Keeping torch's
two biases makes weight import/export exact (the GRU needs ``b_hn`` apart).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnnlab import initializers
from rnnlab.cells._base import Cell, Recurrence, check_input_size


def make_init(
    hidden_size: int,
    gates: int,
    *,
    input_init,
    recurrent_init,
    bias_init,
    recurrent_scale,
    param_dtype,
):
    """Returns ``init(key, input_size) -> params`` for the layout above.

    Names are resolved eagerly so that a bad name fails when the cell is built.
    ``recurrent_scale`` may be a traced array (sweeps vmap over it).
    """
    input_fn = initializers.resolve(input_init, hidden_size, argument="input_init")
    recurrent_fn = initializers.resolve(recurrent_init, hidden_size, argument="recurrent_init")
    bias_fn = initializers.resolve(bias_init, hidden_size, argument="bias_init")
    width = gates * hidden_size

    def init(key: jax.Array, input_size: int) -> dict:
        input_size = check_input_size(input_size)
        k_ih, k_hh, k_bih, k_bhh = jax.random.split(key, 4)
        weight_hh = recurrent_fn(k_hh, (hidden_size, width), param_dtype)
        return {
            "weight_ih": input_fn(k_ih, (input_size, width), param_dtype),
            "weight_hh": (jnp.asarray(recurrent_scale, param_dtype) * weight_hh).astype(
                param_dtype
            ),
            "bias_ih": bias_fn(k_bih, (width,), param_dtype),
            "bias_hh": bias_fn(k_bhh, (width,), param_dtype),
        }

    return init


def project_inputs(params: dict, xs: jax.Array) -> jax.Array:
    """``xs @ W_ih + b_ih``: ``[..., F] -> [..., G*H]``."""
    return xs @ params["weight_ih"] + params["bias_ih"]


def project_hidden(params: dict, h: jax.Array) -> jax.Array:
    """``h @ W_hh + b_hh``: ``[..., H] -> [..., G*H]``."""
    return h @ params["weight_hh"] + params["bias_hh"]


def input_size(params: dict) -> int:
    return params["weight_ih"].shape[-2]


def recurrent_weight(params: dict) -> jax.Array:
    return params["weight_hh"]


def zeros(hidden_size: int, param_dtype):
    """``initial_carry(batch_shape=()) -> zeros [*batch_shape, H]``."""

    def initial_carry(batch_shape=()):
        return jnp.zeros((*tuple(batch_shape), hidden_size), param_dtype)

    return initial_carry


def make_cell(
    name: str,
    hidden_size: int,
    *,
    init,
    initial_carry,
    hidden,
    pointwise,
    additive: bool,
    pointwise_vjp=None,
    hyperparameters,
):
    """A :class:`Cell` in this layout, defined by its pointwise part.

    The step is ``carry_t, y_t = pointwise(px_t, hidden(carry) @ W_hh + b_hh, carry)``
    with ``px_t = x_t @ W_ih + b_ih``; the same functions form the cell's
    :class:`Recurrence`, so :func:`rnnlab.unroll`'s fused path and the generic scan
    run one definition of the equations.
    """

    def step_projected(params, carry, px):
        return pointwise(px, project_hidden(params, hidden(carry)), carry)

    def step(params, carry, x):
        return step_projected(params, carry, project_inputs(params, x))

    return Cell(
        name=name,
        hidden_size=hidden_size,
        init=init,
        initial_carry=initial_carry,
        step=step,
        input_size=input_size,
        project_inputs=project_inputs,
        step_projected=step_projected,
        recurrent_weight=recurrent_weight,
        recurrence=Recurrence(
            hidden=hidden,
            pointwise=pointwise,
            additive=additive,
            pointwise_vjp=pointwise_vjp,
            linear_inputs=True,
        ),
        hyperparameters=hyperparameters,
    )
