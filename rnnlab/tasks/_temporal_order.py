"""The temporal order problem (Hochreiter & Schmidhuber 1997, Exp. 6; Pascanu et al. 2013)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from rnnlab.tasks.base import Batch, Task, accuracy_metric, check_choice, check_int, one_hot

__all__ = ["VARIANTS", "temporal_order"]

VARIANTS = ("hochreiter", "pascanu")

#: Hochreiter & Schmidhuber's symbols: distractors a-d (0-3), the relevant X (4) and Y (5),
#: start B (6), end E (7).
NUM_SYMBOLS = 8
X, B, E = 4, 6, 7

#: Pascanu et al.'s symbols: the relevant A (0) and B (1), distractors c-f (2-5); no
#: start or end markers.
PASCANU_SYMBOLS = 6

#: Windows of the relevant symbols as fractions of T (H&S 1997 at T = 100:
#: 6a [10, 20] and [50, 60]; 6b [10, 20], [33, 43] and [66, 76]).
WINDOWS = {
    4: ((0.10, 0.20), (0.50, 0.60)),
    8: ((0.10, 0.20), (0.33, 0.43), (0.66, 0.76)),
}

#: Pascanu et al.'s windows start at floor(L/10) and floor(5L/10) and are floor(L/10)
#: wide (pascanur/trainingRNNs, ``tempOrder.py``): tenths of L.
PASCANU_WINDOW_STARTS = (1, 5)


def _hochreiter_positions(keys, length, batch_size, num_classes):
    """One position per window, ``round(lo L) <= p <= max(round(lo L), round(hi L))``."""
    positions = []
    length = jnp.asarray(length).astype(jnp.float32)  # an int32 array; the bounds are fractions
    for (lo, hi), key in zip(WINDOWS[num_classes], keys, strict=True):
        low = jnp.round(lo * length).astype(jnp.int32)
        high = jnp.maximum(low, jnp.round(hi * length).astype(jnp.int32))
        positions.append(jax.random.randint(key, (batch_size,), low, high + 1))
    return positions


def _pascanu_positions(keys, length, batch_size):
    """``floor(k L/10) <= p < floor(k L/10) + floor(L/10)`` for ``k = 1`` and ``5``."""
    width = length // 10
    return [
        (start * length) // 10 + jax.random.randint(key, (batch_size,), 0, width)
        for start, key in zip(PASCANU_WINDOW_STARTS, keys, strict=True)
    ]


def temporal_order(
    length: int = 100,
    num_classes: int = 4,
    *,
    variant: str = "hochreiter",
    min_length: int | None = None,
) -> Task:
    r"""Classify the order of the relevant symbols hidden among distractors.

    ``variant="hochreiter"`` (H&S 1997): a sequence of ``L`` symbols starts with ``B``,
    ends with ``E`` and is otherwise uniform over the distractors ``{a, b, c, d}``, except
    at 2 (``num_classes=4``) or 3 (``num_classes=8``) positions drawn uniformly from the
    windows ``WINDOWS`` (fractions of ``L``, rounded, inclusive), each holding ``X`` or
    ``Y``.  The class is the ``X``/``Y`` pattern read as a binary number (``XX, XY, YX,
    YY`` for 4 classes).  Inputs are one-hot over 8 symbols.

    ``variant="pascanu"`` (Pascanu et al. 2013's code, ``tempOrder.py``): 6 one-hot
    channels, the relevant ``A``/``B`` (values ``v0``, ``v1``) at one position in
    ``[floor(L/10), floor(L/10) + floor(L/10))`` and one in ``[floor(5L/10),
    floor(5L/10) + floor(L/10))``, every other step a distractor from ``{c, d, e, f}``,
    no start or end marker; the class is ``v0 + 2 v1``; 4 classes only.

    Lengths: with ``min_length``, each *batch* draws its length ``L`` uniformly in
    ``[min_length, length]`` (Pascanu et al. draw one per batch, in ``[50, 200)``), pads to
    ``length`` steps with zero inputs and sets ``Batch.lengths`` to ``L``, so the ``"last"``
    readout reads step ``L - 1``.  Without it every sequence has ``L = length`` and
    ``lengths`` is ``None``.

    Labels ``[B]``; readout ``"last"``.  Chance has cross-entropy ``log(num_classes)`` and
    accuracy ``1/num_classes``.  Pascanu et al. count a run as solved at 0 errors on
    10,000 fresh sequences (REFERENCES.md).

    Raises:
      ValueError: naming ``length``/``min_length`` if below 10 (the windows would overlap
        the markers or be empty) or ``min_length > length``, ``variant`` if unknown, or
        ``num_classes`` if not 4 or 8 (4 for ``"pascanu"``).
    """
    check_choice("variant", variant, VARIANTS)
    check_choice("num_classes", num_classes, (4,) if variant == "pascanu" else tuple(WINDOWS))
    check_int("length", length, 10, "the relevant windows must be distinct and inside")
    if min_length is not None:
        check_int("min_length", min_length, 10, "the relevant windows must be distinct")
        if min_length > length:
            raise ValueError(f"min_length={min_length} must not exceed length={length}")
    relevant = 2 if num_classes == 4 else 3
    symbols_count = PASCANU_SYMBOLS if variant == "pascanu" else NUM_SYMBOLS

    def sample(key, batch_size):
        distractor_key, bit_key, *position_keys = jax.random.split(key, 2 + relevant)
        if min_length is None:
            steps = jnp.asarray(length, jnp.int32)
        else:
            steps = jax.random.randint(jax.random.fold_in(key, 1), (), min_length, length + 1)
        rows, time = jnp.arange(batch_size), jnp.arange(length)
        bits = jax.random.randint(bit_key, (batch_size, relevant), 0, 2)
        if variant == "pascanu":
            symbols = 2 + jax.random.randint(distractor_key, (batch_size, length), 0, 4)
            positions = _pascanu_positions(position_keys, steps, batch_size)
            labels = bits[:, 0] + 2 * bits[:, 1]
            relevant_symbol = bits
        else:
            symbols = jax.random.randint(distractor_key, (batch_size, length), 0, X)
            symbols = jnp.where(time == 0, B, jnp.where(time == steps - 1, E, symbols))
            positions = _hochreiter_positions(position_keys, steps, batch_size, num_classes)
            labels = jnp.sum(bits * (2 ** jnp.arange(relevant - 1, -1, -1)), axis=-1)
            relevant_symbol = X + bits
        for index, position in enumerate(positions):
            symbols = symbols.at[rows, position].set(relevant_symbol[:, index])
        inputs = one_hot(symbols, symbols_count)
        if min_length is None:
            return Batch(inputs, labels)
        inputs = jnp.where((time < steps)[:, None], inputs, 0.0)
        return Batch(inputs, labels, jnp.full((batch_size,), steps, jnp.int32))

    return Task(
        name="temporal_order",
        length=length,
        input_size=symbols_count,
        output_size=num_classes,
        readout="last",
        objective="classification",
        metric_name="accuracy",
        metric=accuracy_metric,
        baseline_loss=math.log(num_classes),
        baseline_metric=1.0 / num_classes,
        sample=sample,
        describe={
            "length": length,
            "num_classes": num_classes,
            "variant": variant,
            "min_length": min_length,
        },
    )
