r"""Gradient diagnostics for recurrent networks: how error signals flow back in time.

Every function works for any :class:`rnnlab.cells.Cell` and for layers built from
them (:func:`rnnlab.layers.stacked`, :func:`rnnlab.layers.bidirectional`), with or
without batch dimensions, and honours the options of :func:`rnnlab.unroll`
(``lengths``, ``reverse``, ``resets``, ``carry``, ``remat``, ``unroll``).

- :func:`carry_grad_norms`: ``||dL/dcarry_t||`` for every step ``t`` in one backward
  pass, one curve per carry leaf (``h`` and ``c`` for the LSTM).
- :func:`carry_grad_norms_grid`: the same for a cell family over a grid of
  hyperparameter values x seeds, in one compiled program, with Pascanu's ``eta``;
  :func:`init_grid` draws the grid's params.
- :func:`jacobian_norms`: ``||dcarry_T/dcarry_t||_2`` for every ``t``, exact or by
  matrix-free power iteration.
- :func:`recurrent_spectrum`: singular values, eigenvalues and spectral radius of
  each gate block of the recurrent matrix.
- :func:`pascanu_eta` and :func:`pascanu_bound`: the bound
  ``||dL/dh_k|| <= eta^(T-k) ||dL/dh_T||`` of Pascanu, Mikolov & Bengio 2013.
- :func:`gradient_statistics`: global norm, clipping flag and per-parameter norms
  of a gradient, for use inside a jitted training step.
- :func:`decay_ratio`, :func:`normalized_curves`, :func:`band_stats` and
  :func:`carry_leaf_names`: summaries of many measured curves (ratios, curves anchored
  at their last step, median and percentile bands, the name of each carry leaf).

The output is part of a cell's contract: ``y_t = cell.output(params, carry_t, x_t)``
(the carry itself by default).  The diagnostics differentiate through it, so the
path ``carry_t -> y_t -> L`` is counted, and they check it against ``step``'s own
``y_t``: a cell whose ``output`` disagrees with its ``step`` gets a ``ValueError``
(or, under ``jit``, NaN norms), never silently wrong numbers.

Reference: R. Pascanu, T. Mikolov, Y. Bengio, "On the difficulty of training
recurrent neural networks", ICML 2013.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab.cells._cell import Cell, Params
from rnnlab.cells._rnn import DERIVATIVE_BOUND
from rnnlab.layers import Layer, map_units, recurrent, units
from rnnlab.unrolling import unroll

__all__ = [
    "OUTPUT_MISMATCH_TOLERANCE",
    "RecurrentSpectrum",
    "band_stats",
    "carry_grad_norms",
    "carry_grad_norms_grid",
    "carry_leaf_names",
    "decay_ratio",
    "gradient_statistics",
    "init_grid",
    "jacobian_norms",
    "last_informative_step",
    "normalized_curves",
    "pascanu_bound",
    "pascanu_eta",
    "recurrent_spectrum",
]

#: ``jacobian_norms(method="auto")`` is exact up to this flattened carry size.
EXACT_JACOBIAN_MAX_SIZE = 256

#: Largest ``|y_step - output(carry)| / (1 + |y_step|)`` accepted as agreement.
OUTPUT_MISMATCH_TOLERANCE = 1e-4


# --------------------------------------------------------------------------------------
# The zero-perturbation trick
# --------------------------------------------------------------------------------------


class _Flat(NamedTuple):
    """A carry pytree flattened to ``D`` real numbers (complex leaves as two parts)."""

    size: int
    split: Callable[[jax.Array], object]  # [..., D] -> a carry-shaped pytree of deltas
    join: Callable[[object], jax.Array]  # a carry-shaped pytree [..., *] -> [..., D]


def _flat(cell: Cell) -> _Flat:
    template = jax.eval_shape(cell.initial_carry, ())
    leaves, treedef = jax.tree.flatten(template)
    complex_leaf = [jnp.issubdtype(leaf.dtype, jnp.complexfloating) for leaf in leaves]
    shapes = [leaf.shape for leaf in leaves]
    sizes = [math.prod(s) * (2 if c else 1) for s, c in zip(shapes, complex_leaf, strict=True)]
    offsets = [sum(sizes[:i]) for i in range(len(sizes) + 1)]

    def split(flat):
        batch, pieces = flat.shape[:-1], []
        for start, stop, shape, is_complex in zip(
            offsets[:-1], offsets[1:], shapes, complex_leaf, strict=True
        ):
            piece = flat[..., start:stop]
            if is_complex:
                half = (stop - start) // 2
                piece = jax.lax.complex(piece[..., :half], piece[..., half:])
            pieces.append(piece.reshape(batch + shape))
        return jax.tree.unflatten(treedef, pieces)

    def join(tree):
        parts = []
        for leaf, shape, is_complex in zip(
            jax.tree.leaves(tree), shapes, complex_leaf, strict=True
        ):
            batch = leaf.shape[: leaf.ndim - len(shape)]
            leaf = leaf.reshape(batch + (-1,))
            parts += [jnp.real(leaf), jnp.imag(leaf)] if is_complex else [leaf]
        return jnp.concatenate(parts, axis=-1)

    return _Flat(offsets[-1], split, join)


def _perturbed_cell(cell: Cell, flat: _Flat) -> Cell:
    """``cell`` whose input ``[..., F + D]`` carries a perturbation ``eps_t`` of its carry.

    Step ``t`` adds ``eps_t`` to the carry it produces and reads ``y_t`` from the
    perturbed carry through ``cell.output``, so ``dL/deps_t`` at ``eps = 0`` is the
    total derivative ``dL/dcarry_t``, including the path through ``y_t``.  The output
    is ``(y_t, mismatch_t)``: how far ``output(carry_t)`` is from ``step``'s ``y_t``.
    """
    size = flat.size

    def step(params, carry, inputs):
        x, eps = inputs[..., :-size], inputs[..., -size:]
        new_carry, y = cell.step(params, carry, x)
        delta = flat.split(eps)
        perturbed = jax.tree.map(lambda c, d: c + d.astype(c.dtype), new_carry, delta)
        read = cell.output_of(params, new_carry, x)
        mismatch = jnp.max(
            jnp.abs(jax.lax.stop_gradient(y - read)) / (1.0 + jnp.abs(jax.lax.stop_gradient(y))),
            axis=-1,
        )
        return perturbed, (cell.output_of(params, perturbed, x), mismatch)

    return Cell(
        name=f"perturbed_{cell.name}",
        hidden_size=cell.hidden_size,
        init=cell.init,
        initial_carry=cell.initial_carry,
        step=step,
        prepare=cell.prepare,
    )


def _as_target(target: Cell | Layer, options: dict) -> tuple[Layer, dict]:
    """The layer to perturb and the options its ``apply`` takes."""
    if "return_carries" in options:
        raise ValueError(
            "return_carries is not an option of the diagnostics; they return norms only"
        )
    if "path" in options and options["path"] != "sequential":
        raise ValueError(
            f"path={options['path']!r}: the diagnostics always run the sequential scan; "
            "drop the path argument"
        )
    options = {k: v for k, v in options.items() if k != "path"}
    if isinstance(target, Cell):
        return recurrent(target, reverse=bool(options.pop("reverse", False))), options
    if isinstance(target, Layer):
        if "reverse" in options:
            raise ValueError(
                "reverse applies to a cell; a layer's units already know their direction"
            )
        return target, options
    raise ValueError(
        f"expected an rnnlab Cell or Layer (stacked, bidirectional), got {type(target).__name__}"
    )


class _Perturbed(NamedTuple):
    run: Callable  # run(eps_list) -> (ys, final_carry, mismatch [...])
    eps0: list  # zeros [..., T, D_u] per unit
    flats: list  # _Flat per unit
    layer: Layer


def _perturbed(target: Cell | Layer, params: Params, xs: jax.Array, options: dict) -> _Perturbed:
    layer, options = _as_target(target, options)
    xs = jnp.asarray(xs)
    if xs.ndim < 2:
        raise ValueError(f"xs must have shape [..., T, F], got shape {xs.shape}")
    unit_cells = [unit.cell for unit in units(layer)]
    flats = [_flat(cell) for cell in unit_cells]
    real_dtypes = [
        jnp.finfo(leaf.dtype).dtype
        for cell in unit_cells
        for leaf in jax.tree.leaves(jax.eval_shape(cell.initial_carry, ()))
    ]
    dtype = jnp.result_type(xs.dtype, *real_dtypes)
    xs = xs.astype(dtype)
    eps0 = [jnp.zeros(xs.shape[:-1] + (flat.size,), dtype) for flat in flats]

    def run(eps_list):
        mismatches = []
        pending = iter(zip(eps_list, flats, strict=True))

        def wrap(unit: Layer) -> Layer:
            eps, flat = next(pending)
            cell = _perturbed_cell(unit.cell, flat)

            def apply(params, inputs, *, carry=None, lengths=None, key=None,
                      deterministic=False, **opts):  # fmt: skip
                del key, deterministic
                if unit.cell.input_size is not None:
                    expected = unit.cell.input_size(params)
                    if inputs.shape[-1] != expected:
                        raise ValueError(
                            f"xs has feature size {inputs.shape[-1]} (last axis) but the params "
                            f"of this {unit.cell.name} cell expect input_size={expected}"
                        )
                joined = jnp.concatenate([inputs, eps.astype(inputs.dtype)], axis=-1)
                (ys, mismatch), final = unroll(
                    cell, params, joined, carry=carry, lengths=lengths, reverse=unit.reverse,
                    path="sequential", **opts,
                )  # fmt: skip
                mismatches.append(jnp.max(mismatch, axis=-1))
                return ys, final

            return Layer(
                name=unit.name, kind="recurrent", output_size=unit.output_size,
                init=unit.init, initial_carry=unit.initial_carry, apply=apply,
                cell=unit.cell, reverse=unit.reverse,
            )  # fmt: skip

        perturbed = map_units(layer, wrap)
        ys, final = perturbed.apply(params, xs, deterministic=True, **options)
        return ys, final, jnp.max(jnp.stack(mismatches), axis=0)

    return _Perturbed(run, eps0, flats, layer)


def _checked(values, mismatch: jax.Array, target):
    """``values`` if the output contract held, else ValueError (concrete) or NaN (traced)."""
    bad = jnp.max(mismatch) > OUTPUT_MISMATCH_TOLERANCE
    if not isinstance(bad, jax.core.Tracer):
        if bool(bad):
            name = target.name
            raise ValueError(
                f"cell {name!r}: the y_t its step returns differs from output(params, carry_t, "
                f"x_t) by up to {float(jnp.max(mismatch)):.3g} (relative); the diagnostics "
                "need y_t as a function of the new carry: build the cell with a correct "
                "output=lambda params, carry, x: ..."
            )
        return values
    return jax.tree.map(lambda v: jnp.where(bad, jnp.nan, v), values)


def _layer_carry_tree(layer: Layer, per_unit: list):
    """Per-unit carry-shaped trees assembled into the layer's carry structure."""
    treedef = jax.tree.structure(jax.eval_shape(layer.initial_carry, ()))
    return jax.tree.unflatten(
        treedef, [leaf for tree in per_unit for leaf in jax.tree.leaves(tree)]
    )


