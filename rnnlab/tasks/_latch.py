"""The latch / 2-sequence problem (Bengio, Simard & Frasconi 1994)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from rnnlab.tasks.base import Batch, Task, accuracy_metric, check_int

__all__ = ["latch"]


def latch(length: int = 50, informative_steps: int = 3, noise_std: float = 0.2) -> Task:
    r"""Two classes told apart only by the first inputs; the rest is noise.

    Class ``c in {0, 1}``.  The first ``informative_steps`` inputs are
    ``2c - 1`` (+1 or -1) and the remaining ``T - informative_steps`` are
    ``N(0, noise_std^2)``; the class is read after the last step, so the network
    must latch one bit across ``T`` steps.  Bengio et al. 1994 showed gradient
    descent's success rate falls steeply with ``T``.

    Inputs ``[B, T, 1]``; labels ``[B]``; readout ``"last"``.  Chance has
    cross-entropy ``log 2`` and accuracy ``1/2``.

    Raises:
      ValueError: naming the argument if ``informative_steps < 1``,
        ``length <= informative_steps`` or ``noise_std < 0``.
    """
    check_int("informative_steps", informative_steps, 1)
    check_int("length", length, informative_steps + 1, "longer than informative_steps")
    if not float(noise_std) >= 0.0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std!r}")

    def sample(key, batch_size):
        label_key, noise_key = jax.random.split(key)
        labels = jax.random.randint(label_key, (batch_size,), 0, 2)
        noise = noise_std * jax.random.normal(noise_key, (batch_size, length))
        signal = (2.0 * labels.astype(jnp.float32) - 1.0)[:, None]
        informative = jnp.arange(length) < informative_steps
        inputs = jnp.where(informative, signal, noise)
        return Batch(inputs[..., None], labels)

    return Task(
        name="latch",
        length=length,
        input_size=1,
        output_size=2,
        readout="last",
        objective="classification",
        metric_name="accuracy",
        metric=accuracy_metric,
        baseline_loss=math.log(2.0),
        baseline_metric=0.5,
        sample=sample,
        describe={
            "length": length,
            "informative_steps": informative_steps,
            "noise_std": noise_std,
        },
    )
