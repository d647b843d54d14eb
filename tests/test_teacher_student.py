"""The teacher-student task (Zucchet & Orvieto 2024) against oracles: a NumPy float64
hand loop of the teacher's recurrence, a Monte Carlo estimate of the zero predictor's
loss, and the teacher's eigenvalues from ``numpy.linalg.eigvals``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab.tasks import make_task, teacher_student


def test_targets_follow_the_teacher_recurrence():
    """Oracle: h_t = A h_{t-1} + B x_t, y_t = C h_t + D x_t stepped by hand in NumPy."""
    task = teacher_student(length=40, memory=0.9, teacher_size=5, input_size=2, output_size=3)
    batch = jax.jit(task.sample, static_argnums=1)(jax.random.key(0), 4)
    assert batch.inputs.shape == (4, 40, 2) and batch.targets.shape == (4, 40, 3)
    system = task.extras["system"]
    inputs = np.asarray(batch.inputs, np.float64)
    h = np.zeros((4, 5))
    for t in range(40):
        h = h @ system["A"].T + inputs[:, t] @ system["B"].T
        expected = h @ system["C"].T + inputs[:, t] @ system["D"].T
        np.testing.assert_allclose(batch.targets[:, t], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("memory", [0.36, 0.99])
def test_teacher_memory_and_baseline(memory):
    """Oracles: eigvals(A) have magnitudes in [memory, 1); the zero predictor's loss
    (``baseline_loss``) matches its Monte Carlo mean over 4,000 sequences within 4
    standard errors."""
    task = make_task("teacher_student", 60, memory=memory, teacher_seed=3)
    magnitudes = np.abs(np.linalg.eigvals(task.extras["system"]["A"]))
    assert np.all(magnitudes >= memory - 1e-12) and np.all(magnitudes < 1)
    np.testing.assert_allclose(
        np.sort(magnitudes), np.sort(np.abs(task.extras["system"]["eigenvalues"])), rtol=1e-9
    )
    batch = task.sample(jax.random.key(1), 4000)
    per_sequence = np.mean(np.sum(np.square(np.asarray(batch.targets, np.float64)), -1), -1)
    error = 4 * per_sequence.std() / np.sqrt(per_sequence.size)
    assert abs(per_sequence.mean() - task.baseline_loss) < error
    zeros = jnp.zeros_like(batch.targets)
    np.testing.assert_allclose(task.loss(zeros, batch), per_sequence.mean(), rtol=1e-5)


def test_bad_options_name_the_argument():
    """Oracle: each error message names the option at fault."""
    for memory in (1.0, -0.1, True, "0.9"):
        with pytest.raises(ValueError, match="memory must be a number in"):
            teacher_student(memory=memory)
    with pytest.raises(ValueError, match="teacher_size must be an int >= 1"):
        teacher_student(teacher_size=0)
    with pytest.raises(ValueError, match="unknown field 'lam'"):
        make_task("teacher_student", lam=0.5)
