"""The adding and multiplication problems (Hochreiter & Schmidhuber 1997; Le et al. 2015).

Each step has two inputs, a value and a marker; two values are marked and the
target, read after the last step, is a function of the two marked values.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnnlab.tasks.base import Batch, Task, check_choice, check_int, mse_metric

__all__ = ["adding", "multiplication"]

VARIANTS = ("le", "hochreiter")

#: Hochreiter & Schmidhuber 1997 count a sequence as solved if ``|error| < 0.04``.
HOCHREITER_TOLERANCE = 0.04


def _one_per_half(key, batch_size: int, length: int) -> jax.Array:
    """``[B, 2]`` marker positions: one uniform in each half of ``[0, T)``."""
    half = length // 2
    first_key, second_key = jax.random.split(key)
    first = jax.random.randint(first_key, (batch_size,), 0, half)
    second = jax.random.randint(second_key, (batch_size,), half, length)
    return jnp.stack([first, second], axis=-1)


def _marked_inputs(values: jax.Array, positions: jax.Array) -> jax.Array:
    """``[B, T, 2]`` inputs: values in channel 0, 1.0 at the ``[B, 2]`` positions in channel 1."""
    steps = values.shape[-1]
    markers = jnp.any(jnp.arange(steps)[None, :, None] == positions[:, None, :], axis=-1)
    return jnp.stack([values, markers.astype(values.dtype)], axis=-1)


def _marked_values(values: jax.Array, positions: jax.Array) -> jax.Array:
    return jnp.take_along_axis(values, positions, axis=-1)


def _le_task(name: str, length: int, combine, baseline_loss: float, describe: dict) -> Task:
    def sample(key, batch_size):
        value_key, position_key = jax.random.split(key)
        values = jax.random.uniform(value_key, (batch_size, length))
        positions = _one_per_half(position_key, batch_size, length)
        marked = _marked_values(values, positions)
        return Batch(_marked_inputs(values, positions), combine(marked)[:, None])

    return Task(
        name=name,
        length=length,
        input_size=2,
        output_size=1,
        readout="last",
        objective="regression",
        metric_name="mse",
        metric=mse_metric,
        baseline_loss=baseline_loss,
        baseline_metric=baseline_loss,
        sample=sample,
        describe=describe,
    )


def adding(length: int = 100, variant: str = "le") -> Task:
    r"""The adding problem.

    ``variant="le"`` (Le et al. 2015; Arjovsky et al. 2016): ``T`` values
    ``U[0, 1]``, one marked uniformly in each half, target ``X1 + X2``.  The
    constant prediction 1 has MSE ``Var(X1 + X2) = 2/12 = 1/6``.

    ``variant="hochreiter"`` (Hochreiter & Schmidhuber 1997, Exp. 4): lengths
    uniform in ``[T, T + T//10]`` (padded; ``Batch.lengths`` holds them), values
    ``U[-1, 1]``, ``X1`` marked among the first 10 steps and ``X2`` among the first
    ``T/2 - 1`` (distinct), target ``0.5 + (X1 + X2)/4``.  The constant 0.5 has
    MSE ``2 (1/3) / 16 = 1/24``; the metric is the fraction with ``|error| < 0.04``,
    which for the constant is ``P(|X1 + X2| < 0.16) = 0.16 - 0.16^2/4 = 0.1536``.

    Inputs ``[B, T, 2]`` (value, marker); targets ``[B, 1]``; readout ``"last"``.

    Raises:
      ValueError: naming ``length`` if ``T < 2`` (``T < 22`` for ``"hochreiter"``,
        whose first ``T/2 - 1`` steps must hold the first 10), or ``variant``.
    """
    check_choice("variant", variant, VARIANTS)
    describe = {"length": length, "variant": variant}
    if variant == "le":
        check_int("length", length, 2, "one marker in each half")
        return _le_task("adding", length, lambda m: m[:, 0] + m[:, 1], 1.0 / 6.0, describe)

    check_int("length", length, 22, "X2 lies in the first T/2-1 steps, which must hold 10")
    max_length = length + length // 10
    second_range = length // 2 - 1

    def sample(key, batch_size):
        value_key, length_key, first_key, second_key = jax.random.split(key, 4)
        values = jax.random.uniform(value_key, (batch_size, max_length), minval=-1.0, maxval=1.0)
        lengths = jax.random.randint(length_key, (batch_size,), length, max_length + 1)
        first = jax.random.randint(first_key, (batch_size,), 0, 10)
        second = jax.random.randint(second_key, (batch_size,), 0, second_range - 1)
        second = jnp.where(second >= first, second + 1, second)  # uniform over the others
        positions = jnp.stack([first, second], axis=-1)
        valid = jnp.arange(max_length) < lengths[:, None]
        values = jnp.where(valid, values, 0.0)
        marked = _marked_values(values, positions)
        targets = 0.5 + (marked[:, 0] + marked[:, 1]) / 4.0
        return Batch(_marked_inputs(values, positions), targets[:, None], lengths)

    def within_tolerance(outputs, batch):
        return jnp.mean(jnp.abs(outputs - batch.targets)[:, 0] < HOCHREITER_TOLERANCE)

    tolerance = 4 * HOCHREITER_TOLERANCE
    return Task(
        name="adding",
        length=max_length,
        input_size=2,
        output_size=1,
        readout="last",
        objective="regression",
        metric_name="accuracy",
        metric=within_tolerance,
        baseline_loss=1.0 / 24.0,
        baseline_metric=tolerance - tolerance**2 / 4.0,
        sample=sample,
        describe=describe,
    )


def multiplication(length: int = 100) -> Task:
    r"""The multiplication problem (Hochreiter & Schmidhuber 1997, Exp. 5; Le's layout).

    As :func:`adding` with ``variant="le"`` but the target is ``X1 X2``.  The
    constant ``E[X1 X2] = 1/4`` has MSE ``E[X1^2] E[X2^2] - 1/16 = 1/9 - 1/16 = 7/144``.

    Raises:
      ValueError: naming ``length`` if ``T < 2``.
    """
    check_int("length", length, 2, "one marker in each half")
    return _le_task(
        "multiplication", length, lambda m: m[:, 0] * m[:, 1], 7.0 / 144.0, {"length": length}
    )
