"""Translation with real structure, generated: English number words to digits.

``"three hundred and twelve" -> "312"``.  The source is a sequence of words (British
usage: "and" after "hundred", and before a last group below 100 after "thousand" or
"million": "one thousand and five"); the target is the digits followed by an
end-of-sequence token.  Word order is not the digits' order ("twelve" covers two
digits, "hundred" none, the zeros of "one thousand and five" have no word), so a
decoder must learn an alignment: the setting of attention (Bahdanau et al. 2015).

Sampling is pure JAX: a number is drawn, then written out in words and digits
under ``jit``/``vmap``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab.tasks.base import Batch, Task, check_int, single_threaded_blas

__all__ = [
    "SOURCE_VOCABULARY",
    "TARGET_VOCABULARY",
    "linear_baseline",
    "number_words",
    "number_words_to_digits",
    "sequence_correct",
    "source_steps",
]

ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
#: Source words; word ``i`` is one-hot channel ``i``.
SOURCE_VOCABULARY = (*ONES, *TENS, "hundred", "thousand", "million", "and")
HUNDRED, THOUSAND, MILLION, AND = 28, 29, 30, 31
#: Target tokens: padding, start (the decoder's first input), end, then the digits.
TARGET_VOCABULARY = ("<pad>", "<s>", "</s>", *"0123456789")
PAD, BOS, EOS, DIGIT0 = 0, 1, 2, 3
MAX_DIGITS = 9
#: Numbers below this always train (they are the vocabulary's atoms); from here up,
#: a hash of the number puts 10% in validation and 10% in test.
HOLD_OUT_FROM = 100
SPLITS = {"train": 0, "validation": 1, "test": 2}


def number_words(n: int) -> list[str]:
    """Plain-Python oracle: the words of ``0 <= n < 10**9`` (see the module docstring)."""
    if n == 0:
        return ["zero"]

    def group(g: int) -> list[str]:
        hundreds, rest = divmod(g, 100)
        words = [ONES[hundreds], "hundred"] if hundreds else []
        if hundreds and rest:
            words.append("and")
        if 0 < rest < 20:
            words.append(ONES[rest])
        elif rest >= 20:
            words.append(TENS[rest // 10 - 2])
            if rest % 10:
                words.append(ONES[rest % 10])
        return words

    millions, thousands, units = n // 10**6, (n // 1000) % 1000, n % 1000
    words = []
    if millions:
        words += group(millions) + ["million"]
    if thousands:
        words += group(thousands) + ["thousand"]
    if n >= 1000 and 0 < units < 100:
        words.append("and")
    return words + group(units)


def source_steps(max_digits: int) -> int:
    """The most words of a number with at most ``max_digits`` digits (padded source length)."""
    groups = -(-max_digits // 3)
    leading = {1: 1, 2: 2, 0: 5}[max_digits % 3]  # "seven", "seventy seven", 5 words
    if groups == 1:
        return leading
    return leading + 1 + 6 * (groups - 2) + 5  # scale words, full middle groups, units


def _array_module(n):
    """NumPy for NumPy inputs (evaluation sets, built once), JAX otherwise (sampling)."""
    return np if isinstance(n, np.ndarray | np.generic) else jnp


def _group_slots(g):
    """Word slots of a group ``0 <= g < 1000``: ``(words [..., 5], used [..., 5])``."""
    xp = _array_module(g)
    hundreds, rest = g // 100, g % 100
    ones = rest % 10
    words = xp.stack(
        [
            hundreds,
            xp.full_like(g, HUNDRED),
            xp.full_like(g, AND),
            xp.where(rest < 20, rest, len(ONES) + rest // 10 - 2),
            ones,
        ],
        axis=-1,
    )
    used = xp.stack(
        [
            hundreds > 0,
            hundreds > 0,
            (hundreds > 0) & (rest > 0),
            rest > 0,
            (rest >= 20) & (ones > 0),
        ],
        axis=-1,
    )
    return words, used


def _words(n, steps: int):
    """``(words [..., steps] int32, lengths [...])``: the word codes of ``n``, left-aligned."""
    xp = _array_module(n)
    millions, thousands, units = n // 10**6, (n // 1000) % 1000, n % 1000

    def slot(word, used):
        return xp.full_like(n, word)[..., None], used[..., None]

    parts = [
        _group_slots(millions),
        slot(MILLION, millions > 0),
        _group_slots(thousands),
        slot(THOUSAND, thousands > 0),
        slot(AND, (n >= 1000) & (units > 0) & (units < 100)),
        _group_slots(units),
        slot(0, n == 0),
    ]
    words = xp.concatenate([part[0] for part in parts], axis=-1)
    used = xp.concatenate([part[1] for part in parts], axis=-1)
    # A stable sort of the unused slots to the back keeps the used words in order.
    order = xp.argsort(~used, axis=-1, stable=True)
    words = xp.take_along_axis(words, order, axis=-1)[..., :steps]
    return words.astype(xp.int32), xp.sum(used, axis=-1).astype(xp.int32)


def _digits(n, max_digits: int):
    """``[..., max_digits + 1]`` target tokens: the digits, then EOS, then padding."""
    xp = _array_module(n)
    powers = 10 ** xp.arange(max_digits - 1, -1, -1)
    padded = (n[..., None] // powers) % 10  # with leading zeros
    count = 1 + xp.sum(n[..., None] >= 10 ** xp.arange(1, max_digits), axis=-1)
    position = xp.arange(max_digits + 1)
    source = xp.clip(position + (max_digits - count)[..., None], 0, max_digits - 1)
    digits = xp.take_along_axis(padded, source, axis=-1) + DIGIT0
    tokens = xp.where(position < count[..., None], digits, PAD)
    return xp.where(position == count[..., None], EOS, tokens).astype(xp.int32)


def _split_of(n):
    """0 train, 1 validation, 2 test: a multiplicative hash of ``n`` (NumPy or JAX)."""
    xp = _array_module(n)
    hashed = (n.astype(xp.uint32) * xp.uint32(2654435761)) >> xp.uint32(16)
    bucket = hashed % xp.uint32(10)
    split = xp.where(bucket == 0, 2, xp.where(bucket == 1, 1, 0))
    return xp.where(n < HOLD_OUT_FROM, 0, split)


def _encode(n, max_digits: int) -> Batch:
    """The batch of numbers ``n [B]``: NumPy arrays for NumPy ``n``, else JAX arrays."""
    xp = _array_module(n)
    words, lengths = _words(n, source_steps(max_digits))
    valid = xp.arange(words.shape[-1]) < lengths[..., None]
    inputs = (words[..., None] == xp.arange(len(SOURCE_VOCABULARY))) & valid[..., None]
    return Batch(inputs.astype(xp.float32), _digits(n, max_digits), lengths)


def _draw_counts(key, shape, min_digits: int, max_digits: int) -> jax.Array:
    """Digit counts uniform on ``[min_digits, max_digits]``."""
    return jax.random.randint(key, shape, min_digits, max_digits + 1)


def _draw_numbers(key, count: jax.Array) -> jax.Array:
    """A number uniform among those with ``count`` digits (0..9 for one digit)."""
    low = jnp.where(count == 1, 0, 10 ** (count - 1))
    return jax.random.randint(key, count.shape, low, 10**count)


def _position_frequencies(min_digits: int, max_digits: int) -> np.ndarray:
    """``[U, 13]``: the sampling distribution of each target position's token.

    The digit count ``c`` is uniform on ``[min_digits, max_digits]``; position ``j``
    holds a digit when ``j < c`` (the leading one uniform on 1..9, or 0..9 when
    ``c = 1``; the others uniform on 0..9), ``</s>`` when ``j = c``, else ``<pad>``.
    The 20% of numbers from 100 up that are held out are ignored: the hash spreads
    them evenly over the digits.  A tiny floor keeps impossible tokens finite.
    """
    frequencies = np.full((max_digits + 1, len(TARGET_VOCABULARY)), 1e-9)
    counts = range(min_digits, max_digits + 1)
    for count in counts:
        weight = 1.0 / len(counts)
        frequencies[count, EOS] += weight
        frequencies[count + 1 :, PAD] += weight
        first = range(10) if count == 1 else range(1, 10)
        for digit in first:
            frequencies[0, DIGIT0 + digit] += weight / len(first)
        frequencies[1:count, DIGIT0 : DIGIT0 + 10] += weight / 10
    return frequencies / frequencies.sum(-1, keepdims=True)


def sequence_correct(predicted: jax.Array, targets: jax.Array) -> jax.Array:
    """``[B]``: every non-padding target token was predicted (``predicted [B, U]`` tokens)."""
    return jnp.all((predicted == targets) | (targets == PAD), axis=-1)


def exact_match_metric(outputs: jax.Array, batch: Batch) -> jax.Array:
    """Fraction of targets whose arg-max tokens are all right (``outputs [B, U, V]`` logits).

    Under teacher forcing this equals greedy decoding's exact match: a greedy decoder
    that is right at every step was fed the teacher's inputs.
    """
    return jnp.mean(sequence_correct(jnp.argmax(outputs, axis=-1), batch.targets))


def _evaluation_numbers(split: int, count: int, min_digits: int, max_digits: int, seed: int):
    """Up to ``count`` distinct numbers of ``split``, equally many of each digit count."""
    rng = np.random.default_rng(seed)
    counts = range(max(min_digits, 3), max_digits + 1)
    per_count = count // len(counts)
    numbers = []
    for digits in counts:
        low, high = 10 ** (digits - 1), 10**digits
        if high - low <= 50 * per_count:  # small range: enumerate it
            pool = np.arange(low, high)
            pool = rng.permutation(pool[_split_of(pool) == split])[:per_count]
        else:
            draws = rng.integers(low, high, 50 * per_count)
            pool = np.unique(draws[_split_of(draws) == split])
            pool = rng.permutation(pool)[:per_count]
        numbers.append(pool)
    return np.sort(np.concatenate(numbers)).astype(np.int32)


def number_words_to_digits(
    min_digits: int = 1,
    max_digits: int = 4,
    *,
    evaluation_size: int = 1000,
    seed: int = 0,
    length: int | None = None,
) -> Task:
    r"""Translate English number words into digits: ``"three hundred and twelve" -> "312"``.

    A number's digit count is drawn uniformly in ``[min_digits, max_digits]``, then
    the number uniformly among the training numbers with that many digits, so source
    lengths spread from one word to :func:`source_steps`\ ``(max_digits)`` (17 words
    at 9 digits).

    - inputs ``[B, S, 32]``: one-hot source words (``SOURCE_VOCABULARY``), zero after
      ``lengths [B]``, ``S = source_steps(max_digits)``;
    - targets ``[B, U]`` int, ``U = max_digits + 1``: tokens of ``TARGET_VOCABULARY``
      (digits, then ``</s>``, then ``<pad>``); the decoder starts from ``<s>``.

    The model is an encoder-decoder (:mod:`rnnlab.seq2seq`) returning logits
    ``[B, U, 13]``; the loss is the cross-entropy over non-padding target tokens
    (``padding_label``), the metric the exact-match rate (:func:`exact_match_metric`).

    **Splits.**  Every number below 100 trains; of the numbers from 100 up, a hash
    puts 10% in validation and 10% in test, so the held-out numbers are never seen
    in training.  ``validation_set()`` and ``test_set()`` hold up to
    ``evaluation_size`` distinct held-out numbers, equally many per digit count
    from ``max(min_digits, 3)`` to ``max_digits`` (drawn with ``seed``).

    The baseline is input-blind: each target position's token distribution under
    the sampling law (:func:`_position_frequencies`, closed form); its loss and
    exact match are measured on the test split.

    Args:
      length: optional check; must equal ``source_steps(max_digits)``.

    Raises:
      ValueError: naming ``min_digits``/``max_digits`` (``1 <= min <= max <= 9``,
        ``max_digits >= 3`` so that numbers can be held out), ``evaluation_size``,
        or ``length``.
    """
    check_int("min_digits", min_digits, 1)
    check_int("max_digits", max_digits, 3, "numbers below 100 are never held out")
    if max_digits > MAX_DIGITS:
        raise ValueError(f"max_digits must be <= {MAX_DIGITS}, got {max_digits}")
    if min_digits > max_digits:
        raise ValueError(f"min_digits={min_digits} must not exceed max_digits={max_digits}")
    check_int("evaluation_size", evaluation_size, max_digits)
    steps = source_steps(max_digits)
    if length is not None and length != steps:
        raise ValueError(
            f"length={length!r} does not fit max_digits={max_digits}, whose sources have up "
            f"to {steps} words; omit length or pass {steps}"
        )

    def sample(key, batch_size):
        # Held-out numbers are redrawn with the same digit count, so the counts stay
        # uniform and the closed-form baseline below is the training distribution.
        count_key, key = jax.random.split(key)
        count = _draw_counts(count_key, (batch_size,), min_digits, max_digits)

        def redraw(state):
            key, numbers = state
            key, draw_key = jax.random.split(key)
            held_out = _split_of(numbers) != 0
            return key, jnp.where(held_out, _draw_numbers(draw_key, count), numbers)

        draw_key, key = jax.random.split(key)
        state = (key, _draw_numbers(draw_key, count))
        _, numbers = jax.lax.while_loop(lambda s: jnp.any(_split_of(s[1]) != 0), redraw, state)
        return _encode(numbers, max_digits)

    splits, numbers = {}, {}
    for name in ("validation", "test"):
        numbers[name] = _evaluation_numbers(
            SPLITS[name], evaluation_size, min_digits, max_digits, seed
        )
        splits[name] = _encode(numbers[name], max_digits)
    # The input-blind baseline, in NumPy: no compilation when the task is built.
    frequencies = _position_frequencies(min_digits, max_digits)
    targets = splits["test"].targets
    position = np.broadcast_to(np.arange(targets.shape[-1]), targets.shape)
    valid = targets != PAD
    baseline_loss = float(-np.mean(np.log(frequencies[position, targets])[valid]))
    guess = np.argmax(frequencies, axis=-1)
    baseline_exact_match = float(np.mean(np.all((guess == targets) | ~valid, axis=-1)))
    splits = {name: jax.tree.map(jnp.asarray, batch) for name, batch in splits.items()}
    return Task(
        name="translation",
        length=steps,
        input_size=len(SOURCE_VOCABULARY),
        output_size=len(TARGET_VOCABULARY),
        readout="every",
        objective="classification",
        metric_name="exact_match",
        metric=exact_match_metric,
        baseline_loss=baseline_loss,
        baseline_metric=baseline_exact_match,
        sample=sample,
        test_set=lambda: splits["test"],
        validation_set=lambda: splits["validation"],
        padding_label=PAD,
        describe={
            "min_digits": min_digits,
            "max_digits": max_digits,
            "evaluation_size": evaluation_size,
            "seed": seed,
        },
        extras={
            "source_vocabulary": SOURCE_VOCABULARY,
            "target_vocabulary": TARGET_VOCABULARY,
            "target_steps": max_digits + 1,
            "pad": PAD,
            "bos": BOS,
            "eos": EOS,
            "validation_numbers": numbers["validation"],
            "test_numbers": numbers["test"],
        },
    )


def linear_baseline(
    task: Task, *, train_size: int = 20_000, seed: int = 0, regularization: float = 1.0
) -> dict:
    """A non-recurrent baseline: one logistic regression per target position.

    Each target position's token is predicted by a multinomial logistic regression
    (scikit-learn, inverse regularization ``regularization``) on the whole source
    flattened: the one-hot word at every source position (``S * 32`` features).  It
    sees where each word is, but has no recurrence and no alignment.  Fitted on
    ``train_size`` training pairs drawn by ``task.sample`` (key ``seed``).

    Returns:
      ``{"validation_exact_match", "test_exact_match", "test_correct" [N] bool}``;
      ``test_correct`` is per test example (for exact match against source length).
    """
    from sklearn.linear_model import LogisticRegression  # optional dependency: rnnlab[data]

    check_int("train_size", train_size, 1)
    sample = jax.jit(task.sample, static_argnums=1)
    train = jax.tree.map(np.asarray, sample(jax.random.key(seed), train_size))

    def features(batch: Batch) -> np.ndarray:
        return np.asarray(batch.inputs).reshape(len(batch.inputs), -1)

    x = features(train)
    splits = {"validation": task.validation_set(), "test": task.test_set()}
    predicted = {name: [] for name in splits}
    for position in range(train.targets.shape[-1]):
        labels = train.targets[:, position]
        if len(np.unique(labels)) == 1:  # a position that is always padding
            for name, batch in splits.items():
                predicted[name].append(np.full(len(batch.inputs), labels[0]))
            continue
        with single_threaded_blas():
            model = LogisticRegression(C=regularization, max_iter=500).fit(x, labels)
        for name, batch in splits.items():
            predicted[name].append(model.predict(features(batch)))
    correct = {
        name: np.asarray(sequence_correct(np.stack(predicted[name], -1), batch.targets))
        for name, batch in splits.items()
    }
    return {
        "validation_exact_match": float(correct["validation"].mean()),
        "test_exact_match": float(correct["test"].mean()),
        "test_correct": correct["test"],
    }
