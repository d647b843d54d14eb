"""Sequence classification on a labelled data set: splits, padding, baselines.

Shared by the real-data classification tasks (:mod:`rnnlab.tasks.uea`,
:mod:`rnnlab.tasks._mnist1d`): variable-length sequences are padded and carry
``lengths``, the training split gives up a stratified validation split, and the
task carries the input-blind baseline.  :func:`logistic_regression_baseline` is the
non-recurrent baseline an experiment computes in the same run.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rnnlab.tasks._digits import prior_baselines
from rnnlab.tasks.base import (
    Batch,
    Task,
    accuracy_metric,
    check_fraction,
    fixed_split,
    minibatch_sampler,
    single_threaded_blas,
    stratified_split,
)

__all__ = [
    "labelled_sequences",
    "logistic_regression_baseline",
    "pad_sequences",
    "summary_features",
]


def pad_sequences(sequences: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Stacks ``[T_i, F]`` arrays into ``([N, max T_i, F] float32, lengths [N] int32)``.

    Padding is zeros after each sequence's last step.
    """
    lengths = np.array([len(sequence) for sequence in sequences], np.int32)
    features = sequences[0].shape[-1]
    padded = np.zeros((len(sequences), lengths.max(), features), np.float32)
    for row, sequence in enumerate(sequences):
        padded[row, : len(sequence)] = sequence
    return padded, lengths


def _valid_mask(inputs: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    return (np.arange(inputs.shape[1])[None, :] < lengths[:, None])[..., None]


def summary_features(inputs: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
    """Per-channel mean and standard deviation over each sequence's valid steps.

    ``[N, T, F] -> [N, 2F]``: the non-recurrent summary of a sequence that a
    bag-of-frames classifier sees (order of the frames is lost).
    """
    inputs = np.asarray(inputs, np.float64)
    lengths = np.full(len(inputs), inputs.shape[1]) if lengths is None else np.asarray(lengths)
    mask = _valid_mask(inputs, lengths)
    count = lengths[:, None].astype(np.float64)
    mean = (inputs * mask).sum(1) / count
    variance = (np.square(inputs - mean[:, None]) * mask).sum(1) / count
    return np.concatenate([mean, np.sqrt(variance)], axis=-1)


def _features(batch: Batch, kind: str) -> np.ndarray:
    inputs = np.asarray(batch.inputs)
    lengths = None if batch.lengths is None else np.asarray(batch.lengths)
    if kind == "summary":
        return summary_features(inputs, lengths)
    if kind == "raw":
        return inputs.reshape(len(inputs), -1)
    raise ValueError(f"features={kind!r} is unknown; use 'summary' or 'raw'")


def logistic_regression_baseline(
    task: Task,
    *,
    features: str = "summary",
    regularization: Sequence[float] = (0.01, 0.1, 1.0, 10.0, 100.0),
) -> dict[str, float]:
    """Multinomial logistic regression on each sequence, fitted on the training split.

    ``features="summary"`` uses :func:`summary_features` (per-channel mean and
    standard deviation: a non-recurrent baseline for variable-length sequences);
    ``"raw"`` flattens fixed-length inputs (MNIST-1D's README baseline).  Features
    are standardized with training statistics; the inverse regularization strength
    ``C`` is chosen on the validation split, never on test.

    Returns:
      ``{"C", "validation_accuracy", "test_accuracy"}``.
    """
    from sklearn.linear_model import LogisticRegression  # optional dependency: rnnlab[data]
    from sklearn.preprocessing import StandardScaler

    if task.validation_set is None or "train_set" not in task.extras:
        raise ValueError(f"task {task.name!r} has no training and validation splits to fit on")
    splits = {
        "train": task.extras["train_set"](),
        "validation": task.validation_set(),
        "test": task.test_set(),
    }
    x = {name: _features(batch, features) for name, batch in splits.items()}
    y = {name: np.asarray(batch.targets) for name, batch in splits.items()}
    scaler = StandardScaler().fit(x["train"])
    x = {name: scaler.transform(values) for name, values in x.items()}
    best = None
    with single_threaded_blas():
        for strength in regularization:
            model = LogisticRegression(C=strength, max_iter=2000).fit(x["train"], y["train"])
            accuracy = float(model.score(x["validation"], y["validation"]))
            if best is None or accuracy > best[0]:
                best = (accuracy, strength, model)
    accuracy, strength, model = best
    return {
        "C": strength,
        "validation_accuracy": accuracy,
        "test_accuracy": float(model.score(x["test"], y["test"])),
    }


def labelled_sequences(
    name: str,
    train: tuple[np.ndarray, np.ndarray, np.ndarray | None],
    test: tuple[np.ndarray, np.ndarray, np.ndarray | None],
    *,
    num_classes: int,
    validation_fraction: float,
    split_seed: int,
    standardize: bool,
    describe: dict,
    extras: dict,
) -> Task:
    """A classification :class:`Task` from ``(inputs [N, T, F], labels [N], lengths)`` splits.

    A stratified ``validation_fraction`` of the training split (drawn with
    ``split_seed``) becomes the validation split.  With ``standardize``, every
    channel is shifted and scaled by its mean and standard deviation over the valid
    steps of the remaining training sequences; padding stays zero.  The readout is
    the last valid step (``lengths - 1``); the baseline is the training prior
    (:func:`rnnlab.tasks._digits.prior_baselines`) on the test labels.
    """
    check_fraction("validation_fraction", validation_fraction)
    train_inputs, train_labels, train_lengths = train
    test_inputs, test_labels, test_lengths = test
    kept, held_out = stratified_split(train_labels, validation_fraction, split_seed)

    def rows(split, index):
        inputs, labels, lengths = split
        return inputs[index], labels[index], None if lengths is None else lengths[index]

    train, validation = rows(train, kept), rows(train, held_out)
    test = (test_inputs, test_labels, test_lengths)
    if standardize:
        inputs, _, lengths = train
        lengths = np.full(len(inputs), inputs.shape[1]) if lengths is None else lengths
        mask = _valid_mask(inputs, lengths)
        values = inputs[np.broadcast_to(mask, inputs.shape)].reshape(-1, inputs.shape[-1])
        mean, std = values.mean(0), values.std(0) + 1e-8

        def scale(split):
            inputs, labels, lengths = split
            full = np.full(len(inputs), inputs.shape[1]) if lengths is None else lengths
            scaled = ((inputs - mean) / std) * _valid_mask(inputs, full)
            return scaled.astype(np.float32), labels, lengths

        train, validation, test = scale(train), scale(validation), scale(test)
        extras = {**extras, "channel_mean": mean, "channel_std": std}
    baseline_loss, baseline_accuracy = prior_baselines(train[1], test[1], num_classes)
    return Task(
        name=name,
        length=train[0].shape[1],
        input_size=train[0].shape[2],
        output_size=num_classes,
        readout="last",
        objective="classification",
        metric_name="accuracy",
        metric=accuracy_metric,
        baseline_loss=baseline_loss,
        baseline_metric=baseline_accuracy,
        sample=minibatch_sampler(*train),
        test_set=fixed_split(*test),
        validation_set=fixed_split(*validation),
        describe=describe,
        extras={
            **extras,
            "train_set": fixed_split(*train),
            "train_size": len(train[1]),
            "validation_size": len(validation[1]),
            "test_size": len(test[1]),
        },
    )
