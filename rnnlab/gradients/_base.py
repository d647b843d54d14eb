"""The estimator record, the chunk and state records, and the helpers every estimator shares.

An estimator is built for one cell and one per-step loss and holds two pure functions,
in the spirit of optax's ``GradientTransformation``::

    estimator = make_estimator("tbptt:50", cell, step_loss)
    state = estimator.init(params, batch_shape=(B,))
    loss, grads, state = estimator.update(params, state, Chunk(inputs, data, resets))

The contract every estimator follows:

- ``params`` is a dict holding the cell's params under ``"cell"`` (the layout of
  ``rnnlab.train``'s ``TrainState.params``); every other entry (a readout, say) reaches
  only the loss, so its gradient is exact for every estimator.
- ``step_loss(params, y_t, data_t) -> scalar`` is the loss of *one example at one
  step*: ``y_t: [Y]`` is the cell's output and ``data_t`` the step's slice of
  ``chunk.data`` (targets, weights; any pytree, or ``None``).  The estimated objective
  is ``L = mean over the batch of sum over the chunk's steps of step_loss``; a loss read
  at the last step only is a ``data`` weight that is zero elsewhere.
- ``grads`` has the structure of ``params``; ``loss`` is ``L``'s value.
- The recurrent state is carried across calls in ``state.carry``; ``chunk.resets``
  restore ``cell.initial_carry`` (document boundaries) and clear the estimator's memory
  of the past, so one long stream can be fed chunk by chunk.
- Within one call the params are fixed; an engine updates them between calls.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from rnnlab.cells import Cell

Params = Any  # {"cell": cell params, ...}
Carry = Any
#: ``step_loss(params, y_t [Y], data_t) -> scalar``: one example, one step.
StepLoss = Callable[[Params, jax.Array, Any], jax.Array]


class Chunk(NamedTuple):
    """Consecutive steps of a batch of streams (a whole sequence is one chunk).

    Attributes:
      inputs: ``[*batch, T, F]``.
      data: a pytree whose leaves are ``[*batch, T, ...]``, handed to ``step_loss`` one
        example and one step at a time (targets, loss weights); may be ``None``.
      resets: optional bool ``[*batch, T]``; ``resets[..., t]`` sets the carry to
        ``cell.initial_carry`` before step ``t`` and clears what the estimator carries
        about the past (sensitivities, truncation history): a document boundary.
    """

    inputs: jax.Array
    data: Any = None
    resets: jax.Array | None = None


class EstimatorState(NamedTuple):
    """What an estimator carries from one chunk to the next (a pytree).

    Attributes:
      carry: the cell's carry after the last step seen, leaves ``[*batch, ...]``.
      trace: the estimator's memory of the past: ``None`` for BPTT; the truncation
        history for TBPTT; the (approximate) sensitivity ``d carry / d params`` for the
        forward-mode estimators.
      key: the PRNG key of a stochastic estimator (UORO), advanced at every update.
    """

    carry: Carry
    trace: Any
    key: jax.Array


class Estimator(NamedTuple):
    """A gradient estimator for one cell and one per-step loss: two pure functions.

    Attributes:
      name: ``"bptt"``, ``"tbptt"``, ``"rtrl"``, ``"uoro"``, ``"snap1"`` or
        ``"diagonal_rtrl"``.
      options: the factory's options, e.g. ``{"k1": 50, "k2": 50}``.
      init: ``init(params, batch_shape=(), *, key=None, carry=None) -> EstimatorState``;
        ``carry`` defaults to ``cell.initial_carry(batch_shape)``.
      update: ``update(params, state, chunk) -> (loss, grads, state)``, usable inside
        ``jit``, ``vmap`` and ``scan``.
      stochastic: whether the gradient depends on ``state.key`` (``init`` then needs a
        key, and independent keys give independent estimates).
    """

    name: str
    options: Mapping[str, Any]
    init: Callable[..., EstimatorState]
    update: Callable[..., tuple[jax.Array, Params, EstimatorState]]
    stochastic: bool = False


# --------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------


def check_params(params) -> None:
    if not isinstance(params, Mapping) or "cell" not in params:
        raise ValueError(
            "params must be a dict with the cell's params under 'cell' (and e.g. a readout "
            f"under 'readout'), got {type(params).__name__}"
            + (f" with keys {sorted(params)}" if isinstance(params, Mapping) else "")
        )


def carry_template(cell: Cell):
    """Shapes and dtypes of one example's carry."""
    return jax.eval_shape(lambda: cell.initial_carry(()))


def batch_shape_of(cell: Cell, carry) -> tuple[int, ...]:
    """The leading batch shape of ``carry`` (leaves ``[*batch, ...]``)."""
    leaf = jax.tree.leaves(carry)[0]
    template = jax.tree.leaves(carry_template(cell))[0]
    return tuple(leaf.shape[: leaf.ndim - template.ndim])


class Flat(NamedTuple):
    """A chunk and carry with the batch dimensions flattened into one axis ``N``."""

    batch_shape: tuple[int, ...]
    size: int  # N
    length: int  # T
    inputs: jax.Array  # [N, T, F]
    data: Any  # leaves [N, T, ...]
    resets: jax.Array  # [N, T] bool
    carry: Carry  # leaves [N, ...]


