r"""Forward-mode (online) gradient estimators, and exact RTRL (Williams & Zipser 1989).

One step of a cell is ``(s_t, y_t) = F(theta, s_{t-1}, x_t)``.  A forward-mode estimator
carries, for each example, an estimate ``J_{t-1}`` of the sensitivity
``d s_{t-1} / d theta`` and needs no storage over time.  At step ``t`` it

1. runs the step and its loss ``l_t = step_loss(params, y_t, data_t)``;
2. adds ``g_t = dl_t/dy_t (dy_t/dtheta + dy_t/ds_{t-1} J_{t-1})``: the immediate part
   is one reverse pass through the step, the second a contraction of the cotangent
   ``c_t = dl_t/dy_t dy_t/ds_{t-1}`` with ``J_{t-1}``;
3. propagates ``J_t = D_t J_{t-1} + I_t`` with ``D_t = ds_t/ds_{t-1}`` and
   ``I_t = ds_t/dtheta`` (the one-step influence), exactly or approximately.

Taking the output's sensitivity through ``s_{t-1}`` (step 2) is the form of Tallec &
Ollivier 2017, whose output reads the previous state; it keeps the last step exact
whatever the estimator does to ``J``.  Estimators differ only in how they store and
propagate ``J`` (a :class:`SensitivityMethod`):

- :func:`rtrl`: ``J`` exactly, ``[P, S]`` per example (``S`` carry entries, ``P``
  cell parameters): ``D_t J_{t-1}`` by one ``jvp`` per column of ``J`` (vmapped),
  ``I_t`` by one ``vjp`` per carry entry (vmapped).  O(S P) memory and O(S^2 P) time per
  step, independent of ``T``.
- :func:`rnnlab.gradients.uoro`, :func:`rnnlab.gradients.snap1`,
  :func:`rnnlab.gradients.diagonal_rtrl`: see their modules.

References:
  R. J. Williams and D. Zipser, "A learning algorithm for continually running fully
  recurrent neural networks", Neural Computation 1(2), 1989.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from rnnlab import _checks
from rnnlab.cells import Cell
from rnnlab.gradients import _base
from rnnlab.gradients._base import Chunk, Estimator, EstimatorState, StepLoss

__all__ = [
    "RTRL_MAX_SENSITIVITY_SIZE",
    "Linearization",
    "SensitivityMethod",
    "rtrl",
    "sensitivity_size",
]

#: ``rtrl`` refuses models whose sensitivity ``d carry / d params`` has more than this
#: many entries per sequence, ``S x P`` (the carry's size times the cell's parameter
#: count): 2**24 entries are 64 MiB per sequence in float32, held twice per step (``J``
#: and the one-step influence), for every sequence of the batch, and each step costs
#: ``S^2 P`` multiply-adds.  An LSTM with H=128 and 2 inputs has S x P = 256 x 67,584 =
#: 17.3M, above it; a GRU or tanh RNN with H=128 is below it.
RTRL_MAX_SENSITIVITY_SIZE = 2**24


class Linearization(NamedTuple):
    """The first-order behaviour of one step at ``(theta, s_{t-1}, x_t)``, one example.

    Attributes:
      push: ``push(d_theta, d_carry) -> (d_new_carry, d_y)``, the ``jvp`` of the step.
      pull: ``pull((ct_new_carry, ct_y)) -> (ct_theta, ct_carry)``, its ``vjp``.
      zero_params, zero_output: zero tangents of the params and the output.
    """

    push: Callable
    pull: Callable
    zero_params: Any
    zero_output: jax.Array


class SensitivityMethod(NamedTuple):
    """How a forward-mode estimator stores and propagates ``J ~ d carry / d theta``.

    Every function sees one example (no batch axes).

    Attributes:
      init: ``init(cell_params, carry) -> trace``, the trace of ``J = 0``.
      contract: ``contract(trace, c, cell_params) -> grads``: ``c J``, with ``c`` a
        cotangent of the carry and ``grads`` shaped like the cell's params.
      propagate: ``propagate(trace, linearization, noise, cell_params, carry, x) -> trace``:
        ``J_t`` from ``J_{t-1}`` (``carry`` is ``s_{t-1}``); ``noise`` is this step's
        slice of ``noise(...)``, or ``None``.
      noise: for a stochastic method, ``noise(key, carry, prefix)``: the random draws of
        a whole chunk, leaves ``[*prefix, ...]`` with ``prefix = (N, T)`` (examples,
        steps), drawn in one call before the loops; ``None`` otherwise.
    """

    init: Callable
    contract: Callable
    propagate: Callable
    noise: Callable | None = None

    @property
    def stochastic(self) -> bool:
        return self.noise is not None


def online_estimator(
    name: str, options: dict, cell: Cell, step_loss: StepLoss, method: SensitivityMethod
) -> Estimator:
    """The :class:`Estimator` that runs ``method`` forward in time, one example at a time
    (vmapped over the batch), as described in this module's docstring."""

    def init(params, batch_shape=(), *, key=None, carry=None):
        _base.check_params(params)
        if method.stochastic and key is None:
            raise ValueError(
                f"{name} is stochastic: pass a PRNG key, init(params, batch_shape, "
                "key=jax.random.key(seed))"
            )
        batch_shape = tuple(batch_shape)
        carry = _base.initial_carry(cell, batch_shape, carry)
        example = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), _base.carry_template(cell))
        trace = method.init(params["cell"], example)
        trace = jax.tree.map(lambda a: jnp.broadcast_to(a, (*batch_shape, *a.shape)), trace)
        return EstimatorState(carry=carry, trace=trace, key=_base.default_key(key))

    def one_example(params, carry, trace, inputs, data, resets, noise):
        initial = cell.initial_carry(())
        empty = _base.tree_zeros_like(trace)
        cell_params = params["cell"]

        def body(accumulated, scanned):
            carry, trace, grads = accumulated
            x, data_t, reset, noise = scanned
            carry = _base.tree_where(reset, initial, carry)
            trace = _base.tree_where(reset, empty, trace)
            step = lambda p, c: cell.step(p, c, x)  # noqa: E731
            (new_carry, y), push = jax.linearize(step, cell_params, carry)
            pull = jax.linear_transpose(push, cell_params, carry)
            loss, (loss_grads, dy) = jax.value_and_grad(step_loss, argnums=(0, 1))(
                params, y, data_t
            )
            immediate, cotangent = pull((_base.tree_zeros_like(new_carry), dy))
            cell_grads = _base.tree_add(immediate, method.contract(trace, cotangent, cell_params))
            zero_params = _base.tree_zeros_like(cell_params)
            linearization = Linearization(push, pull, zero_params, jnp.zeros_like(y))
            trace = method.propagate(trace, linearization, noise, cell_params, carry, x)
            grads = _base.add_cell_grads(_base.tree_add(grads, loss_grads), cell_grads)
            return (new_carry, trace, grads), loss

        start = (carry, trace, _base.tree_zeros_like(params))
        (carry, trace, grads), losses = jax.lax.scan(body, start, (inputs, data, resets, noise))
        return jnp.sum(losses), grads, carry, trace

    def update(params, state, chunk: Chunk):
        flat = _base.flatten_chunk(cell, params, state, chunk)
        key, noise = state.key, None
        if method.stochastic:
            key, chunk_key = jax.random.split(key)
            example = jax.tree.map(lambda a: a[0], flat.carry)
            noise = method.noise(chunk_key, example, (flat.size, flat.length))
        per_example = jax.vmap(one_example, in_axes=(None, 0, 0, 0, 0, 0, 0))
        losses, grads, carry, trace = per_example(
            params,
            flat.carry,
            _base.flatten_batch(state.trace, flat.batch_shape),
            flat.inputs,
            flat.data,
            flat.resets,
            noise,
        )
        unflatten = lambda tree: _base.unflatten_batch(tree, flat.batch_shape)  # noqa: E731
        grads = jax.tree.map(lambda g: jnp.mean(g, axis=0), grads)
        return jnp.mean(losses), grads, EstimatorState(unflatten(carry), unflatten(trace), key)

    return Estimator(name, dict(options), init, update, method.stochastic)


