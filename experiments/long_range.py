"""Learnability against sequence length: success rate over seeds for RNN, LSTM and GRU.

    .venv/bin/python experiments/long_range.py --out results/long_range

For every task, cell and length T, trains --seeds seeds as one vmapped program
and counts a seed as successful when its final test loss is below the threshold
(--success-threshold, or --success-fraction of the task's trivial baseline).
Writes config.json, results.csv, summary.json and success_vs_length.png.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rnnlab import io, runtime
from rnnlab.plots.training import plot_success_vs_length
from rnnlab.progress import Progress
from rnnlab.train import TrainConfig, make_train, train_seeds
from rnnlab.train.runner import package_versions

#: Cell presets: TrainConfig fields.  "irnn" is Le et al. 2015's ReLU RNN with identity init.
CELLS = {
    "rnn": {"cell": "rnn", "activation": "tanh", "recurrent_init": "orthogonal"},
    "irnn": {"cell": "rnn", "activation": "relu", "recurrent_init": "identity"},
    "lstm": {"cell": "lstm"},
    "gru": {"cell": "gru"},
}
DEFAULT_LENGTHS = {"adding": [10, 30, 100], "copying": [5, 10, 20]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--tasks", nargs="+", default=["adding", "copying"])
    parser.add_argument("--cells", nargs="+", default=["rnn", "lstm", "gru"], choices=CELLS)
    parser.add_argument(
        "--lengths", nargs="+", type=int, help="T values for every task (default per task)"
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--chunk-steps", type=int, default=100)
    parser.add_argument("--hidden-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--clip-norm", type=float, default=1.0)
    parser.add_argument("--success-fraction", type=float, default=0.1)
    parser.add_argument("--success-threshold", type=float, default=None)
    arguments = parser.parse_args(argv)
    runtime.tune_allocator()  # avoid XLA's per-step page faults at long T

    plan = [
        (task, cell, length)
        for task in arguments.tasks
        for cell in arguments.cells
        for length in (arguments.lengths or DEFAULT_LENGTHS.get(task, [10, 30, 100]))
    ]
    base = dict(
        steps=arguments.steps,
        chunk_steps=arguments.chunk_steps,
        hidden_size=arguments.hidden_size,
        batch_size=arguments.batch_size,
        learning_rate=arguments.learning_rate,
        clip_norm=arguments.clip_norm,
    )
    io.write_json(
        f"{arguments.out}/config.json",
        {"arguments": vars(arguments), "cells": CELLS, "versions": package_versions()},
    )
    rows, start = [], time.perf_counter()
    with Progress(len(plan), "long_range", unit="config") as bar:
        for task, cell, length in plan:
            config = TrainConfig(task=task, length=length, **CELLS[cell], **base)
            baseline = make_train(config).task.baseline_loss
            threshold = arguments.success_threshold or arguments.success_fraction * baseline
            run_start = time.perf_counter()
            history = train_seeds(config, arguments.seeds)
            losses = np.where(history["diverged"], np.inf, history["final_test_loss"])
            below = history["test_loss"] < threshold  # [seeds, chunks]
            at_first = history["step"][np.arange(len(below)), below.argmax(axis=1)]
            first = np.where(below.any(axis=1), at_first, -1)
            rows.append(
                {
                    "task": task,
                    "cell": cell,
                    "length": length,
                    "success_rate": float(np.mean(losses < threshold)),
                    "final_test_losses": losses.tolist(),
                    "first_success_steps": first.tolist(),
                    "final_test_metrics": history["final_test_metric"].tolist(),
                    "baseline_loss": baseline,
                    "success_threshold": threshold,
                    "diverged": int(history["diverged"].sum()),
                    "wall_time_s": time.perf_counter() - run_start,
                }
            )
            bar.update(1, task=task, cell=cell, T=length, success=rows[-1]["success_rate"])
    io.write_csv(f"{arguments.out}/results.csv", rows)
    io.write_json(
        f"{arguments.out}/summary.json", {"rows": rows, "wall_time_s": time.perf_counter() - start}
    )
    plot_success_vs_length(rows, f"{arguments.out}/success_vs_length.png")
    for row in rows:
        print(
            f"{row['task']:>8} {row['cell']:>5} T={row['length']:<4} success "
            f"{row['success_rate']:.2f}  final test losses "
            f"{np.round(row['final_test_losses'], 4).tolist()} first below threshold at "
            f"{row['first_success_steps']} (baseline {row['baseline_loss']:.4g}, threshold "
            f"{row['success_threshold']:.4g})  {row['wall_time_s']:.0f}s"
        )
    print(f"wrote {arguments.out}/{{config.json,results.csv,summary.json,success_vs_length.png}}")


if __name__ == "__main__":
    main()
