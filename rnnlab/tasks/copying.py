"""The copying memory task (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from rnnlab.tasks.base import Batch, Task, check_int, one_hot

__all__ = ["copying"]


def copying(length: int = 100, num_symbols: int = 8, sequence_length: int = 10) -> Task:
    r"""Copying memory, Arjovsky et al. 2016.

    With ``K = sequence_length`` and ``S = num_symbols``, the input is ``K``
    symbols drawn from ``{1..S}``, then ``T - 1`` blanks (0), a delimiter
    (``S + 1``) and ``K`` more blanks: ``T + 2K`` steps, one-hot ``[B, T+2K, S+2]``.
    The target is ``T + K`` blanks followed by the ``K`` symbols: labels
    ``[B, T+2K]`` over ``S + 1`` classes; readout ``"every"``.

    The memoryless baseline predicts blank with certainty until the delimiter and
    then the uniform distribution over the symbols, so its cross-entropy is
    ``K log(S) / (T + 2K)`` (``10 log 8 / (T + 20)`` by default) and its accuracy
    on the recalled symbols (the metric) is ``1/S``.

    Raises:
      ValueError: naming the argument for ``length < 1``, ``num_symbols < 2`` or
        ``sequence_length < 1``.
    """
    check_int("length", length, 1, "the delimiter comes after T - 1 blanks")
    check_int("num_symbols", num_symbols, 2)
    check_int("sequence_length", sequence_length, 1)
    steps = length + 2 * sequence_length
    delimiter = num_symbols + 1

    def sample(key, batch_size):
        symbols = jax.random.randint(key, (batch_size, sequence_length), 1, num_symbols + 1)
        blanks = jnp.zeros((batch_size, length - 1), jnp.int32)
        tail = jnp.zeros((batch_size, sequence_length), jnp.int32)
        marker = jnp.full((batch_size, 1), delimiter, jnp.int32)
        inputs = jnp.concatenate([symbols, blanks, marker, tail], axis=1)
        targets = jnp.concatenate(
            [jnp.zeros((batch_size, length + sequence_length), jnp.int32), symbols], axis=1
        )
        return Batch(one_hot(inputs, num_symbols + 2), targets)

    def recall_accuracy(outputs, batch):
        """Accuracy on the ``K`` recalled symbols only (blanks are easy)."""
        predicted = jnp.argmax(outputs[:, -sequence_length:], axis=-1)
        return jnp.mean(predicted == batch.targets[:, -sequence_length:])

    return Task(
        name="copying",
        steps=steps,
        input_size=num_symbols + 2,
        output_size=num_symbols + 1,
        readout="every",
        objective="classification",
        metric_name="accuracy",
        metric=recall_accuracy,
        baseline_loss=sequence_length * math.log(num_symbols) / steps,
        baseline_metric=1.0 / num_symbols,
        sample=sample,
        describe={
            "length": length,
            "num_symbols": num_symbols,
            "sequence_length": sequence_length,
        },
    )
