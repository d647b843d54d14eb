"""Vanishing and exploding gradients in time: ||dL/dcarry_t|| against t for any registered cell.

Two studies, each measured at initialization with
:func:`rnnlab.diagnostics.carry_grad_norms` (one backward pass per batch) for a loss on
the last output (a random linear readout with a squared error), in float64 so that
ratios down to 1e-300 stay measurable.  Every configuration of a family at one length
runs as one jitted program vmapped over the family's swept hyperparameter and seeds.

1. The classic study: tanh RNNs with orthogonal recurrent init scaled to spectral radius
   rho (``--rhos``), LSTMs with forget-gate bias 0, 1 and 2 (``--forget-biases``), and the
   GRU, at ``--lengths``.  ``curves_T{T}.png``: ``||dL/dh_t|| / ||dL/dh_T||`` against t,
   median over seeds x inputs with a 10-90th percentile band, and the Pascanu et al. 2013
   bound ``eta^(T-t)``, ``eta = sigma_max(W_hh)``, for the tanh RNN; ``decay.png``: the
   decay ratio ``||dL/dh_1|| / ||dL/dh_T||`` against T.
2. The cell comparison (``--cells``, any registered cells, ``NAME`` or
   ``NAME:HYPERPARAMETER=v1,v2``): the decay ratio against T up to ``--cell-lengths``'s
   largest (1000 by default), in ``decay_cells.png``.  Every carry leaf is measured and
   labelled with its name (``h`` and ``c`` for the LSTM, ``y`` and ``z`` for coRNN and
   LEM, the complex state ``h`` for the LRU); with several leaves the first is dashed.

For a leaf that a loss on ``y_T`` cannot see at step T (the LSTM's ``c_T``), the ratio's
denominator is its last step with a non-zero norm (``T - 1``;
:func:`rnnlab.diagnostics.decay_ratio`).  With ``--train-steps N`` the classic curves
are also measured after N steps of :mod:`rnnlab.train` on the adding problem.

Artifacts in ``--out``: ``config.json``, ``summary.json``, ``curves.csv`` (median and
band per step), ``ratios.csv`` (every sample's ratio) and the PNGs.

Run: ``.venv/bin/python experiments/grad_norms.py [--quick] [--out DIR]``.
"""

from __future__ import annotations

import functools
import math
import sys
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import cells, cli, diagnostics, io, plots, runtime
from rnnlab.plots import grad_norms as grad_norm_plots
from rnnlab.progress import Progress
from rnnlab.train import TrainConfig, make_train, runner, train_grid
from rnnlab.train.engine import init_readout

#: Percentiles of the shaded bands.
BAND = (10, 90)
#: Input features: two, as in the adding problem, so trained params fit the same code.
FEATURES = 2
#: The cell comparison of ``make run``: modern cells beside the tanh RNN and the LSTM.
DEFAULT_CELLS = (
    "rnn",
    "lstm",
    "lru:r_min=0,0.9,0.99",
    "mingru",
    "cornn",
    "lem",
    "indrnn",
    "orthogonal",
)
#: ``--quick``: tiny sizes for a smoke test (flags given explicitly win).
QUICK = {
    "lengths": [20, 40],
    "cell_lengths": [20, 60],
    "hidden_size": 16,
    "seeds": 2,
    "batch_size": 2,
    "train_length": 20,
}


class Family(NamedTuple):
    """A registered cell, swept over one of its sweepable hyperparameters (or none)."""

    name: str  # the summary key, e.g. "tanh"
    cell: str  # the registry name
    title: str
    parameter: str  # the hyperparameter swept, "" for none
    symbol: str  # its symbol in legends
    values: tuple[float, ...]

    def make_cell(self, value, hidden_size: int, dtype=jnp.float64) -> cells.Cell:
        options = {self.parameter: value} if self.parameter else {}
        if "param_dtype" in cells.spec(self.cell).defaults:
            options["param_dtype"] = dtype
        return cells.make(self.cell, hidden_size, **options)

    def label(self, value) -> str:
        """Legend entry, e.g. ``"ρ = 0.9"``."""
        return f"{self.symbol} = {value:g}" if self.parameter else self.title.split(",")[0]

    def key(self, value) -> str:
        """Summary key, e.g. ``"recurrent_scale=0.9"``."""
        return f"{self.parameter}={value:g}" if self.parameter else "default"


