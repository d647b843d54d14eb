r"""The parallel path of :func:`rnnlab.unroll`: diagonal linear recurrences by associative scan.

A cell that declares a :class:`rnnlab.cells.LinearRecurrence` has the step
``h_t = a_t * h_{t-1} + b_t`` with ``a_t, b_t`` functions of ``x_t`` only.  The pairs
``(a_t, b_t)`` compose associatively,

.. math::  (a_i, b_i) \circ (a_j, b_j) = (a_j a_i,\; a_j b_i + b_j),

so ``jax.lax.associative_scan`` computes every ``h_t`` in ``O(log T)`` depth
(Blelloch 1990; used for the LRU by Orvieto et al. 2023 and for minGRU/minLSTM by
Feng et al. 2024).  Everything :func:`rnnlab.unroll` offers maps onto the pairs:

- the initial carry and ``resets`` (a start before step ``t``) fold ``h_0`` into the
  pair: ``(a_t, b_t) -> (0, a_t h_0 + b_t)``;
- padded steps (``t >= lengths``) become the identity ``(1, 0)``, which freezes ``h``;
- ``reverse`` scans from the end (per-sequence reversal is done by ``unroll``).

In log space (``LinearRecurrence.log_space``) the pairs are ``(log a, log b)`` of
positive numbers and ``+`` becomes a ``logaddexp`` that is safe at ``-inf``, whose
identity is ``(0, -inf)``.  The carry may have any sign there: ``h_t = B_t + h_0 A_t``
with ``B`` scanned from ``h_0 = 0`` and ``A`` the product of ``a`` since the last start.

On a 2-core CPU this path is slower than the sequential scan (``make bench``
measures both); its payoff is depth ``log T`` on accelerators.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["linear_scan", "log_add_exp"]


def log_add_exp(x: jax.Array, y: jax.Array) -> jax.Array:
    """``log(exp(x) + exp(y))`` with finite gradients where both are ``-inf``.

    ``jnp.logaddexp(-inf, -inf)`` is ``-inf`` but its gradient is NaN, which a
    padded empty sequence would hit; here that gradient is 0.
    """
    top = jnp.maximum(x, y)
    finite = jnp.isfinite(top)
    shift = jnp.where(finite, top, jnp.zeros_like(top))
    total = jnp.exp(x - shift) + jnp.exp(y - shift)
    positive = total > 0
    safe_total = jnp.where(positive, total, jnp.ones_like(total))
    return jnp.where(positive, shift + jnp.log(safe_total), jnp.full_like(top, -jnp.inf))


def _combine(earlier, later):
    a_i, b_i = earlier
    a_j, b_j = later
    return a_j * a_i, a_j * b_i + b_j


def _combine_log(earlier, later):
    """The operator in log space; ``b`` may be a pytree sharing one ``a``."""
    a_i, b_i = earlier
    a_j, b_j = later
    return a_i + a_j, jax.tree.map(lambda bi, bj: log_add_exp(a_j + bi, bj), b_i, b_j)


def _flag(flag: jax.Array, like: jax.Array) -> jax.Array:
    return flag.reshape(flag.shape + (1,) * (like.ndim - flag.ndim))


def _value_at_last_start(starts: jax.Array, values: jax.Array, reverse: bool) -> jax.Array:
    """``values`` at the most recent start (in scan order) of every step: ``[..., T, N]``."""
    steps = starts.shape[-1]
    index = jnp.arange(steps)
    if reverse:
        last = jnp.where(starts, index, steps - 1)
        last = jax.lax.cummin(last, axis=starts.ndim - 1, reverse=True)
    else:
        last = jax.lax.cummax(jnp.where(starts, index, 0), axis=starts.ndim - 1)
    if values.shape[-2] == 1:
        return values
    values = jnp.broadcast_to(values, last.shape + values.shape[-1:])
    return jnp.take_along_axis(values, last[..., None], axis=-2)


def linear_scan(
    cell,
    params,
    xs: jax.Array,
    initial: jax.Array,
    *,
    valid: jax.Array | None = None,
    resets: jax.Array | None = None,
    reset_carry: jax.Array | None = None,
    reverse: bool = False,
):
    """All carries and outputs of a cell with a :class:`LinearRecurrence`, in parallel.

    Args:
      cell: a cell whose ``linear`` is set; its carry is one array ``h: [..., N]``.
      params: its params.
      xs: ``[..., T, F]`` inputs (batch-major).
      initial: ``h_0: [..., N]``.
      valid: optional bool ``[..., T]``; invalid (padded) steps leave ``h`` unchanged.
      resets: optional bool ``[..., T]``; ``h`` restarts before step ``t``.
      reset_carry: what a reset restores, ``[..., N]``; default ``h_0``.
      reverse: scan from ``t = T - 1`` down to 0.

    Returns:
      ``(final, ys, hs)``: the carry after the last step scanned, the outputs
      ``ys: [..., T, H]`` (zero at invalid steps) and the carries ``hs: [..., T, N]``.
    """
    coefficients, log_space = cell.linear.coefficients, cell.linear.log_space
    a, b = coefficients(params, xs)  # [..., T, N], or any shapes that broadcast to it
    shape = jnp.broadcast_shapes(a.shape, b.shape)  # a time-invariant a (the LRU's lambda)
    a, b = jnp.broadcast_to(a, shape), jnp.broadcast_to(b, shape)
    steps = xs.shape[-2]
    first = jnp.arange(steps) == (steps - 1 if reverse else 0)
    starts = first if resets is None else resets | first  # [..., T]
    if valid is not None:
        starts = starts & valid
    start = _flag(jnp.broadcast_to(starts, a.shape[:-1]), a)
    h0 = jnp.expand_dims(initial, -2)
    # The value each start restores: reset_carry at a reset (the first step's too, as in
    # the sequential scan), h_0 at a first step without one.
    if reset_carry is None:
        restart = h0
    else:
        initial_start = first if resets is None else first & ~resets
        restart = jnp.where(initial_start[..., None], h0, jnp.expand_dims(reset_carry, -2))
    keep = None if valid is None else _flag(jnp.broadcast_to(valid, a.shape[:-1]), a)
    if log_space:
        # h_t = exp(log B_t) + h_0 exp(log A_t), exact for a carry of any sign: B is the scan
        # from h_0 = 0, and A the product of a since the last start (its own b is log a at
        # a start and -inf elsewhere).  Both share the scan's a.
        cut = jnp.where(start, jnp.full_like(a, -jnp.inf), a)
        since = jnp.where(start, a, jnp.full_like(a, -jnp.inf))
        elements = (cut, (b, since))
        identity = (jnp.zeros_like(a), (jnp.full_like(b, -jnp.inf), jnp.full_like(a, -jnp.inf)))
        combine = _combine_log
    else:
        elements = (jnp.where(start, jnp.zeros_like(a), a), jnp.where(start, a * restart + b, b))
        identity = (jnp.ones_like(a), jnp.zeros_like(b))
        combine = _combine
    if keep is not None:
        elements = jax.tree.map(lambda e, i: jnp.where(keep, e, i), elements, identity)
    _, hs = jax.lax.associative_scan(combine, elements, reverse=reverse, axis=a.ndim - 2)
    if log_space:
        from_zero, product = hs
        hs = jnp.exp(from_zero) + _value_at_last_start(starts, restart, reverse) * jnp.exp(product)
    # Before a sequence's first valid step (an empty sequence) h is still h_0.
    if valid is not None:
        seen = jnp.cumsum(valid[..., ::-1] if reverse else valid, axis=-1) > 0
        seen = seen[..., ::-1] if reverse else seen
        hs = jnp.where(_flag(seen, hs), hs, jnp.broadcast_to(h0, hs.shape))
    ys = cell.output_of(params, hs, xs)
    if valid is not None:
        ys = jnp.where(_flag(valid, ys), ys, jnp.zeros_like(ys))
    final = hs[..., 0 if reverse else steps - 1, :]
    return final, ys, hs
