"""Learnability against sequence length: success rate over seeds for any registered cells.

    .venv/bin/python experiments/long_range.py --out results/long_range
    .venv/bin/python experiments/long_range.py --out results/lr_lru --cells lru lstm \\
        --cell-option lru:r_min=0.9 --tasks adding --lengths 100 1000

For every task, cell and length T, trains --seeds seeds as one vmapped program
and counts a seed as successful when its final test loss is below the threshold
(--success-threshold, or --success-fraction of the task's trivial baseline).
Writes config.json, results.csv, summary.json and success_vs_length.png.  Every
configuration is validated before anything runs; a finished run is reported and left
untouched.
"""

from __future__ import annotations

import time

import numpy as np

from rnnlab import cells as registry
from rnnlab import cli, io, runtime
from rnnlab.plots.training import plot_success_vs_length
from rnnlab.progress import Progress
from rnnlab.train import TrainConfig, make_train, train_seeds
from rnnlab.train.config import parse_option, task_name
from rnnlab.train.divergence import explosion_step
from rnnlab.train.runner import check_memory

DEFAULT_LENGTHS = {"adding": [10, 30, 100], "copying": [5, 10, 20]}


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
    arguments = parser.parse_args(argv)
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
            argument="--out",
        )
    if folder.finished:
        print(folder.finished_message())
        return
    runtime.configure()  # compilation cache; allocator (no per-step page faults at long T)
    with cli.usage_errors(plain=False), folder.lock():
        folder.start()
        run_plan(arguments, plan, trainers)
        folder.finish()


def run_plan(arguments, plan, trainers) -> None:
    """Trains every (task, cell, T) of ``plan`` and writes the results."""
    rows, start = [], time.perf_counter()
    with Progress(len(plan), "long_range", unit="config") as bar:
        for task, cell, length in plan:
            config = trainers[task, cell, length].config
            baseline = trainers[task, cell, length].task.baseline_loss
            threshold = arguments.success_threshold or arguments.success_fraction * baseline
            run_start = time.perf_counter()
            history = train_seeds(config, arguments.seeds)
            exploded = [
                explosion_step(steps, losses, baseline, config.divergence_loss_factor,
                               config.divergence_patience) is not None
                for steps, losses in zip(history["step"], history["train_loss"], strict=True)
            ]  # fmt: skip
            history["diverged"] = history["diverged"] | np.array(exploded)
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
    plot_success_vs_length(rows, f"{arguments.out}/success_vs_length.png")
    io.write_json(
        f"{arguments.out}/summary.json", {"rows": rows, "wall_time_s": time.perf_counter() - start}
    )
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
