"""Where do tanh RNN, LSTM and GRU train on the adding problem, and where do they explode?

The default study sweeps the learning rate (log-uniform) x a second
hyperparameter (forget bias for the LSTM, recurrent scale for the tanh RNN and
GRU) x seeds at a moderate ``T``, plus the tanh RNN at further lengths to see
whether its trainable region collapses as ``T`` grows.  It ranks hyperparameter
importance with main-effect variance fractions (Greff et al. 2017, fANOVA).

Run::

    .venv/bin/python experiments/sweep.py --out results/sweep            # < 15 min
    .venv/bin/python experiments/sweep.py --quick --out results/sweep_quick  # < 2 min
    .venv/bin/python experiments/sweep.py --learning-rate loguniform:1e-4:1e-1:16 \\
        --axis lstm:forget_bias=0,1,2 --seeds 4 --cells lstm
    .venv/bin/python experiments/sweep.py --cells lru,lstm --axis lru:r_min=0,0.9,0.99

Any registered cell can be swept; ``--axis [CELL:]NAME=SPEC`` sweeps a hyperparameter of
the cells that accept it (all of them without a ``CELL:`` prefix).

Writes ``config.json``, ``results.csv``/``results.jsonl``/``curves.jsonl`` (one row
per configuration), ``summary.json`` (sweep timing and the findings),
``heatmaps.png``, ``marginals.png`` and ``importance.png``.  Rerunning with the
same ``--out`` resumes: finished configurations are not rerun; a finished sweep is
reported and left untouched; other arguments into the same folder are refused.
Bad arguments exit with status 2 and one ``error: --flag: ...`` line.
"""

from __future__ import annotations

import sys

from rnnlab import cli, io, runtime
from rnnlab.io import write_json
from rnnlab.plots.sweep import plot_heatmaps, plot_importance, plot_marginals
from rnnlab.sweep import (
    STRATEGIES,
    compare_strategies,
    configurations,
    group_configs,
    parse_seeds,
    parse_spec,
    product,
    run_sweep,
)
from rnnlab.sweep.analysis import findings, panel_name, select
from rnnlab.sweep.engine import TrainerBuilder
from rnnlab.sweep.run import check_configs
from rnnlab.train import make_train
from rnnlab.train.runner import check_memory

METRIC = "final_test_loss"
#: The default second axis of each cell of the default study.
DEFAULT_AXES = (
    "lstm:forget_bias=0,1,2",
    "rnn:recurrent_scale=0.5,1,1.5",
    "gru:recurrent_scale=0.5,1,1.5",
)
QUICK = {
    "learning_rate": "loguniform:1e-3:1e-1:4",
    "axis": ["lstm:forget_bias=0,2", "rnn:recurrent_scale=0.5,1.5", "gru:recurrent_scale=0.5,1.5"],
    "seeds": "1",
    "length": 20,
    "rnn_lengths": "40",
    "steps": 200,
    "hidden_size": 16,
}


def parse_args(argv=None):
    # long_range.py spells the same fraction --success-fraction (its --success-threshold
    # is an absolute loss).
    parser = cli.Parser(
        description=__doc__.split("\n\n")[0], renamed={"--threshold": "--success-fraction"}
    )
    parser.add_argument("--out", default="results/sweep", help="output folder (resumed)")
    cli.add_preset_switch(parser, QUICK, "a < 2 minute version")
    parser.add_argument(
        "--cells", default="rnn,lstm,gru", help="comma list of registered cells, e.g. lstm,lru"
    )
    parser.add_argument(
        "--learning-rate", default="loguniform:1e-4:1e-1:8", help="learning-rate spec"
    )
    parser.add_argument(
        "--axis",
        action="append",
        metavar="[CELL:]NAME=SPEC",
        help="a cell hyperparameter to sweep, for CELL or for every cell that takes NAME "
        f"(repeatable; default {' '.join(DEFAULT_AXES)})",
    )
    parser.add_argument("--seeds", default="2", help="a count (4) or a list (0,5,7)")
    parser.add_argument("--length", type=int, default=50, help="T of every cell")
    parser.add_argument(
        "--rnn-lengths", default="25,100", help="further T of the tanh RNN ('' for none)"
    )
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--hidden-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--clip-norm", type=float, default=1.0, help="gradient-norm clip (0 turns clipping off)"
    )
    parser.add_argument(
        "--success-fraction",
        type=float,
        default=0.1,
        help="'trained' = test loss below this fraction of the task baseline",
    )
    parser.add_argument("--strategy", default="auto", choices=STRATEGIES)
    parser.add_argument("--chunk-size", type=int, default=64)
    parser.add_argument(
        "--compare-strategies",
        type=int,
        default=0,
        metavar="REPEATS",
        help="also time vmap, loop and processes on the first group (interleaved repeats)",
    )
    multi = parser.add_argument_group(
        "several processes or hosts (docs/multihost.md; default: $RNNLAB_COORDINATOR, "
        "$RNNLAB_NUM_PROCESSES, $RNNLAB_PROCESS_ID, else SLURM's variables)"
    )
    multi.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address")
    multi.add_argument("--num-processes", type=int, help="processes in the run")
    multi.add_argument("--process-id", type=int, help="this process's index")
    args = cli.parse_with_preset(parser, argv, QUICK)
    if not args.success_fraction > 0:
        cli.fail(
            "--success-fraction",
            f"must be a fraction > 0 of the baseline; got {args.success_fraction}",
        )
    for name in ("chunk_size", "compare_strategies"):
        if getattr(args, name) < (1 if name == "chunk_size" else 0):
            cli.fail(cli.flag_of(name), f"must be >= {int(name == 'chunk_size')}, got "
                     f"{getattr(args, name)}")  # fmt: skip
    if args.clip_norm < 0:
        cli.fail("--clip-norm", f"must be > 0 (or 0 for no clipping), got {args.clip_norm}")
    if args.axis is None:
        args.axis = list(DEFAULT_AXES)
    return args


