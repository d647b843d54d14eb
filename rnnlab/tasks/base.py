"""The task record shared by every task family: data, loss, metric and trivial baseline."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Batch",
    "Stream",
    "Task",
    "binary_cross_entropy",
    "check_int",
    "cross_entropy",
    "masked_mean",
    "squared_error",
]

READOUTS = ("last", "every")
OBJECTIVES = ("regression", "classification", "multilabel")


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


class Stream(NamedTuple):
    """A task's long streams served in consecutive chunks, for stateful training.

    ``B`` streams each advance ``T = task.length`` steps per chunk, so the carry at the
    end of one chunk is the right start for the next (text, long time series); a reset
    marks where a document starts and the carry must start afresh.  Pure and jittable,
    like ``Task.sample``.

    Attributes:
      init: ``init(key, batch_size) -> state``, a pytree (each stream's position).
      next: ``next(state) -> (batch, resets, state)``: ``batch`` a :class:`Batch` of
        ``[B, T, F]`` inputs and their targets, ``resets`` bool ``[B, T]`` (True before
        a step that starts a document, including a stream's first step), and the state
        advanced by ``T`` steps.
    """

    init: Callable
    next: Callable


def squared_error(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """Per-example ``sum_o (y_o - t_o)^2``: ``[..., O], [..., O] -> [...]``, in the
    outputs' dtype (float64 targets under x64 meet a float32 model)."""
    return jnp.sum(jnp.square(outputs - targets.astype(outputs.dtype)), axis=-1)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example ``-log softmax(logits)[label]`` in nats: ``[..., C], [...] -> [...]``."""
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(log_probs, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]


def binary_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    r"""Independent sigmoids, summed over outputs, in nats: ``[..., K], [..., K] -> [...]``.

    ``-sum_k [y_k log p_k + (1 - y_k) log(1 - p_k)]`` with ``p_k = sigmoid(z_k)``,
    computed as ``log p = log_sigmoid(z)`` and ``log(1 - p) = log_sigmoid(-z)``.  Summed
    over the 88 keys of a piano roll it is the frame-level NLL of polyphonic music
    (Boulanger-Lewandowski et al. 2012).
    """
    targets = targets.astype(logits.dtype)
    log_on, log_off = jax.nn.log_sigmoid(logits), jax.nn.log_sigmoid(-logits)
    return -jnp.sum(targets * log_on + (1.0 - targets) * log_off, axis=-1)


def masked_mean(values: jax.Array, mask: jax.Array | None) -> jax.Array:
    """Mean of ``values`` over the entries where ``mask`` is true (all when ``None``).

    An all-false mask gives 0 rather than NaN.
    """
    if mask is None:
        return jnp.mean(values)
    weights = mask.astype(values.dtype)
    return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def valid_steps(batch: Batch, padding_label: int | None = None) -> jax.Array | None:
    """``[B, T]`` true where a per-step prediction counts, or ``None`` when all do.

    With ``padding_label`` (integer targets padded with that label, e.g. target
    sentences of different lengths) the valid steps are ``targets != padding_label``;
    otherwise, with ``batch.lengths``, the steps ``t < lengths``.
    """
    if padding_label is not None:
        return batch.targets != padding_label
    if batch.lengths is None:
        return None
    steps = batch.inputs.shape[-2]
    return jnp.arange(steps) < batch.lengths[..., None]


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
    """An immutable record describing a supervised sequence task.

    Attributes:
      name: e.g. ``"adding"``.
      length: ``T``, the number of input steps of a batch (the padded length for
        variable-length tasks); the factory's own arguments are in ``describe``.
      input_size: ``F``.
      output_size: ``O``: regression outputs or classification logits.
      readout: ``"last"`` (one prediction per sequence, from the last valid step)
        or ``"every"`` (one per step).
      objective: ``"regression"`` (loss: mean squared error),
        ``"classification"`` (loss: cross-entropy in nats) or ``"multilabel"``
        (one sigmoid per output, loss :func:`binary_cross_entropy` summed over
        outputs, in nats; targets are 0/1 ``[B, T, O]``).
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
      validation_set: ``None`` for synthetic tasks and tasks built without one,
        else ``validation_set() -> Batch``, a split disjoint from training and test
        for model selection and early stopping (never select on ``test_set``).
      padding_label: for readout ``"every"`` with integer targets of different
        lengths: the label that marks padding; those steps are left out of the
        loss (see :func:`valid_steps`).  ``None``: with ``batch.lengths`` the steps
        ``t >= lengths`` are left out instead.
      stream: ``None``, or a :class:`Stream` of consecutive chunks of long streams
        (the character LM's training text), which stateful training
        (``TrainConfig(stateful=True)``) reads instead of ``sample``.
    """

    name: str
    length: int
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
    validation_set: Callable[[], Batch] | None = None
    padding_label: int | None = None
    stream: Stream | None = None

    def __post_init__(self):
        if self.readout not in READOUTS:
            raise ValueError(f"readout={self.readout!r} must be one of {READOUTS}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective={self.objective!r} must be one of {OBJECTIVES}")

    @property
    def steps(self):
        # Renamed (issue 14): ``steps`` means optimizer updates only; fail loudly, not silently.
        raise AttributeError("Task.steps was renamed Task.length")

    def per_example_loss(self, outputs: jax.Array, batch: Batch) -> jax.Array:
        """Squared error, cross-entropy or summed binary cross-entropy per prediction:
        ``[B]`` or ``[B, T]``."""
        if self.objective == "regression":
            return squared_error(outputs, batch.targets)
        if self.objective == "multilabel":
            return binary_cross_entropy(outputs, batch.targets)
        return cross_entropy(outputs, batch.targets)

    def prediction_mask(self, batch: Batch) -> jax.Array | None:
        """``[B, T]`` true at the predictions that count, or ``None`` (all count).

        Readout ``"last"`` makes one prediction per sequence, which always counts.
        """
        if self.readout == "last":
            return None
        return valid_steps(batch, self.padding_label)

    def loss(self, outputs: jax.Array, batch: Batch) -> jax.Array:
        """Mean loss over the batch (and valid steps): MSE, cross-entropy or NLL (nats).

        ``outputs`` are ``[B, O]`` for readout ``"last"`` and ``[B, T, O]`` for
        ``"every"``; padded steps (:meth:`prediction_mask`) are left out.
        """
        return masked_mean(self.per_example_loss(outputs, batch), self.prediction_mask(batch))

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


def check_fraction(name: str, value, *, allow_zero: bool = False) -> float:
    """Returns ``value`` if it lies in ``(0, 1)`` (``[0, 1)`` with ``allow_zero``)."""
    number = not isinstance(value, bool) and isinstance(value, int | float)
    low = 0.0 if allow_zero else math.nextafter(0.0, 1.0)
    if not number or not low <= value < 1.0:
        interval = "[0, 1)" if allow_zero else "(0, 1)"
        raise ValueError(f"{name} must lie in {interval}, got {value!r}")
    return float(value)


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(kept, held_out)``: ``round(fraction * n_c)`` of each class ``c`` held out.

    Rows are drawn at random (``seed``) within each class, so the held-out part has
    the class balance of the whole; both index arrays are sorted.
    """
    rng = np.random.default_rng(seed)
    held_out = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        held_out.append(rng.permutation(rows)[: int(round(fraction * len(rows)))])
    held_out = np.sort(np.concatenate(held_out))
    kept = np.setdiff1d(np.arange(len(labels)), held_out)
    return kept, held_out


def import_optional(module: str, extra: str = "apps"):
    """Imports ``module``, or raises ImportError naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"this task reads data shipped in the package {module.split('.')[0]!r}; "
            f"install it with pip install 'rnnlab[{extra}]'"
        ) from error


def single_threaded_blas():
    """A context in which NumPy's and scikit-learn's BLAS use one thread.

    Small fits (logistic regressions of a few thousand rows) ran 20-100x slower with
    OpenBLAS's default threads than with one on a loaded 2-core machine: its threads
    spin while the cores are taken.  ``threadpoolctl`` comes with scikit-learn.
    """
    from threadpoolctl import threadpool_limits  # optional dependency: rnnlab[data]

    return threadpool_limits(1)


def check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; use one of {tuple(choices)}")
    return value


def one_hot(indices: jax.Array, size: int) -> jax.Array:
    return jax.nn.one_hot(indices, size, dtype=jnp.float32)


def minibatch_sampler(inputs, targets, lengths=None) -> Callable[[jax.Array, int], Batch]:
    """``sample(key, batch_size)`` drawing rows with replacement from a device-resident split.

    ``inputs [N, T, F]``, ``targets [N, ...]`` and optional ``lengths [N]`` become
    constants of the compiled program, so minibatches are gathered on the device
    inside the training loop.
    """
    inputs, targets = jnp.asarray(inputs), jnp.asarray(targets)
    lengths = None if lengths is None else jnp.asarray(lengths, jnp.int32)

    def sample(key, batch_size):
        rows = jax.random.randint(key, (batch_size,), 0, inputs.shape[0])
        return Batch(inputs[rows], targets[rows], None if lengths is None else lengths[rows])

    return sample


def fixed_split(inputs, targets, lengths=None) -> Callable[[], Batch]:
    """``test_set()`` (or ``validation_set()``) returning a held-out split as a :class:`Batch`."""
    inputs, targets = jnp.asarray(inputs), jnp.asarray(targets)
    lengths = None if lengths is None else jnp.asarray(lengths, jnp.int32)
    return lambda: Batch(inputs, targets, lengths)
