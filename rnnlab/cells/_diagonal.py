"""Shared construction of the diagonal linear cells (LRU, minGRU, minLSTM, RG-LRU).

Such a cell is defined by its :class:`LinearRecurrence` (``a_t, b_t`` from the
input) and its ``output``; :func:`make_cell` derives the step from them, so the
sequential scan and the parallel path of :mod:`rnnlab.parallel` run one definition.
"""

from __future__ import annotations

import jax.numpy as jnp

from rnnlab.cells._cell import Cell, LinearRecurrence


def make_cell(
    name: str,
    hidden_size: int,
    *,
    init,
    initial_carry,
    coefficients,
    output=None,
    log_space: bool = False,
    units=None,
    input_size=None,
    hyperparameters,
) -> Cell:
    """A :class:`Cell` whose step is ``h_t = a_t * h_{t-1} + b_t``, ``y_t = output(h_t, x_t)``.

    With ``log_space`` the coefficients are ``(log a_t, log b_t)`` and the step
    exponentiates them; the carry stays in linear space.  ``output`` defaults to ``h``.
    ``units`` is the :class:`LinearRecurrence`'s map from parameters to the units they
    drive (exact diagonal RTRL).
    """
    if output is None:

        def output(params, h, x):
            del params, x
            return h

    def step(params, h, x):
        a, b = coefficients(params, x)
        if log_space:
            a, b = jnp.exp(a), jnp.exp(b)
        h = a * h + b
        return h, output(params, h, x)

    return Cell(
        name=name,
        hidden_size=hidden_size,
        init=init,
        initial_carry=initial_carry,
        step=step,
        output=output,
        input_size=input_size,
        hyperparameters=hyperparameters,
        linear=LinearRecurrence(coefficients=coefficients, log_space=log_space, units=units),
    )
