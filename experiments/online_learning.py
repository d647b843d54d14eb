"""Training with gradient estimators: BPTT, TBPTT(k), UORO, SnAp-1 and RTRL on the adding task.

Each estimator trains the same small model (``--cell``, default a 16-unit GRU) on the
adding problem (Le et al. 2015: two marked values in ``[0, 1]``, target their sum, loss at
the last step; predicting 1 gives MSE 1/6) through the engine's ``TrainConfig(gradient=...)``
(:mod:`rnnlab.train.estimation`), with Adam and ``--seeds`` seeds vmapped.  Independent
minibatches: every sequence starts from a fresh carry, so RTRL equals BPTT up to rounding,
and TBPTT(k)'s gradient sees only the last k steps before the loss: it cannot teach the
network to store a marked value from earlier, though the readout can still decode what
the dynamics happen to carry.

Outputs in ``--out``: ``config.json``, ``summary.json`` (final test MSE per estimator,
cost table), ``curves.csv`` (test MSE on fresh sequences every ``--chunk-steps`` updates,
per seed), ``cost.csv``, ``curves.png`` (median and range over seeds) and ``cost.png``
(time per update and XLA's temporary memory of one compiled update, one seed, against
BPTT).  The gradient-cosine figure at initialization is
``experiments/gradient_quality.py``'s.

Run: ``PYTHONPATH=. python experiments/online_learning.py [--quick] [--out DIR]``.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import cli, gradients, io, plots
from rnnlab.progress import Progress
from rnnlab.train import TrainConfig, make_train


def parse_args(argv=None):
    parser = cli.Parser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/online_learning"))
    parser.add_argument("--estimators", nargs="+",
                        default=["bptt", "tbptt:5", "uoro", "snap1", "rtrl"])  # fmt: skip
    parser.add_argument("--cell", default="gru")
    parser.add_argument("--hidden-size", type=int, default=16)
    parser.add_argument("--length", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--chunk-steps", type=int, default=100)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--repetitions", type=int, default=20, help="timed updates per estimator")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny smoke-test sizes")
    args = parser.parse_args(argv)
    if args.quick:
        args.hidden_size, args.length, args.batch_size, args.steps, args.chunk_steps = (
            4,
            8,
            8,
            20,
            10,
        )
        args.seeds, args.repetitions = 2, 3
        args.estimators = ["bptt", "tbptt:4", "uoro", "snap1", "rtrl"]
    parser.check_at_least(
        args, 1, "hidden_size", "length", "batch_size", "steps", "chunk_steps", "seeds",
        "repetitions",
    )  # fmt: skip
    try:
        for name in args.estimators:
            make_config(args, name)
    except ValueError as error:
        parser.error(str(error))
    return args


def jit(args, function):
    """``jax.jit``; for --quick without XLA's backend optimizations (compiling dominates)."""
    if args.quick:
        return jax.jit(function, compiler_options={"xla_backend_optimization_level": 0})
    return jax.jit(function)


def make_config(args, estimator: str) -> TrainConfig:
    return TrainConfig(
        task="adding",
        length=args.length,
        cell=args.cell,
        hidden_size=args.hidden_size,
        optimizer="adam",
        learning_rate=args.learning_rate,
        clip_norm=1.0,
        batch_size=args.batch_size,
        steps=args.steps,
        chunk_steps=args.chunk_steps,
        gradient=estimator,
        seed=args.seed,
    )


def train_curves(args, estimator: str) -> tuple[list[dict], dict]:
    """Trains ``--seeds`` vmapped runs; returns curve rows and their final numbers."""
    trainer = make_train(make_config(args, estimator))
    hparams = trainer.default_hparams()
    batched = {k: jnp.full((args.seeds,), v) for k, v in hparams.items()}
    keys = jax.random.split(jax.random.key(args.seed), args.seeds)  # same for every estimator
    start = time.perf_counter()
    compiled = jit(args, jax.vmap(trainer.train)).lower(keys, batched).compile()
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    _, history = jax.block_until_ready(compiled(keys, batched))
    run_seconds = time.perf_counter() - start
    history = jax.device_get(history)
    rows = [
        {"estimator": estimator, "seed": seed, "step": int(history["step"][seed][i]),
         "test_mse": float(history["test_loss"][seed][i]),
         "train_mse": float(history["train_loss"][seed][i]),
         "grad_norm": float(history["grad_norm"][seed][i])}
        for seed in range(args.seeds) for i in range(len(history["step"][seed]))
    ]  # fmt: skip
    final = [float(v) for v in history["final_test_loss"]]
    return rows, {
        "final_test_mse": final,
        "final_test_mse_median": statistics.median(final),
        "diverged": [bool(v) for v in history["diverged"]],
        "compile_seconds": compile_seconds,
        "train_seconds": run_seconds,
    }


