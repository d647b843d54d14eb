"""The fast path of :func:`rnnlab.unroll`: a cuDNN-style scan with a hand-written backward.

Every built-in cell splits into a recurrent matmul and a pointwise part::

    hh_t = h_{t-1} @ W_hh + b_hh                     # [..., G*H], the only matmul in the loop
    carry_t, y_t = pointwise(px_t, hh_t, carry_{t-1})

where ``px = xs @ W_ih + b_ih`` is hoisted out of the loop by :func:`rnnlab.unroll`.
Plain autodiff of ``lax.scan`` accumulates ``dW_hh += h_{t-1}^T dhh_t`` inside the
reverse loop, a second small matmul and a ``[H, G*H]`` read-modify-write per step.
Here the backward scan emits only the gate gradients ``dhh_t`` (and ``dpx_t``) plus
``dh_{t-1} = dhh_t @ W_hh^T``; after the loop ::

    dW_hh = H_prev^T @ dHH     # one [H, T*B] x [T*B, G*H] matmul
    db_hh = sum_t,b dHH

as cuDNN does (Appleyard et al. 2016, "Optimizing performance of recurrent neural
networks on GPUs").  ``dW_ih`` and ``db_ih`` then come from plain autodiff of the
hoisted projection, which is one large matmul too.  The forward saves ``h_{t-1}`` and
the pullback of the pointwise part (its gate activations), so the backward loop
recomputes no nonlinearity and holds one matmul per step, ``dhh_t @ W_hh^T``.
Measured by ``experiments/bench.py`` (``rnnlab`` against ``rnnlab-generic``); saving
the pre-gates and recomputing the pointwise part in the backward instead cost about
20% more CPU time per LSTM step (T=200).

The fast path handles any batch shape, an initial carry and ``reverse`` without
``lengths``.  :func:`rnnlab.unroll` falls back to its generic scan for ``lengths``,
``resets``, ``remat``, ``return_carries`` and ``unroll != 1``, and for cells that
declare no :class:`Recurrence`.  Forward-mode autodiff (``jax.jvp``, ``jax.jacfwd``,
``jax.linearize``) is not defined through a ``custom_vjp``: set ``ENABLED = False``
for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rnnlab.cells._base import Carry, Cell, Params
from rnnlab.cells.lstm import LSTMCarry
from rnnlab.cells.rnn import ACTIVATIONS

__all__ = ["ENABLED", "Recurrence", "dispatch", "fused_scan", "recurrence_of"]

#: Dispatch :func:`rnnlab.unroll` to :func:`fused_scan` where it applies.  Measured by
#: ``experiments/bench.py`` (``rnnlab`` against ``rnnlab-generic`` in its report).
ENABLED = True


class Recurrence(NamedTuple):
    """The structure a cell declares to get the fast path.

    The cell's params must hold ``weight_hh [H, G*H]`` and ``bias_hh [G*H]``, and
    ``step_projected(params, carry, px_t)`` must equal
    ``pointwise(px_t, hidden(carry) @ weight_hh + bias_hh, carry)``.

    Attributes:
      hidden: ``hidden(carry) -> h: [..., H]``, the part of the carry that multiplies
        ``W_hh`` (``carry.h`` for the LSTM); must also work on carries stacked over time.
      pointwise: ``pointwise(px_t, hh_t, carry) -> (carry, y)`` with
        ``px_t, hh_t: [..., G*H]``; everything in the step except the matmul.
      additive: ``True`` when ``pointwise`` depends on ``px_t + hh_t`` only (LSTM, RNN),
        so one gate gradient serves both ``dpx_t`` and ``dhh_t``.
    """

    hidden: Callable[[Carry], jax.Array]
    pointwise: Callable[[jax.Array, jax.Array, Carry], tuple[Carry, jax.Array]]
    additive: bool


def _lstm_pointwise(px, hh, carry):
    # The equations of rnnlab.cells.lstm, in the same order of operations.
    i, f, g, o = jnp.split(px + hh, 4, axis=-1)
    c = jax.nn.sigmoid(f) * carry.c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return LSTMCarry(h=h, c=c), h


def _gru_pointwise(px, hh, h):
    # The equations of rnnlab.cells.gru: the reset gate multiplies hh_n, b_hn included.
    x_r, x_z, x_n = jnp.split(px, 3, axis=-1)
    h_r, h_z, h_n = jnp.split(hh, 3, axis=-1)
    r = jax.nn.sigmoid(x_r + h_r)
    z = jax.nn.sigmoid(x_z + h_z)
    n = jnp.tanh(x_n + r * h_n)
    h = (1.0 - z) * n + z * h
    return h, h


def _rnn_pointwise(activation):
    sigma = ACTIVATIONS[activation]

    def pointwise(px, hh, h):
        h = sigma(px + hh)
        return h, h

    return pointwise


def _builtin_recurrence(cell: Cell) -> Recurrence | None:
    """The recurrence of a cell built by ``rnnlab.lstm``, ``gru`` or ``rnn``, else None.

    Recognised by the factory that made ``step_projected``, never by the name alone,
    so a user's cell that happens to be called "lstm" keeps the generic path.
    """
    step = cell.step_projected
    module, qualname = getattr(step, "__module__", ""), getattr(step, "__qualname__", "")
    if module == "rnnlab.cells.lstm" and qualname == "lstm.<locals>.step_projected":
        return Recurrence(hidden=lambda carry: carry.h, pointwise=_lstm_pointwise, additive=True)
    if module == "rnnlab.cells.gru" and qualname == "gru.<locals>.step_projected":
        return Recurrence(hidden=lambda h: h, pointwise=_gru_pointwise, additive=False)
    if module == "rnnlab.cells.rnn" and qualname == "rnn.<locals>.step_projected":
        activation = cell.hyperparameters["activation"]
        return Recurrence(hidden=lambda h: h, pointwise=_rnn_pointwise(activation), additive=True)
    return None


def recurrence_of(cell: Cell) -> Recurrence | None:
    """The cell's :class:`Recurrence`: its ``recurrence`` field, else the built-in one."""
    declared = getattr(cell, "recurrence", None)
    return declared if declared is not None else _builtin_recurrence(cell)


