r"""Backpropagation through time, full and truncated (Williams & Peng 1990).

- :func:`bptt`: the exact gradient of the chunk's loss, with the incoming carry held
  constant (the gradient is truncated at the chunk's start, nowhere else).
- :func:`tbptt`: TBPTT(k1, k2).  Every ``k1`` steps, the losses of those ``k1`` steps
  are backpropagated ``k2 >= k1`` steps into the past, from a carry held constant.
  Each loss is counted once, and the loss at step ``t`` reaches at least ``k2 - k1 + 1``
  and at most ``k2`` steps back.  ``k1 = k2 = k`` is the common "chunked" form (the
  gradient stops at every multiple of ``k``); ``k1 = 1`` is the real-time form; and
  ``k1 = k2 = T`` is :func:`bptt`.  The last ``k2 - k1`` inputs of a chunk are carried
  in the state, so windows reach back across chunk boundaries.

Reference: R. J. Williams and J. Peng, "An efficient gradient-based algorithm for
on-line training of recurrent network trajectories", Neural Computation 2(4), 1990.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from rnnlab import _checks
from rnnlab.cells import Cell
from rnnlab.gradients import _base
from rnnlab.gradients._base import Chunk, Estimator, EstimatorState, StepLoss
from rnnlab.unrolling import unroll

__all__ = ["TruncationTrace", "bptt", "tbptt"]


def scan_steps(cell: Cell, cell_params, carry, inputs, resets, valid):
    """Runs ``cell`` over ``inputs [N, S, F]`` from ``carry`` (leaves ``[N, ...]``).

    TBPTT's own scan: it skips the not-yet-filled prefix of the carried history (``valid``)
    and returns the carry before every step, which :func:`rnnlab.unroll` does not.

    ``resets [N, S]`` restores ``cell.initial_carry`` before a step; where ``valid [S]``
    is False the step is skipped (the carry passes through unchanged).

    Returns:
      ``(final_carry, ys [N, S, Y], carries_before)`` with ``carries_before`` leaves
      ``[S, N, ...]``: the carry each step starts from (after its reset).
    """
    initial = cell.initial_carry((inputs.shape[0],))
    xs = jnp.moveaxis(inputs, 1, 0)
    step = cell.step
    if cell.prepare is not None:
        cell_params = cell.prepare(cell_params)

    def body(c, scanned):
        x, reset, ok = scanned
        start = _base.tree_where(reset, initial, c)
        new, y = step(cell_params, start, x)
        return _base.tree_where(ok, new, c), (y, start)

    final, (ys, starts) = jax.lax.scan(body, carry, (xs, jnp.moveaxis(resets, 1, 0), valid))
    return final, jnp.moveaxis(ys, 0, 1), starts


def _state(cell: Cell, params, batch_shape, carry, key, trace) -> EstimatorState:
    _base.check_params(params)
    carry = _base.initial_carry(cell, batch_shape, carry)
    return EstimatorState(carry=carry, trace=trace(carry), key=_base.default_key(key))


def bptt(cell: Cell, step_loss: StepLoss) -> Estimator:
    """Backpropagation through time over each chunk: the reference estimator.

    The gradient is exact for the chunk's loss given the incoming carry (which is held
    constant: consecutive chunks are truncated at their boundaries, nowhere else).
    Memory grows with ``T`` (every step's activations are kept for the backward pass).
    """

    def init(params, batch_shape=(), *, key=None, carry=None):
        return _state(cell, params, batch_shape, carry, key, lambda carry: None)

    def update(params, state, chunk: Chunk):
        flat = _base.flatten_chunk(cell, params, state, chunk)

        def loss_fn(params):
            ys, final = unroll(
                cell, params["cell"], flat.inputs, carry=flat.carry, resets=flat.resets,
                reset_carry=cell.initial_carry((flat.size,)),
            )  # fmt: skip
            losses = _base.step_losses(step_loss, params, ys, flat.data)
            return jnp.sum(losses) / flat.size, final

        (loss, final), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        carry = _base.unflatten_batch(final, flat.batch_shape)
        return loss, grads, state._replace(carry=carry)

    return Estimator("bptt", {}, init, update)


class TruncationTrace(NamedTuple):
    """What TBPTT(k1, k2) carries across chunks: the last ``h = k2 - k1`` steps.

    Attributes:
      start: the carry before the first of those steps, leaves ``[*batch, ...]``.
      inputs: ``[*batch, h, F]`` their inputs.
      resets: ``[*batch, h]`` their resets.
      filled: int32 scalar, how many of the ``h`` steps are real (a stream's first
        chunks have fewer than ``h`` predecessors; the others are skipped).
    """

    start: _base.Carry
    inputs: jax.Array
    resets: jax.Array
    filled: jax.Array


def check_truncation(k1: int, k2: int, steps: int | None = None) -> None:
    """Raises ValueError naming ``k1``/``k2`` for lengths <= 0, ``k2 < k1``, or (given the
    chunk length ``steps``) ``k1 > steps`` or ``steps`` not a multiple of ``k1``."""
    k1 = _checks.positive_int("tbptt truncation k1", k1)
    k2 = _checks.positive_int("tbptt truncation k2", k2)
    if k2 < k1:
        raise ValueError(
            f"tbptt needs k2 >= k1 (every k1 steps, backpropagate k2 steps), got k1={k1}, "
            f"k2={k2}; with k2 < k1 some losses would never be backpropagated"
        )
    if steps is None:
        return
    if k1 > steps:
        raise ValueError(
            f"tbptt truncation k1={k1} exceeds the chunk length T={steps}; use k1 <= T "
            f"(k1 = k2 = T is full BPTT)"
        )
    if steps % k1:
        raise ValueError(
            f"the chunk length T={steps} must be a multiple of the tbptt truncation k1={k1} "
            "(a gradient is taken every k1 steps)"
        )


def tbptt(cell: Cell, step_loss: StepLoss, k1: int, k2: int | None = None) -> Estimator:
    """TBPTT(k1, k2) of Williams & Peng 1990 (``k2`` defaults to ``k1``).

    For the window ending at each multiple ``t`` of ``k1`` in the chunk, the steps
    ``t-k2+1..t`` are unrolled from the carry at ``t-k2`` (held constant) and the
    losses of steps ``t-k1+1..t`` are backpropagated through them; the gradients of all
    windows are summed.  With ``k2 > k1`` the windows overlap, so each step is recomputed
    up to ``ceil(k2 / k1)`` times; memory is that of BPTT over ``k2`` steps.

    Args:
      cell: the cell.
      step_loss: the per-example, per-step loss (see :mod:`rnnlab.gradients`).
      k1: the gradient interval; chunks must be a multiple of it long.
      k2: the backpropagation depth, ``>= k1``; may exceed the chunk length (the state
        keeps the last ``k2 - k1`` inputs).

    Raises:
      ValueError: naming ``k1``/``k2`` for lengths <= 0 or ``k2 < k1``; at update time
        for ``k1`` greater than the chunk length ``T`` or ``T`` not a multiple of ``k1``.
    """
    k2 = k1 if k2 is None else k2
    check_truncation(k1, k2)
    history = k2 - k1

    def empty_trace(params):
        def trace(carry):
            batch_shape = _base.batch_shape_of(cell, carry)
            dtype = jax.tree.leaves(carry)[0].dtype
            features = cell.input_size(params["cell"])
            return TruncationTrace(
                start=carry,
                inputs=jnp.zeros((*batch_shape, history, features), dtype),
                resets=jnp.zeros((*batch_shape, history), bool),
                filled=jnp.zeros((), jnp.int32),
            )

        return trace

    def init(params, batch_shape=(), *, key=None, carry=None):
        _base.check_params(params)
        return _state(cell, params, batch_shape, carry, key, empty_trace(params))

    def update(params, state, chunk: Chunk):
        flat = _base.flatten_chunk(cell, params, state, chunk)
        steps, trace = flat.length, state.trace
        check_truncation(k1, k2, steps)
        flatten = lambda tree: _base.flatten_batch(tree, flat.batch_shape)  # noqa: E731
        # The stream as seen by this update: the carried history, then the chunk.
        inputs = jnp.concatenate([flatten(trace.inputs).astype(flat.inputs.dtype), flat.inputs], 1)
        resets = jnp.concatenate([flatten(trace.resets), flat.resets], 1)
        valid = jnp.arange(history + steps, dtype=jnp.int32) >= history - trace.filled
        cell_params = jax.lax.stop_gradient(params["cell"])
        final, _, starts = scan_steps(
            cell, cell_params, flatten(trace.start), inputs, resets, valid
        )

        def window_loss(params, window):
            first = window * k1  # the window covers stream positions [first, first + k2)
            start = jax.tree.map(lambda c: c[first], starts)
            piece = lambda a: jax.lax.dynamic_slice_in_dim(a, first, k2, axis=1)  # noqa: E731
            _, ys, _ = scan_steps(
                cell,
                params["cell"],
                start,
                piece(inputs),
                piece(resets),
                jax.lax.dynamic_slice_in_dim(valid, first, k2),
            )
            data = jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, first, k1, 1), flat.data)
            return jnp.sum(_base.step_losses(step_loss, params, ys[:, history:], data)) / flat.size

        def accumulate(total, window):
            loss, grads = jax.value_and_grad(window_loss)(params, window)
            return (total[0] + loss, _base.tree_add(total[1], grads)), None

        zero = (
            jnp.zeros((), jnp.result_type(*jax.tree.leaves(params))),
            _base.tree_zeros_like(params),
        )
        (loss, grads), _ = jax.lax.scan(accumulate, zero, jnp.arange(steps // k1))
        unflatten = lambda tree: _base.unflatten_batch(tree, flat.batch_shape)  # noqa: E731
        new_trace = TruncationTrace(
            start=unflatten(jax.tree.map(lambda c: c[steps], _append(starts, final))),
            inputs=unflatten(inputs[:, steps:]),
            resets=unflatten(resets[:, steps:]),
            filled=jnp.minimum(trace.filled + steps, history).astype(jnp.int32),
        )
        return loss, grads, state._replace(carry=unflatten(final), trace=new_trace)

    return Estimator("tbptt", {"k1": k1, "k2": k2}, init, update)


def _append(starts, final):
    """``starts [S, N, ...]`` followed by ``final [N, ...]``: the carry before every step."""
    return jax.tree.map(lambda s, f: jnp.concatenate([s, f[None]], 0), starts, final)
