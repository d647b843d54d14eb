"""The training engine's gradient estimators, stateful streams and Pascanu's regularizer.

:mod:`rnnlab.train.engine` calls these in three small hooks; everything else lives here.

- **The per-step loss.**  The engine's loss is ``task.loss`` of a readout of the cell's
  outputs; an estimator (:mod:`rnnlab.gradients`) needs it as a loss per example and
  step, ``step_loss(params, y_t, data_t) = data_t["weight"] * per_example_loss(readout(y_t),
  data_t["target"])``, whose mean over the batch of the sum over steps is ``task.loss``:
  for readout ``"last"`` the weight is 1 at step ``lengths - 1``; for ``"every"`` it is
  ``B / (number of valid steps in the batch)`` at every valid step.
- **Estimated gradients** (``TrainConfig.gradient`` other than ``"bptt"``, or
  ``stateful``): the minibatch is one :class:`rnnlab.gradients.Chunk`.  Independent
  minibatches reset the carry at their first step; a stateful run reads the task's
  :class:`rnnlab.tasks.base.Stream` instead, so the carry flows from one chunk of the
  long stream into the next and resets only where a document starts.  The estimator's
  state (carry, sensitivities, key) and the stream's position live in
  ``TrainState.stream`` (a :class:`StreamState`).
- **Pascanu et al. 2013's Omega** (``TrainConfig.pascanu_alpha > 0``): ``alpha * grad
  Omega`` is added to the gradient before clipping, with Omega in the authors'
  constant-error form (:func:`rnnlab.gradients.pascanu_regularizer` with
  ``constant_error=True``) on the same minibatch and cost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from rnnlab import gradients
from rnnlab.tasks import Batch, Task

__all__ = [
    "StreamState",
    "add_pascanu_gradient",
    "check_gradient",
    "estimated_gradient",
    "init_stream",
    "minibatch_chunk",
    "uses_estimator",
]


class StreamState(NamedTuple):
    """What ``TrainState.stream`` holds when the gradient is estimated.

    Attributes:
      estimator: the :class:`rnnlab.gradients.EstimatorState` (carry ``[B, ...]``, the
        estimator's trace), with its PRNG key as raw ``uint32`` data so that
        checkpoints can store it.
      data: the task stream's state (:attr:`rnnlab.tasks.base.Stream.init`) for a
        stateful run, else ``None``.
    """

    estimator: gradients.EstimatorState
    data: Any


def uses_estimator(config) -> bool:
    """Whether ``config``'s gradient goes through :mod:`rnnlab.gradients` (anything but
    plain BPTT on independent minibatches, which keeps the engine's own ``unroll``)."""
    return config.gradient != "bptt" or config.stateful


def _single_cell(model):
    layer = model.layer
    if layer.kind != "recurrent" or layer.reverse:
        raise ValueError("gradient estimators and pascanu_alpha need num_layers=1")
    return layer.cell


def make_step_loss(task: Task, readout: Callable) -> gradients.StepLoss:
    """``step_loss(params, y [H], data_t)``: ``task.per_example_loss`` of ``readout(y)``,
    weighted by ``data_t["weight"]`` (see the module docstring)."""

    def step_loss(params, y, data):
        prediction = readout(params, y)
        loss = task.per_example_loss(prediction, Batch(None, data["target"]))
        return data["weight"] * loss

    return step_loss


def step_data(task: Task, batch: Batch) -> dict[str, jax.Array]:
    """``{"target": [B, T, ...], "weight": [B, T]}`` whose weighted per-step losses sum,
    averaged over the batch, to ``task.loss`` (see the module docstring)."""
    size, steps = batch.inputs.shape[0], batch.inputs.shape[-2]
    if task.readout == "last":
        last = (steps - 1) if batch.lengths is None else batch.lengths[:, None] - 1
        weight = (jnp.arange(steps) == last).astype(batch.inputs.dtype)
        weight = jnp.broadcast_to(weight, (size, steps))
        target = jnp.broadcast_to(batch.targets[:, None], (size, steps, *batch.targets.shape[1:]))
        return {"target": target, "weight": weight}
    mask = task.prediction_mask(batch)
    mask = jnp.ones((size, steps), bool) if mask is None else mask
    weight = mask.astype(batch.inputs.dtype)
    weight = weight * size / jnp.maximum(jnp.sum(weight), 1.0)
    return {"target": batch.targets, "weight": weight}


def minibatch_chunk(task: Task, batch: Batch) -> gradients.Chunk:
    """An independent minibatch as a chunk: the carry resets at each sequence's start."""
    resets = jnp.zeros(batch.inputs.shape[:2], bool).at[:, 0].set(True)
    return gradients.Chunk(batch.inputs, step_data(task, batch), resets)


def _estimator(config, task: Task, model):
    return gradients.make_estimator(
        config.gradient, _single_cell(model), make_step_loss(task, model.readout)
    )


def check_gradient(config, task: Task, model, params) -> None:
    """Checks ``config.gradient``/``stateful`` against the built task and model.

    Raises:
      ValueError: naming ``gradient`` for a truncation that does not fit ``T = task.length``
        or an RTRL sensitivity above its size threshold (suggesting snap1 or uoro), or
        ``stateful`` for a task without a stream.
    """
    try:
        gradients.parse_estimator(config.gradient, length=task.length)
        if uses_estimator(config):
            estimator = _estimator(config, task, model)
            jax.eval_shape(
                lambda p: estimator.init(p, (config.batch_size,), key=jax.random.key(0)), params
            )
    except ValueError as error:
        raise ValueError(f"gradient={config.gradient!r}: {error}") from None
    if config.stateful and task.stream is None:
        raise ValueError(
            f"stateful=True needs a task whose long streams can be read chunk by chunk "
            f"(Task.stream); task {task.name!r} has none.  Tasks with one: char_lm, "
            "shakespeare"
        )


def init_stream(config, task: Task, model, params, key) -> StreamState | None:
    """The initial ``TrainState.stream`` (``None`` for plain BPTT)."""
    if not uses_estimator(config):
        return None
    estimator_key, data_key = jax.random.split(key)
    state = _estimator(config, task, model).init(params, (config.batch_size,), key=estimator_key)
    data = task.stream.init(data_key, config.batch_size) if config.stateful else None
    return StreamState(state._replace(key=jax.random.key_data(state.key)), data)


class Estimate(NamedTuple):
    """One estimated gradient: the chunk it saw and where the carry started."""

    loss: jax.Array
    grads: Any
    stream: StreamState
    chunk: gradients.Chunk
    carry: Any


def estimated_gradient(config, task: Task, model, params, stream: StreamState, key) -> Estimate:
    """The estimator's loss and gradient on the next chunk: a fresh minibatch, or the
    stream's next chunk when ``config.stateful``."""
    if config.stateful:
        batch, resets, data = task.stream.next(stream.data)
        chunk = gradients.Chunk(batch.inputs, step_data(task, batch), resets)
    else:
        chunk, data = minibatch_chunk(task, task.sample(key, config.batch_size)), None
    state = stream.estimator._replace(key=jax.random.wrap_key_data(stream.estimator.key))
    loss, grads, state = _estimator(config, task, model).update(params, state, chunk)
    state = state._replace(key=jax.random.key_data(state.key))
    return Estimate(loss, grads, StreamState(state, data), chunk, stream.estimator.carry)


def add_pascanu_gradient(task: Task, model, params, grads, chunk, carry, alpha):
    """``grads + alpha * d Omega / d params`` on ``chunk`` (started from ``carry``, or the
    initial carry), Omega in the authors' constant-error form over the chunk's cost
    ``mean_b sum_t step_loss`` (terms at resets, i.e. document starts, are skipped)."""
    cell = _single_cell(model)
    step_loss = make_step_loss(task, model.readout)

    def omega(params):
        def cost(ys):
            per_step = jax.vmap(jax.vmap(step_loss, (None, 0, 0)), (None, 0, 0))
            return jnp.sum(per_step(params, ys, chunk.data)) / ys.shape[0]

        return gradients.pascanu_regularizer(
            cell, params["cell"], chunk.inputs, cost, carry=carry, resets=chunk.resets,
            constant_error=True,
        )  # fmt: skip

    regularizer = jax.grad(omega)(params)
    return jax.tree.map(lambda g, r: g + alpha.astype(g.dtype) * r, grads, regularizer)
