"""Pascanu, Mikolov & Bengio 2013 on the temporal-order problem: SGD, clipping, clipping + Omega.

The protocol is the authors' code (pascanur/trainingRNNs, ../shared/REFERENCES.md):

- task: :func:`rnnlab.tasks.temporal_order` with ``variant="pascanu"`` (6 one-hot symbols,
  A/B in ``[L/10, 2L/10)`` and ``[5L/10, 6L/10)``, 4 classes read at the last step) and one
  length ``L`` per batch, uniform in ``[T/2, T]`` here (theirs: ``[50, 200]``);
- model: 50 tanh units, "smart tanh" init (``W_hh``: 15 non-zero ``N(0, 0.01^2)`` entries
  per row, rescaled to spectral radius 0.95), ``W_in`` and ``W_out`` ``N(0, 0.01^2)``, zero
  biases;
- training: plain SGD (no momentum), learning rate 0.01, batch 20; ``clip``: the
  gradient rescaled to norm 1 when above it; ``clip+omega``: plus ``alpha grad Omega``
  with ``alpha = 2`` (:func:`rnnlab.gradients.pascanu_regularizer`, the authors'
  constant-error form, added before clipping by the engine's ``pascanu_alpha``);
- success: 0 errors on 10,000 fresh sequences (lengths drawn per batch of 200).

Their run needed about 336k updates at ``L in [50, 200]``; this budget is far smaller
(``--steps``, default 5,000 updates, 6 seeds), so the lengths are shorter (``T`` in 15,
30, 60).  Every ``--check-every`` updates the error rate on ``--check-size`` fresh
sequences is logged (``curves.csv``, ``curves.png``); the success test runs once, after
the last update.

Seeds are vmapped: SGD and clip share one compiled program (the clip threshold is a traced
hparam, ``inf`` for SGD); clip+omega compiles Omega in.  Outputs in ``--out``:
``config.json``, ``summary.json`` (the success table), ``runs.csv`` (one row per run),
``curves.csv``, ``success.png`` and ``curves.png``.

Run: ``PYTHONPATH=. python experiments/pascanu2013.py [--quick] [--out DIR]``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from rnnlab import cli, io, plots
from rnnlab.progress import Progress
from rnnlab.train import TrainConfig, make_train

#: The three training methods: (clip threshold, alpha); SGD's threshold is inf (no clip).
METHODS = {"sgd": (math.inf, 0.0), "clip": (1.0, 0.0), "clip+omega": (1.0, 2.0)}
#: Pascanu et al.'s success test: 0 errors on this many fresh sequences.
SUCCESS_SEQUENCES = 10_000
SUCCESS_BATCH = 200


def parse_args(argv=None):
    parser = cli.Parser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/pascanu2013"))
    parser.add_argument("--lengths", type=int, nargs="+", default=[15, 30, 60],
                        help="T: each batch draws its length L uniformly in [T/2, T]")  # fmt: skip
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=5000, help="SGD updates per run")
    parser.add_argument("--check-every", type=int, default=500)
    parser.add_argument("--check-size", type=int, default=1000)
    parser.add_argument("--hidden-size", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--alpha", type=float, default=2.0)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny smoke-test sizes")
    args = parser.parse_args(argv)
    if args.quick:
        args.lengths, args.seeds, args.steps, args.check_every = [12], 2, 40, 20
        args.check_size, args.hidden_size = 200, 8
    parser.check_at_least(
        args, 1, "seeds", "steps", "check_every", "check_size", "hidden_size", "batch_size"
    )
    if args.steps % args.check_every:
        parser.error(f"--check-every={args.check_every} must divide --steps={args.steps}")
    if min(args.lengths) < 10:
        parser.error("--lengths must be >= 10 (the relevant windows are L/10 wide)")
    return args


def min_length(length: int) -> int:
    return max(10, length // 2)


def make_config(args, length: int, omega: bool) -> TrainConfig:
    """The engine's config of one length; ``omega`` compiles Omega in (alpha is an hparam)."""
    return TrainConfig(
        task="temporal_order",
        length=length,
        task_options={"variant": "pascanu", "min_length": min_length(length)},
        cell="rnn",
        cell_options={
            "recurrent_init": "smart_tanh",
            "input_init": "small_normal",
            "bias_init": "zeros",
        },  # fmt: skip
        hidden_size=args.hidden_size,
        optimizer="sgd",
        momentum=0.0,
        learning_rate=args.learning_rate,
        clip_norm=1.0,
        batch_size=args.batch_size,
        steps=args.steps,
        chunk_steps=args.check_every,
        pascanu_alpha=args.alpha if omega else 0.0,
        seed=args.seed,
    )