def carry_grad_norms(
    cell: Cell | Layer,
    params: Params,
    xs: jax.Array,
    loss_fn: Callable[[jax.Array], jax.Array],
    *,
    per_example: bool = False,
    **unroll_options,
):
    r"""``||dL/dcarry_t||`` for every step, one curve per carry leaf, in one backward pass.

    ``carry_t`` is the carry after consuming ``xs[..., t, :]`` and ``L = loss_fn(ys)``
    with ``ys, _ = rnnlab.unroll(cell, params, xs, **unroll_options)`` (or
    ``layer.apply``).  The gradient is the total derivative of ``L`` with respect to
    ``carry_t``, through all later steps and through the output
    ``y_t = cell.output(params, carry_t, x_t)``.  It is computed with the
    zero-perturbation trick: step ``t`` adds ``eps_t`` to the carry it produces, and
    ``dL/deps_t`` at ``eps = 0`` equals ``dL/dcarry_t``, so one ``jax.grad`` gives
    every step at once.  A complex carry leaf counts as its real and imaginary parts.

    At padded steps (``t >= lengths``) the carry is frozen by :func:`rnnlab.unroll`,
    so the perturbation is ignored and the norm is exactly 0.

    Args:
      cell: any :class:`rnnlab.cells.Cell`, or a :class:`rnnlab.layers.Layer`
        (stacked, bidirectional), whose every cell is perturbed.
      params: its params.
      xs: ``[..., T, F]`` inputs.
      loss_fn: ``loss_fn(ys) -> scalar`` with ``ys: [..., T, H]``.
      per_example: if ``False`` (default), the norm at step ``t`` is taken over the
        batch and feature axes together, i.e. it is the norm of the step-``t`` slice
        of the whole gradient; with a loss summed over examples this is
        ``sqrt(sum_b ||dL_b/dcarry_{b,t}||^2)``.  If ``True``, one norm per example.
      **unroll_options: ``lengths``, ``reverse`` (cells only), ``resets``, ``carry``,
        ``unroll``, ``remat``, passed to :func:`rnnlab.unroll`.

    Returns:
      A pytree shaped like the carry (``LSTMCarry(h, c)`` for the LSTM, an array for
      the RNN and GRU, a tuple per layer for a stack) whose leaves have shape ``[T]``,
      or ``[..., T]`` with ``per_example=True``.

    Raises:
      ValueError: if the cell's ``output`` disagrees with its ``step`` (under ``jit``
        the norms are NaN instead).

    Example::

      cell = rnnlab.lstm(64)
      params = cell.init(key, 8)
      norms = carry_grad_norms(cell, params, xs, lambda ys: jnp.sum(ys[..., -1, :] ** 2))
      decay = norms.h[0] / norms.h[-1]
      # A loss on h_T cannot see c_T (norms.c[-1] == 0): compare c with its step T-1.
      cell_state_decay = norms.c[0] / norms.c[-2]
    """
    perturbed = _perturbed(cell, params, xs, unroll_options)

    def loss(eps_list):
        ys, _, mismatch = perturbed.run(eps_list)
        return loss_fn(ys), mismatch

    grads, mismatch = jax.grad(loss, has_aux=True)(perturbed.eps0)
    batch_ndim = perturbed.eps0[0].ndim - 2

    def norm(leaf):
        squares = jnp.abs(leaf) ** 2
        squares = jnp.sum(squares, axis=tuple(range(batch_ndim + 1, leaf.ndim)))  # [..., T]
        if not per_example:
            squares = jnp.sum(squares, axis=tuple(range(batch_ndim)))
        return jnp.sqrt(squares)

    per_unit = [
        jax.tree.map(norm, flat.split(grad))
        for flat, grad in zip(perturbed.flats, grads, strict=True)
    ]
    return _checked(_layer_carry_tree(perturbed.layer, per_unit), mismatch, cell)