def parse_axes(texts, cells_selected):
    """``{cell: {name: Dimension}}`` from ``[CELL:]NAME=SPEC`` texts.

    Raises:
      ValueError: naming ``--axis`` for a malformed text, or a hyperparameter that no
        selected cell takes.
    """
    from rnnlab import cells

    axes = {cell: {} for cell in cells_selected}
    for text in texts:
        target, _, spec = text.partition("=")
        cell, _, name = target.rpartition(":")
        if not name or not spec:
            raise ValueError(f"--axis: expected [CELL:]NAME=SPEC, got {text!r}")
        targets = [cell] if cell else cells_selected
        if cell and cell not in cells_selected:
            continue  # an axis of a cell this run does not sweep
        takers = [c for c in targets if name in cells.spec(c).defaults]
        if not takers:
            raise ValueError(
                f"--axis: no selected cell takes {name!r} ({', '.join(targets)}); "
                f"{targets[0]} accepts {sorted(cells.spec(targets[0]).defaults)}"
            )
        for taker in takers:
            axes[taker][name] = parse_spec(spec, "--axis")
    return axes


def build_space(args):
    """The union of per-cell products; validates every spec with the option's name."""
    from rnnlab import cells as registry

    try:
        cells = [c.strip() for c in args.cells.split(",") if c.strip()]
        for cell in cells:
            try:
                registry.spec(cell)
            except ValueError as error:
                raise ValueError(f"--cells: {error}") from None
        axes = parse_axes(args.axis, cells)
        learning_rate = parse_spec(args.learning_rate, "--learning-rate")
        seed = parse_seeds(args.seeds)
        rnn_lengths = (
            parse_spec(args.rnn_lengths, "--rnn-lengths").values if args.rnn_lengths else ()
        )
    except ValueError as error:  # the messages start with the flag: "--learning-rate: ..."
        flag, _, message = str(error).partition(": ")
        if not flag.startswith("--"):
            flag, message = "--axis", str(error)
        cli.fail(flag, message)
    args.cell_axes = {cell: list(axes[cell]) for cell in cells}
    space = None
    for cell in cells:
        lengths = [args.length] + (
            [t for t in rnn_lengths if t != args.length] if cell == "rnn" else []
        )
        part = product(
            cell=cell, length=lengths, learning_rate=learning_rate, **axes[cell], seed=seed
        )
        space = part if space is None else space | part
    return space


def second_axis(args, cell):
    """The first ``--axis`` of ``cell`` (the heat maps' second axis), or the seed."""
    return next(iter(args.cell_axes.get(cell, ())), "seed")


def flags(args) -> dict[str, str]:
    """The flag of each configuration key, for error messages."""
    names = {
        "learning_rate": "--learning-rate", "seed": "--seeds", "length": "--length",
        "chunk_steps": "--eval-every", "cell": "--cells",
    }  # fmt: skip
    for axes in getattr(args, "cell_axes", {}).values():
        names.update({name: f"--axis {name}" for name in axes})
    return names