def update_cost(args, estimator: str) -> dict:
    """One seed's compiled ``train_step``: median seconds per update over ``--repetitions``
    calls (after a warm-up) and XLA's temporary bytes."""
    trainer = make_train(make_config(args, estimator))
    hparams = trainer.default_hparams()
    state = trainer.init(jax.random.key(args.seed), hparams)
    executable = jit(args, trainer.train_step).lower(state, hparams).compile()
    state = jax.block_until_ready(executable(state, hparams))[0]
    seconds = []
    for _ in range(args.repetitions):
        start = time.perf_counter()
        state = jax.block_until_ready(executable(state, hparams))[0]
        seconds.append(time.perf_counter() - start)
    analysis = executable.memory_analysis()
    stream = state.stream
    trace = 0 if stream is None else sum(
        leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(stream.estimator.trace)
    )  # fmt: skip
    return {
        "estimator": estimator,
        "ms_per_update": 1e3 * statistics.median(seconds),
        "temp_bytes": None if analysis is None else int(analysis.temp_size_in_bytes),
        "trace_bytes": int(trace),
    }


def plot_curves(rows, estimators, args, path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for index, name in enumerate(estimators):
        mine = [r for r in rows if r["estimator"] == name]
        steps = sorted({r["step"] for r in mine})
        values = np.array([[r["test_mse"] for r in mine if r["step"] == s] for s in steps])
        color = f"C{index}"
        ax.plot(steps, np.median(values, 1), color=color, label=name)
        ax.fill_between(steps, values.min(1), values.max(1), color=color, alpha=0.2)
    ax.axhline(1 / 6, color="gray", ls=":", lw=1, label="predict 1 (MSE 1/6)")
    ax.set_yscale("log")
    ax.set_xlabel("updates")
    ax.set_ylabel("test MSE (fresh sequences)")
    ax.set_title(f"Adding T={args.length}, {args.cell} H={args.hidden_size}, "
                 f"batch {args.batch_size}, Adam {args.learning_rate:g}; "
                 f"median, range of {args.seeds} seeds")  # fmt: skip
    ax.legend(fontsize=8)
    plots.save(fig, path)


def plot_cost(costs, path):
    import matplotlib.pyplot as plt

    names = [c["estimator"] for c in costs]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    axes[0].bar(names, [c["ms_per_update"] for c in costs], color="C0")
    axes[0].set_ylabel("ms per update (median)")
    axes[1].bar(names, [(c["temp_bytes"] or 0) / 2**20 for c in costs], color="C1")
    axes[1].set_ylabel("XLA temporary memory (MiB)")
    for ax in axes:
        ax.tick_params(axis="x", rotation=30)
    fig.suptitle("One compiled update (one seed)")
    plots.save(fig, path)


def main(argv=None) -> dict:
    args = parse_args(argv)
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    io.write_config(args.out, "online_learning", vars(args), details={
        "train_configs": {n: dataclasses.asdict(make_config(args, n)) for n in args.estimators},
        "rtrl_max_sensitivity_size": gradients.RTRL_MAX_SENSITIVITY_SIZE,
        "devices": [str(d) for d in jax.devices()],
    })  # fmt: skip
    rows, finals, costs = [], {}, []
    with Progress(2 * len(args.estimators), "online_learning", unit="jobs") as bar:
        for name in args.estimators:
            curve, finals[name] = train_curves(args, name)
            rows += curve
            bar.update(1, estimator=name)
        for name in args.estimators:
            costs.append(update_cost(args, name))
            bar.update(1, estimator=name)
    base = next((c for c in costs if c["estimator"] == "bptt"), None)
    for cost in costs:
        if base is not None:
            cost["time_vs_bptt"] = cost["ms_per_update"] / base["ms_per_update"]
            cost["temp_vs_bptt"] = (cost["temp_bytes"] or 0) / max(base["temp_bytes"] or 0, 1)
    io.write_csv(args.out / "curves.csv", rows)
    io.write_csv(args.out / "cost.csv", costs)
    plot_curves(rows, args.estimators, args, args.out / "curves.png")
    plot_cost(costs, args.out / "cost.png")
    summary = {
        "final": finals,
        "cost": {c["estimator"]: {k: v for k, v in c.items() if k != "estimator"} for c in costs},
        "baseline_mse": 1 / 6,
        "wall_time_s": time.perf_counter() - started,
    }
    io.write_json(args.out / "summary.json", summary)
    for name in args.estimators:
        cost = summary["cost"][name]
        print(f"{name:>9}: final test MSE {finals[name]['final_test_mse_median']:.4f} "
              f"(median of {args.seeds}), {cost['ms_per_update']:.2f} ms/update, "
              f"temp {(cost['temp_bytes'] or 0) / 2**20:.2f} MiB")  # fmt: skip
    return summary


if __name__ == "__main__":
    main()
    sys.exit(0)