def init_grid(
    make_cell: Callable[[jax.Array, int, Any], Cell],
    hidden_size: int,
    values: jax.Array,
    keys: jax.Array,
    input_size: int,
    dtype=jnp.float64,
) -> Params:
    """Params for :func:`carry_grad_norms_grid`: ``make_cell(values[c], hidden_size,
    dtype).init(keys[s], input_size)`` for every value and seed, leaves ``[C, S, ...]``.

    Every seed's key is shared across values (common random numbers).  Real floating
    leaves of another precision (a factory that ignores ``dtype``) are cast to ``dtype``.

    Args:
      make_cell: ``make_cell(value, hidden_size, dtype) -> Cell``; must take a traced
        value.
      hidden_size: ``H``.
      values: ``[C]`` hyperparameter values.
      keys: ``[S]`` typed keys.
      input_size: ``F``.
      dtype: the params' real dtype.
    """

    def cast(leaf):
        return leaf.astype(dtype) if jnp.issubdtype(leaf.dtype, jnp.floating) else leaf

    def one(value, key):
        return jax.tree.map(cast, make_cell(value, hidden_size, dtype).init(key, input_size))

    return jax.vmap(jax.vmap(one, in_axes=(None, 0)), in_axes=(0, None))(values, keys)


@functools.partial(jax.jit, static_argnames=("make_cell", "hidden_size", "loss_fn", "per_example"))
def carry_grad_norms_grid(
    make_cell: Callable[[jax.Array, int, Any], Cell],
    hidden_size: int,
    values: jax.Array,
    params: Params,
    xs: jax.Array,
    loss_fn: Callable[[jax.Array, Any, Any], jax.Array],
    loss_params: Any = None,
    targets: Any = None,
    *,
    carry: Any = None,
    per_example: bool = False,
):
    r""":func:`carry_grad_norms` for every hyperparameter value and seed, in one program.

    For value ``c`` and seed ``s`` the cell is ``make_cell(values[c], hidden_size, dtype)``
    (``dtype``: the real dtype of ``params``), the loss is ``L_{c,s}(ys) =
    loss_fn(ys, loss_params[c, s], targets[s])`` on ``ys, _ = unroll(cell, params[c, s],
    xs[s], carry=carry[c, s])``, and the result is ``||dL_{c,s}/dcarry_t||`` per carry leaf
    and step ``t``.  The value is traced (``jax.vmap`` over ``C`` and ``S``), so the
    factory must accept an array hyperparameter; the whole grid compiles once per shape.
    Inputs and targets are shared across values (common random numbers).

    For an Elman cell (one whose ``activation`` hyperparameter has a derivative bound) it
    also returns Pascanu, Mikolov & Bengio 2013's ``eta = gamma sigma_max(W_hh)``
    (:func:`pascanu_eta`), which bounds ``||dL/dh_t|| <= eta^(T-t) ||dL/dh_T||`` for a
    loss on the last step.

    Args:
      make_cell: ``make_cell(value, hidden_size, dtype) -> Cell``; hashable (a static
        argument of the compiled program).
      hidden_size: ``H``.
      values: ``[C]`` hyperparameter values.
      params: cell params, leaves ``[C, S, ...]``.
      xs: ``[S, ..., T, F]`` inputs.
      loss_fn: ``loss_fn(ys, loss_params, targets) -> scalar`` with ``ys: [..., T, H]``;
        hashable (e.g. a module-level function).
      loss_params: a pytree with leaves ``[C, S, ...]`` (e.g. a random readout), or None.
      targets: a pytree with leaves ``[S, ...]``, or None.
      carry: the initial carry, leaves ``[C, S, ...]``; None for the cell's own.
      per_example: one norm per example of ``xs``' batch axes ``...`` (see
        :func:`carry_grad_norms`).

    Returns:
      ``(norms, eta)``: ``norms`` shaped like the carry with leaves ``[C, S, T]`` (or
      ``[C, S, ..., T]`` with ``per_example``); ``eta`` ``[C, S]``, or None for a cell
      that is not an Elman RNN.
    """

    def one(value, cell_params, cell_carry, loss_args, xs, targets):
        dtype = jnp.finfo(jax.tree.leaves(cell_params)[0].dtype).dtype
        cell = make_cell(value, hidden_size, dtype)
        options = {} if cell_carry is None else {"carry": cell_carry}
        norms = carry_grad_norms(
            cell, cell_params, xs, lambda ys: loss_fn(ys, loss_args, targets),
            per_example=per_example, **options,
        )  # fmt: skip
        elman = cell.hyperparameters.get("activation") in DERIVATIVE_BOUND
        return norms, pascanu_eta(cell, cell_params) if elman else None

    over_seeds = jax.vmap(one, in_axes=(None, 0, 0, 0, 0, 0))
    return jax.vmap(over_seeds, in_axes=(0, 0, 0, 0, None, None))(
        values, params, carry, loss_params, xs, targets
    )


