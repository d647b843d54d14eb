"""Unrolling a cell over time with ``jax.lax.scan``: lengths, reverse, resets, remat."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import fused
from rnnlab.cells._base import Carry, Cell, Params

#: Apply ``cell.project_inputs`` to the whole sequence before the time loop.
#: Measured by ``experiments/bench.py``; see the README's benchmark table.
HOIST_INPUT_PROJECTION = True


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _broadcast_flag(flag: jax.Array, leaf: jax.Array) -> jax.Array:
    """Appends trailing unit axes so a ``[*batch]`` flag broadcasts against ``leaf``."""
    return flag.reshape(flag.shape + (1,) * (leaf.ndim - flag.ndim))


def tree_where(flag: jax.Array, on_true, on_false):
    """``jnp.where`` over two pytrees with the same structure, ``flag: [*batch]``."""
    return jax.tree.map(lambda a, b: jnp.where(_broadcast_flag(flag, a), a, b), on_true, on_false)


def _check_inputs(cell: Cell, params, xs, carry, lengths, resets):
    if xs.ndim < 2:
        raise ValueError(
            f"xs must have shape [..., T, F] (time second-to-last), got shape {xs.shape}; "
            "add a time axis, e.g. xs[..., None, :] for a single step"
        )
    batch_shape, steps, features = xs.shape[:-2], xs.shape[-2], xs.shape[-1]
    expected = cell.input_size(params)
    if features != expected:
        raise ValueError(
            f"xs has feature size {features} (last axis) but the params of this "
            f"{cell.name} cell expect input_size={expected}; pass xs of shape "
            f"[..., T, {expected}] or re-initialize with cell.init(key, {features})"
        )
    if carry is not None:
        expected_carry = jax.eval_shape(lambda: cell.initial_carry(batch_shape))
        got = jax.tree.map(lambda a: tuple(jnp.shape(a)), carry)
        want = jax.tree.map(lambda a: tuple(a.shape), expected_carry)
        if jax.tree.structure(carry) != jax.tree.structure(expected_carry) or got != want:
            raise ValueError(
                f"carry has shapes {got} but xs of shape {xs.shape} needs batch shape "
                f"{batch_shape}, i.e. carry shapes {want}; build it with "
                f"cell.initial_carry({batch_shape})"
            )
    if lengths is not None:
        if lengths.shape != batch_shape:
            raise ValueError(
                f"lengths has shape {lengths.shape} but must have the batch shape of xs, "
                f"{batch_shape} (xs is {xs.shape} = [..., T, F])"
            )
        if not jnp.issubdtype(lengths.dtype, jnp.integer):
            raise ValueError(f"lengths must be integers, got dtype {lengths.dtype}")
        if _is_concrete(lengths):
            values = np.asarray(lengths)
            if values.size and (values.min() < 0 or values.max() > steps):
                raise ValueError(
                    f"lengths must lie in [0, T] = [0, {steps}], got values in "
                    f"[{values.min()}, {values.max()}]; clip them or pad xs to the longest"
                )
    if resets is not None and resets.shape != (*batch_shape, steps):
        raise ValueError(
            f"resets has shape {resets.shape} but must be [..., T] = {(*batch_shape, steps)} "
            f"to match xs of shape {xs.shape}"
        )


def reversal_indices(lengths: jax.Array, steps: int) -> jax.Array:
    """``[*batch, T]`` indices reversing each sequence within its own length.

    Position ``t < L`` maps to ``L - 1 - t``; padding (``t >= L``) stays in place.
    The map is an involution, so the same indices undo it.
    """
    t = jnp.arange(steps)
    lengths = lengths[..., None]
    return jnp.where(t < lengths, lengths - 1 - t, t)


def _gather_time(tree, index: jax.Array, batch_ndim: int):
    """Gathers ``tree`` leaves ``[*batch, T, ...]`` along time with ``index [*batch, T]``."""

    def gather(leaf):
        idx = index.reshape(index.shape + (1,) * (leaf.ndim - batch_ndim - 1))
        return jnp.take_along_axis(leaf, idx, axis=batch_ndim)

    return jax.tree.map(gather, tree)


def unroll(
    cell: Cell,
    params: Params,
    xs: jax.Array,
    *,
    carry: Carry | None = None,
    lengths: jax.Array | None = None,
    reverse: bool = False,
    resets: jax.Array | None = None,
    unroll: int = 1,
    remat: bool = False,
    return_carries: bool = False,
):
    """Runs ``cell`` over the time axis of ``xs`` with ``jax.lax.scan``.

    Args:
      cell: a :class:`rnnlab.cells.Cell`.
      params: the cell's params.
      xs: ``[..., T, F]`` inputs; time is the second-to-last axis and any number of
        leading batch dimensions (including none) are allowed.
      carry: the initial carry, leaves ``[..., *]`` with the batch shape of ``xs``;
        default ``cell.initial_carry(batch_shape)``.
      lengths: optional integer ``[...]`` (the batch shape) valid lengths in ``[0, T]``.
        Steps ``t >= lengths`` output exact zeros and leave the carry unchanged, so
        ``final_carry`` is the carry after each sequence's last valid step; their
        inputs (even NaN) and resets reach neither the outputs nor the gradients.
      reverse: run each sequence from its own last valid step ``lengths - 1`` back to
        step 0.  Outputs stay aligned with input positions, and padded results equal
        those of the unpadded sequences.
      resets: optional bool ``[..., T]``; ``resets[..., t]`` resets the carry to its
        initial value before step ``t`` is consumed (episode boundaries).  With
        ``reverse=True`` the same boundaries are honoured in the backward sweep.
      unroll: passed to ``lax.scan`` (measured slower than 1 on CPU).
      remat: rematerialize each step in the backward pass (``jax.checkpoint``),
        trading compute for the memory of the per-step intermediates.
      return_carries: also return the carry after every step.

    Returns:
      ``(ys, final_carry)`` with ``ys: [..., T, H]``, or
      ``(ys, final_carry, carries)`` with ``carries`` leaves ``[..., T, *]`` if
      ``return_carries``.  ``carries[..., t, :]`` is the carry after consuming
      ``xs[..., t, :]``.

    Raises:
      ValueError: naming the argument, for a wrong feature size, mismatched batch
        shapes, concrete ``lengths`` outside ``[0, T]`` or a bad ``resets`` shape.
    """
    xs = jnp.asarray(xs)
    lengths = None if lengths is None else jnp.asarray(lengths)
    resets = None if resets is None else jnp.asarray(resets, bool)
    _check_inputs(cell, params, xs, carry, lengths, resets)
    batch_shape, steps = xs.shape[:-2], xs.shape[-2]
    if lengths is not None:
        # The default int dtype of jnp.arange, so strict dtype promotion accepts any int dtype.
        lengths = lengths.astype(int)
        # Zero the padding: a non-finite padded input would otherwise turn the gradients
        # NaN (0 * inf in the masked steps' backward), though the outputs ignore it.
        padded = jnp.arange(steps)[:, None] >= lengths[..., None, None]
        xs = jnp.where(padded, jnp.zeros_like(xs), xs)
    batch_ndim = len(batch_shape)
    initial = cell.initial_carry(batch_shape) if carry is None else carry

    if reverse and resets is not None:
        # Walking backwards, a boundary before step t+1 means: reset before step t.
        resets = jnp.concatenate([resets[..., 1:], jnp.zeros_like(resets[..., :1])], axis=-1)
        if lengths is not None:
            resets = resets & (jnp.arange(steps) + 1 < lengths[..., None])

    # With lengths, reverse each sequence within its length and run forwards; without,
    # lax.scan(reverse=True) walks the shared time axis backwards in place.
    permutation = None
    if reverse and lengths is not None:
        permutation = reversal_indices(lengths, steps)
        xs = _gather_time(xs, permutation, batch_ndim)
        if resets is not None:
            resets = _gather_time(resets, permutation, batch_ndim)
    scan_reverse = reverse and lengths is None

    # Time-major before projecting: moving [..., T, F] costs less than [..., T, G*H].
    time_major = jnp.moveaxis(xs, -2, 0)
    recurrence = fused.dispatch(
        cell,
        lengths=lengths,
        resets=resets,
        unroll=unroll,
        remat=remat,
        return_carries=return_carries,
    )
    if recurrence is not None and HOIST_INPUT_PROJECTION:
        # A linear input projection is computed and differentiated inside the fast path.
        if not recurrence.linear_inputs:
            time_major = cell.project_inputs(params, time_major)
        final, outputs = fused.fused_scan(
            recurrence, params, time_major, initial, reverse=scan_reverse
        )
    else:
        final, outputs = _generic_scan(
            cell,
            params,
            time_major,
            initial,
            lengths=lengths,
            resets=resets,
            reverse=scan_reverse,
            unroll=unroll,
            remat=remat,
            return_carries=return_carries,
        )

    def to_batch_major(tree):
        tree = jax.tree.map(lambda a: jnp.moveaxis(a, 0, batch_ndim), tree)
        return tree if permutation is None else _gather_time(tree, permutation, batch_ndim)

    if return_carries:
        ys, carries = outputs
        return to_batch_major(ys), final, to_batch_major(carries)
    return to_batch_major(outputs), final


def _generic_scan(
    cell, params, time_major, initial, *, lengths, resets, reverse, unroll, remat, return_carries
):
    """``lax.scan`` of ``cell``'s step over ``[T, ..., F]`` inputs, with masking and resets.

    Under ``remat`` the input projection stays in the loop, so no ``[T, ..., G*H]``
    buffer is kept for the backward pass.
    """
    steps, batch_ndim = time_major.shape[0], time_major.ndim - 2
    if HOIST_INPUT_PROJECTION and not remat and cell.project_inputs is not None:
        time_major = cell.project_inputs(params, time_major)
        step = cell.step_projected
    else:
        step = cell.step
    valid = None
    if lengths is not None:
        valid = jnp.arange(steps).reshape((steps,) + (1,) * batch_ndim) < lengths
    resets_tm = None if resets is None else jnp.moveaxis(resets, -1, 0)

    def body(c, scanned):
        x_t, valid_t, reset_t = scanned
        # A padded step keeps the pre-reset carry: resets past the length are ignored.
        start = c if reset_t is None else tree_where(reset_t, initial, c)
        new_c, y = step(params, start, x_t)
        if valid_t is not None:
            new_c = tree_where(valid_t, new_c, c)
            y = jnp.where(_broadcast_flag(valid_t, y), y, jnp.zeros_like(y))
        return new_c, ((y, new_c) if return_carries else y)

    if remat:
        body = jax.checkpoint(body)
    return jax.lax.scan(
        body, initial, (time_major, valid, resets_tm), reverse=reverse, unroll=unroll
    )
