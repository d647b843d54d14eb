"""Multivariate time-series classification from the UEA archive, shipped inside sktime.

- **JapaneseVowels** (Kudo, Toyama & Shimbo 1999): nine male speakers each utter the
  vowels /ae/; a frame is 12 LPC cepstrum coefficients; utterances last 7 to 29
  frames; 270 training and 370 test utterances.  Speaker recognition.
- **BasicMotions**: a smart watch's 3-axis accelerometer and gyroscope (6 channels,
  100 steps at 10 Hz) while a person walks, rests, runs or plays badminton; 40
  training and 40 test series, 4 classes.

sktime's own loaders read the files shipped in its wheel (no download).
"""

from __future__ import annotations

import functools

import numpy as np

from rnnlab.tasks.base import Task, import_optional
from rnnlab.tasks.classification import labelled_sequences, pad_sequences

__all__ = ["basic_motions", "japanese_vowels", "load_uea"]

_LOADERS = {"JapaneseVowels": "load_japanese_vowels", "BasicMotions": "load_basic_motions"}


@functools.cache
def load_uea(name: str):
    """The train and test splits of a UEA data set shipped in sktime, padded to one length.

    Returns:
      ``(classes, train, test)``: ``classes`` the sorted class names (label ``k`` is
      ``classes[k]``); ``train`` and ``test`` are ``(inputs [N, T, F] float32,
      labels [N] int32, lengths [N] int32)`` with ``T`` the longest series of both
      splits and zero padding.
    """
    if name not in _LOADERS:
        raise ValueError(f"name={name!r} is not shipped; use one of {tuple(_LOADERS)}")
    datasets = import_optional("sktime.datasets")
    loader = getattr(datasets, _LOADERS[name])
    splits = {}
    for split in ("train", "test"):
        frame, labels = loader(split=split, return_X_y=True)
        # A nested frame: one column per channel, each cell a series of that length.
        series = [
            np.stack([np.asarray(cell, np.float32) for cell in row], axis=-1)
            for row in frame.itertuples(index=False)
        ]
        splits[split] = (series, np.asarray(labels).astype(str))
    classes = sorted(set(splits["train"][1]) | set(splits["test"][1]))
    padded, lengths = pad_sequences(splits["train"][0] + splits["test"][0])
    count = len(splits["train"][0])
    codes = {
        split: np.array([classes.index(c) for c in labels], np.int32)
        for split, (_, labels) in splits.items()
    }
    train = (padded[:count], codes["train"], lengths[:count])
    test = (padded[count:], codes["test"], lengths[count:])
    return tuple(classes), train, test


def _uea_task(
    name: str,
    data_name: str,
    length: int | None,
    validation_fraction: float,
    split_seed: int,
    standardize: bool,
) -> Task:
    classes, train, test = load_uea(data_name)
    steps = train[0].shape[1]
    if length is not None and length != steps:
        raise ValueError(
            f"length={length!r} does not fit {name}, whose series are padded to {steps} steps; "
            f"omit length or pass {steps}"
        )
    return labelled_sequences(
        name,
        train,
        test,
        num_classes=len(classes),
        validation_fraction=validation_fraction,
        split_seed=split_seed,
        standardize=standardize,
        describe={
            "validation_fraction": validation_fraction,
            "split_seed": split_seed,
            "standardize": standardize,
        },
        extras={"classes": classes},
    )


def japanese_vowels(
    *,
    validation_fraction: float = 0.2,
    split_seed: int = 0,
    standardize: bool = True,
    length: int | None = None,
) -> Task:
    r"""Speaker recognition from LPC cepstral frames (UEA JapaneseVowels, via sktime).

    Inputs ``[B, 29, 12]``: utterances of 7 to 29 frames, zero-padded to 29, with
    ``lengths [B]``; labels ``[B]`` in ``0..8`` (the speaker); readout at the last
    valid frame.  The archive's 270 training utterances lose a stratified
    ``validation_fraction`` (drawn with ``split_seed``) to the validation split;
    the 370 test utterances are the archive's test split.  With ``standardize``,
    each coefficient is standardized with training statistics.

    The baseline is the training prior (input-blind); the non-recurrent baseline is
    :func:`rnnlab.tasks.classification.logistic_regression_baseline` on each
    utterance's per-channel mean and standard deviation.

    Args:
      length: optional check; must be 29.

    Raises:
      ValueError: naming ``validation_fraction`` outside ``(0, 1)``, or ``length``.
      ImportError: without sktime (``pip install 'rnnlab[apps]'``).
    """
    return _uea_task(
        "japanese_vowels", "JapaneseVowels", length, validation_fraction, split_seed, standardize
    )


def basic_motions(
    *,
    validation_fraction: float = 0.2,
    split_seed: int = 0,
    standardize: bool = True,
    length: int | None = None,
) -> Task:
    r"""Activity recognition from a watch's accelerometer and gyroscope (UEA BasicMotions).

    Inputs ``[B, 100, 6]`` (all series have 100 steps; ``lengths`` are 100); labels
    ``[B]`` in ``0..3`` for ``extras["classes"]`` = badminton, running, standing,
    walking; readout at the last step.  The 40 training series lose a stratified
    ``validation_fraction`` to validation; the 40 test series are the archive's.

    Args:
      length: optional check; must be 100.

    Raises:
      ValueError: naming ``validation_fraction`` outside ``(0, 1)``, or ``length``.
      ImportError: without sktime (``pip install 'rnnlab[apps]'``).
    """
    return _uea_task(
        "basic_motions", "BasicMotions", length, validation_fraction, split_seed, standardize
    )
