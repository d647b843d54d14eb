"""Unrolling a cell over time: one function, three paths, every option for every cell.

:func:`unroll` handles lengths, reverse, resets, initial carries, any batch shape,
remat and the dtype policy once, then runs one of three paths:

- ``"sequential"``: ``jax.lax.scan`` of ``cell.step`` (every cell, every option);
- ``"fused"``: the cuDNN-style scan with a hand-written backward of
  :mod:`rnnlab.fused`, for cells that declare a :class:`~rnnlab.cells.DenseRecurrence`;
- ``"parallel"``: ``jax.lax.associative_scan`` of :mod:`rnnlab.parallel`, for cells
  that declare a :class:`~rnnlab.cells.LinearRecurrence`.

All three compute the same function (tested to float rounding); ``path="auto"``
picks the fastest that applies on the current backend (:data:`AUTO_PREFERENCE`).

Dtype policy: the computation runs in the floating dtype of the parameters.  ``xs``
and every floating leaf of the carry (given or initial) are cast to it (complex leaves
to the complex dtype of that precision), so float64 inputs with float32 params,
float16 params with float32 inputs, or params cast to float64 after ``init``, compute
in the params' precision instead of failing.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import _checks, fused, parallel
from rnnlab.cells._cell import Carry, Cell, Params

__all__ = ["AUTO_PREFERENCE", "PATHS", "supported_paths", "tree_where", "unroll"]

PATHS = ("auto", "sequential", "fused", "parallel")

#: The order in which ``path="auto"`` tries the paths, per backend; the first that
#: applies to the cell and the options wins.  Measured with ``make bench`` (section
#: ``paths``): on a 2-core CPU the fused path beats the sequential scan by 15-25% for
#: the dense cells, and the associative scan is 1.4-5x slower than the sequential scan
#: for the LRU, minGRU and minLSTM at every T from 256 to 16384, so the CPU never picks
#: it (RG-LRU is the exception: its parallel training step measured 0.47-0.65x the
#: sequential one, as its gates are computed outside the loop; a per-cell preference
#: is not implemented).  On an H200 GPU (jax 0.11.2; B=16, H=64, training step) the
#: parallel path took 0.016x (T=1024) and 0.003-0.007x (T=16384) the sequential scan's
#: time for the LRU, minGRU and RG-LRU, and the fused path 0.69x the sequential one for
#: the LSTM at T=200 (B=32, H=128), so the GPU order is measured; the TPU order follows
#: the literature (Orvieto et al. 2023, Feng et al. 2024) and is not measured.
AUTO_PREFERENCE = {
    "cpu": ("fused", "sequential"),
    "gpu": ("parallel", "fused", "sequential"),
    "cuda": ("parallel", "fused", "sequential"),
    "rocm": ("parallel", "fused", "sequential"),
    "tpu": ("parallel", "sequential"),
}


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _broadcast_flag(flag: jax.Array, leaf: jax.Array) -> jax.Array:
    """Appends trailing unit axes so a ``[*batch]`` flag broadcasts against ``leaf``."""
    return flag.reshape(flag.shape + (1,) * (leaf.ndim - flag.ndim))


def tree_where(flag: jax.Array, on_true, on_false):
    """``jnp.where`` over two pytrees with the same structure, ``flag: [*batch]``."""
    return jax.tree.map(lambda a, b: jnp.where(_broadcast_flag(flag, a), a, b), on_true, on_false)


def supported_paths(
    cell: Cell,
    *,
    lengths=None,
    resets=None,
    remat: bool = False,
    return_carries: bool = False,
    unroll: int = 1,
) -> dict[str, str | None]:
    """For each explicit path, ``None`` if it can run ``cell`` with these options, else why not."""
    reasons: dict[str, str | None] = {"sequential": None}
    if cell.dense is None:
        reasons["fused"] = f"cell {cell.name!r} declares no DenseRecurrence (dense=...)"
    else:
        blocked = [
            name
            for name, used in (
                ("lengths", lengths is not None),
                ("resets", resets is not None),
                ("remat", remat),
                ("return_carries", return_carries),
                ("unroll", unroll != 1),
            )
            if used
        ]
        reasons["fused"] = (
            f"the fused path does not support {', '.join(blocked)}" if blocked else None
        )
    if cell.linear is None:
        reasons["parallel"] = f"cell {cell.name!r} declares no LinearRecurrence (linear=...)"
    elif remat or unroll != 1:
        reasons["parallel"] = "the parallel path takes neither remat nor unroll"
    else:
        reasons["parallel"] = None
    return reasons


def _parallel_cells() -> list[str]:
    from rnnlab import cells

    names = []
    for name in cells.available():
        try:
            if cells.make(name, 1).linear is not None:
                names.append(name)
        except Exception:  # a user's factory that cannot build at size 1
            continue
    return names


def _choose_path(cell: Cell, path: str, options: dict) -> str:
    _checks.choice("path", path, PATHS)
    reasons = supported_paths(cell, **options)
    if path == "auto":
        preference = AUTO_PREFERENCE.get(jax.default_backend(), ("fused", "sequential"))
        return next(p for p in (*preference, "sequential") if reasons.get(p) is None)
    if reasons[path] is not None:
        hint = ""
        if path == "parallel" and cell.linear is None:
            hint = f"; cells with a parallel path: {_parallel_cells()}"
        raise ValueError(
            f"path={path!r} cannot run this call: {reasons[path]}{hint}. Use path='auto' or "
            "path='sequential'"
        )
    return path


def _compute_dtype(params, xs: jax.Array):
    """The real floating dtype of the params (the dtype policy), or that of ``xs``."""
    dtypes = [
        jnp.result_type(leaf)
        for leaf in jax.tree.leaves(params)
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)
    ]
    if not dtypes:
        return xs.dtype if jnp.issubdtype(xs.dtype, jnp.floating) else jnp.float32
    dtype = jnp.result_type(*dtypes)
    return jnp.finfo(dtype).dtype  # complex64 -> float32


def _carry_dtype(leaf, compute):
    """A carry leaf's dtype under the policy: the params' precision, complex kept complex."""
    if jnp.issubdtype(leaf.dtype, jnp.complexfloating):
        return jnp.complex128 if compute == jnp.float64 else jnp.complex64
    if jnp.issubdtype(leaf.dtype, jnp.floating):
        return compute
    return leaf.dtype


def _check_inputs(cell: Cell, params, xs, carry, lengths, resets):
    if xs.ndim < 2:
        raise ValueError(
            f"xs must have shape [..., T, F] (time second-to-last), got shape {xs.shape}; "
            "add a time axis, e.g. xs[..., None, :] for a single step"
        )
    batch_shape, steps, features = xs.shape[:-2], xs.shape[-2], xs.shape[-1]
    if cell.input_size is not None:
        expected = cell.input_size(params)
        if features != expected:
            raise ValueError(
                f"xs has feature size {features} (last axis) but the params of this "
                f"{cell.name} cell expect input_size={expected}; pass xs of shape "
                f"[..., T, {expected}] or re-initialize with cell.init(key, {features})"
            )
    expected_carry = jax.eval_shape(lambda: cell.initial_carry(batch_shape))
    if carry is not None:
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
    return expected_carry


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
    reset_carry: Carry | None = None,
    unroll: int = 1,
    remat: bool = False,
    return_carries: bool = False,
    path: str = "auto",
):
    """Runs ``cell`` over the time axis of ``xs``.

    Args:
      cell: a :class:`rnnlab.cells.Cell`.
      params: the cell's params.
      xs: ``[..., T, F]`` inputs; time is the second-to-last axis and any number of
        leading batch dimensions (including none) are allowed.  Cast to the params'
        floating dtype (see the module's dtype policy).
      carry: the initial carry, leaves ``[..., *]`` with the batch shape of ``xs``;
        default ``cell.initial_carry(batch_shape)``.  Cast to the params' precision.
      lengths: optional integer ``[...]`` (the batch shape) valid lengths in ``[0, T]``.
        Steps ``t >= lengths`` output exact zeros and leave the carry unchanged, so
        ``final_carry`` is the carry after each sequence's last valid step; their
        inputs (even NaN) and resets reach neither the outputs nor the gradients.
        Concrete lengths outside ``[0, T]`` raise; traced ones (under ``jit``) are
        clipped to ``[0, T]``.
      reverse: run each sequence from its own last valid step ``lengths - 1`` back to
        step 0.  Outputs stay aligned with input positions, and padded results equal
        those of the unpadded sequences.
      resets: optional bool ``[..., T]``; ``resets[..., t]`` resets the carry before
        step ``t`` is consumed (episode boundaries).  With ``reverse=True`` the same
        boundaries are honoured in the backward sweep.
      reset_carry: the carry a reset restores, shaped like ``carry``; default the
        initial carry.  A stream carried across chunks passes
        ``cell.initial_carry(batch_shape)`` here, so a document boundary starts afresh
        rather than from the carried state.
      unroll: passed to ``lax.scan`` (measured slower than 1 on CPU).
      remat: rematerialize each step in the backward pass (``jax.checkpoint``),
        trading compute for the memory of the per-step intermediates.
      return_carries: also return the carry after every step.
      path: ``"auto"`` (default), ``"sequential"``, ``"fused"`` or ``"parallel"``; a
        static choice of implementation (see the module doc).  An explicit path that
        cannot run the cell or the options raises ``ValueError``.  Forward-mode
        autodiff (``jax.jvp``) does not go through ``"fused"``; use
        ``"sequential"`` for it.

    Returns:
      ``(ys, final_carry)`` with ``ys: [..., T, H]``, or
      ``(ys, final_carry, carries)`` with ``carries`` leaves ``[..., T, *]`` if
      ``return_carries``.  ``carries[..., t, :]`` is the carry after consuming
      ``xs[..., t, :]``.

    Raises:
      ValueError: naming the argument, for a wrong feature size, mismatched batch
        shapes, concrete ``lengths`` outside ``[0, T]``, a bad ``resets`` shape or a
        ``path`` that cannot run the call.
    """
    xs = jnp.asarray(xs)
    lengths = None if lengths is None else jnp.asarray(lengths)
    resets = None if resets is None else jnp.asarray(resets, bool)
    expected_carry = _check_inputs(cell, params, xs, carry, lengths, resets)
    path = _choose_path(
        cell,
        path,
        dict(
            lengths=lengths,
            resets=resets,
            remat=remat,
            return_carries=return_carries,
            unroll=unroll,
        ),
    )
    compute = _compute_dtype(params, xs)
    xs = xs.astype(compute)
    if cell.prepare is not None:
        params = cell.prepare(params)
    batch_shape, steps = xs.shape[:-2], xs.shape[-2]
    batch_ndim = len(batch_shape)

    def as_carry(tree, argument):
        if jax.tree.structure(tree) != jax.tree.structure(expected_carry):
            raise ValueError(
                f"{argument} must have the structure of cell.initial_carry({batch_shape}), "
                f"{jax.tree.structure(expected_carry)}"
            )
        return jax.tree.map(
            lambda c, e: jnp.broadcast_to(jnp.asarray(c).astype(_carry_dtype(e, compute)), e.shape),
            tree,
            expected_carry,
        )

    initial = as_carry(cell.initial_carry(batch_shape) if carry is None else carry, "carry")
    reset_to = initial if reset_carry is None else as_carry(reset_carry, "reset_carry")

    if lengths is not None:
        # The default int dtype of jnp.arange, so strict dtype promotion accepts any int dtype.
        lengths = jnp.clip(lengths.astype(int), 0, steps)
        # Zero the padding: a non-finite padded input would otherwise turn the gradients
        # NaN (0 * inf in the masked steps' backward), though the outputs ignore it.
        padded = jnp.arange(steps)[:, None] >= lengths[..., None, None]
        xs = jnp.where(padded, jnp.zeros_like(xs), xs)

    if reverse and resets is not None:
        # Walking backwards, a boundary before step t+1 means: reset before step t.
        resets = jnp.concatenate([resets[..., 1:], jnp.zeros_like(resets[..., :1])], axis=-1)
        if lengths is not None:
            resets = resets & (jnp.arange(steps) + 1 < lengths[..., None])

    # With lengths, reverse each sequence within its length and run forwards; without,
    # the scans walk the shared time axis backwards in place.
    permutation = None
    if reverse and lengths is not None:
        permutation = reversal_indices(lengths, steps)
        xs = _gather_time(xs, permutation, batch_ndim)
        if resets is not None:
            resets = _gather_time(resets, permutation, batch_ndim)
    scan_reverse = reverse and lengths is None
    valid = None if lengths is None else jnp.arange(steps) < lengths[..., None]  # [..., T]

    if path == "parallel":
        final, ys, carries = parallel.linear_scan(
            cell, params, xs, initial, valid=valid, resets=resets, reverse=scan_reverse,
            reset_carry=None if reset_carry is None else reset_to,
        )  # fmt: skip
    else:
        time_major = jnp.moveaxis(xs, -2, 0)
        if path == "fused":
            final, outputs = fused.fused_scan(
                cell.dense, params, time_major, initial, reverse=scan_reverse
            )
        else:
            final, outputs = _sequential_scan(
                cell,
                params,
                time_major,
                initial,
                reset_to=reset_to,
                valid=None if valid is None else jnp.moveaxis(valid, -1, 0),
                resets=None if resets is None else jnp.moveaxis(resets, -1, 0),
                reverse=scan_reverse,
                unroll=unroll,
                remat=remat,
                return_carries=return_carries,
            )
        to_batch = lambda tree: jax.tree.map(lambda a: jnp.moveaxis(a, 0, batch_ndim), tree)  # noqa: E731
        ys, carries = to_batch(outputs) if return_carries else (to_batch(outputs), None)

    if permutation is not None:
        ys = _gather_time(ys, permutation, batch_ndim)
        if return_carries:
            carries = _gather_time(carries, permutation, batch_ndim)
    if return_carries:
        return ys, final, carries
    return ys, final


def _sequential_scan(
    cell, params, time_major, initial, *, reset_to, valid, resets, reverse, unroll, remat,
    return_carries,
):  # fmt: skip
    """``lax.scan`` of ``cell.step`` over ``[T, ..., F]`` inputs, with masking and resets.

    ``valid`` and ``resets`` are time-major ``[T, ...]`` bools.  Outputs may be any
    pytree of arrays.
    """

    def body(c, scanned):
        x_t, valid_t, reset_t = scanned
        # A padded step keeps the pre-reset carry: resets past the length are ignored.
        start = c if reset_t is None else tree_where(reset_t, reset_to, c)
        new_c, y = cell.step(params, start, x_t)
        if valid_t is not None:
            new_c = tree_where(valid_t, new_c, c)
            y = jax.tree.map(lambda leaf: jnp.where(_broadcast_flag(valid_t, leaf), leaf, 0), y)
        return new_c, ((y, new_c) if return_carries else y)

    if remat:
        body = jax.checkpoint(body)
    return jax.lax.scan(body, initial, (time_major, valid, resets), reverse=reverse, unroll=unroll)
