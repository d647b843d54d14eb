"""Speech: who is speaking? RNN, LSTM and GRU, one-way and bidirectional, on JapaneseVowels.

    .venv/bin/python experiments/apps/speech.py --out results/apps/speech
    .venv/bin/python experiments/apps/speech.py --quick --out /tmp/speech

Nine speakers, 12 LPC cepstral coefficients per frame, 7 to 29 frames per utterance
(UEA JapaneseVowels, shipped in sktime; variable lengths go through ``lengths``).
Every cell is trained one-way (readout at the last valid frame) and bidirectionally
(forward half at the last valid frame, backward half at frame 0) for ``--seeds``
seeds; each run keeps the params of its best validation loss and is reported by
its test accuracy there.  The non-recurrent baseline, computed in the same run, is
logistic regression on each utterance's per-channel mean and standard deviation
(its regularization chosen on validation).

Writes config.json, summary.json (accuracies, baselines, and the verdicts on
"gated cells beat the vanilla RNN", "the GRU matches the LSTM" and "bidirectional
helps"), results.csv, metrics.csv, learning_curves.png and comparison.png.
"""

from __future__ import annotations

import time

from rnnlab import cli, runtime
from rnnlab.tasks.classification import logistic_regression_baseline
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

QUICK = {"cells": ["gru"], "seeds": 1, "steps": 60, "chunk_steps": 20, "hidden_size": 16}
COLUMNS = ("model", "parameters", "test_metric", "test_metric_std", "seeds", "wall_time_s")


def main(argv=None) -> dict:
    parser = cli.Parser(description=__doc__.split("\n")[0])
    add_arguments(parser, out="results/apps/speech", quick=QUICK)
    arguments = parse_arguments(parser, argv)
    runtime.configure()  # compilation cache; allocator (no per-step page faults at long T)
    start = time.perf_counter()
    base = base_config(arguments, "japanese_vowels")
    configs = {}
    for cell in arguments.cells:
        configs[cell] = base.replace(cell=cell)
        configs[f"bidirectional {cell}"] = base.replace(cell=cell, bidirectional=True)
    results = train_models(
        configs, arguments.seeds, label="speech", compiler_options=arguments.compiler_options
    )
    task = next(iter(results.values())).trainer.task
    logistic = logistic_regression_baseline(task, features="summary")
    summary = write_comparison(
        arguments.out,
        experiment_record(
            "speech", vars(arguments), configs, task={"name": task.name, **task.describe}
        ),
        results,
        baselines={
            "logistic regression on mean/std": logistic["test_accuracy"],
            "training prior": task.baseline_metric,
        },
        summary={
            "task": task.name,
            "logistic_regression": logistic,
            "claims": seed_claims(results, higher_is_better=True),
            "wall_time_s": time.perf_counter() - start,
        },
        title="JapaneseVowels: speaker accuracy",
    )
    print_report(summary, COLUMNS, arguments.out)
    return summary


if __name__ == "__main__":
    main()