def classic_families(args) -> list[Family]:
    return [
        Family("tanh", "rnn", "tanh RNN, orthogonal init", "recurrent_scale", "ρ", args.rhos),
        Family("lstm", "lstm", "LSTM, uniform init", "forget_bias", "forget bias",
               args.forget_biases),
        Family("gru", "gru", "GRU, uniform init", "", "", (0.0,)),
    ]  # fmt: skip


def parse_cell_family(text: str) -> Family:
    """``NAME`` or ``NAME:HYPERPARAMETER=v1,v2`` -> a :class:`Family` (``--cells``)."""
    name, _, sweep = text.partition(":")
    spec = cells.spec(name)  # ValueError naming the registered cells
    if not sweep:
        return Family(name, name, name, "", "", (0.0,))
    parameter, _, values = sweep.partition("=")
    if parameter not in spec.sweepable:
        raise ValueError(
            f"{parameter!r} is not a sweepable hyperparameter of {name!r}; it has {spec.sweepable}"
        )
    numbers = tuple(float(v) for v in values.split(",") if v.strip())
    if not numbers:
        raise ValueError(f"no values after {parameter}= in {text!r}")
    return Family(name, name, name, parameter, f"{name} {parameter}", numbers)


def parse_args(argv=None):
    parser = cli.Parser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="results/grad_norms")
    parser.add_argument("--lengths", type=int, nargs="+", default=[50, 100, 200, 400])
    parser.add_argument("--rhos", type=float, nargs="+", default=[0.5, 0.9, 1.0, 1.5])
    parser.add_argument("--forget-biases", type=float, nargs="+", default=[0.0, 1.0, 2.0])
    parser.add_argument(
        "--cells", nargs="*", default=list(DEFAULT_CELLS),
        help="cells compared in decay_cells.png: NAME or NAME:HYPERPARAMETER=v1,v2",
    )  # fmt: skip
    parser.add_argument("--cell-lengths", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--seeds", type=int, default=8, help="parameter draws per config")
    parser.add_argument("--batch-size", type=int, default=8, help="input sequences per seed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--train-steps", type=int, default=0,
        help="also re-measure after this many steps of rnnlab.train on the adding task",
    )  # fmt: skip
    parser.add_argument("--train-length", type=int, default=100)
    parser.add_argument("--train-seeds", type=int, default=2)
    cli.add_preset_switch(parser, QUICK, "tiny smoke-test sizes")
    args = cli.parse_with_preset(parser, argv, QUICK)
    args.rhos, args.forget_biases = tuple(args.rhos), tuple(args.forget_biases)
    args.lengths, args.cell_lengths = sorted(args.lengths), sorted(args.cell_lengths)
    parser.check_at_least(args, 1, "hidden_size", "seeds", "batch_size", "train_seeds",
                          "train_length")  # fmt: skip
    parser.check_at_least(args, 0, "seed", "train_steps")
    parser.check_at_least(args, 2, "lengths", "cell_lengths",
                          reason="the ratio compares step 1 with step T")  # fmt: skip
    for name in ("rhos", "forget_biases"):
        if not all(math.isfinite(v) for v in getattr(args, name)):
            cli.fail(cli.flag_of(name), f"must be finite, got {getattr(args, name)}")
    try:
        args.cell_families = [parse_cell_family(text) for text in args.cells]
    except ValueError as error:
        cli.fail("--cells", str(error))
    needed, available = memory_needed(args), runner.available_memory()
    if available is not None and needed > available:
        cli.fail(
            "--hidden-size",
            f"the study needs about {runner.format_bytes(needed)} (float64 params and carries "
            f"of {args.seeds} seeds x batch {args.batch_size} x T "
            f"{max(args.lengths + args.cell_lengths)}) but the device has "
            f"{runner.format_bytes(available)}; lower --hidden-size, --seeds or the lengths",
        )
    return args


def memory_needed(args) -> int:
    """A rough bound, from shapes alone, of the bytes the largest family's program holds:
    float64 params (with their gradients) and the per-step carries kept for the backward."""
    steps = max(args.lengths + args.cell_lengths)
    needed = 0
    for family in [*classic_families(args), *args.cell_families]:
        cell = family.make_cell(family.values[0], args.hidden_size, jnp.float32)
        params = jax.eval_shape(lambda cell=cell: cell.init(jax.random.key(0), FEATURES))
        carry = jax.eval_shape(lambda cell=cell: cell.initial_carry(()))
        sizes = [sum(leaf.size for leaf in jax.tree.leaves(tree)) for tree in (params, carry)]
        per_config = 3 * sizes[0] + 8 * args.batch_size * steps * sizes[1]
        needed = max(needed, 8 * len(family.values) * args.seeds * per_config)
    return needed


# --------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------


def readout_loss(ys: jax.Array, readout: dict, targets: jax.Array) -> jax.Array:
    """``L(ys) = 1/2 sum_b (y_T W + b - y_b)^2``, a squared error on the last output."""
    last = ys[..., -1, :] @ readout["weight"] + readout["bias"]
    return 0.5 * jnp.sum(jnp.square(last - targets))


def measure(family: Family, hidden: int, values, params, readouts, inputs, targets):
    """``(norms, eta)`` of :func:`rnnlab.diagnostics.carry_grad_norms_grid` for
    :func:`readout_loss`: leaves ``[C, S, B, T]`` and ``eta [C, S]`` (or None).

    ``values [C]``; ``params`` and ``readouts`` with leading ``[C, S]``; ``inputs
    [S, B, T, F]`` and ``targets [S, B, O]`` shared across configurations.
    """
    return diagnostics.carry_grad_norms_grid(
        family.make_cell, hidden, values, params, inputs, readout_loss, readouts, targets,
        per_example=True,
    )  # fmt: skip


@functools.partial(jax.jit, static_argnames=("family", "hidden_size"))
def init_params(family: Family, hidden_size: int, values, keys):
    """Float64 cell params (leaves ``[C, S, ...]``) and, per seed, a random readout
    ``N(0, 1/H)`` (leaves ``[C, S, H, 1]``, the same for every value)."""
    cell_keys, readout_keys = jax.vmap(jax.random.split)(keys).T
    params = diagnostics.init_grid(family.make_cell, hidden_size, values, cell_keys, FEATURES)
    readout = jax.vmap(lambda key: init_readout(key, hidden_size, 1, jnp.float64))(readout_keys)
    return params, jax.tree.map(lambda r: jnp.broadcast_to(r, (len(values), *r.shape)), readout)


def leaf_names(family: Family, hidden: int) -> list[str]:
    return diagnostics.carry_leaf_names(family.make_cell(family.values[0], hidden))


class Measured(NamedTuple):
    """Per-sample curves of one family at one length, as float64 NumPy arrays."""

    leaves: dict[str, np.ndarray]  # {"h": [C, N, T], "c": ...}, N = seeds x batch
    eta: np.ndarray | None  # [C, S]


def to_measured(names: list[str], norms, eta) -> Measured:
    leaves = {
        name: np.asarray(value, np.float64).reshape(value.shape[0], -1, value.shape[-1])
        for name, value in zip(names, jax.tree.leaves(norms), strict=True)
    }
    return Measured(leaves, None if eta is None else np.asarray(eta, np.float64))


def band_stats(samples: np.ndarray) -> dict[str, np.ndarray]:
    return diagnostics.band_stats(samples, BAND)


def measure_study(study: list[Family], lengths, args, key, label) -> dict:
    """``{(family, T): Measured}`` for every family at every length, from N(0, 1) inputs."""
    param_key, data_key = jax.random.split(key)
    seed_keys = jax.random.split(param_key, args.seeds)
    measured = {}
    with Progress(len(study) * len(lengths), label, unit="runs") as bar:
        for family in study:
            values = jnp.asarray(family.values, jnp.float64)
            params, readouts = init_params(family, args.hidden_size, values, seed_keys)
            names = leaf_names(family, args.hidden_size)
            for length in lengths:
                x_key, y_key = jax.random.split(jax.random.fold_in(data_key, length))
                shape = (args.seeds, args.batch_size, length, FEATURES)
                inputs = jax.random.normal(x_key, shape, jnp.float64)
                targets = jax.random.normal(y_key, (args.seeds, args.batch_size, 1), jnp.float64)
                norms, eta = measure(
                    family, args.hidden_size, values, params, readouts, inputs, targets
                )
                measured[family.name, length] = to_measured(names, norms, eta)
                bar.update(1, family=family.name, T=length)
    return measured


# --------------------------------------------------------------------------------------
# Summaries and figures
# --------------------------------------------------------------------------------------


def panel_curves(family: Family, measured: Measured) -> list[grad_norm_plots.Curve]:
    labels = [family.label(value) for value in family.values]
    return grad_norm_plots.panel_curves(labels, measured.leaves, measured.eta, BAND)


def curve_rows(family: Family, length: int, measured: Measured) -> list[dict]:
    """``curves.csv`` rows: per step, the median raw norm and the normalized curve."""
    rows = []
    configs = [(value, leaf) for value in family.values for leaf in measured.leaves]
    for (value, leaf), curve in zip(configs, panel_curves(family, measured), strict=True):
        raw = np.median(measured.leaves[leaf][family.values.index(value)], axis=0)
        for t in range(length):
            rows.append(
                {
                    "family": family.name, "config": family.key(value), "leaf": leaf,
                    "length": length, "t": t + 1, "median_norm": raw[t],
                    "median_normalized": curve.median[t],
                    f"p{BAND[0]}_normalized": curve.low[t],
                    f"p{BAND[1]}_normalized": curve.high[t],
                    "pascanu_bound": None if curve.bound is None else curve.bound[t],
                }
            )  # fmt: skip
    return rows


def summarize(study: list[Family], lengths, measured, key: str, summary: dict):
    """Adds ``summary[key][family][config][leaf][T]`` (median decay ratios) and the detail;
    returns ``(ratio_rows, curve_rows)``."""
    ratio_rows, rows = [], []
    for family in study:
        for length in lengths:
            m = measured[family.name, length]
            rows += curve_rows(family, length, m)
            for c, value in enumerate(family.values):
                for leaf, curves in m.leaves.items():
                    ratios = diagnostics.decay_ratio(curves[c])
                    stats = band_stats(ratios)
                    by_config = summary[key].setdefault(family.name, {})
                    by_leaf = by_config.setdefault(family.key(value), {})
                    by_leaf.setdefault(leaf, {})[str(length)] = stats["median"]
                    where = {"study": key, "family": family.name, "config": family.key(value),
                             "leaf": leaf, "length": length}  # fmt: skip
                    summary[f"{key}_detail"].append({**where, **stats, "samples": ratios.size})
                    ratio_rows += [{**where, "sample": i, "ratio": r} for i, r in enumerate(ratios)]
    return ratio_rows, rows


def decay_series(family: Family, lengths, measured) -> list[grad_norm_plots.DecaySeries]:
    labels = [family.label(value) for value in family.values]
    by_length = [measured[family.name, length].leaves for length in lengths]
    return grad_norm_plots.decay_series(labels, lengths, by_length, BAND)


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def main(argv=None) -> dict:
    args = parse_args(argv)
    study, compared = classic_families(args), args.cell_families
    resolved = {k: v for k, v in vars(args).items() if k not in ("cell_families", "out", "quick")}
    with cli.usage_errors():
        folder = io.RunFolder.open(args.out, "grad_norms", resolved, argument="--out")
    if folder.finished:
        print(folder.finished_message(), flush=True)
        return io.read_json(folder.path / io.SUMMARY_FILE)
    runtime.configure()  # compilation cache; allocator (no per-step page faults at long T)
    with cli.usage_errors(plain=False), folder.lock():
        args.out = folder.path
        folder.start(
            {
                "families": {f.name: {"cell": f.cell, f.parameter or "none": f.values}
                             for f in study},
                "compared_cells": {f.name: {f.parameter or "none": f.values} for f in compared},
                "features": FEATURES,
                "loss": "0.5 * sum_b (y_T W + b - y_b)^2, W ~ N(0, 1/H), y ~ N(0, 1)",
                "inputs": "x ~ N(0, 1) i.i.d.",
                "dtype": "float64",
                "band_percentiles": BAND,
            }
        )  # fmt: skip
        summary = measure_and_report(args, study, compared)
        folder.finish(wall_time_s=summary["wall_time_s"])
    return summary


def measure_and_report(args, study: list[Family], compared: list[Family]) -> dict:
    """Both studies (and the optional training), their files and figures; the summary."""
    start_time = time.perf_counter()
    out = args.out
    measure_key, train_key, cells_key = jax.random.split(jax.random.key(args.seed), 3)
    band = f"{BAND[0]}-{BAND[1]}th percentile"
    summary = {
        "definition": {
            "decay_ratio": "median over seeds x inputs of ||dL/dcarry_1|| / ||dL/dcarry_last||"
            " per carry leaf; last = T, or T-1 for a leaf a loss on y_T cannot see at T "
            "(the LSTM's c)",
            "band": f"{BAND[0]}-{BAND[1]}th percentiles",
        },
        "decay_ratio": {},
        "decay_ratio_detail": [],
        "decay_ratio_cells": {},
        "decay_ratio_cells_detail": [],
        # REFERENCES.md: LSTM at init, H=64, T=100, ||dL/dc_1|| / ||dL/dc_T||.
        "reference_lstm_c_T100": {"forget_bias=0": 2e-19, "forget_bias=1": 1e-6,
                                  "forget_bias=2": 4e-2},
    }  # fmt: skip
    with jax.enable_x64(True):
        measured = measure_study(study, args.lengths, args, measure_key, "grad norms")
        ratio_rows, rows = summarize(study, args.lengths, measured, "decay_ratio", summary)
        for length in args.lengths:
            panels = {f.title: panel_curves(f, measured[f.name, length]) for f in study}
            title = f"Gradient norms at initialization (H={args.hidden_size}, T={length}, " \
                    "loss on the last output)"  # fmt: skip
            figure = grad_norm_plots.curves_figure(panels, length=length, band=band, title=title)
            plots.save(figure, out / f"curves_T{length}.png")
        decay_panels = {f.title: decay_series(f, args.lengths, measured) for f in study}
        title = (
            f"Decay of the gradient with sequence length at initialization (H={args.hidden_size})"
        )
        plots.save(
            grad_norm_plots.decay_figure(decay_panels, band=band, title=title), out / "decay.png"
        )
        if compared:
            lengths = args.cell_lengths
            by_cell = measure_study(compared, lengths, args, cells_key, "cell comparison")
            more_ratios, more_rows = summarize(
                compared, lengths, by_cell, "decay_ratio_cells", summary
            )
            ratio_rows, rows = ratio_rows + more_ratios, rows + more_rows
            series = [s for f in compared for s in decay_series(f, lengths, by_cell)]
            title = (
                f"Gradient decay ||dL/dcarry_1|| / ||dL/dcarry_T|| at initialization "
                f"(H={args.hidden_size}; dashed: the first of several carry leaves)"
            )
            figure = grad_norm_plots.comparison_figure(series, band=band, title=title)
            plots.save(figure, out / "decay_cells.png")
        io.write_csv(out / "curves.csv", rows)
        io.write_csv(out / "ratios.csv", ratio_rows)

    if args.train_steps:
        summary["trained"] = train_and_remeasure(study, args, train_key, out)

    summary["wall_time_s"] = time.perf_counter() - start_time
    io.write_json(out / "summary.json", summary)
    pngs = " ".join(sorted(p.name for p in out.glob("*.png")))
    print(f"wrote {out}/: config.json summary.json curves.csv ratios.csv {pngs}", flush=True)
    return summary


def trained_params(family: Family, args, key):
    """Trains every configuration of ``family`` on the adding problem (Le et al. 2015).

    One vmapped, jitted run of :func:`rnnlab.train.train_grid` over configurations x
    ``args.train_seeds`` seeds, ``args.train_steps`` Adam steps at ``T =
    args.train_length``; the family's hyperparameter is a traced ``hparams`` entry.

    Returns:
      ``(init, trained, history, task)``: params dicts ``{"cell", "readout"}`` with
      leading ``[C, S]`` axes before and after training (float64), the training
      history ``[C, S, chunks]`` and the task (for evaluation batches).
    """
    chunk = math.gcd(args.train_steps, 100)
    trainer = make_train(
        TrainConfig(
            task="adding", length=args.train_length, cell=family.cell,
            hidden_size=args.hidden_size, steps=args.train_steps, chunk_steps=chunk,
            eval_batch_size=256, learning_rate=3e-3, clip_norm=1.0,
        )
    )  # fmt: skip
    keys = jax.random.split(key, args.train_seeds)
    hparams = {family.parameter: family.values} if family.parameter else None
    start, trained, history = train_grid(trainer, keys, hparams)
    as64 = functools.partial(jax.tree.map, lambda a: np.asarray(a, np.float64))
    return as64(start), as64(trained), history, trainer.task


def train_and_remeasure(study: list[Family], args, key, out) -> dict:
    """The hook into :mod:`rnnlab.train`: train briefly on the adding problem, then
    measure the same curves (on adding-problem inputs, with the model's own readout and
    targets) before and after training."""
    results, panels = {}, {}
    with Progress(len(study), "train + re-measure", unit="families") as bar:
        for family in study:
            start, trained, history, task = trained_params(family, args, key)
            batch = task.sample(jax.random.key(args.seed + 1), args.batch_size)
            inputs, targets = (
                np.broadcast_to(np.asarray(a, np.float64), (args.train_seeds, *a.shape))
                for a in (batch.inputs, batch.targets)
            )
            values = np.asarray(family.values, np.float64)
            names = leaf_names(family, args.hidden_size)
            curves = {}
            with jax.enable_x64(True):
                for stage, params in (("init", start), ("trained", trained)):
                    norms, eta = measure(family, args.hidden_size, values, params["cell"],
                                         params["readout"], inputs, targets)  # fmt: skip
                    curves[stage] = to_measured(names, norms, eta)
                panels[family.title] = [
                    curve._replace(
                        label=f"{curve.label.split(' (')[0]} ({stage})",
                        dashed=stage == "init",
                        bound=None if stage == "init" else curve.bound,
                    )
                    for stage in ("init", "trained")
                    for curve in panel_curves(family, curves[stage])
                    if "(h)" not in curve.label or len(names) == 1
                ]
            test_loss = np.asarray(history["final_test_loss"])
            for c, value in enumerate(family.values):
                for leaf in curves["init"].leaves:
                    ratio = {
                        stage: float(np.median(diagnostics.decay_ratio(
                            curves[stage].leaves[leaf][c])))
                        for stage in curves
                    }  # fmt: skip
                    by_config = results.setdefault(family.name, {}).setdefault(
                        family.key(value), {}
                    )
                    by_config[leaf] = ratio
                    by_config["final_test_mse"] = test_loss[c].tolist()
            bar.update(1, family=family.name)
    title = (
        f"Before (dashed) and after (solid) {args.train_steps} Adam steps on the adding problem "
        f"(T={args.train_length}, H={args.hidden_size}; LSTM: cell state)"
    )
    band = f"{BAND[0]}-{BAND[1]}th percentile"
    with jax.enable_x64(True):
        figure = grad_norm_plots.curves_figure(
            panels, length=args.train_length, band=band, title=title
        )
    plots.save(figure, out / "curves_trained.png")
    return {
        "task": "adding, Le et al. 2015 variant",
        "length": args.train_length,
        "steps": args.train_steps,
        "seeds": args.train_seeds,
        "decay_ratio": results,
    }


if __name__ == "__main__":
    main(sys.argv[1:])
