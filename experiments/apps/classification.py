"""Sequence classification with published baselines: MNIST-1D and BasicMotions.

    .venv/bin/python experiments/apps/classification.py --out results/apps/classification
    .venv/bin/python experiments/apps/classification.py --quick --out /tmp/classification

**MNIST-1D** (Greydanus 2020; the ``mnist1d`` package generates it offline): the
README reports test accuracy 32% for logistic regression, 68% for an MLP, 94% for a
CNN and 91% for a GRU.  Its GRU is bidirectional with 6 units per direction, and a
linear readout of all 40 steps' outputs flattened, trained with Adam at 1e-2, batch
100, for 8,000 steps; here the same protocol (``bidirectional=True,
sequence_readout="flatten"``) for the GRU, the LSTM and the tanh RNN, each run keeping
its best-validation params (10% of the training set is held out for validation).
Logistic regression on the raw sequence is refitted in the same run.

**BasicMotions** (UEA, shipped in sktime): 6 motion channels, 100 steps, 4 activities;
32 training, 8 validation and 40 test series.  One-way RNN, LSTM and GRU read out at
the last step, against logistic regression on each series' channel means and
standard deviations.

Writes, per data set in ``<out>/mnist1d`` and ``<out>/basic_motions``: config.json,
summary.json, results.csv, metrics.csv, learning_curves.png, comparison.png.
"""

from __future__ import annotations

import time
from pathlib import Path

from rnnlab import cli, io, runtime
from rnnlab.tasks.classification import logistic_regression_baseline
from rnnlab.train import TrainConfig
from rnnlab.train.compare import (
    add_arguments,
    base_config,
    experiment_record,
    parse_arguments,
    print_report,
    seed_claims,
    train_models,
    write_comparison,
)

QUICK = {"cells": ["gru"], "seeds": 1, "steps": 40, "chunk_steps": 20, "motion_steps": 40,
         "motion_hidden_size": 8}  # fmt: skip
COLUMNS = ("model", "hidden_size", "parameters", "test_metric", "test_metric_std", "seeds",
           "wall_time_s")  # fmt: skip
#: The mnist1d README's test accuracies.
README = {"logistic regression": 0.32, "MLP": 0.68, "CNN": 0.94, "GRU": 0.91}


def study(arguments, name: str, base: TrainConfig, *, bidirectional: bool, features: str,
          out: Path, title: str) -> dict:  # fmt: skip
    """Trains every cell on ``base``'s task, fits the logistic baseline, writes ``out``."""
    prefix = "bidirectional " if bidirectional else ""
    configs = {
        prefix + cell: base.replace(cell=cell, bidirectional=bidirectional)
        for cell in arguments.cells
    }
    results = train_models(
        configs, arguments.seeds, label=name, compiler_options=arguments.compiler_options
    )
    task = next(iter(results.values())).trainer.task
    logistic = logistic_regression_baseline(task, features=features)
    baselines = {f"logistic regression ({features}), this run": logistic["test_accuracy"]}
    extra = {}
    if name == "mnist1d":
        baselines.update({f"README {model}": value for model, value in README.items()
                          if model != "logistic regression"})  # fmt: skip
        extra["readme_test_accuracy"] = README
    baselines["training prior"] = task.baseline_metric
    return write_comparison(
        out,
        experiment_record(
            "classification", vars(arguments), configs, task={"name": task.name, **task.describe}
        ),
        results,
        baselines=baselines,
        summary={
            "task": task.name,
            "logistic_regression": logistic,
            **extra,
            "claims": seed_claims(results, higher_is_better=True),
        },
        title=title,
    )


def main(argv=None) -> dict:
    parser = cli.Parser(description=__doc__.split("\n")[0])
    add_arguments(
        parser,
        out="results/apps/classification",
        quick=QUICK,
        seeds=3,
        steps=8000,
        chunk_steps=250,
        hidden_size=6,
        batch_size=100,
        learning_rate=1e-2,
        motion_steps=600,
        motion_hidden_size=32,
    )
    arguments = parse_arguments(parser, argv)
    runtime.configure()  # compilation cache; allocator (no per-step page faults at long T)
    start = time.perf_counter()
    out = Path(arguments.out)
    # The mnist1d README's GRU: bidirectional, 6 units, all steps flattened, no clipping.
    mnist = base_config(arguments, "mnist1d", sequence_readout="flatten", clip_norm=None)
    motions = TrainConfig(
        task="basic_motions",
        hidden_size=arguments.motion_hidden_size,
        batch_size=16,
        steps=arguments.motion_steps,
        chunk_steps=arguments.chunk_steps if arguments.quick else 50,
        learning_rate=3e-3,
        clip_norm=1.0,
    )
    summaries = {
        "mnist1d": study(arguments, "mnist1d", mnist, bidirectional=True, features="raw",
                         out=out / "mnist1d", title="MNIST-1D: test accuracy"),
        "basic_motions": study(arguments, "basic_motions", motions, bidirectional=False,
                               features="summary", out=out / "basic_motions",
                               title="BasicMotions: test accuracy"),
    }  # fmt: skip
    wall_time = time.perf_counter() - start
    io.write_json(out / "summary.json", {**summaries, "wall_time_s": wall_time})
    for name, summary in summaries.items():
        print_report({**summary, "wall_time_s": wall_time}, COLUMNS, out / name)
    return summaries


if __name__ == "__main__":
    main()
