"""Tests of the application tasks on real data: loaders against published figures, splits,
baselines against independent computations, and option validation."""

from __future__ import annotations

import collections
import hashlib
import math
import random
import socket
from importlib import resources

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rnnlab import tasks
from rnnlab.tasks import _mnist1d, anomaly, chorales, forecasting, text, translation
from rnnlab.tasks.base import Batch, stratified_split
from rnnlab.tasks.classification import logistic_regression_baseline

#: sha256 of the shipped Shakespeare text, printed by experiments/apps/make_data.py.
SHAKESPEARE_SHA256 = "70ce81ee02d29925608d17b6bbdeaf33a1c812bab498e60a3840c6f823532619"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Every loader reads shipped files: any connection attempt fails the test."""

    def refuse(*args, **kwargs):
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def _labels(batch: Batch) -> np.ndarray:
    return np.asarray(batch.targets)


def _classification_splits(task):
    return task.extras["train_set"](), task.validation_set(), task.test_set()


def _assert_disjoint_rows(*batches):
    """No sequence occurs in two splits (compared by its bytes)."""
    seen = {}
    for index, batch in enumerate(batches):
        for row in np.asarray(batch.inputs):
            owner = seen.setdefault(row.tobytes(), index)
            assert owner == index, "a sequence occurs in two splits"


def test_japanese_vowels_matches_the_published_figures():
    """Oracle: REFERENCES (UEA archive) — 9 speakers, 12 cepstral coefficients, 7-29 frames,
    270 train and 370 test; the UCI description's 30 training utterances per speaker and
    test counts 31, 35, 88, 44, 29, 24, 40, 50, 29.  Padding is zero; the stratified
    validation split takes 6 of each speaker's 30; standardization uses training frames."""
    task = tasks.make_task("japanese_vowels")
    train, validation, test = _classification_splits(task)
    assert (task.input_size, task.output_size, task.length, task.readout) == (12, 9, 29, "last")
    assert len(_labels(train)) + len(_labels(validation)) == 270 and len(_labels(test)) == 370
    np.testing.assert_array_equal(np.bincount(_labels(train)), [24] * 9)
    np.testing.assert_array_equal(np.bincount(_labels(validation)), [6] * 9)
    np.testing.assert_array_equal(np.bincount(_labels(test)), [31, 35, 88, 44, 29, 24, 40, 50, 29])
    lengths = np.concatenate([np.asarray(b.lengths) for b in (train, validation, test)])
    assert lengths.min() == 7 and lengths.max() == 29
    for batch in (train, validation, test):
        inputs, lengths = np.asarray(batch.inputs), np.asarray(batch.lengths)
        padding = np.arange(29)[None, :] >= lengths[:, None]
        assert np.all(inputs[padding] == 0.0)
        assert np.all(np.abs(inputs[~padding]).sum(-1) > 0)
    frames = np.asarray(train.inputs)[np.arange(29)[None, :] < np.asarray(train.lengths)[:, None]]
    np.testing.assert_allclose(frames.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(frames.std(0), 1.0, atol=1e-4)
    _assert_disjoint_rows(train, validation, test)
    assert task.baseline_metric == pytest.approx(31 / 370)  # ties: the prior's arg-max is 0
    # The non-recurrent baseline of the issue: per-channel mean and std, logistic regression.
    summary = logistic_regression_baseline(task, regularization=(0.01,))
    assert summary["test_accuracy"] > 0.8


def test_basic_motions_matches_the_published_figures():
    """Oracle: REFERENCES / UEA archive — 6 channels, length 100, 4 balanced classes,
    40 train and 40 test series."""
    task = tasks.make_task("basic_motions", 100)
    train, validation, test = _classification_splits(task)
    assert (task.input_size, task.output_size, task.length) == (6, 4, 100)
    assert task.extras["classes"] == ("badminton", "running", "standing", "walking")
    np.testing.assert_array_equal(np.bincount(_labels(train)), [8] * 4)
    np.testing.assert_array_equal(np.bincount(_labels(validation)), [2] * 4)
    np.testing.assert_array_equal(np.bincount(_labels(test)), [10] * 4)
    assert np.all(np.asarray(test.lengths) == 100)
    _assert_disjoint_rows(train, validation, test)


def test_mnist1d_matches_the_readme_and_leaves_numpy_random_alone():
    """Oracle: the mnist1d README — 4,000 train and 1,000 test sequences of length 40, and
    logistic regression on the raw sequence scores about 32% (README: 32%).  Generating
    the data must not change NumPy's global random state."""
    _mnist1d.load_mnist1d.cache_clear()
    python_state, numpy_state = random.getstate(), np.random.get_state()[1].copy()  # noqa: NPY002
    task = tasks.make_task("mnist1d")
    assert random.getstate() == python_state
    np.testing.assert_array_equal(np.random.get_state()[1], numpy_state)  # noqa: NPY002
    train, validation, test = _classification_splits(task)
    chex.assert_shape(test.inputs, (1000, 40, 1))
    assert len(_labels(train)) + len(_labels(validation)) == 4000
    # Stratified: round(10%) of each class's ~400 training sequences.
    counts = np.bincount(_labels(train)) + np.bincount(_labels(validation))
    np.testing.assert_array_equal(np.bincount(_labels(validation)), np.round(0.1 * counts))
    summary = logistic_regression_baseline(task, features="raw", regularization=(0.1,))
    assert abs(summary["test_accuracy"] - 0.32) < 0.04, summary


def test_piano_roll_samples_notes_at_eighth_note_onsets():
    """Oracle: the quantization rule by hand — a key is on in frame k when a note sounds at
    offset k/2: a quarter C4 at 0 fills frames 0-1, a sixteenth at 1.25 falls between
    onsets, a dotted quarter E4 at 1.5 fills frames 3-5, a chord spans A0 and C8."""
    music21 = pytest.importorskip("music21")
    part = music21.stream.Part()
    part.insert(0, music21.note.Note("C4", quarterLength=1.0))
    part.insert(1.25, music21.note.Note("D4", quarterLength=0.25))
    part.insert(1.5, music21.note.Note("E4", quarterLength=1.5))
    part.insert(3.0, music21.chord.Chord(["A0", "C8"], quarterLength=0.5))
    score = music21.stream.Score()
    score.insert(0, part)
    roll = chorales.piano_roll(score)
    expected = np.zeros((7, 88), bool)
    expected[[0, 1], 60 - 21] = True
    expected[[3, 4, 5], 64 - 21] = True
    expected[6, [0, 87]] = True
    np.testing.assert_array_equal(roll, expected)


def test_shipped_chorale_rolls_match_a_fresh_parse():
    """Oracle: music21 itself — three chorales re-parsed now equal the shipped rolls."""
    names, rolls = chorales.load_chorale_rolls()
    assert len(rolls) == 371 and len(set(names)) == 350  # some numbers share a file
    fresh_names, fresh_rolls = chorales.parse_chorale_rolls([1, 150, 371])
    for number, name, roll in zip((1, 150, 371), fresh_names, fresh_rolls, strict=True):
        assert names[number - 1] == name
        np.testing.assert_array_equal(rolls[number - 1], roll)


def test_bach_chorales_splits_layout_and_frame_nll():
    """Oracle: the REFERENCES definition of the frame-level NLL,
    -sum_k [y log p + (1-y) log(1-p)] averaged over frames, in NumPy; the input-blind
    prior's NLL equals the task's loss for constant logits; inputs are targets shifted by
    one frame after an all-off start frame; the split is 244/52/52, disjoint, and covers
    the 348 distinct chorales."""
    task = tasks.make_task("bach_chorales", 32)
    split_names = task.extras["names"]
    assert [len(split_names[s]) for s in ("train", "validation", "test")] == [244, 52, 52]
    assert len(set().union(*map(set, split_names.values()))) == 348
    batch = jax.jit(task.sample, static_argnums=1)(jax.random.key(0), 16)
    chex.assert_shape([batch.inputs, batch.targets], (16, 32, 88))
    inputs, targets = np.asarray(batch.inputs), np.asarray(batch.targets)
    within = (np.arange(1, 32) < np.asarray(batch.lengths)[:, None])[..., None]
    np.testing.assert_array_equal(inputs[:, 1:], targets[:, :-1] * within)
    test = task.test_set()
    valid = np.arange(test.inputs.shape[1])[None, :] < np.asarray(test.lengths)[:, None]
    np.testing.assert_array_equal(np.asarray(test.inputs)[:, 0], 0.0)
    logits = jax.random.normal(jax.random.key(1), test.targets.shape)
    p = jax.nn.sigmoid(np.asarray(logits, np.float64))
    y = np.asarray(test.targets, np.float64)
    nll = -(y * np.log(p) + (1 - y) * np.log(1 - p)).sum(-1)
    expected = nll[valid].mean()
    assert float(task.loss(logits, test)) == pytest.approx(expected, rel=1e-5)
    assert float(task.metric(logits, test)) == pytest.approx(expected, rel=1e-5)
    names, rolls = chorales.load_chorale_rolls()
    by_name = dict(zip(names, rolls, strict=True))
    frames = np.concatenate([by_name[name] for name in split_names["train"]])
    prior = (frames.sum(0) + 1.0) / (len(frames) + 2.0)
    constant = jnp.broadcast_to(jnp.log(prior / (1 - prior)), test.targets.shape)
    assert float(task.loss(constant, test)) == pytest.approx(task.baseline_loss, rel=1e-4)
    assert task.extras["markov_nll"] < task.baseline_loss


def test_shakespeare_text_and_baselines():
    """Oracle: the shipped text's digest (make_data.py's output), its size bound (< 1 MB
    compressed), and the unigram/bigram bits per character recomputed with Counter on
    the training characters."""
    shipped = resources.files("rnnlab.tasks") / "data" / "shakespeare.txt.xz"
    assert len(shipped.read_bytes()) < 1_000_000
    full = text.load_shakespeare()
    assert hashlib.sha256(full.encode("ascii")).hexdigest() == SHAKESPEARE_SHA256
    assert full.startswith("THE SONNETS") and "To be, or not to be" in full
    task = tasks.make_task("shakespeare", 50)
    sizes = task.extras["split_characters"]
    assert sizes["train"] + sizes["validation"] + sizes["test"] == len(full)
    assert sizes["validation"] == pytest.approx(0.05 * len(full), abs=2)
    vocabulary = task.extras["vocabulary"]
    train = full[: sizes["train"]]
    held_out = full[len(full) - sizes["test"] :]
    windows = len(held_out) // 51
    pairs = [
        (held_out[i], held_out[i + 1]) for w in range(windows) for i in range(w * 51, w * 51 + 50)
    ]
    unigram = collections.Counter(train)
    bigram = collections.Counter(zip(train, train[1:], strict=False))
    V = len(vocabulary)
    unigram_bits = -np.mean([math.log2((unigram[b] + 1) / (len(train) + V)) for _, b in pairs])
    bigram_bits = -np.mean(
        [math.log2((bigram[a, b] + 1) / (unigram[a] - (train[-1] == a) + V)) for a, b in pairs]
    )
    assert task.baseline_metric == pytest.approx(unigram_bits, rel=1e-6)
    assert task.extras["bigram_bits"] == pytest.approx(bigram_bits, rel=1e-6)
    assert task.test_set().inputs.shape == (windows, 50, V)
    assert task.validation_set() is not None


def test_number_words_match_the_python_oracle_and_the_digits():
    """Oracle: the plain-Python transcription of English number words (British 'and'),
    against the vectorized encoder used for sampling, and str(n) for the target digits;
    source_steps is the brute-force maximum word count."""
    rng = np.random.default_rng(0)
    numbers = np.concatenate([np.arange(0, 3000), rng.integers(0, 10**9, 3000)]).astype(np.int32)
    batch = translation._encode(numbers, 9)
    words = np.asarray(batch.inputs).argmax(-1)
    for n, row, length, target in zip(numbers, words, batch.lengths, batch.targets, strict=True):
        expected = translation.number_words(int(n))
        assert [translation.SOURCE_VOCABULARY[k] for k in row[:length]] == expected
        digits = "".join(translation.TARGET_VOCABULARY[k] for k in target if k > translation.EOS)
        assert digits == str(n) and list(target).count(translation.EOS) == 1
    assert translation.number_words(1005) == "one thousand and five".split()
    assert translation.number_words(312) == "three hundred and twelve".split()
    for digits in range(1, 7):
        brute = max(len(translation.number_words(n)) for n in range(10**digits))
        assert translation.source_steps(digits) == brute


def test_translation_sampling_is_jittable_and_never_draws_held_out_numbers():
    """Oracle: the split hash — every sampled number trains; the validation and test numbers
    are held out and disjoint; jax sampling agrees with the NumPy encoder."""
    task = tasks.make_task("translation", max_digits=5)
    batch = jax.jit(jax.vmap(lambda key: task.sample(key, 2048)))(
        jax.random.split(jax.random.key(0), 2)
    )
    tokens = np.asarray(batch.targets).reshape(-1, 6)
    digits = [[k - translation.DIGIT0 for k in row if k > translation.EOS] for row in tokens]
    numbers = np.array([int("".join(map(str, row))) for row in digits])
    assert np.all(translation._split_of(numbers) == 0)
    reference = translation._encode(numbers.astype(np.int32), 5)
    np.testing.assert_array_equal(np.asarray(batch.inputs).reshape(-1, 8, 32), reference.inputs)
    validation, test = task.extras["validation_numbers"], task.extras["test_numbers"]
    assert not set(validation) & set(test) and not set(numbers) & (set(validation) | set(test))
    assert np.all(translation._split_of(test) == 2)
    assert np.all(translation._split_of(validation) == 1)
    # The input-blind baseline: the closed-form per-position distribution against sampling.
    frequencies = translation._position_frequencies(1, 5)
    counts = np.stack([np.bincount(tokens[:, j], minlength=13) for j in range(6)]) / len(tokens)
    np.testing.assert_allclose(counts, frequencies, atol=0.03)


def test_sunspots_multistep_windows_and_statistical_baselines():
    """Oracle: direct indexing targets[n, t, k] = x[start + n + t + 1 + k]; horizon 1 is the
    old one-step task; the seasonal-naive forecast by its formula; the AR(2) forecast by
    the AR recursion on statsmodels' fitted constant and coefficients (fitted on training
    years only, checked by refitting)."""
    from statsmodels.tsa.arima.model import ARIMA

    task = tasks.sunspots(5, test_fraction=0.05, horizon=3, validation_fraction=0.1)
    series, starts = task.extras["series"], task.extras["split_starts"]
    test = task.test_set()
    targets = np.asarray(test.targets)
    n, t, k = 2, 4, 1
    assert targets[n, t, k] == series[starts["test"] + n + t + 1 + k]
    assert np.asarray(test.inputs)[n, t, 0] == series[starts["test"] + n + t]
    one_step = tasks.sunspots(20)
    _, one_step_targets = forecasting.windows(np.arange(30.0), 20)
    np.testing.assert_array_equal(
        one_step_targets[..., 0], np.arange(10)[:, None] + np.arange(1, 21)
    )
    assert one_step.output_size == 1 and one_step.validation_set is None
    forecasts = forecasting.forecast_baselines(task)
    origin = starts["test"] + n + t
    assert forecasts["seasonal_naive"][n, t, k] == series[origin + 1 + k - 11]
    fit = ARIMA(series[: starts["validation"]], order=(2, 0, 0)).fit()
    mean, phi1, phi2 = fit.params[:3]
    history = list(series[: origin + 1] - mean)
    for _ in range(3):
        history.append(phi1 * history[-1] + phi2 * history[-2])
    np.testing.assert_allclose(forecasts["arima"][n, t], np.array(history[-3:]) + mean, rtol=1e-4)
    assert np.all(forecasts["arima_lower"] < forecasts["arima"])
    assert np.all(forecasts["arima"] < forecasts["arima_upper"])


def test_ecg_anomaly_series_and_scoring_functions():
    """Oracle: the shipped labels (one anomaly, samples 6,936-7,287); error vectors by a
    hand loop; Gaussian scores against scipy's multivariate normal log-density; window
    scores and the chance of a hit by brute force."""
    from scipy.stats import multivariate_normal

    values, labels = anomaly.load_ecg()
    assert values.shape == (7500,) and labels.sum() == 352
    assert np.flatnonzero(labels)[[0, -1]].tolist() == [6936, 7287]
    task = tasks.make_task("ecg_anomaly", 64, horizon=3)
    assert task.validation_set().inputs.shape == (1, 1497, 1)
    assert task.extras["test_labels"].sum() == 352
    rng = np.random.default_rng(0)
    predictions, series = rng.normal(size=(10, 3)), rng.normal(size=13)
    errors = anomaly.error_vectors(predictions, series)
    for row, point in enumerate(range(3, 11)):
        for ahead in range(3):
            assert errors[row, ahead] == series[point] - predictions[point - 1 - ahead, ahead]
    normal = rng.normal(size=(200, 3)) @ rng.normal(size=(3, 3))
    scores = anomaly.gaussian_scores(normal, errors)
    density = multivariate_normal(normal.mean(0), np.cov(normal, rowvar=False))
    np.testing.assert_allclose(scores, -density.logpdf(errors), rtol=1e-6)
    point_scores = rng.normal(size=40)
    windows = anomaly.window_scores(point_scores, 5)
    np.testing.assert_allclose(windows, [point_scores[i : i + 5].mean() for i in range(36)])
    marked = np.zeros(40, bool)
    marked[[10, 30]] = True
    brute = np.mean([marked[i : i + 5].any() for i in range(36)])
    assert anomaly.chance_of_hit(marked, 5) == pytest.approx(brute)
    spike = np.zeros(40)
    spike[30] = 10.0
    assert anomaly.top_window_hits(anomaly.window_scores(spike, 5), marked, 5)


def test_masked_loss_over_valid_steps():
    """Oracle: NumPy — with lengths, readout 'every' averages the loss over the valid steps
    only; with a padding label, over the non-padding targets only."""
    task = tasks.make_task("translation", max_digits=3)
    batch = task.test_set()
    logits = jax.random.normal(jax.random.key(0), (*batch.targets.shape, 13))
    log_p = np.asarray(jax.nn.log_softmax(logits))
    targets = np.asarray(batch.targets)
    picked = -np.take_along_axis(log_p, targets[..., None], -1)[..., 0]
    assert float(task.loss(logits, batch)) == pytest.approx(picked[targets != 0].mean(), rel=1e-5)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: tasks.japanese_vowels(validation_fraction=0.0), "validation_fraction"),
        (lambda: tasks.japanese_vowels(length=30), "length"),
        (lambda: tasks.basic_motions(validation_fraction=1.5), "validation_fraction"),
        (lambda: tasks.mnist1d(length=41), "length"),
        (lambda: tasks.bach_chorales(0), "length"),
        (lambda: tasks.bach_chorales(test_fraction=0.6, validation_fraction=0.5), "fraction"),
        (lambda: tasks.shakespeare(validation_fraction=0.0), "validation_fraction"),
        (lambda: tasks.shakespeare(10**7), "length"),
        (lambda: tasks.number_words_to_digits(max_digits=2), "max_digits"),
        (lambda: tasks.number_words_to_digits(5, 4), "min_digits"),
        (lambda: tasks.number_words_to_digits(max_digits=4, length=3), "length"),
        (lambda: tasks.sunspots(20, horizon=0), "horizon"),
        (lambda: tasks.sunspots(40, validation_fraction=0.1), "length"),
        (lambda: tasks.ecg_anomaly(test_fraction=0.01), "test_fraction"),
        (lambda: tasks.make_task("japanese_vowel"), "japanese_vowels"),
    ],
)
def test_invalid_options_name_the_field(build, field):
    """Oracle: each factory's documented constraints."""
    with pytest.raises(ValueError, match=field):
        build()


