"""Teacher-student identification of a linear dynamical system (Zucchet & Orvieto 2024)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab.tasks.base import Batch, Task, check_int, mse_metric

__all__ = ["teacher_student", "teacher_system"]


def teacher_system(
    memory: float, teacher_size: int, input_size: int, output_size: int, seed: int
) -> dict[str, np.ndarray]:
    r"""The teacher's matrices ``A [n, n]``, ``B [n, F]``, ``C [O, n]``, ``D [O, F]`` (float64).

    ``A`` starts as ``N(0, 1/n)``; its eigenvalues ``mu`` keep their phase and get the
    magnitude ``memory + (1 - memory) tanh(|mu|)``, so every ``|lambda|`` lies in
    ``[memory, 1)`` and ``memory`` is the smallest (Zucchet & Orvieto 2024's
    ``min_nu``).  Conjugate pairs stay conjugate, so ``A = V diag(lambda) V^-1`` is real.
    ``B ~ N(0, 1/F)``, ``C ~ N(0, 1/n)``, ``D ~ N(0, 1/F)``.
    """
    rng = np.random.default_rng(seed)
    start = rng.normal(size=(teacher_size, teacher_size)) / math.sqrt(teacher_size)
    mu, vectors = np.linalg.eig(start)
    eigenvalues = (memory + (1.0 - memory) * np.tanh(np.abs(mu))) * np.exp(1j * np.angle(mu))
    transition = vectors @ np.diag(eigenvalues) @ np.linalg.inv(vectors)
    return {
        "A": np.real(transition),
        "B": rng.normal(size=(teacher_size, input_size)) / math.sqrt(input_size),
        "C": rng.normal(size=(output_size, teacher_size)) / math.sqrt(teacher_size),
        "D": rng.normal(size=(output_size, input_size)) / math.sqrt(input_size),
        "eigenvalues": eigenvalues,
    }


def impulse_response(system: dict[str, np.ndarray], length: int) -> np.ndarray:
    """``K [T, O, F]`` with ``y_t = sum_k K_k x_{t-k}``: ``K_0 = C B + D``, ``K_k = C A^k B``."""
    kernel, power = [], system["B"]
    for step in range(length):
        kernel.append(system["C"] @ power + (system["D"] if step == 0 else 0.0))
        power = system["A"] @ power
    return np.stack(kernel)


def teacher_student(
    length: int = 300,
    memory: float = 0.9,
    teacher_size: int = 10,
    input_size: int = 1,
    output_size: int = 1,
    teacher_seed: int = 0,
) -> Task:
    r"""Imitate a linear recurrent teacher from its inputs and outputs, at every step.

    The teacher (:func:`teacher_system`) is fixed by ``teacher_seed``::

        h_t = A h_{t-1} + B x_t,   h_{-1} = 0,   y_t = C h_t + D x_t,   x_t ~ N(0, I_F)

    with eigenvalues of ``A`` of magnitude in ``[memory, 1)``: the closer ``memory`` is
    to 1, the longer the teacher remembers.  Zucchet & Orvieto 2024 train a 64-unit
    student on ``T = 300`` with ``memory`` in {0.36, 0.68, 0.84, 0.92, 0.96, 0.98, 0.99}
    and find that the tanh RNN degrades as the memory approaches 1 while the LRU (a
    diagonal, normalized linear recurrence) does not: the curse of memory.

    Inputs ``[B, T, F]``, targets ``[B, T, O]``, readout ``"every"``; the loss is the
    squared error summed over outputs and averaged over steps and sequences (the
    authors halve it).  The baseline predicts 0, the output mean, so its loss is the
    output power ``mean_t E||y_t||^2 = mean_t sum_{k<=t} ||K_k||_F^2`` with the impulse
    response ``K_0 = C B + D``, ``K_k = C A^k B`` (``extras["impulse_response"]``).

    Raises:
      ValueError: naming ``memory`` outside ``[0, 1)`` or a size, ``length`` or
        ``teacher_seed`` that is not a positive (for the seed: non-negative) int.
    """
    check_int("length", length, 1)
    check_int("teacher_size", teacher_size, 1)
    check_int("input_size", input_size, 1)
    check_int("output_size", output_size, 1)
    check_int("teacher_seed", teacher_seed, 0)
    if isinstance(memory, bool) or not isinstance(memory, (int, float)) or not 0 <= memory < 1:
        raise ValueError(
            f"memory must be a number in [0, 1) (|lambda| of the teacher), got {memory!r}"
        )
    system = teacher_system(float(memory), teacher_size, input_size, output_size, teacher_seed)
    kernel = impulse_response(system, length)
    power = np.cumsum(np.sum(np.square(kernel), axis=(1, 2)))  # E||y_t||^2 for t = 0..T-1
    baseline = float(np.mean(power))
    # Row-vector convention of the cells: h_t = h_{t-1} A^T + x_t B^T.
    a, b, c, d = (jnp.asarray(system[name].T, jnp.float32) for name in "ABCD")

    def sample(key, batch_size):
        inputs = jax.random.normal(key, (batch_size, length, input_size))

        def step(h, x):
            h = h @ a + x @ b
            return h, h @ c + x @ d

        initial = jnp.zeros((batch_size, teacher_size), jnp.float32)
        _, targets = jax.lax.scan(step, initial, jnp.swapaxes(inputs, 0, 1))
        return Batch(inputs, jnp.swapaxes(targets, 0, 1))

    return Task(
        name="teacher_student",
        length=length,
        input_size=input_size,
        output_size=output_size,
        readout="every",
        objective="regression",
        metric_name="mse",
        metric=mse_metric,
        baseline_loss=baseline,
        baseline_metric=baseline,
        sample=sample,
        describe={
            "length": length,
            "memory": memory,
            "teacher_size": teacher_size,
            "input_size": input_size,
            "output_size": output_size,
            "teacher_seed": teacher_seed,
        },
        extras={
            "system": system,
            "impulse_response": kernel,
            "stationary_output_power": float(power[-1]),
        },
    )
