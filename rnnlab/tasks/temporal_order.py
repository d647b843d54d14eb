"""The temporal order problem (Hochreiter & Schmidhuber 1997, Exp. 6a and 6b)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from rnnlab.tasks.base import Batch, Task, accuracy_metric, check_choice, check_int, one_hot

__all__ = ["temporal_order"]

#: Symbols: four distractors a-d (0-3), the relevant X (4) and Y (5), start B (6), end E (7).
NUM_SYMBOLS = 8
X, B, E = 4, 6, 7

#: Windows of the relevant symbols as fractions of T (H&S 1997 at T = 100:
#: 6a [10, 20] and [50, 60]; 6b [10, 20], [33, 43] and [66, 76]).
WINDOWS = {
    4: ((0.10, 0.20), (0.50, 0.60)),
    8: ((0.10, 0.20), (0.33, 0.43), (0.66, 0.76)),
}


def temporal_order(length: int = 100, num_classes: int = 4) -> Task:
    r"""Classify the order of the relevant symbols hidden among distractors.

    A sequence of ``T`` symbols starts with ``B``, ends with ``E`` and is otherwise
    uniform over the distractors ``{a, b, c, d}``, except at 2 (``num_classes=4``)
    or 3 (``num_classes=8``) positions drawn uniformly from the windows
    ``WINDOWS`` (fractions of ``T``), each holding ``X`` or ``Y``.  The class is the
    ``X``/``Y`` pattern read as a binary number (``XX, XY, YX, YY`` for 4 classes).

    Inputs one-hot ``[B, T, 8]``; labels ``[B]``; readout ``"last"``.  Chance has
    cross-entropy ``log(num_classes)`` and accuracy ``1/num_classes``.  Pascanu et
    al. 2013 count a run as solved when fewer than 1% of fresh sequences are
    misclassified.

    Raises:
      ValueError: naming ``length`` if ``T < 10`` (the windows would overlap the
        start and end symbols) or ``num_classes`` if not 4 or 8.
    """
    check_choice("num_classes", num_classes, tuple(WINDOWS))
    check_int("length", length, 10, "the relevant windows must be distinct and inside")
    windows = [
        (int(round(lo * length)), max(int(round(lo * length)), int(round(hi * length))))
        for lo, hi in WINDOWS[num_classes]
    ]
    relevant = len(windows)

    def sample(key, batch_size):
        distractor_key, bit_key, *position_keys = jax.random.split(key, 2 + relevant)
        symbols = jax.random.randint(distractor_key, (batch_size, length), 0, X)
        symbols = symbols.at[:, 0].set(B).at[:, -1].set(E)
        bits = jax.random.randint(bit_key, (batch_size, relevant), 0, 2)
        rows = jnp.arange(batch_size)
        for index, ((lo, hi), position_key) in enumerate(zip(windows, position_keys, strict=True)):
            position = jax.random.randint(position_key, (batch_size,), lo, hi + 1)
            symbols = symbols.at[rows, position].set(X + bits[:, index])
        labels = jnp.sum(bits * (2 ** jnp.arange(relevant - 1, -1, -1)), axis=-1)
        return Batch(one_hot(symbols, NUM_SYMBOLS), labels)

    return Task(
        name="temporal_order",
        steps=length,
        input_size=NUM_SYMBOLS,
        output_size=num_classes,
        readout="last",
        objective="classification",
        metric_name="accuracy",
        metric=accuracy_metric,
        baseline_loss=math.log(num_classes),
        baseline_metric=1.0 / num_classes,
        sample=sample,
        describe={"length": length, "num_classes": num_classes},
    )
