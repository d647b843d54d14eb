"""Model sizes: parameter counts, and the hidden size that gives a wanted count.

Comparisons of cells "at matched parameter counts" (Chung et al. 2014 give every
model about 20k parameters on polyphonic music) need, for each cell, the ``H`` at
which the whole model, recurrent layers and readout, holds about ``N`` parameters.
The count is read from the shapes of :meth:`Model.init` (``jax.eval_shape``: no
arrays are built), so it holds for any registered cell and any model family.
"""

from __future__ import annotations

import math

import jax

from rnnlab.tasks import Task
from rnnlab.train.config import TrainConfig
from rnnlab.train.engine import Trainer, make_model, make_train

__all__ = ["matched_hidden_size", "parameter_count"]

#: The largest hidden size :func:`matched_hidden_size` considers.
MAX_HIDDEN_SIZE = 1 << 14


def parameter_count(config: TrainConfig, task: Task | None = None) -> int:
    """The number of trainable scalars of ``config``'s model for ``task``.

    Args:
      config: the model's configuration (cell, ``hidden_size``, layers, direction,
        model family).
      task: the task it is built for (its input and output sizes and length); by
        default ``config``'s own task.  Pass it to count many configurations
        without rebuilding the task.
    """
    trainer = make_train(config) if task is None else None
    task = trainer.task if task is None else task
    hparams = Trainer(config=config, task=task).default_hparams()
    shapes = jax.eval_shape(lambda: make_model(config, task, hparams).init(jax.random.key(0)))
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(shapes))


def matched_hidden_size(config: TrainConfig, parameters: int, task: Task | None = None) -> int:
    """The hidden size ``H`` whose model has the parameter count closest to ``parameters``.

    The count grows with ``H``, so a bisection finds the smallest ``H`` with at least
    ``parameters``; it or ``H - 1`` is the closest (ties go to the smaller).

    Example: for the 88-key chorales at 20,000 parameters this gives ``H = 78`` for
    the tanh RNN, 41 for the GRU and 34 for the LSTM (with their readouts).

    Raises:
      ValueError: naming ``parameters`` if it is not a positive int or needs more
        than :data:`MAX_HIDDEN_SIZE` units.
    """
    if isinstance(parameters, bool) or not isinstance(parameters, int) or parameters < 1:
        raise ValueError(f"parameters must be a positive int, got {parameters!r}")
    task = make_train(config).task if task is None else task

    def count(hidden_size: int) -> int:
        return parameter_count(config.replace(hidden_size=hidden_size), task)

    if count(MAX_HIDDEN_SIZE) < parameters:
        raise ValueError(
            f"parameters={parameters} needs a hidden size above {MAX_HIDDEN_SIZE} for cell "
            f"{config.cell!r}"
        )
    low, high = 1, MAX_HIDDEN_SIZE  # invariant: count(high) >= parameters
    if count(low) >= parameters:
        return low
    while high - low > 1:
        middle = (low + high) // 2
        if count(middle) >= parameters:
            high = middle
        else:
            low = middle
    return low if parameters - count(low) <= count(high) - parameters else high
