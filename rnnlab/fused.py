"""The fast path of :func:`rnnlab.unroll`: a cuDNN-style scan with a hand-written backward.

Every built-in cell splits into a recurrent matmul and a pointwise part::

    hh_t = h_{t-1} @ W_hh + b_hh                     # [..., G*H], the only matmul in the loop
    carry_t, y_t = pointwise(px_t, hh_t, carry_{t-1})

where ``px_t = x_t @ W_ih + b_ih``.  Plain autodiff of ``lax.scan`` accumulates
``dW_hh += h_{t-1}^T dhh_t`` inside the reverse loop, a second small matmul and a
``[H, G*H]`` read-modify-write per step.  Here the backward scan emits only the gate
gradients ``dhh_t`` (and ``dpx_t``) plus ``dh_{t-1} = dhh_t @ W_hh^T``; after the loop ::

    dW_hh = H_prev^T @ dHH     # one [H, T*B] x [T*B, G*H] matmul
    db_hh = sum_t,b dHH
    dW_ih = X^T @ dPX,  db_ih = sum_t,b dPX,  dX = dPX @ W_ih^T

as cuDNN does (Appleyard et al. 2016, "Optimizing performance of recurrent neural
networks on GPUs").  The forward saves ``h_{t-1}`` and the pullback of the pointwise
part (its gate activations), so the backward loop recomputes no nonlinearity and
holds one matmul per step, ``dhh_t @ W_hh^T``.

Measured in one process by CPU time, LSTM training step, B=32, I=32, H=128, against
the previous fast path (which saved ``jax.vjp``'s pullback and took ``px`` hoisted):

- the LSTM's hand-written pullback (:func:`_lstm_pointwise_vjp`) stacks two residuals
  per step (``[i, f, g, o]`` and ``c_{t-1}``) instead of ``jax.vjp``'s eleven;
- for the built-in cells (``linear_inputs``) ``x_t @ W_ih`` is computed inside the
  forward loop and its gradients by the explicit matmuls above: reading per-step
  slices of a ``[T, B, G*H]`` buffer cost more than the small in-loop matmul, and
  autodiff of the hoisted projection transposed ``dPX`` before its matmul.

Together, medians of interleaved runs: LSTM 8-14% less CPU time per step at T=200
and T=1000, 1-7% at T=50; GRU 6-13% and tanh RNN 7-26% less.
Saving the pre-gates and recomputing the pointwise part in the backward instead cost
about 20% more (T=200); one fused ``[x_t, h_{t-1}] @ [W_ih; W_hh]`` matmul per step,
or one tanh/sigmoid select over all four gates, measured no faster.

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
      pointwise_vjp: optional hand-written ``jax.vjp`` of ``pointwise``, for an additive
        cell: ``pointwise_vjp(s_t, carry) -> ((carry, y), pullback)`` with
        ``s_t = px_t + hh_t`` and ``pullback((d_carry, dy)) -> (d_s, d_carry)``, a
        :class:`jax.tree_util.Partial` whose leaves are the residuals the forward
        stacks over time.  Default ``None``: ``jax.vjp`` of ``pointwise``.
      linear_inputs: ``True`` when the cell's ``project_inputs`` is
        ``xs @ weight_ih + bias_ih`` (the built-in cells).  Then :func:`fused_scan`
        takes the raw inputs and differentiates the projection itself.
    """

    hidden: Callable[[Carry], jax.Array]
    pointwise: Callable[[jax.Array, jax.Array, Carry], tuple[Carry, jax.Array]]
    additive: bool
    pointwise_vjp: Callable | None = None
    linear_inputs: bool = False


def _lstm_pointwise(px, hh, carry):
    # The equations of rnnlab.cells.lstm, in the same order of operations.
    i, f, g, o = jnp.split(px + hh, 4, axis=-1)
    c = jax.nn.sigmoid(f) * carry.c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return LSTMCarry(h=h, c=c), h


def _lstm_pointwise_vjp(s, carry):
    """``jax.vjp`` of the LSTM's pointwise part at ``s = px + hh``, with compact residuals.

    ``jax.vjp`` keeps eleven ``[..., H]`` residuals per step; stacking each over time
    costs one buffer write per step, which dominated the forward.  This keeps the gate
    activations ``[i, f, g, o]: [..., 4H]`` and ``c_{t-1}``, and the pullback recomputes
    ``c_t = f c_{t-1} + i g`` (bit-identical to the forward's)::

        dh = dh_t + dy_t;  dc = dc_t + dh * o * (1 - tanh(c_t)^2)
        ds = [dc g i (1 - i), dc c_{t-1} f (1 - f), dc i (1 - g^2), dh tanh(c_t) o (1 - o)]
        dc_{t-1} = dc f
    """
    i, f, g, o = jnp.split(s, 4, axis=-1)
    i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
    c = f * carry.c + i * g
    h = o * jnp.tanh(c)
    gates = jnp.concatenate([i, f, g, o], axis=-1)
    return (LSTMCarry(h=h, c=c), h), jax.tree_util.Partial(_lstm_pullback, gates, carry.c)