def flatten_batch(tree, batch_shape: tuple[int, ...]):
    size = math.prod(batch_shape)
    return jax.tree.map(lambda a: a.reshape((size, *a.shape[len(batch_shape) :])), tree)


def unflatten_batch(tree, batch_shape: tuple[int, ...]):
    return jax.tree.map(lambda a: a.reshape((*batch_shape, *a.shape[1:])), tree)


def flatten_chunk(cell: Cell, params, state: EstimatorState, chunk: Chunk) -> Flat:
    """Validates ``chunk`` against ``state`` and flattens the batch dimensions.

    Raises:
      ValueError: naming the field, for inputs that are not ``[*batch, T, F]`` with the
        state's batch shape and the params' feature size, or data and resets that do not
        match ``[*batch, T]``.
    """
    check_params(params)
    if not isinstance(chunk, Chunk):
        raise ValueError(f"chunk must be a gradients.Chunk, got {type(chunk).__name__}")
    inputs = jnp.asarray(chunk.inputs)
    batch_shape = batch_shape_of(cell, state.carry)
    if inputs.ndim != len(batch_shape) + 2 or inputs.shape[: len(batch_shape)] != batch_shape:
        raise ValueError(
            f"chunk.inputs has shape {inputs.shape} but the state was built for batch shape "
            f"{batch_shape}, so the inputs must be [*batch, T, F] = [{batch_shape}, T, F]; "
            "build the state with estimator.init(params, batch_shape=inputs.shape[:-2])"
        )
    steps, features = inputs.shape[-2], inputs.shape[-1]
    expected = cell.input_size(params["cell"])
    if features != expected:
        raise ValueError(
            f"chunk.inputs has feature size {features} but the {cell.name} cell's params "
            f"expect input_size={expected}"
        )
    prefix = (*batch_shape, steps)
    for path, leaf in jax.tree_util.tree_flatten_with_path(chunk.data)[0]:
        if tuple(jnp.shape(leaf)[: len(prefix)]) != prefix:
            raise ValueError(
                f"chunk.data{jax.tree_util.keystr(path)} has shape {jnp.shape(leaf)} but every "
                f"data leaf must start with [*batch, T] = {prefix}"
            )
    if chunk.resets is None:
        resets = jnp.zeros(prefix, bool)
    else:
        resets = jnp.asarray(chunk.resets)
        if resets.shape != prefix or resets.dtype != jnp.bool_:
            raise ValueError(
                f"chunk.resets must be bool [*batch, T] = {prefix}, got {resets.dtype} "
                f"{resets.shape}"
            )
    size = math.prod(batch_shape)
    return Flat(
        batch_shape=batch_shape,
        size=size,
        length=steps,
        inputs=inputs.reshape(size, steps, features),
        data=flatten_batch(chunk.data, batch_shape),
        resets=resets.reshape(size, steps),
        carry=flatten_batch(state.carry, batch_shape),
    )


def initial_carry(cell: Cell, batch_shape, carry):
    """``carry`` or ``cell.initial_carry(batch_shape)``, checked against the cell's shapes."""
    batch_shape = tuple(batch_shape)
    expected = jax.eval_shape(lambda: cell.initial_carry(batch_shape))
    if carry is None:
        return cell.initial_carry(batch_shape)
    got = jax.tree.map(lambda a: tuple(jnp.shape(a)), carry)
    want = jax.tree.map(lambda a: tuple(a.shape), expected)
    if jax.tree.structure(carry) != jax.tree.structure(expected) or got != want:
        raise ValueError(
            f"carry has shapes {got} but batch_shape={batch_shape} needs {want}; build it "
            f"with cell.initial_carry({batch_shape})"
        )
    return carry


def default_key(key) -> jax.Array:
    return jax.random.key(0) if key is None else key


# --------------------------------------------------------------------------------------
# Small pytree helpers
# --------------------------------------------------------------------------------------


def tree_where(flag, on_true, on_false):
    """``jnp.where`` leaf by leaf; ``flag`` broadcasts against the leading axes."""

    def pick(a, b):
        f = jnp.reshape(flag, jnp.shape(flag) + (1,) * (jnp.ndim(a) - jnp.ndim(flag)))
        return jnp.where(f, a, b)

    return jax.tree.map(pick, on_true, on_false)


def tree_add(a, b):
    return jax.tree.map(jnp.add, a, b)


def tree_zeros_like(tree):
    return jax.tree.map(jnp.zeros_like, tree)


def tree_vdot(a, b) -> jax.Array:
    """``sum_leaves sum(a * b)`` (real parts only if complex)."""
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return sum(jnp.sum(jnp.real(x * y)) for x, y in pairs)


def tree_norm(tree) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(jnp.abs(x) ** 2) for x in jax.tree.leaves(tree)))


def add_cell_grads(grads: Params, cell_grads) -> Params:
    """``grads`` with ``cell_grads`` added to its ``"cell"`` entry."""
    return {**grads, "cell": tree_add(grads["cell"], cell_grads)}


def step_losses(step_loss: StepLoss, params, ys: jax.Array, data) -> jax.Array:
    """``step_loss`` over examples and steps: ``ys [N, T, Y]``, data ``[N, T, ...]`` to
    ``[N, T]``."""
    per_step = jax.vmap(step_loss, in_axes=(None, 0, 0))
    return jax.vmap(per_step, in_axes=(None, 0, 0))(params, ys, data)
