"""Learnability against sequence length: success rate over seeds for any registered cells.

    .venv/bin/python experiments/long_range.py --out results/long_range
    .venv/bin/python experiments/long_range.py --out results/lr_lru --cells lru lstm \\
        --cell-option lru:r_min=0.9 --tasks adding --lengths 100 1000

For every task, cell and length T, trains --seeds seeds through
:func:`rnnlab.sweep.run_sweep` (--strategy: one vmapped program by default, a loop, one
process per core, or ``auto``, which measures) and counts a seed as successful when its
final test loss is below the threshold (--success-threshold, or --success-fraction of the
task's trivial baseline).
Writes config.json, results.csv, summary.json and success_vs_length.png, and under
``sweep/`` one resumable sweep folder per (task, cell, T): a killed run keeps every
finished configuration, and rerunning with the same --out trains only the rest.  Every
configuration is validated before anything runs; a finished run is reported and left
untouched.
"""

from __future__ import annotations

import numpy as np

from rnnlab import cells as registry
from rnnlab import cli, io, runtime
from rnnlab.plots.training import plot_success_vs_length
from rnnlab.progress import Progress
from rnnlab.sweep import STRATEGIES, TrainerBuilder, config_id, run_sweep, steps_to_threshold
from rnnlab.train import TrainConfig, make_train
from rnnlab.train.config import parse_option, task_name
from rnnlab.train.runner import check_memory

DEFAULT_LENGTHS = {"adding": [10, 30, 100], "copying": [5, 10, 20]}
#: ``--quick``: a smoke run in seconds (flags given explicitly win).
QUICK = {
    "tasks": ["adding"], "cells": ["rnn", "lstm"], "lengths": [5, 10], "seeds": 2,
    "steps": 20, "chunk_steps": 10, "hidden_size": 8, "batch_size": 8,
}  # fmt: skip


def main(argv=None) -> None:
    parser = cli.Parser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--tasks", nargs="+", type=task_name, default=["adding", "copying"])
    parser.add_argument(
        "--cells", nargs="+", default=["rnn", "lstm", "gru"],
        help=f"registered cells ({', '.join(registry.available())})",
    )  # fmt: skip
    parser.add_argument(
        "--cell-option", action="append", default=[], metavar="CELL:KEY=VALUE",
        help="a hyperparameter of one cell, e.g. lstm:forget_bias=2 (repeatable)",
    )  # fmt: skip
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
    parser.add_argument(
        "--strategy", default="vmap", choices=STRATEGIES,
        help="how each (task, cell, T)'s seeds run (rnnlab.sweep.run_sweep): one vmapped "
        "program (the default), a loop, one process per core, or auto (measured)",
    )  # fmt: skip
    cli.add_preset_switch(parser, QUICK, "a smoke run")
    arguments = cli.parse_with_preset(parser, argv, QUICK)
    cell_options = {cell: {} for cell in arguments.cells}
    for cell in arguments.cells:
        try:
            registry.spec(cell)
        except ValueError as error:
            cli.fail("--cells", str(error))
    for text in arguments.cell_option:
        cell, _, option = text.partition(":")
        if cell not in cell_options or not option:
            cli.fail(
                "--cell-option",
                f"expected CELL:KEY=VALUE with CELL in --cells, got {text!r}",
            )
        key, value = parse_option(option)
        cell_options[cell][key] = value
    for name in ("seeds", "success_fraction", "success_threshold"):
        value = getattr(arguments, name)
        if value is not None and not value > 0:
            cli.fail(cli.flag_of(name), f"must be > 0, got {value}")

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
    trainers = {}
    with cli.usage_errors(
        {"cell_options": "--cell-option", "task": "--tasks", "length": "--lengths"}
    ):
        for task, cell, length in plan:  # every configuration is checked before any runs
            # copying's --lengths are its delay T (the sequence is T + 2K steps long)
            where = {"task_options": {"delay": length}} if task == "copying" else {"length": length}
            config = TrainConfig(
                task=task, **where, cell=cell, cell_options=cell_options[cell], **base
            )
            trainers[task, cell, length] = trainer = make_train(config)
            check_memory(trainer)
        folder = io.RunFolder.open(
            arguments.out,
            "long_range",
            {**vars(arguments), "cell_options": cell_options},
            may_change=("strategy",),
            work=("sweep",),
            argument="--out",
        )
    if folder.finished:
        print(folder.finished_message())
        return
    runtime.configure()  # compilation cache; allocator (no per-step page faults at long T)
    with cli.usage_errors(plain=False), folder.lock():
        folder.start()
        arguments.out = folder.path
        run_plan(arguments, plan, trainers, base)
        folder.finish()