def main(argv=None):
    args = parse_args(argv)
    with cli.usage_errors(flags(args)):  # before anything touches JAX's devices
        distributed = runtime.initialize_distributed(
            args.coordinator, args.num_processes, args.process_id
        )
    space = build_space(args)
    base = {
        "task": "adding",
        "hidden_size": args.hidden_size,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "chunk_steps": args.eval_every,
        "clip_norm": args.clip_norm or None,
        "eval_batch_size": 500,
    }
    resolved = {
        k: v for k, v in vars(args).items()
        if k not in ("out", "quick", "cell_axes", "coordinator", "num_processes", "process_id")
    }  # fmt: skip
    with cli.usage_errors(flags(args)):
        builder = TrainerBuilder(base)
        configs = configurations(space, context=base)
        check_configs(configs, builder)
        for group in group_configs(configs, builder.static_part):
            check_memory(make_train(builder.config(group.static)))
    if distributed and distributed["process_index"] != 0:
        # Every process runs the same chunks; process 0 alone writes into --out (which must
        # be on a filesystem all processes share, so that they resume from the same rows).
        runtime.configure()
        run_sweep(configs, builder, out=args.out, strategy=args.strategy,
                  chunk_size=args.chunk_size, progress=False)  # fmt: skip
        return
    with cli.usage_errors(flags(args)):
        folder = io.RunFolder.open(
            args.out,
            "sweep",
            {**resolved, "base": base},
            may_change=("strategy", "chunk_size", "compare_strategies"),
            work=("results.jsonl",),
            argument="--out",
        )
    if folder.finished:
        print(folder.finished_message())
        return
    runtime.configure()  # compilation cache; allocator (no per-step page faults at long T)
    with cli.usage_errors(plain=False), folder.lock():
        run_and_report(args, folder, builder, base, configs)


def run_and_report(args, folder, builder, base, configs):
    """Runs the sweep into ``folder`` (locked) and writes the files and figures."""
    args.out = folder.path
    folder.start({"configurations": len(configs)})
    baselines = {}

    def threshold(config):
        key = (config["cell"], config["length"])
        if key not in baselines:
            baselines[key] = args.success_fraction * builder.baseline_loss(config)
        return baselines[key]

    print(f"sweep: {len(configs)} configurations -> {args.out}", file=sys.stderr)
    result = run_sweep(
        configs,
        builder,
        out=args.out,
        strategy=args.strategy,
        chunk_size=args.chunk_size,
        threshold=threshold,
    )
    rows = [{**row, "baseline": row["threshold"] / args.success_fraction} for row in result.rows]
    second_axes = {cell: second_axis(args, cell) for cell in args.cell_axes}
    found = findings(rows, main_length=args.length, second_axes=second_axes, metric=METRIC)
    report = {"sweep": result.summary, **found}
    if args.compare_strategies:
        first = select(configs, cell=configs[0]["cell"], length=configs[0]["length"])
        report["strategies"] = compare_strategies(first, builder, repeats=args.compare_strategies)

    panels = {
        panel_name(cell, length): select(rows, cell=cell, length=length)
        for cell in dict.fromkeys(r["cell"] for r in rows)
        for length in sorted({r["length"] for r in select(rows, cell=cell)})
    }
    second = {name: second_axis(args, name.split()[0]) for name in panels}
    plot_heatmaps(
        panels,
        "learning_rate",
        second,
        METRIC,
        args.out / "heatmaps.png",
        title=f"adding problem: final test MSE (baseline {builder.baseline_loss(configs[0]):.3g})",
        reference=builder.baseline_loss(configs[0]),
    )
    main_panels = {
        name: rows_ for name, rows_ in panels.items() if name.endswith(f"T={args.length}")
    }
    plot_marginals(
        main_panels,
        ["learning_rate", *dict.fromkeys(second_axis(args, n.split()[0]) for n in main_panels)],
        METRIC,
        args.out / "marginals.png",
        log_params=["learning_rate"],
        title=f"marginal effects at T={args.length}",
    )
    plot_importance(
        report["importance"], args.out / "importance.png", title="main-effect importance"
    )
    write_json(args.out / "summary.json", report)  # after the figures: the sweep is done
    folder.finish(wall_seconds=result.summary["wall_seconds"])
    for name, region in report["regions"].items():
        print(
            f"{name:>12}: trained {region['trained_fraction']:.0%}, "
            f"learned {region['learned_fraction']:.0%}, blew up {region['blew_up_fraction']:.0%}, "
            f"diverged {region['diverged_fraction']:.0%}, best {region['best']}"
        )
    for cell, ranking in report["importance"].items():
        print(f"{cell} importance: " + ", ".join(f"{k} {v:.2f}" for k, v in ranking.items()))
    print(f"strategy {result.summary['strategy']}, throughput {result.summary['throughput']}")
    print(f"wrote {args.out}/: results.csv, summary.json, heatmaps/marginals/importance.png")


if __name__ == "__main__":
    main()
