"""MNIST-1D (Greydanus 2020): ten 1-D digit templates, padded, scaled, translated, noised.

The ``mnist1d`` package generates the data set offline from its templates with the
published arguments (5,000 sequences of length 40, seed 42, the first 4,000 for
training and the rest for testing).  Its README reports test accuracy: logistic
regression 32%, MLP 68%, CNN 94%, GRU 91% (and a human expert 96%) — on the
data set it distributes as a pickle, which regenerating may not reproduce bit for bit.
"""

from __future__ import annotations

import functools
import random

import numpy as np

from rnnlab.tasks.base import Task, import_optional
from rnnlab.tasks.classification import labelled_sequences

__all__ = ["load_mnist1d", "mnist1d"]

STEPS = 40
NUM_CLASSES = 10


@functools.cache
def load_mnist1d():
    """Generates MNIST-1D with the package's default arguments.

    ``mnist1d`` seeds Python's and NumPy's global generators (legacy API, hence the
    ``noqa``); both states are restored afterwards.

    Returns:
      ``(train, test)``, each ``(inputs [N, 40, 1] float32, labels [N] int32, None)``
      with 4,000 and 1,000 rows.
    """
    data = import_optional("mnist1d.data")
    python_state, numpy_state = random.getstate(), np.random.get_state()  # noqa: NPY002
    try:
        dataset = data.make_dataset(data.get_dataset_args())
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)  # noqa: NPY002

    def split(inputs, labels):
        return inputs[..., None].astype(np.float32), labels.astype(np.int32), None

    return split(dataset["x"], dataset["y"]), split(dataset["x_test"], dataset["y_test"])


def mnist1d(
    *,
    validation_fraction: float = 0.1,
    split_seed: int = 0,
    length: int | None = None,
) -> Task:
    r"""Classify an MNIST-1D sequence, one value per step: inputs ``[B, 40, 1]``, labels ``[B]``.

    A stratified ``validation_fraction`` of the 4,000 training sequences (drawn with
    ``split_seed``) is the validation split; the 1,000 test sequences are the
    package's.  The generator already standardizes the inputs.  Readout ``"last"``;
    the baseline is the training prior.  ``logistic_regression_baseline(task,
    features="raw")`` is the README's logistic regression.

    Args:
      length: optional check; must be 40.

    Raises:
      ValueError: naming ``validation_fraction`` outside ``(0, 1)``, or ``length``.
      ImportError: without mnist1d (``pip install 'rnnlab[apps]'``).
    """
    if length is not None and length != STEPS:
        raise ValueError(
            f"length={length!r} does not fit mnist1d, whose sequences have {STEPS} steps; "
            f"omit length or pass {STEPS}"
        )
    train, test = load_mnist1d()
    return labelled_sequences(
        "mnist1d",
        train,
        test,
        num_classes=NUM_CLASSES,
        validation_fraction=validation_fraction,
        split_seed=split_seed,
        standardize=False,
        describe={"validation_fraction": validation_fraction, "split_seed": split_seed},
        extras={"classes": tuple(str(digit) for digit in range(NUM_CLASSES))},
    )