def error_count(trainer, params, hparams, key, sequences: int, batch: int):
    """Misclassified sequences among ``sequences`` fresh ones (one length per batch)."""
    model = trainer.model(hparams)

    def one(batch_key):
        sample = trainer.task.sample(batch_key, batch)
        outputs = model.apply(params, sample.inputs, sample.lengths)
        wrong = (jnp.argmax(outputs, -1) != sample.targets) | ~jnp.all(jnp.isfinite(outputs), -1)
        return jnp.sum(wrong)

    return jnp.sum(jax.lax.map(one, jax.random.split(key, sequences // batch)))


def run_group(args, length: int, methods: list[str], key, bar) -> list[dict]:
    """Trains ``methods x seeds`` runs of one length as one vmapped program."""
    omega = any(METHODS[m][1] > 0 for m in methods)
    trainer = make_train(make_config(args, length, omega))
    base = trainer.default_hparams()
    runs = [(m, s) for m in methods for s in range(args.seeds)]
    hparams = {name: jnp.full((len(runs),), value) for name, value in base.items()}
    hparams["clip_norm"] = jnp.asarray([METHODS[m][0] for m, _ in runs], jnp.float32)
    if omega:
        hparams["pascanu_alpha"] = jnp.asarray(
            [args.alpha * (METHODS[m][1] > 0) for m, _ in runs], jnp.float32
        )
    # The same seed gives the same init and data to every method (paired comparison).
    keys = jnp.stack([jax.random.fold_in(key, s) for _, s in runs])
    check_size = max(args.batch_size, args.check_size // args.batch_size * args.batch_size)

    def init(run_key, hp):
        state = trainer.init(run_key, hp)
        weight = state.params["readout"]["weight"]
        readout = {  # their W_out ~ N(0, 0.01^2) (the engine's default is N(0, 1/H))
            "weight": 0.01 * jax.random.normal(jax.random.fold_in(run_key, 7), weight.shape),
            "bias": jnp.zeros_like(state.params["readout"]["bias"]),
        }
        return state._replace(params={**state.params, "readout": readout})

    def chunk(state, hp, check_key):
        state, metrics = trainer.train_chunk(state, hp)
        errors = error_count(trainer, state.params, hp, check_key, check_size, args.batch_size)
        return state, {
            "train_loss": jnp.mean(metrics["loss"]),
            "grad_norm": jnp.median(metrics["grad_norm"]),
            "clip_rate": jnp.mean(metrics["clipped"].astype(jnp.float32)),
            "error_rate": errors / check_size,
            "diverged": state.diverged_step >= 0,
        }

    def final(state, hp, test_key):
        return error_count(trainer, state.params, hp, test_key, SUCCESS_SEQUENCES, SUCCESS_BATCH)

    jit = jax.jit
    if args.quick:  # compilation dominates a smoke test; XLA's optimizations only lengthen it
        jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})
    states = jit(jax.vmap(init))(keys, hparams)
    step_chunk = jit(jax.vmap(chunk, (0, 0, None)))
    curves = []
    for index in range(args.steps // args.check_every):
        check_key = jax.random.fold_in(jax.random.fold_in(key, 1_000_003), index)
        states, metrics = step_chunk(states, hparams, check_key)
        metrics = jax.device_get(metrics)
        for r, (method, seed) in enumerate(runs):
            curves.append({"T": length, "method": method, "seed": seed,
                           "step": (index + 1) * args.check_every,
                           **{k: float(v[r]) for k, v in metrics.items()}})  # fmt: skip
        bar.update(1)
    test_key = jax.random.fold_in(key, 2_000_003)  # fresh: never seen in training or checks
    errors = jax.device_get(jit(jax.vmap(final, (0, 0, None)))(states, hparams, test_key))
    rows = []
    for r, (method, seed) in enumerate(runs):
        run_curve = [c for c in curves if c["method"] == method and c["seed"] == seed]
        solved = [c["step"] for c in run_curve if c["error_rate"] == 0]
        rows.append({
            "T": length, "L_min": min_length(length), "method": method, "seed": seed,
            "test_errors": int(errors[r]), "success": bool(errors[r] == 0),
            "first_check_without_errors": solved[0] if solved else None,
            "final_check_error_rate": run_curve[-1]["error_rate"],
            "diverged": bool(run_curve[-1]["diverged"]),
        })  # fmt: skip
    return rows, curves


def success_table(rows: list[dict], methods, lengths) -> dict:
    """``{method: {T: {"successes", "runs", "rate"}}}``."""
    table = {}
    for method in methods:
        table[method] = {}
        for length in lengths:
            runs = [r for r in rows if r["method"] == method and r["T"] == length]
            wins = sum(r["success"] for r in runs)
            table[method][str(length)] = {"successes": wins, "runs": len(runs),
                                          "rate": wins / len(runs)}  # fmt: skip
    return table


def plot_success(table, methods, lengths, path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for method in methods:
        rates = [table[method][str(t)]["rate"] for t in lengths]
        ax.plot(lengths, rates, marker="o", label=method)
    ax.set_xlabel("T (lengths L ~ U[T/2, T])")
    ax.set_ylabel("success rate (0 errors / 10,000)")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("Temporal order, Pascanu et al. protocol")
    ax.legend()
    plots.save(fig, path)


def plot_curves(curves, methods, lengths, path):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(lengths), figsize=(4.2 * len(lengths), 3.6), squeeze=False)
    colors = dict(zip(methods, ["C0", "C1", "C2"], strict=False))
    for ax, length in zip(axes[0], lengths, strict=True):
        for method in methods:
            seeds = sorted({c["seed"] for c in curves if c["method"] == method})
            for seed in seeds:
                run = [
                    c for c in curves if (c["T"], c["method"], c["seed"]) == (length, method, seed)
                ]
                ax.plot([c["step"] for c in run], [c["error_rate"] for c in run],
                        color=colors[method], alpha=0.6, lw=1,
                        label=method if seed == seeds[0] else None)  # fmt: skip
        ax.set_title(f"T = {length}")
        ax.set_xlabel("SGD updates")
        ax.set_ylim(-0.02, 0.8)
        ax.axhline(0.75, color="gray", lw=0.8, ls=":")
    axes[0][0].set_ylabel("error rate on fresh sequences")
    axes[0][0].legend()
    plots.save(fig, path)


def main(argv=None) -> dict:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    key = jax.random.key(args.seed)
    configs = {t: dataclasses.asdict(make_config(args, t, True)) for t in args.lengths}
    io.write_config(args.out, "pascanu2013", vars(args), details={
        "train_configs": configs, "methods": {m: METHODS[m] for m in args.methods},
        "success_sequences": SUCCESS_SEQUENCES,
    })  # fmt: skip
    # Omega costs a few BPTT passes, so only clip+omega pays for it; --quick compiles one
    # program for all methods instead (alpha = 0 leaves Omega out of the others' updates).
    groups = [[m for m in args.methods if METHODS[m][1] == 0],
              [m for m in args.methods if METHODS[m][1] > 0]]  # fmt: skip
    groups = [args.methods] if args.quick else [g for g in groups if g]
    rows, curves, timings = [], [], {}
    total = len(args.lengths) * len(groups) * (args.steps // args.check_every)
    with Progress(total, "pascanu2013", unit="checks") as bar:
        for length in args.lengths:
            for group in groups:
                tic = time.perf_counter()
                group_rows, group_curves = run_group(args, length, group, key, bar)
                timings[f"T={length} {'+'.join(group)}"] = time.perf_counter() - tic
                rows += group_rows
                curves += group_curves
    io.write_csv(args.out / "runs.csv", rows)
    io.write_csv(args.out / "curves.csv", curves)
    table = success_table(rows, args.methods, args.lengths)
    plot_success(table, args.methods, args.lengths, args.out / "success.png")
    plot_curves(curves, args.methods, args.lengths, args.out / "curves.png")
    summary = {
        "success_table": table,
        "updates_per_run": args.steps,
        "seeds": args.seeds,
        "lengths": {str(t): [min_length(t), t] for t in args.lengths},
        "seconds_per_group": timings,
        "wall_time_s": time.perf_counter() - started,
    }
    io.write_json(args.out / "summary.json", summary)
    for method in args.methods:
        cells = "  ".join(f"T={t}: {table[method][str(t)]['successes']}/{args.seeds}"
                          for t in args.lengths)  # fmt: skip
        print(f"{method:>11}  {cells}")
    return summary


if __name__ == "__main__":
    main()
    sys.exit(0)