def _lstm_pullback(gates, c_prev, cotangents):
    d_carry, dy = cotangents
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    tanh_c = jnp.tanh(f * c_prev + i * g)
    dh = d_carry.h + dy
    dc = d_carry.c + dh * o * (1.0 - tanh_c * tanh_c)
    ds = jnp.concatenate(
        [
            dc * g * i * (1.0 - i),
            dc * c_prev * f * (1.0 - f),
            dc * i * (1.0 - g * g),
            dh * tanh_c * o * (1.0 - o),
        ],
        axis=-1,
    )
    return ds, LSTMCarry(h=jnp.zeros_like(dh), c=dc * f)


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
        return Recurrence(
            hidden=lambda carry: carry.h,
            pointwise=_lstm_pointwise,
            additive=True,
            pointwise_vjp=_lstm_pointwise_vjp,
            linear_inputs=True,
        )
    if module == "rnnlab.cells.gru" and qualname == "gru.<locals>.step_projected":
        return Recurrence(
            hidden=lambda h: h, pointwise=_gru_pointwise, additive=False, linear_inputs=True
        )
    if module == "rnnlab.cells.rnn" and qualname == "rnn.<locals>.step_projected":
        activation = cell.hyperparameters["activation"]
        return Recurrence(
            hidden=lambda h: h,
            pointwise=_rnn_pointwise(activation),
            additive=True,
            linear_inputs=True,
        )
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
    inputs: jax.Array,
    carry: Carry,
    *,
    reverse: bool = False,
):
    """Runs the recurrence over time-major inputs with a cuDNN-style backward.

    Args:
      recurrence: the cell's :class:`Recurrence`.
      params: ``{weight_ih [F, G*H], bias_ih [G*H], weight_hh [H, G*H], bias_hh [G*H]}``;
        the input weights are used only with ``recurrence.linear_inputs``.
      inputs: time first: the raw inputs ``xs: [T, ..., F]`` if
        ``recurrence.linear_inputs``, else the projected ``px: [T, ..., G*H]``.
      carry: the initial carry, leaves ``[..., *]``.
      reverse: walk time from ``T - 1`` down to 0 (outputs stay aligned with ``inputs``).

    Returns:
      ``(final_carry, ys)`` with ``ys: [T, ..., H]``, like ``lax.scan``.  Values equal
      ``lax.scan`` of the cell's ``step_projected``; gradients equal its autodiff up to
      float32 rounding.
    """
    hidden, pointwise, additive, pointwise_vjp, _ = recurrence
    if pointwise_vjp is None:
        pointwise_vjp = lambda s, c: jax.vjp(lambda s, c: pointwise(s, 0.0, c), s, c)  # noqa: E731
    # hidden() is linear (it selects part of the carry); its transpose maps dh to d carry.
    hidden_transpose = jax.linear_transpose(hidden, carry)

    def forward(weights, inputs, carry, save):
        weight_ih, bias_ih, weight_hh, bias_hh = weights

        def body(c, x_t):
            px_t = x_t if weight_ih is None else x_t @ weight_ih + bias_ih
            hh_t = hidden(c) @ weight_hh + bias_hh
            if not save:
                new_c, y = pointwise(px_t, hh_t, c)
                return new_c, (y, None)
            # Save the pullback of the pointwise part: its residuals (the gate
            # activations) are stacked over time, so the backward recomputes nothing.
            if additive:
                (new_c, y), pullback = pointwise_vjp(px_t + hh_t, c)
            else:
                (new_c, y), pullback = jax.vjp(pointwise, px_t, hh_t, c)
            return new_c, (y, (hidden(c), pullback))

        final, (ys, saved) = jax.lax.scan(body, carry, inputs, reverse=reverse)
        return final, ys, saved

    @jax.custom_vjp
    def run(weights, inputs, carry):
        final, ys, _ = forward(weights, inputs, carry, save=False)
        return final, ys

    def run_forward(weights, inputs, carry):
        final, ys, saved = forward(weights, inputs, carry, save=True)
        return (final, ys), (weights, inputs, saved)

    def run_backward(residuals, cotangents):
        (weight_ih, bias_ih, weight_hh, _), inputs, (hidden_prev, pullbacks) = residuals
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
        d_hidden_weights = (_outer_sum(hidden_prev, d_hh), _sum_to_last(d_hh))
        if weight_ih is None:
            return (None, None, *d_hidden_weights), d_px, d_carry
        # The input projection's gradients, as two large matmuls after the loop.
        d_input_weights = (_outer_sum(inputs, d_px), _sum_to_last(d_px))
        return (*d_input_weights, *d_hidden_weights), d_px @ weight_ih.T, d_carry

    run.defvjp(run_forward, run_backward)
    linear = recurrence.linear_inputs
    weights = tuple(
        params[name] if linear or name.endswith("hh") else None
        for name in ("weight_ih", "bias_ih", "weight_hh", "bias_hh")
    )
    return run(weights, inputs, carry)


def dispatch(cell: Cell, *, lengths, resets, unroll: int, remat: bool, return_carries: bool):
    """The :class:`Recurrence` :func:`rnnlab.unroll` should use, or None for the generic scan."""
    if not ENABLED or cell.project_inputs is None:
        return None
    if lengths is not None or resets is not None or remat or return_carries or unroll != 1:
        return None
    return recurrence_of(cell)