def sensitivity_size(cell_params, carry) -> tuple[int, int]:
    """``(S, P)``: the carry's and the cell params' entry counts (one example), from
    shapes alone (``jax.eval_shape`` structures will do)."""
    size, count = (sum(math.prod(jnp.shape(a)) for a in jax.tree.leaves(tree))
                   for tree in (carry, cell_params))  # fmt: skip
    return size, count


def rtrl(
    cell: Cell, step_loss: StepLoss, *, max_sensitivity_size: int = RTRL_MAX_SENSITIVITY_SIZE
) -> Estimator:
    """Real-time recurrent learning: the exact gradient, forward in time.

    Carries ``J_t = d carry_t / d theta`` per example, ``[P, S]`` (row ``p`` is the
    carry's tangent along parameter ``p``), through
    ``J_t = D_t J_{t-1} + I_t``: ``D_t J_{t-1}`` is one ``jvp`` of the step per row,
    vmapped, and ``I_t`` one ``vjp`` per carry entry, vmapped.  Its gradients equal
    :func:`rnnlab.gradients.bptt`'s (the same chunk, the same incoming carry).

    Args:
      cell: any cell with a real carry.
      step_loss: the per-example, per-step loss.
      max_sensitivity_size: the largest ``S x P`` accepted (default
        :data:`RTRL_MAX_SENSITIVITY_SIZE`, where its choice is explained).

    Raises:
      ValueError (at ``init``): when ``S x P`` exceeds ``max_sensitivity_size``; it
        names both and suggests ``snap1`` or ``uoro``.
    """
    limit = _checks.positive_int("max_sensitivity_size", max_sensitivity_size)

    def init(cell_params, carry):
        size, count = sensitivity_size(cell_params, carry)
        if size * count > limit:
            raise ValueError(
                f"rtrl would carry d carry/d params of S x P = {size:,} x {count:,} = "
                f"{size * count:,} entries per sequence ({size * count * 4 / 2**20:.0f} MiB "
                f"in float32), above max_sensitivity_size={limit:,}: the model is too large "
                "for exact RTRL.  Use 'snap1' or 'uoro' (O(P) memory), or pass a larger "
                "max_sensitivity_size"
            )
        return jnp.zeros((count, size), jax.tree.leaves(carry)[0].dtype)

    def contract(sensitivity, cotangent, cell_params):
        _, unravel_params = ravel_pytree(cell_params)
        return unravel_params(sensitivity @ ravel_pytree(cotangent)[0])

    def propagate(sensitivity, linearization, noise, cell_params, carry, x):
        del noise, x
        flat_carry, unravel_carry = ravel_pytree(carry)

        def push_row(row):
            d_carry, _ = linearization.push(linearization.zero_params, unravel_carry(row))
            return ravel_pytree(d_carry)[0]

        def pull_entry(unit_vector):
            d_params, _ = linearization.pull(
                (unravel_carry(unit_vector), linearization.zero_output)
            )
            return ravel_pytree(d_params)[0]

        recurrent = jax.vmap(push_row)(sensitivity)  # D_t J_{t-1}: [P, S]
        immediate = jax.vmap(pull_entry)(jnp.eye(flat_carry.size, dtype=flat_carry.dtype))
        return recurrent + immediate.T

    method = SensitivityMethod(init=init, contract=contract, propagate=propagate)
    return online_estimator("rtrl", {"max_sensitivity_size": limit}, cell, step_loss, method)
