"""Sequential digit classification on scikit-learn's 8x8 digits (shipped, no download).

The small cousin of sequential / permuted MNIST (Le et al. 2015).
"""

from __future__ import annotations

import numpy as np

from rnnlab.tasks.base import (
    Task,
    accuracy_metric,
    check_choice,
    check_fraction,
    fixed_split,
    minibatch_sampler,
)

__all__ = ["digits", "load_digits_split"]

MODES = ("row", "pixel")
NUM_CLASSES = 10


def load_digits_split(test_fraction: float = 0.2, split_seed: int = 0):
    """The 1,797 digits scaled to ``[0, 1]``, shuffled with ``split_seed`` and split.

    Returns:
      ``(train_images [N, 64], train_labels [N], test_images [M, 64], test_labels [M])``.
    """
    check_fraction("test_fraction", test_fraction)
    from sklearn.datasets import load_digits  # optional dependency: rnnlab[data]

    data = load_digits()
    images = (data.data / 16.0).astype(np.float32)
    labels = data.target.astype(np.int32)
    order = np.random.default_rng(split_seed).permutation(len(labels))
    images, labels = images[order], labels[order]
    test = int(round(test_fraction * len(labels)))
    return images[test:], labels[test:], images[:test], labels[:test]


def prior_baselines(train_labels: np.ndarray, test_labels: np.ndarray, num_classes: int):
    """Cross-entropy (nats) and accuracy on the test labels of the input-blind predictor.

    The predictor outputs the training-set class frequencies (add-one smoothed)
    for every input; its accuracy is that of always answering the majority class.
    """
    counts = np.bincount(train_labels.ravel(), minlength=num_classes) + 1.0
    prior = counts / counts.sum()
    loss = float(-np.mean(np.log(prior[test_labels.ravel()])))
    accuracy = float(np.mean(test_labels.ravel() == np.argmax(prior)))
    return loss, accuracy


def digits(
    mode: str = "row",
    permuted: bool = False,
    *,
    permutation_seed: int = 0,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    length: int | None = None,
) -> Task:
    """Classify a digit image read as a sequence.

    ``mode="row"`` reads the 8x8 image row by row: ``[B, 8, 8]``;
    ``mode="pixel"`` pixel by pixel: ``[B, 64, 1]``.  ``permuted=True`` applies one
    fixed random permutation (``permutation_seed``) to the 64 pixels before
    reading, as in permuted MNIST.  Labels ``[B]``; readout ``"last"``.

    The split is fixed by ``split_seed``; ``sample`` draws minibatches of the
    training split and ``test_set()`` returns the held-out split.  The baseline
    predicts the training class frequencies (see :func:`prior_baselines`).

    Args:
      length: optional check; must equal the mode's sequence length (8 or 64).

    Raises:
      ValueError: naming ``mode``, or ``length`` if it disagrees with the mode.
    """
    check_choice("mode", mode, MODES)
    steps, features = (8, 8) if mode == "row" else (64, 1)
    if length is not None and length != steps:
        raise ValueError(
            f"length={length!r} does not fit digits with mode={mode!r}, whose sequences have "
            f"{steps} steps; omit length or pass {steps}"
        )
    train_images, train_labels, test_images, test_labels = load_digits_split(
        test_fraction, split_seed
    )
    if permuted:
        permutation = np.random.default_rng(permutation_seed).permutation(64)
        train_images, test_images = train_images[:, permutation], test_images[:, permutation]
    baseline_loss, baseline_accuracy = prior_baselines(train_labels, test_labels, NUM_CLASSES)
    train_inputs = train_images.reshape(-1, steps, features)
    test_inputs = test_images.reshape(-1, steps, features)
    return Task(
        name="digits",
        length=steps,
        input_size=features,
        output_size=NUM_CLASSES,
        readout="last",
        objective="classification",
        metric_name="accuracy",
        metric=accuracy_metric,
        baseline_loss=baseline_loss,
        baseline_metric=baseline_accuracy,
        sample=minibatch_sampler(train_inputs, train_labels),
        test_set=fixed_split(test_inputs, test_labels),
        describe={
            "mode": mode,
            "permuted": permuted,
            "permutation_seed": permutation_seed,
            "test_fraction": test_fraction,
            "split_seed": split_seed,
        },
        extras={"train_size": len(train_labels), "test_size": len(test_labels)},
    )