def test_real_data_sampling_is_jittable_and_vmappable():
    """Oracle: chex shapes of vmapped, jitted sampling (the engine vmaps whole runs over
    seeds), with lengths carried for variable-length data."""
    keys = jax.random.split(jax.random.key(2), 3)
    for task, has_lengths in (
        (tasks.make_task("japanese_vowels"), True),
        (tasks.make_task("bach_chorales", 24), True),
        (tasks.make_task("ecg_anomaly", 16), False),
    ):
        batch = jax.jit(jax.vmap(lambda key, task=task: task.sample(key, 4)))(keys)
        chex.assert_shape(batch.inputs, (3, 4, task.length, task.input_size))
        assert (batch.lengths is not None) == has_lengths
        if has_lengths:
            assert int(batch.lengths.max()) <= task.length and int(batch.lengths.min()) >= 1


@given(
    labels=st.lists(st.integers(0, 4), min_size=1, max_size=60),
    fraction=st.floats(0.05, 0.95),
    seed=st.integers(0, 2**16),
)
def test_stratified_split_holds_out_round_fraction_of_each_class(labels, fraction, seed):
    """Oracle: the definition — disjoint index sets covering every row, with
    round(fraction * n_c) rows of each class c held out."""
    labels = np.array(labels)
    kept, held_out = stratified_split(labels, fraction, seed)
    assert not set(kept) & set(held_out)
    np.testing.assert_array_equal(np.sort(np.concatenate([kept, held_out])), np.arange(len(labels)))
    for label in np.unique(labels):
        expected = int(round(fraction * np.sum(labels == label)))
        assert np.sum(labels[held_out] == label) == expected


