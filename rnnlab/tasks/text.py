"""Character-level language modelling on any text, with sampling (bits per character).

Tests and demos use :func:`dyck_text`, text generated here from a grammar with
long-range structure, so nothing is downloaded.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab.tasks.base import Batch, Task, bits_metric, check_int, fixed_split, one_hot

__all__ = ["char_lm", "dyck_text", "generate"]

BRACKETS = ("()", "[]", "{}")


def dyck_text(
    num_chars: int = 100_000,
    *,
    seed: int = 0,
    bracket_types: int = 3,
    open_probability: float = 0.5,
    max_depth: int = 8,
    filler: str = "ab",
    filler_probability: float = 0.2,
) -> str:
    """Lines of a Dyck language: nested, matched brackets with filler letters.

    Each line is one balanced word.  At depth 0 a line either ends (newline, with
    probability ``1 - open_probability``) or opens a bracket; inside, a step emits
    a filler letter with probability ``filler_probability``, else opens one of
    ``bracket_types`` kinds (probability ``open_probability``, below ``max_depth``)
    or closes the innermost open bracket.  Which closer comes next depends on an
    opener arbitrarily far back: long-range structure a model must carry.

    Returns:
      A string of ``num_chars`` characters (the last line may be cut).
    """
    check_int("num_chars", num_chars, 1)
    check_int("bracket_types", bracket_types, 1)
    if bracket_types > len(BRACKETS):
        raise ValueError(f"bracket_types must be <= {len(BRACKETS)}, got {bracket_types}")
    rng = np.random.default_rng(seed)
    pairs = BRACKETS[:bracket_types]
    out: list[str] = []
    stack: list[str] = []
    while len(out) < num_chars:
        draw = rng.random()
        if not stack:
            if draw < open_probability or not out or out[-1] == "\n":
                kind = pairs[rng.integers(bracket_types)]
                stack.append(kind[1])
                out.append(kind[0])
            else:
                out.append("\n")
        elif filler and draw < filler_probability:
            out.append(filler[rng.integers(len(filler))])
        elif rng.random() < open_probability and len(stack) < max_depth:
            kind = pairs[rng.integers(bracket_types)]
            stack.append(kind[1])
            out.append(kind[0])
        else:
            out.append(stack.pop())
    return "".join(out[:num_chars])


def _unigram_baseline(train: np.ndarray, test_targets: np.ndarray, vocabulary_size: int) -> float:
    """Cross-entropy (nats) on the test targets of the add-one-smoothed train unigram."""
    counts = np.bincount(train, minlength=vocabulary_size) + 1.0
    return float(-np.mean(np.log(counts[test_targets.ravel()] / counts.sum())))


def char_lm(
    length: int = 64,
    *,
    text: str | None = None,
    path: str | None = None,
    test_fraction: float = 0.1,
    max_test_windows: int = 256,
) -> Task:
    r"""Next-character prediction on ``text``, the file at ``path``, or :func:`dyck_text`.

    The vocabulary is the sorted set of characters (``extras["vocabulary"]``).
    The last ``test_fraction`` of the text is held out.  ``sample`` draws random
    windows of ``T + 1`` characters from the training part: inputs one-hot
    ``[B, T, V]``, targets the next characters ``[B, T]``; readout ``"every"``.
    ``test_set()`` is up to ``max_test_windows`` consecutive non-overlapping
    windows of the held-out part.  The metric is bits per character
    (cross-entropy / ln 2); the baseline is the training unigram distribution.

    Raises:
      ValueError: naming ``text``/``path`` if both or neither-but-empty are given,
        or ``length`` if either split is shorter than ``length + 1`` characters.
    """
    if text is not None and path is not None:
        raise ValueError("pass text= or path=, not both")
    if path is not None:
        text = Path(path).read_text()
    elif text is None:
        text = dyck_text()
    check_int("length", length, 1)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    vocabulary = "".join(sorted(set(text)))
    if len(vocabulary) < 2:
        raise ValueError("text must contain at least two distinct characters")
    lookup = {char: index for index, char in enumerate(vocabulary)}
    codes = np.array([lookup[char] for char in text], np.int32)
    split = int(round(len(codes) * (1.0 - test_fraction)))
    train, test = codes[:split], codes[split:]
    if min(len(train), len(test)) < length + 1:
        raise ValueError(
            f"length={length} needs windows of {length + 1} characters but the train/test "
            f"splits have {len(train)}/{len(test)}; use a shorter length or a longer text"
        )
    count = min(max_test_windows, len(test) // (length + 1))
    test_windows = test[: count * (length + 1)].reshape(count, length + 1)
    size = len(vocabulary)
    train_device = jnp.asarray(train)

    def sample(key, batch_size):
        starts = jax.random.randint(key, (batch_size,), 0, len(train) - length)
        chunk = train_device[starts[:, None] + jnp.arange(length + 1)]
        return Batch(one_hot(chunk[:, :-1], size), chunk[:, 1:])

    test_inputs = np.eye(size, dtype=np.float32)[test_windows[:, :-1]]
    baseline = _unigram_baseline(train, test_windows[:, 1:], size)
    return Task(
        name="char_lm",
        steps=length,
        input_size=size,
        output_size=size,
        readout="every",
        objective="classification",
        metric_name="bits_per_char",
        metric=bits_metric,
        baseline_loss=baseline,
        baseline_metric=baseline / math.log(2.0),
        sample=sample,
        test_set=fixed_split(test_inputs, test_windows[:, 1:]),
        describe={"length": length, "path": path, "test_fraction": test_fraction},
        extras={"vocabulary": vocabulary},
    )


def generate(
    step: Callable,
    carry,
    key: jax.Array,
    vocabulary: str,
    prompt: str,
    num_chars: int,
    temperature: float = 1.0,
) -> str:
    r"""Samples ``num_chars`` characters after ``prompt`` from a character model.

    Args:
      step: ``step(carry, x [V]) -> (carry, logits [V])``, one step of the model
        (e.g. ``functools.partial(trainer.model.step, state.params)``).
      carry: the model's initial carry for an unbatched sequence.
      key: PRNG key.
      vocabulary: the task's ``extras["vocabulary"]``.
      prompt: a non-empty string of vocabulary characters, consumed first.
      num_chars: how many characters to sample.
      temperature: logits are divided by it before sampling ``softmax(logits/τ)``.

    Returns:
      The sampled continuation (without the prompt).
    """
    if not prompt or any(char not in vocabulary for char in prompt):
        raise ValueError(f"prompt must be a non-empty string over the vocabulary {vocabulary!r}")
    check_int("num_chars", num_chars, 1)
    size = len(vocabulary)
    codes = jnp.array([vocabulary.index(char) for char in prompt], jnp.int32)

    @jax.jit
    def run(carry, key):
        def consume(carry, code):
            carry, logits = step(carry, one_hot(code, size))
            return carry, logits

        carry, logits = jax.lax.scan(consume, carry, codes)

        def emit(state, step_key):
            carry, logits = state
            code = jax.random.categorical(step_key, logits / temperature)
            carry, logits = step(carry, one_hot(code, size))
            return (carry, logits), code

        _, sampled = jax.lax.scan(emit, (carry, logits[-1]), jax.random.split(key, num_chars))
        return sampled

    return "".join(vocabulary[int(code)] for code in np.asarray(run(carry, key)))