def _tree_add(a, b):
    return jax.tree.map(jnp.add, a, b)


def _sum_to_last(x: jax.Array) -> jax.Array:
    return x.reshape(-1, x.shape[-1]).sum(axis=0)


def _outer_sum(a: jax.Array, b: jax.Array) -> jax.Array:
    """``sum_n a_n^T b_n`` over all leading axes: ``[..., H], [..., G] -> [H, G]``."""
    return a.reshape(-1, a.shape[-1]).T @ b.reshape(-1, b.shape[-1])


def fused_scan(
    recurrence: Recurrence,
    params: Params,
    px: jax.Array,
    carry: Carry,
    *,
    reverse: bool = False,
):
    """Runs the recurrence over time-major projected inputs with a cuDNN-style backward.

    Args:
      recurrence: the cell's :class:`Recurrence`.
      params: ``{weight_hh [H, G*H], bias_hh [G*H], ...}``; other entries are unused.
      px: ``[T, ..., G*H]`` projected inputs ``xs @ W_ih + b_ih``, time first.
      carry: the initial carry, leaves ``[..., *]``.
      reverse: walk time from ``T - 1`` down to 0 (outputs stay aligned with ``px``).

    Returns:
      ``(final_carry, ys)`` with ``ys: [T, ..., H]``, like ``lax.scan``.  Values equal
      ``lax.scan`` of the cell's ``step_projected``; gradients equal its autodiff up to
      float32 rounding.
    """
    hidden, pointwise, additive = recurrence
    # hidden() is linear (it selects part of the carry); its transpose maps dh to d carry.
    hidden_transpose = jax.linear_transpose(hidden, carry)

    def forward(weight_hh, bias_hh, px, carry, save):
        def body(c, px_t):
            hh_t = hidden(c) @ weight_hh + bias_hh
            if not save:
                new_c, y = pointwise(px_t, hh_t, c)
                return new_c, (y, None)
            # Save the pullback of the pointwise part: its residuals (the gate
            # activations) are stacked over time, so the backward recomputes nothing.
            if additive:
                (new_c, y), pullback = jax.vjp(lambda s, c: pointwise(s, 0.0, c), px_t + hh_t, c)
            else:
                (new_c, y), pullback = jax.vjp(pointwise, px_t, hh_t, c)
            return new_c, (y, (hidden(c), pullback))

        final, (ys, saved) = jax.lax.scan(body, carry, px, reverse=reverse)
        return final, ys, saved

    @jax.custom_vjp
    def run(weight_hh, bias_hh, px, carry):
        final, ys, _ = forward(weight_hh, bias_hh, px, carry, save=False)
        return final, ys

    def run_forward(weight_hh, bias_hh, px, carry):
        final, ys, saved = forward(weight_hh, bias_hh, px, carry, save=True)
        return (final, ys), (weight_hh, saved)

    def run_backward(residuals, cotangents):
        weight_hh, (hidden_prev, pullbacks) = residuals
        d_final, d_ys = cotangents

        def body(d_carry, scanned):
            pullback, dy_t = scanned
            if additive:
                d_hh, d_c = pullback((d_carry, dy_t))
                emitted = d_hh
            else:
                d_px, d_hh, d_c = pullback((d_carry, dy_t))
                emitted = (d_px, d_hh)
            (d_c_hidden,) = hidden_transpose(d_hh @ weight_hh.T)
            return _tree_add(d_c, d_c_hidden), emitted

        d_carry, emitted = jax.lax.scan(body, d_final, (pullbacks, d_ys), reverse=not reverse)
        d_px, d_hh = (emitted, emitted) if additive else emitted
        d_weight_hh = _outer_sum(hidden_prev, d_hh)
        return d_weight_hh, _sum_to_last(d_hh), d_px, d_carry

    run.defvjp(run_forward, run_backward)
    return run(params["weight_hh"], params["bias_hh"], px, carry)


def dispatch(cell: Cell, *, lengths, resets, unroll: int, remat: bool, return_carries: bool):
    """The :class:`Recurrence` :func:`rnnlab.unroll` should use, or None for the generic scan."""
    if not ENABLED or cell.project_inputs is None:
        return None
    if lengths is not None or resets is not None or remat or return_carries or unroll != 1:
        return None
    return recurrence_of(cell)
