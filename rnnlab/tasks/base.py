"""The task record shared by every task family: data, loss, metric and trivial baseline."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["Batch", "Task", "check_int", "cross_entropy", "squared_error"]

READOUTS = ("last", "every")
OBJECTIVES = ("regression", "classification")


class Batch(NamedTuple):
    """A minibatch; a pytree, so it can be produced inside ``jit``/``scan``/``vmap``.

    Attributes:
      inputs: ``[B, T, F]`` float inputs.
      targets: regression ``[B, O]`` (readout ``"last"``) or ``[B, T, O]``
        (``"every"``); classification integer labels ``[B]`` or ``[B, T]``.
      lengths: optional ``[B]`` int valid lengths (variable-length tasks); the
        ``"last"`` readout then reads step ``lengths - 1``.
    """

    inputs: jax.Array
    targets: jax.Array
    lengths: jax.Array | None = None


def squared_error(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """Per-example ``sum_o (y_o - t_o)^2``: ``[..., O], [..., O] -> [...]``."""
    return jnp.sum(jnp.square(outputs - targets), axis=-1)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example ``-log softmax(logits)[label]`` in nats: ``[..., C], [...] -> [...]``."""
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(log_probs, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
    """An immutable record describing a supervised sequence task.

    Attributes:
      name: e.g. ``"adding"``.
      steps: the number of input steps of a batch (the padded length for
        variable-length tasks); the factory's ``length`` is in ``describe``.
      input_size: ``F``.
      output_size: ``O``: regression outputs or classification logits.
      readout: ``"last"`` (one prediction per sequence, from the last valid step)
        or ``"every"`` (one per step).
      objective: ``"regression"`` (loss: mean squared error) or
        ``"classification"`` (loss: cross-entropy in nats).
      metric_name: the task's headline metric, e.g. ``"mse"``, ``"accuracy"``,
        ``"bits_per_char"``.
      metric: ``metric(outputs, batch) -> scalar``.
      baseline_loss: the closed-form loss of the trivial, input-blind predictor
        (e.g. ``1/6`` for the adding problem); plots draw it.
      baseline_metric: the headline metric of that predictor.
      sample: ``sample(key, batch_size) -> Batch``, pure and jittable, for
        training.  Synthetic tasks generate fresh data; data sets draw a random
        minibatch of their training split.
      test_set: ``None`` for synthetic tasks (evaluate on fresh samples), else
        ``test_set() -> Batch``, the held-out split.
      describe: a dict of the factory's arguments, for records.
      extras: task-specific objects (e.g. ``vocabulary`` for text).
    """

    name: str
    steps: int
    input_size: int
    output_size: int
    readout: str
    objective: str
    metric_name: str
    metric: Callable[[jax.Array, Batch], jax.Array]
    baseline_loss: float
    baseline_metric: float
    sample: Callable[[jax.Array, int], Batch]
    test_set: Callable[[], Batch] | None = None
    describe: dict = dataclasses.field(default_factory=dict)
    extras: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.readout not in READOUTS:
            raise ValueError(f"readout={self.readout!r} must be one of {READOUTS}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective={self.objective!r} must be one of {OBJECTIVES}")

    def per_example_loss(self, outputs: jax.Array, batch: Batch) -> jax.Array:
        """Squared error or cross-entropy per prediction: ``[B]`` or ``[B, T]``."""
        if self.objective == "regression":
            return squared_error(outputs, batch.targets)
        return cross_entropy(outputs, batch.targets)

    def loss(self, outputs: jax.Array, batch: Batch) -> jax.Array:
        """Mean loss over the batch (and steps): MSE or cross-entropy (nats).

        ``outputs`` are ``[B, O]`` for readout ``"last"`` and ``[B, T, O]`` for
        ``"every"``.
        """
        return jnp.mean(self.per_example_loss(outputs, batch))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.describe.items())
        return f"rnnlab.tasks.{self.name}({args})"


def mse_metric(outputs: jax.Array, batch: Batch) -> jax.Array:
    """Mean squared error (the regression loss itself)."""
    return jnp.mean(squared_error(outputs, batch.targets))


def accuracy_metric(outputs: jax.Array, batch: Batch) -> jax.Array:
    """Fraction of predictions whose arg-max logit is the label."""
    return jnp.mean(jnp.argmax(outputs, axis=-1) == batch.targets)


def bits_metric(outputs: jax.Array, batch: Batch) -> jax.Array:
    """Cross-entropy in bits: nats / ln 2 (bits per character for text)."""
    return jnp.mean(cross_entropy(outputs, batch.targets)) / math.log(2.0)


def check_int(name: str, value, minimum: int, why: str = "") -> int:
    """Returns ``value`` if it is an int ``>= minimum``; else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        reason = f" ({why})" if why else ""
        raise ValueError(f"{name} must be an int >= {minimum}{reason}, got {value!r}")
    return value


def check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; use one of {tuple(choices)}")
    return value


def one_hot(indices: jax.Array, size: int) -> jax.Array:
    return jax.nn.one_hot(indices, size, dtype=jnp.float32)


def minibatch_sampler(inputs, targets) -> Callable[[jax.Array, int], Batch]:
    """``sample(key, batch_size)`` drawing rows with replacement from a device-resident split.

    ``inputs [N, T, F]`` and ``targets [N, ...]`` become constants of the compiled
    program, so minibatches are gathered on the device inside the training loop.
    """
    inputs, targets = jnp.asarray(inputs), jnp.asarray(targets)

    def sample(key, batch_size):
        rows = jax.random.randint(key, (batch_size,), 0, inputs.shape[0])
        return Batch(inputs[rows], targets[rows])

    return sample


def fixed_split(inputs, targets) -> Callable[[], Batch]:
    """``test_set()`` returning a held-out split as a :class:`Batch`."""
    inputs, targets = jnp.asarray(inputs), jnp.asarray(targets)
    return lambda: Batch(inputs, targets)