def _midi_roll(path, frames: int) -> np.ndarray:
    """A MIDI file's notes as an eighth-note roll, read from the raw note-on/off events."""
    import music21

    midi = music21.midi.MidiFile()
    midi.open(str(path))
    midi.read()
    midi.close()
    ticks_per_frame = midi.ticksPerQuarterNote // 2
    roll = np.zeros((frames, 88), bool)
    for track in midi.tracks:
        time, sounding = 0, {}
        for event in track.events:
            if event.type == "DeltaTime":
                time += event.time
            elif event.isNoteOn():
                sounding[event.pitch] = time
            elif event.isNoteOff():
                start = sounding.pop(event.pitch)
                roll[start // ticks_per_frame : time // ticks_per_frame, event.pitch - 21] = True
    return roll


def test_a_piano_roll_survives_a_midi_round_trip(tmp_path):
    """Oracle: quantizing the score of a roll gives the roll back, and the MIDI file music21
    writes from it holds exactly those notes (read from its raw note-on/off events)."""
    roll = chorales.load_chorale_rolls()[1][0]
    score = chorales.roll_to_score(roll)
    np.testing.assert_array_equal(chorales.piano_roll(score), roll)
    path = tmp_path / "chorale.mid"
    score.write("midi", fp=str(path))
    np.testing.assert_array_equal(_midi_roll(path, len(roll)), roll)