def _power_iteration_norms(jvp, vjp, shape, dtype, iterations: int, key) -> jax.Array:
    """``sigma_max`` of linear maps by power iteration on ``J^T J``, batched over ``shape[:-1]``.

    ``jvp(v)`` and ``vjp(u)`` apply ``J`` and ``J^T`` to ``[*batch, D]`` stacks.
    """

    def normalize(v):
        return v / jnp.maximum(jnp.linalg.norm(v, axis=-1, keepdims=True), jnp.finfo(dtype).tiny)

    def body(_, v):
        return normalize(vjp(jvp(v)))

    v = normalize(jax.random.normal(key, shape, dtype))
    v = jax.lax.fori_loop(0, iterations, body, v)
    return jnp.linalg.norm(jvp(v), axis=-1)


def jacobian_norms(
    cell: Cell | Layer,
    params: Params,
    xs: jax.Array,
    *,
    method: str = "auto",
    iterations: int = 100,
    key: jax.Array | None = None,
    chunk_size: int | None = 32,
    **unroll_options,
) -> jax.Array:
    r"""Spectral norms ``||d carry_T / d carry_t||_2`` for every step ``t``.

    The state is the whole carry flattened to ``D`` real numbers (``D = H`` for the RNN
    and GRU, ``D = 2H`` with ``(h, c)`` for the LSTM, ``2N`` for a complex LRU state;
    for a layer, every cell's carry); ``carry_T`` is the final carry of
    :func:`rnnlab.unroll` and ``carry_t`` the carry after consuming ``xs[..., t, :]``.
    So the last entry is 1 (an identity), and for a linear RNN ``h_t = h_{t-1} W + x_t U``
    the entry ``t`` is ``||W^{T-1-t}||_2``.  Steps after a sequence's length, and before
    a reset that precedes ``T``, give 0.  (In a bidirectional layer the backward
    direction's final carry is the one after position 0.)

    Methods:

    - ``"exact"``: builds every ``D x D`` Jacobian with ``D`` vector-Jacobian products
      (one batched backward pass through the zero-perturbation trick) and takes its
      largest singular value.  Cost ``O(D T)`` step evaluations, memory ``O(T D^2)``.
    - ``"power"``: matrix-free power iteration on ``J_t^T J_t`` with ``jax.jvp`` and
      ``jax.vjp`` of a perturbation at step ``t``, for every ``t`` (batched over
      ``chunk_size`` steps at a time).  Cost ``O(iterations T^2)`` step evaluations,
      memory ``O(chunk_size T D)``; no ``D x D`` matrix is formed.  The estimate is a
      lower bound that converges like ``(sigma_2/sigma_1)^(2 iterations)``; it is
      exact when the top singular value is isolated, and with a near-degenerate top
      it still lies in ``[sigma_2, sigma_1]``.  Measured against ``"exact"`` (T=40,
      tanh RNN and GRU with H=32, LSTM with H=16, 3 seeds each): never above it by
      more than float32 rounding (4e-7), and below it by at most 3.5e-2 relative
      after 30 iterations and 1e-2 after 100.  Near-orthogonal Jacobians (few steps
      apart, orthogonal init) converge slowest.
    - ``"auto"`` (default): ``"exact"`` if ``D <=`` :data:`EXACT_JACOBIAN_MAX_SIZE`,
      else ``"power"``.

    Args:
      cell: any :class:`rnnlab.cells.Cell`, or a :class:`rnnlab.layers.Layer`.
      params: its params.
      xs: ``[..., T, F]`` inputs.
      method: ``"auto"``, ``"exact"`` or ``"power"``.
      iterations: power iterations (``method="power"``).
      key: PRNG key of the power iteration's start vectors; default ``key(0)``.
      chunk_size: steps handled together by ``"power"`` (``None``: all ``T``).
      **unroll_options: ``lengths``, ``reverse`` (cells only), ``resets``, ``carry``,
        ``unroll``, ``remat``, passed to :func:`rnnlab.unroll`.

    Returns:
      ``[..., T]``, one norm per example and step.
    """
    if method not in ("auto", "exact", "power"):
        raise ValueError(f"method must be 'auto', 'exact' or 'power', got {method!r}")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be a positive int, got {iterations!r}")
    perturbed = _perturbed(cell, params, xs, unroll_options)
    sizes = [flat.size for flat in perturbed.flats]
    offsets = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
    eps0 = jnp.concatenate(perturbed.eps0, axis=-1)  # [..., T, D]
    size, steps = offsets[-1], eps0.shape[-2]
    batch_ndim = eps0.ndim - 2
    final_template = jax.eval_shape(perturbed.layer.initial_carry, ())
    final_complex = [
        jnp.issubdtype(leaf.dtype, jnp.complexfloating) for leaf in jax.tree.leaves(final_template)
    ]

    def final_state(eps):  # [..., T, D] -> ([..., D], mismatch)
        pieces = [eps[..., a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
        _, final, mismatch = perturbed.run(pieces)
        parts = []
        for leaf, is_complex in zip(jax.tree.leaves(final), final_complex, strict=True):
            leaf = leaf.reshape(leaf.shape[:batch_ndim] + (-1,))
            parts += [jnp.real(leaf), jnp.imag(leaf)] if is_complex else [leaf]
        return jnp.concatenate(parts, axis=-1), mismatch

    if method == "exact" or (method == "auto" and size <= EXACT_JACOBIAN_MAX_SIZE):
        _, pullback, mismatch = jax.vjp(final_state, eps0, has_aux=True)
        basis = jnp.eye(size, dtype=eps0.dtype)
        basis = jnp.broadcast_to(
            basis.reshape((size,) + (1,) * batch_ndim + (size,)),
            (size,) + eps0.shape[:-2] + (size,),
        )
        rows = jax.vmap(lambda u: pullback(u)[0])(basis)  # [D_out, ..., T, D_in]
        jacobians = jnp.moveaxis(rows, 0, -2)  # [..., T, D_out, D_in]
        norms = jnp.linalg.norm(jacobians, ord=2, axis=(-2, -1))
        return _checked(norms, mismatch, cell)

    _, linear, mismatch = jax.linearize(final_state, eps0, has_aux=True)
    transpose = jax.linear_transpose(linear, eps0)

    def at_step(t):
        mask = (jnp.arange(steps) == t).astype(eps0.dtype)[:, None]  # [T, 1]
        jvp = lambda v: linear(v[..., None, :] * mask)  # noqa: E731
        vjp = lambda u: transpose(u)[0][..., t, :]  # noqa: E731
        start = jax.random.fold_in(jax.random.key(0) if key is None else key, t)
        return _power_iteration_norms(
            jvp, vjp, eps0.shape[:-2] + (size,), eps0.dtype, iterations, start
        )

    norms = jax.lax.map(at_step, jnp.arange(steps), batch_size=chunk_size)  # [T, ...]
    return _checked(jnp.moveaxis(norms, 0, -1), mismatch, cell)


# --------------------------------------------------------------------------------------
# Spectrum of the recurrent matrix and the Pascanu bound
# --------------------------------------------------------------------------------------


class RecurrentSpectrum(NamedTuple):
    """Spectrum of each ``[H, H]`` gate block of the recurrent matrix.

    ``G`` is the number of gate blocks (1 for the RNN, 4 for the LSTM in the order
    ``i, f, g, o``, 3 for the GRU in the order ``r, z, n``).

    Attributes:
      singular_values: ``[..., G, H]``, descending.
      eigenvalues: ``[..., G, H]`` complex, in no particular order.
      spectral_radius: ``[..., G]``, ``max |eigenvalue|``.
    """

    singular_values: jax.Array
    eigenvalues: jax.Array
    spectral_radius: jax.Array


def _recurrent_blocks(cell: Cell, params: Params) -> jax.Array:
    if cell.recurrent_weight is None:
        raise ValueError(
            f"cell {cell.name!r} has no recurrent_weight; build it with a recurrent_weight "
            "function to use the spectrum diagnostics"
        )
    weight = cell.recurrent_weight(params)  # [..., H, G*H]
    hidden = weight.shape[-2]
    if weight.shape[-1] % hidden:
        raise ValueError(
            f"recurrent_weight must have shape [H, G*H], got {weight.shape}; "
            "the spectrum needs square gate blocks"
        )
    blocks = weight.shape[-1] // hidden
    split = weight.reshape(weight.shape[:-1] + (blocks, hidden))  # [..., H, G, H]
    return jnp.moveaxis(split, -2, -3)  # [..., G, H, H]


def recurrent_spectrum(cell: Cell, params: Params) -> RecurrentSpectrum:
    r"""Singular values, eigenvalues and spectral radius of the recurrent gate blocks.

    The Jacobian of a tanh RNN step is ``diag(sigma'(z_t)) W_hh^T``; ``W_hh`` and its
    transpose share singular values and eigenvalues, so the stored ``x @ W`` layout
    does not matter.  Pascanu et al. 2013: for a linear RNN, spectral radius
    ``< 1`` is sufficient for vanishing gradients and ``> 1`` necessary for
    exploding ones; for a nonlinear RNN, ``sigma_max < 1/gamma`` is sufficient for
    vanishing.

    ``eigenvalues`` uses ``jnp.linalg.eigvals``, which runs on the host (CPU).

    Args:
      cell: a cell with ``recurrent_weight`` (all rnnlab cells).
      params: its params; leading batch axes (e.g. vmapped seeds) are allowed.

    Returns:
      A :class:`RecurrentSpectrum`.
    """
    blocks = _recurrent_blocks(cell, params)
    singular = jnp.linalg.svd(blocks, compute_uv=False)
    eigenvalues = jnp.linalg.eigvals(blocks)
    return RecurrentSpectrum(singular, eigenvalues, jnp.max(jnp.abs(eigenvalues), axis=-1))


def pascanu_eta(cell: Cell, params: Params) -> jax.Array:
    r"""``eta = gamma * sigma_max(W_hh)`` of Pascanu et al. 2013 for an Elman RNN.

    ``gamma`` bounds ``|sigma'|``: 1 for tanh (and ReLU, linear), 1/4 for sigmoid.
    Then ``||dL/dh_k|| <= eta^(T-k) ||dL/dh_T||`` for a loss on ``h_T``; see
    :func:`pascanu_bound`.

    Args:
      cell: an :func:`rnnlab.rnn` cell (its ``hyperparameters`` name the activation).
      params: its params; leading batch axes are allowed.

    Returns:
      ``[...]``, the scalar ``eta`` per parameter set.

    Raises:
      ValueError: for a cell without an ``activation`` hyperparameter (gated cells:
        their Jacobian is not ``diag(sigma') W``, so the bound does not apply).
    """
    activation = cell.hyperparameters.get("activation")
    if activation not in DERIVATIVE_BOUND:
        raise ValueError(
            f"pascanu_eta needs an Elman RNN (rnnlab.rnn) with activation in "
            f"{tuple(DERIVATIVE_BOUND)}; cell {cell.name!r} has activation={activation!r}"
        )
    sigma_max = jnp.linalg.norm(cell.recurrent_weight(params), ord=2, axis=(-2, -1))
    return DERIVATIVE_BOUND[activation] * sigma_max


def pascanu_bound(eta, steps: int) -> jax.Array:
    r"""The bound ``eta^(T-1-t)`` on ``||dL/dh_t|| / ||dL/dh_{T-1}||`` for ``t < T``.

    Pascanu et al. 2013, eq. (6)-(7): ``||dE/dx_k|| <= eta^(t-k) ||dE/dx_t||``.
    Multiply by the measured ``||dL/dh_{T-1}||`` to anchor it at the last step; the
    bound holds for a loss that depends on the last state only.

    Args:
      eta: ``[...]``, e.g. from :func:`pascanu_eta`.
      steps: ``T``.

    Returns:
      ``[..., T]``, equal to 1 at the last step.
    """
    eta = jnp.asarray(eta)
    distance = jnp.arange(steps - 1, -1, -1, dtype=eta.dtype if eta.dtype.kind == "f" else None)
    return jnp.power(eta[..., None], distance)


# --------------------------------------------------------------------------------------
# Training-time statistics
# --------------------------------------------------------------------------------------


def _path_name(path) -> str:
    """``'/'``-joined name of a pytree key path, e.g. ``"cell/weight_hh"``."""
    parts = []
    for entry in path:
        if isinstance(entry, jax.tree_util.DictKey):
            parts.append(str(entry.key))
        elif isinstance(entry, jax.tree_util.SequenceKey):
            parts.append(str(entry.idx))
        elif isinstance(entry, jax.tree_util.GetAttrKey):
            parts.append(entry.name)
        else:
            parts.append(str(entry).strip(".[]'\""))
    return "/".join(parts)


def gradient_statistics(grads, clip_norm=None) -> dict:
    """Training-time gradient statistics; pure, so usable inside a jitted step.

    Args:
      grads: a pytree of gradient arrays, e.g. ``{"cell": {...}, "readout": {...}}``.
      clip_norm: optional threshold ``tau`` of global-norm clipping (Pascanu et al.
        2013, Algorithm 1: if ``||g|| >= tau`` then ``g <- tau g / ||g||``).  May be a
        Python number or a (traced) array.

    Returns:
      A dict with

      - ``"global_norm"``: scalar ``||g||_2 = sqrt(sum over leaves of sum g^2)``;
      - ``"clipped"``: bool scalar ``global_norm > clip_norm`` (``False`` when
        ``clip_norm`` is ``None``);
      - ``"group_norms"``: ``{name: scalar}``, the L2 norm of each leaf keyed by its
        ``'/'``-joined key path, e.g. ``"cell/weight_hh"``.

    Example::

      stats = gradient_statistics({"cell": cell_grads, "readout": readout_grads}, 1.0)
      stats["group_norms"]["cell/weight_hh"]
    """
    group_norms = {
        _path_name(path): jnp.linalg.norm(jnp.ravel(leaf))
        for path, leaf in jax.tree_util.tree_flatten_with_path(grads)[0]
    }
    squares = [jnp.square(norm) for norm in group_norms.values()]
    global_norm = jnp.sqrt(sum(squares)) if squares else jnp.zeros(())
    clipped = jnp.zeros((), bool) if clip_norm is None else global_norm > clip_norm
    return {"global_norm": global_norm, "clipped": clipped, "group_norms": group_norms}


# --------------------------------------------------------------------------------------
# Summaries of gradient-norm curves
# --------------------------------------------------------------------------------------


def last_informative_step(norms) -> np.ndarray:
    """Index of the last step with a non-zero norm: ``[..., T] -> [...]`` (int).

    A loss on ``y_T`` does not reach every carry leaf at ``T`` (the LSTM's ``c_T`` feeds
    no later step), so that leaf's curve ends in an exact 0 and its last informative
    step is ``T - 1``.  An all-zero curve gives ``T - 1``.
    """
    norms = np.asarray(norms)
    nonzero = norms[..., ::-1] > 0
    return norms.shape[-1] - 1 - np.where(nonzero.any(axis=-1), nonzero.argmax(axis=-1), 0)


def decay_ratio(norms) -> np.ndarray:
    r"""``||dL/dcarry_1|| / ||dL/dcarry_last||`` per curve: ``[..., T] -> [...]``.

    ``last`` is :func:`last_informative_step`.  Below 1 the gradient vanishes going back
    in time, above 1 it explodes; for a linear RNN ``h_t = h_{t-1} W`` with ``W = rho Q``
    it is ``rho^(T-1)`` (Pascanu et al. 2013).
    """
    norms = np.asarray(norms)
    last = last_informative_step(norms)
    with np.errstate(divide="ignore", invalid="ignore"):
        return norms[..., 0] / np.take_along_axis(norms, last[..., None], axis=-1)[..., 0]


def normalized_curves(norms) -> np.ndarray:
    """Curves divided by their value at the last informative step; later steps are NaN."""
    norms = np.asarray(norms, np.float64)
    last = last_informative_step(norms)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = norms / np.take_along_axis(norms, last[..., None], axis=-1)
    out[np.arange(norms.shape[-1]) > last[..., None]] = np.nan
    return out


def band_stats(
    samples, band: tuple[float, float] = (10, 90), axis: int = 0
) -> dict[str, np.ndarray]:
    """Median, the ``band`` percentiles and the geometric mean of ``samples`` over ``axis``.

    For quantities read on a log scale (gradient norms, decay ratios): the geometric
    mean is ``exp(mean(log x))`` (0 if a sample is 0, NaN for a negative one).

    Returns:
      ``{"median", "low", "high", "geomean"}``, each ``samples`` without ``axis``.
    """
    samples = np.asarray(samples)
    with np.errstate(divide="ignore", invalid="ignore"):
        log = np.log(samples)
    return {
        "median": np.median(samples, axis=axis),
        "low": np.percentile(samples, band[0], axis=axis),
        "high": np.percentile(samples, band[1], axis=axis),
        "geomean": np.exp(np.mean(log, axis=axis)),
    }


def carry_leaf_names(cell: Cell) -> list[str]:
    """A name per carry leaf, in :func:`carry_grad_norms`' leaf order: NamedTuple fields
    (``["h", "c"]`` for the LSTM), key paths (``"0"``, ``"1/h"``), or ``["h"]`` for a
    carry that is one array."""
    carry = jax.eval_shape(cell.initial_carry, ())
    paths = [path for path, _ in jax.tree_util.tree_flatten_with_path(carry)[0]]
    if len(paths) == 1 and not paths[0]:
        return ["h"]
    return [_path_name(path) for path in paths]
