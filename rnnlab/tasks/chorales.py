"""Polyphonic music: Bach's four-part chorales from music21's corpus as 88-key piano rolls.

music21's corpus lists the 371 chorales of Riemenschneider's edition (350 distinct
compressed MusicXML files: some numbers share one).
:func:`parse_chorale_rolls` quantizes each to eighth notes: frame ``k`` covers the
quarter-note offsets ``[k/2, (k+1)/2)`` and key ``m - 21`` (MIDI ``m`` in 21..108) is
on when a note of pitch ``m`` sounds at the frame's onset ``k/2`` (so ``offset <= k/2
< offset + duration``).  Notes shorter than an eighth that start between two onsets
are dropped; tied notes sound on; repeats are not expanded; re-striking a held key
is not marked (a piano roll cannot show it).

Parsing them takes one to two minutes, so the rolls ship in the repository as
``data/bach_chorales.npz`` (69 kB), derived deterministically from music21 10.5.1
by ``experiments/apps/make_data.py chorales``; a test re-parses a few chorales
and compares.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction
from importlib import resources
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab.tasks.base import (
    Batch,
    Task,
    binary_cross_entropy,
    check_fraction,
    check_int,
    import_optional,
    masked_mean,
    valid_steps,
)

__all__ = [
    "KEYS",
    "LOWEST_MIDI",
    "bach_chorales",
    "distinct_chorales",
    "generate",
    "load_chorale_rolls",
    "markov_nll",
    "parse_chorale_rolls",
    "piano_roll",
    "prior_nll",
    "roll_to_score",
    "save_chorale_rolls",
]

LOWEST_MIDI = 21  # A0, the piano's lowest key
KEYS = 88  # up to C8, MIDI 108
FRAMES_PER_QUARTER = 2  # eighth notes
CACHE = "bach_chorales.npz"


def piano_roll(score) -> np.ndarray:
    """``[T, 88]`` bool piano roll of a music21 score, sampled at every eighth note.

    ``T = ceil(2 * score.highestTime)``; see the module docstring for the rule.

    Raises:
      ValueError: if a pitch lies outside the piano's MIDI 21..108.
    """
    frames = math.ceil(FRAMES_PER_QUARTER * Fraction(score.highestTime))
    roll = np.zeros((frames, KEYS), bool)
    for note in score.flatten().notes:
        start = FRAMES_PER_QUARTER * Fraction(note.offset)
        end = start + FRAMES_PER_QUARTER * Fraction(note.quarterLength)
        first, stop = math.ceil(start), math.ceil(end)  # onsets k with start <= k < end
        for pitch in note.pitches:
            key = pitch.midi - LOWEST_MIDI
            if not 0 <= key < KEYS:
                raise ValueError(f"MIDI pitch {pitch.midi} lies outside the piano (21..108)")
            roll[first:stop, key] = True
    return roll


def roll_to_score(roll: np.ndarray):
    """A music21 score of a ``[T, 88]`` piano roll: each run of frames a key is on is one
    note (eighth-note frames), so ``piano_roll(roll_to_score(roll)) == roll``.

    ``roll_to_score(roll).write("midi", fp=path)`` writes a MIDI file (offline).
    """
    music21 = import_optional("music21")
    roll = np.asarray(roll, bool)
    part = music21.stream.Part()
    padded = np.concatenate([np.zeros((1, KEYS), bool), roll, np.zeros((1, KEYS), bool)])
    changes = np.diff(padded.astype(np.int8), axis=0)
    for key in range(KEYS):
        starts = np.flatnonzero(changes[:, key] == 1)
        stops = np.flatnonzero(changes[:, key] == -1)
        for start, stop in zip(starts, stops, strict=True):
            note = music21.note.Note(midi=key + LOWEST_MIDI)
            note.quarterLength = Fraction(int(stop - start), FRAMES_PER_QUARTER)
            part.insert(Fraction(int(start), FRAMES_PER_QUARTER), note)
    if len(roll):
        # A final rest keeps trailing silent frames in the score's length.
        rest = music21.note.Rest(quarterLength=Fraction(1, FRAMES_PER_QUARTER))
        part.insert(Fraction(len(roll) - 1, FRAMES_PER_QUARTER), rest)
    score = music21.stream.Score()
    score.insert(0, part)
    return score


def parse_chorale_rolls(numbers=None) -> tuple[list[str], list[np.ndarray]]:
    """Parses chorales of music21's corpus (Riemenschneider ``numbers``, default 1..371).

    Returns:
      ``(names, rolls)``: the corpus names (e.g. ``"bach/bwv269"``) and ``[T_i, 88]``
      bool piano rolls.
    """
    music21 = import_optional("music21")
    names = list(music21.corpus.chorales.Iterator(returnType="filename"))
    if numbers is not None:
        names = [names[number - 1] for number in numbers]
    return names, [piano_roll(music21.corpus.parse(name)) for name in names]


def save_chorale_rolls(path, names: list[str], rolls: list[np.ndarray], version: str) -> None:
    """Writes the rolls as sparse ``(frame, key)`` lists in a compressed ``.npz``."""
    frames, keys = [], []
    for roll in rolls:
        frame, key = np.nonzero(roll)
        frames.append(frame.astype(np.uint16))
        keys.append(key.astype(np.uint8))
    np.savez_compressed(
        path,
        names=np.array(names),
        lengths=np.array([len(roll) for roll in rolls], np.int32),
        frames=np.concatenate(frames),
        keys=np.concatenate(keys),
        counts=np.array([len(frame) for frame in frames], np.int32),
        music21_version=np.array(version),
    )


@functools.cache
def load_chorale_rolls(path: str | None = None) -> tuple[tuple[str, ...], tuple[np.ndarray, ...]]:
    """The shipped piano rolls (or those at ``path``): ``(names, rolls [T_i, 88] bool)``."""
    source = Path(path) if path else resources.files("rnnlab.tasks") / "data" / CACHE
    with source.open("rb") as handle, np.load(handle) as data:
        names = tuple(str(name) for name in data["names"])
        bounds = np.concatenate([[0], np.cumsum(data["counts"])])
        rolls = []
        for index, length in enumerate(data["lengths"]):
            roll = np.zeros((length, KEYS), bool)
            span = slice(bounds[index], bounds[index + 1])
            roll[data["frames"][span], data["keys"][span]] = True
            rolls.append(roll)
    return names, tuple(rolls)


def distinct_chorales() -> tuple[list[str], list[np.ndarray]]:
    """The shipped chorales without repeats: 348 of the 371 Riemenschneider numbers.

    Several numbers share one corpus file (350 distinct files), and two pairs of files
    quantize to the same roll (BWV 62.6 and 274; BWV 69.6-a and 69.6); the first of
    each is kept, so no piece can sit in two splits.
    """
    names, rolls = load_chorale_rolls()
    seen, kept_names, kept_rolls = set(), [], []
    for name, roll in zip(names, rolls, strict=True):
        fingerprint = (roll.shape, roll.tobytes())
        if fingerprint not in seen:
            seen.add(fingerprint)
            kept_names.append(name)
            kept_rolls.append(roll)
    return kept_names, kept_rolls


def _with_start_frame(roll: np.ndarray) -> np.ndarray:
    """``[T + 1, 88]``: an all-off start frame, then the roll."""
    return np.concatenate([np.zeros((1, KEYS), bool), roll])


def prior_nll(train: list[np.ndarray], test: list[np.ndarray]) -> float:
    """Frame NLL (nats) on ``test`` of independent keys with the training frequencies.

    Key ``k`` is on with probability ``(n_k + 1) / (N + 2)``, ``n_k`` the training
    frames in which it sounds out of ``N``: the input-blind baseline.
    """
    frames = np.concatenate(train)
    probability = (frames.sum(0) + 1.0) / (len(frames) + 2.0)
    on = np.concatenate(test)
    nll = -(on * np.log(probability) + (~on) * np.log1p(-probability)).sum(1)
    return float(nll.mean())


def markov_nll(train: list[np.ndarray], test: list[np.ndarray]) -> float:
    """Frame NLL (nats) on ``test`` of 88 independent two-state Markov chains.

    Key ``k`` is on with probability ``P(on | key k's state in the previous frame)``,
    estimated from training transitions (add-one smoothed); the first frame follows
    the all-off start frame.  A computed baseline that sees what the network sees of
    each key, but not the other keys.
    """

    def transitions(rolls):
        previous = np.concatenate([_with_start_frame(roll)[:-1] for roll in rolls])
        current = np.concatenate(rolls)
        return previous, current

    previous, current = transitions(train)
    on_after = np.stack([(current & ~previous).sum(0), (current & previous).sum(0)])
    total = np.stack([(~previous).sum(0), previous.sum(0)])
    probability = (on_after + 1.0) / (total + 2.0)  # [previous state, key]
    previous, current = transitions(test)
    p = np.take_along_axis(probability, previous.astype(np.int64), axis=0)
    nll = -(current * np.log(p) + (~current) * np.log1p(-p)).sum(1)
    return float(nll.mean())


def generate(step, carry, num_frames: int, *, key: jax.Array) -> np.ndarray:
    r"""Samples a ``[num_frames, 88]`` bool piano roll from a next-frame model.

    The model's first input is the all-off start frame; each frame's 88 keys are then
    drawn as independent Bernoullis ``y_k ~ Bernoulli(sigmoid(z_k))`` (the model's own
    assumption: keys are independent given the past) and fed back as the next input.

    Args:
      step: ``step(carry, x [88]) -> (carry, logits [88])``, one step of the model
        (e.g. ``lambda c, x: model.step(params, c, x)``).
      carry: the model's initial carry for one sequence.
      num_frames: frames to sample (eighth notes).
      key: PRNG key (keyword-only).
    """
    check_int("num_frames", num_frames, 1)

    @jax.jit
    def run(carry, key):
        def emit(state, frame_key):
            carry, frame = state
            carry, logits = step(carry, frame)
            frame = jax.random.bernoulli(frame_key, jax.nn.sigmoid(logits)).astype(jnp.float32)
            return (carry, frame), frame

        start = jnp.zeros((KEYS,), jnp.float32)
        _, frames = jax.lax.scan(emit, (carry, start), jax.random.split(key, num_frames))
        return frames

    return np.asarray(run(carry, key)) > 0.5


def _dense_split(rolls: list[np.ndarray], steps: int):
    """``(inputs [N, T, 88] bool, targets [N, T, 88] bool, lengths [N])``, zero padded."""
    inputs = np.zeros((len(rolls), steps, KEYS), bool)
    targets = np.zeros((len(rolls), steps, KEYS), bool)
    for row, roll in enumerate(rolls):
        inputs[row, : len(roll)] = _with_start_frame(roll)[:-1]
        targets[row, : len(roll)] = roll
    return inputs, targets, np.array([len(roll) for roll in rolls], np.int32)


def _as_batch(inputs, targets, lengths) -> Batch:
    return Batch(inputs.astype(jnp.float32), targets.astype(jnp.float32), lengths)


def frame_nll_metric(outputs: jax.Array, batch: Batch) -> jax.Array:
    """Frame-level NLL in nats: the 88 keys' binary cross-entropies summed, averaged over
    the valid frames of the batch (every frame weighs the same)."""
    return masked_mean(binary_cross_entropy(outputs, batch.targets), valid_steps(batch))


def bach_chorales(
    length: int | None = None,
    *,
    validation_fraction: float = 0.15,
    test_fraction: float = 0.15,
    split_seed: int = 0,
) -> Task:
    r"""Next-frame prediction on Bach chorales: one sigmoid per key of an 88-key piano roll.

    Every frame ``y_t`` (``[88]`` in {0, 1}) is predicted from the frames before it:
    inputs ``x_t = y_{t-1}`` with ``x_0`` all off, targets ``y_t``, both
    ``[B, T, 88]``, ``lengths [B]``; readout ``"every"``, objective ``"multilabel"``.
    The loss and metric are the frame-level NLL
    ``-sum_k [y_k log p_k + (1 - y_k) log(1 - p_k)]`` in nats, averaged over frames
    (Boulanger-Lewandowski et al. 2012; padded frames are left out).

    **Split (not the Boulanger-Lewandowski 229/76/77 one).**  The 348 distinct
    chorales (:func:`distinct_chorales`) are shuffled by
    ``numpy.random.default_rng(split_seed).permutation``; the first
    ``round(test_fraction * 348)`` are the test split, the next
    ``round(validation_fraction * 348)`` the validation split, the rest training:
    by default 52 test, 52 validation and 244 training chorales.  Numbers on it
    compare with published JSB results in ranking only, never in value.  Some
    melodies occur in several harmonizations, which may fall in different splits.

    ``sample`` draws a training chorale uniformly and a window of ``length`` frames
    starting uniformly within it (``length=None``: whole chorales, padded to the
    longest training chorale); a chorale shorter than the window is padded and
    carries its ``lengths``.  ``validation_set()`` and ``test_set()`` are whole
    chorales padded to the longest of all splits.

    The baseline is :func:`prior_nll` (independent keys, input-blind);
    ``extras["markov_nll"]`` is :func:`markov_nll` (each key from its own previous
    state).

    Raises:
      ValueError: naming ``length`` (an int >= 1), ``validation_fraction`` or
        ``test_fraction`` (in ``(0, 1)``, together below 1).
    """
    check_fraction("validation_fraction", validation_fraction)
    check_fraction("test_fraction", test_fraction)
    if validation_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"validation_fraction + test_fraction must be below 1 to leave training "
            f"chorales, got {validation_fraction} + {test_fraction}"
        )
    names, rolls = distinct_chorales()
    order = np.random.default_rng(split_seed).permutation(len(rolls))
    test_count = int(round(test_fraction * len(rolls)))
    validation_count = int(round(validation_fraction * len(rolls)))
    split_rows = {
        "test": np.sort(order[:test_count]),
        "validation": np.sort(order[test_count : test_count + validation_count]),
        "train": np.sort(order[test_count + validation_count :]),
    }
    split = {name: [rolls[row] for row in rows] for name, rows in split_rows.items()}
    longest_train = max(len(roll) for roll in split["train"])
    window = longest_train if length is None else check_int("length", length, 1)

    # Training chorales live on the device as one concatenated [frames, 88] bool array,
    # each preceded by its all-off start frame: chorale i's input x_t is row
    # offsets[i] + t and its target y_t row offsets[i] + t + 1.
    blocks = [_with_start_frame(roll) for roll in split["train"]]
    frames = jnp.asarray(np.concatenate(blocks + [np.zeros((window + 1, KEYS), bool)]))
    offsets = jnp.asarray(np.cumsum([0] + [len(block) for block in blocks[:-1]]), jnp.int32)
    train_lengths = jnp.asarray([len(roll) for roll in split["train"]], jnp.int32)

    def sample(key, batch_size):
        chorale_key, start_key = jax.random.split(key)
        chorale = jax.random.randint(chorale_key, (batch_size,), 0, len(blocks))
        room = jnp.maximum(train_lengths[chorale] - window, 0)
        start = jax.random.randint(start_key, (batch_size,), 0, room + 1)
        lengths = jnp.minimum(train_lengths[chorale] - start, window)
        rows = (offsets[chorale] + start)[:, None] + jnp.arange(window)
        valid = (jnp.arange(window) < lengths[:, None])[..., None]
        inputs = jnp.where(valid, frames[rows], False)
        targets = jnp.where(valid, frames[rows + 1], False)
        return _as_batch(inputs, targets, lengths)

    steps = max(len(roll) for roll in rolls)
    evaluation = {}
    for name in ("validation", "test"):
        arrays = tuple(jnp.asarray(array) for array in _dense_split(split[name], steps))
        evaluation[name] = functools.partial(_as_batch, *arrays)
    baseline = prior_nll(split["train"], split["test"])
    return Task(
        name="bach_chorales",
        length=window,
        input_size=KEYS,
        output_size=KEYS,
        readout="every",
        objective="multilabel",
        metric_name="frame_nll",
        metric=frame_nll_metric,
        baseline_loss=baseline,
        baseline_metric=baseline,
        sample=sample,
        test_set=evaluation["test"],
        validation_set=evaluation["validation"],
        describe={
            "length": length,
            "validation_fraction": validation_fraction,
            "test_fraction": test_fraction,
            "split_seed": split_seed,
        },
        extras={
            "markov_nll": markov_nll(split["train"], split["test"]),
            "names": {name: [names[row] for row in rows] for name, rows in split_rows.items()},
            "train_size": len(split["train"]),
            "validation_size": len(split["validation"]),
            "test_size": len(split["test"]),
            "evaluation_steps": steps,
        },
    )