def train_group(arguments, base: dict, trainer, key) -> dict:
    """One results row: the seeds of one (task, cell, T), run (or resumed) by
    :func:`rnnlab.sweep.run_sweep` in ``--out/sweep/TASK-CELL-T{T}``."""
    task, cell, length = key
    config = trainer.config
    baseline = trainer.task.baseline_loss
    threshold = arguments.success_threshold or arguments.success_fraction * baseline
    static = {"task": task, "cell": cell, "length": length}
    if config.cell_options:
        static["cell_options"] = dict(config.cell_options)
    configs = [{**static, "seed": seed} for seed in range(arguments.seeds)]
    configs = [{"id": config_id(c, context=base), **c} for c in configs]
    out = arguments.out / "sweep" / f"{task}-{cell}-T{length}"
    result = run_sweep(
        configs, TrainerBuilder(base), out=out, strategy=arguments.strategy, threshold=threshold,
        baseline=baseline, progress=False,
        divergence=(config.divergence_loss_factor, config.divergence_patience),
    )  # fmt: skip
    # The engine's final test scores (of the selected params) are in the stored histories.
    curves = {curve["id"]: curve for curve in io.read_jsonl(out / "curves.jsonl")}
    histories = [curves[c["id"]] for c in configs]
    diverged = np.array([row["diverged"] for row in result.rows])
    losses = np.where(diverged, np.inf, [h["final_test_loss"] for h in histories])
    first = [steps_to_threshold(h, threshold) for h in histories]
    sessions = result.summary.get("sessions", [result.summary])
    return {
        "task": task,
        "cell": cell,
        "length": length,
        "success_rate": float(np.mean(losses < threshold)),
        "final_test_losses": losses.tolist(),
        "first_success_steps": [-1 if step is None else step for step in first],
        "final_test_metrics": [float(h["final_test_metric"]) for h in histories],
        "baseline_loss": baseline,
        "success_threshold": threshold,
        "diverged": int(diverged.sum()),
        "wall_time_s": sum(s["wall_seconds"] for s in sessions if s["run"]),
        "resumed": result.summary["resumed"],
    }


def run_plan(arguments, plan, trainers, base: dict) -> None:
    """Trains (or resumes) every (task, cell, T) of ``plan`` and writes the results."""
    rows = []
    with Progress(len(plan), "long_range", unit="config") as bar:
        for key in plan:
            rows.append(train_group(arguments, base, trainers[key], key))
            bar.update(1, task=key[0], cell=key[1], T=key[2], success=rows[-1]["success_rate"])
    resumed = [row.pop("resumed") for row in rows]
    io.write_csv(arguments.out / "results.csv", rows)
    plot_success_vs_length(rows, arguments.out / "success_vs_length.png")
    wall_time = sum(row["wall_time_s"] for row in rows)
    io.write_json(arguments.out / "summary.json", {"rows": rows, "wall_time_s": wall_time})
    for row in rows:
        print(
            f"{row['task']:>8} {row['cell']:>5} T={row['length']:<4} success "
            f"{row['success_rate']:.2f}  final test losses "
            f"{np.round(row['final_test_losses'], 4).tolist()} first below threshold at "
            f"{row['first_success_steps']} (baseline {row['baseline_loss']:.4g}, threshold "
            f"{row['success_threshold']:.4g})  {row['wall_time_s']:.0f}s"
        )
    if any(resumed):
        print(f"resumed {sum(resumed)} finished configurations from {arguments.out}/sweep/")
    print(f"wrote {arguments.out}/{{config.json,results.csv,summary.json,success_vs_length.png}}")


if __name__ == "__main__":
    main()
