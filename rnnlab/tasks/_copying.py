"""The copying memory task (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from rnnlab.tasks.base import Batch, Task, check_int, one_hot

__all__ = ["copying"]


def copying(
    length: int | None = None, *, delay: int = 100, num_symbols: int = 8, copy_length: int = 10
) -> Task:
    r"""Copying memory, Arjovsky et al. 2016.

    With ``T = delay``, ``K = copy_length`` and ``S = num_symbols``, the input is ``K``
    symbols drawn from ``{1..S}``, then ``T - 1`` blanks (0), a delimiter
    (``S + 1``) and ``K`` more blanks: ``T + 2K`` steps, one-hot ``[B, T+2K, S+2]``.
    The target is ``T + K`` blanks followed by the ``K`` symbols: labels
    ``[B, T+2K]`` over ``S + 1`` classes; readout ``"every"``.

    ``length``, when given, is that total ``T + 2K`` (what ``make_task(name, length)``
    and ``--length`` mean for every task) and sets ``delay = length - 2 * copy_length``;
    otherwise ``delay`` sets it.  ``Task.length`` is always the total.

    The memoryless baseline predicts blank with certainty until the delimiter and
    then the uniform distribution over the symbols, so its cross-entropy is
    ``K log(S) / (T + 2K)`` (``10 log 8 / (T + 20)`` by default) and its accuracy
    on the recalled symbols (the metric) is ``1/S``.

    Raises:
      ValueError: naming the argument for ``length < 2 * copy_length + 1``,
        ``delay < 1``, ``num_symbols < 2`` or ``copy_length < 1``.
    """
    check_int("copy_length", copy_length, 1)
    check_int("num_symbols", num_symbols, 2)
    if length is not None:
        check_int(
            "length",
            length,
            2 * copy_length + 1,
            f"the total T + 2K with K = copy_length = {copy_length} and a delay T >= 1; "
            "pass delay= to set T itself",
        )
        delay = length - 2 * copy_length
    check_int("delay", delay, 1, "the delimiter comes after T - 1 blanks")
    total = delay + 2 * copy_length
    delimiter = num_symbols + 1

    def sample(key, batch_size):
        symbols = jax.random.randint(key, (batch_size, copy_length), 1, num_symbols + 1)
        blanks = jnp.zeros((batch_size, delay - 1), jnp.int32)
        tail = jnp.zeros((batch_size, copy_length), jnp.int32)
        marker = jnp.full((batch_size, 1), delimiter, jnp.int32)
        inputs = jnp.concatenate([symbols, blanks, marker, tail], axis=1)
        targets = jnp.concatenate(
            [jnp.zeros((batch_size, delay + copy_length), jnp.int32), symbols], axis=1
        )
        return Batch(one_hot(inputs, num_symbols + 2), targets)

    def recall_accuracy(outputs, batch):
        """Accuracy on the ``K`` recalled symbols only (blanks are easy)."""
        predicted = jnp.argmax(outputs[:, -copy_length:], axis=-1)
        return jnp.mean(predicted == batch.targets[:, -copy_length:])

    return Task(
        name="copying",
        length=total,
        input_size=num_symbols + 2,
        output_size=num_symbols + 1,
        readout="every",
        objective="classification",
        metric_name="accuracy",
        metric=recall_accuracy,
        baseline_loss=copy_length * math.log(num_symbols) / total,
        baseline_metric=1.0 / num_symbols,
        sample=sample,
        describe={
            "delay": delay,
            "num_symbols": num_symbols,
            "copy_length": copy_length,
        },
    )
