"""Vanishing and exploding gradients in time: ||dL/dh_t|| against t for RNN, LSTM and GRU.

For tanh RNNs with orthogonal recurrent init scaled to spectral radius rho, LSTMs with
forget-gate bias 0, 1 and 2, and the GRU, at several sequence lengths T, this measures
``||dL/dh_t||`` for a loss on the last hidden state (a random linear readout with a
squared error), with :func:`rnnlab.diagnostics.carry_grad_norms` (one backward pass
per batch).  Every configuration of a family at one length runs as one jitted,
vmapped program over configurations and seeds, in float64 so that ratios down to
1e-300 stay measurable.

Reported:

- ``curves_T{T}.png``: ``||dL/dh_t|| / ||dL/dh_T||`` against t (log scale), one panel
  per family, median over seeds x inputs with a 10-90th percentile band, and the
  Pascanu et al. 2013 bound ``eta^(T-t)``, ``eta = sigma_max(W_hh)``, for the tanh RNN;
- ``decay.png``: the decay ratio ``||dL/dh_1|| / ||dL/dh_T||`` against T;
- with ``--train-steps N``: the same curves on the adding problem before and after N
  steps of :mod:`rnnlab.train` (``curves_trained.png``, ``summary.json["trained"]``).

For the LSTM both carry leaves are measured: ``h`` and the cell state ``c``.  A loss
on ``h_T`` cannot see ``c_T`` (``h_T`` is formed before ``c_T`` leaves the last step),
so the cell-state ratio is ``||dL/dc_1|| / ||dL/dc_{T-1}||``.

Artifacts in ``--out``: ``config.json``, ``summary.json``, ``curves.csv`` (median and
band per step), ``ratios.csv`` (every sample's ratio) and the PNGs.

Run: ``.venv/bin/python experiments/grad_norms.py [--quick] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import rnnlab
from rnnlab import diagnostics, io, plots, runtime
from rnnlab.plots import grad_norms as grad_norm_plots
from rnnlab.progress import Progress
from rnnlab.train import TrainConfig, make_train

#: Percentiles of the shaded bands.
BAND = (10, 90)
#: Input features: two, as in the adding problem, so trained params fit the same code.
FEATURES = 2


class Family(NamedTuple):
    """A cell family swept over one hyperparameter (``values``)."""

    name: str
    title: str
    parameter: str  # the hyperparameter swept, "" for none
    symbol: str  # its symbol in legends
    values: tuple[float, ...]
    train_cell: str  # TrainConfig.cell

    def make_cell(self, value, hidden: int, dtype=jnp.float64) -> rnnlab.Cell:
        if self.name == "tanh":
            return rnnlab.rnn(hidden, "tanh", recurrent_scale=value, param_dtype=dtype)
        if self.name == "lstm":
            return rnnlab.lstm(hidden, forget_bias=value, param_dtype=dtype)
        return rnnlab.gru(hidden, param_dtype=dtype)

    def label(self, value) -> str:
        """Legend entry, e.g. ``"ρ = 0.9"``."""
        return f"{self.symbol} = {value:g}" if self.parameter else self.title.split(",")[0]

    def key(self, value) -> str:
        """Summary key, e.g. ``"recurrent_scale=0.9"``."""
        return f"{self.parameter}={value:g}" if self.parameter else "default"


def families(args) -> list[Family]:
    return [
        Family("tanh", "tanh RNN, orthogonal init", "recurrent_scale", "ρ", args.rhos, "rnn"),
        Family(
            "lstm", "LSTM, uniform init", "forget_bias", "forget bias", args.forget_biases, "lstm"
        ),
        Family("gru", "GRU, uniform init", "", "", (0.0,), "gru"),
    ]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/grad_norms"))
    parser.add_argument("--lengths", type=int, nargs="+", default=[50, 100, 200, 400])
    parser.add_argument("--rhos", type=float, nargs="+", default=[0.5, 0.9, 1.0, 1.5])
    parser.add_argument("--forget-biases", type=float, nargs="+", default=[0.0, 1.0, 2.0])
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--seeds", type=int, default=8, help="parameter draws per config")
    parser.add_argument("--batch", type=int, default=8, help="input sequences per seed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--train-steps", type=int, default=0,
        help="also re-measure after this many steps of rnnlab.train on the adding task",
    )  # fmt: skip
    parser.add_argument("--train-length", type=int, default=100)
    parser.add_argument("--train-seeds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny smoke-test sizes")
    args = parser.parse_args(argv)
    if args.quick:
        args.lengths, args.hidden, args.seeds, args.batch = [20, 40], 16, 2, 2
        args.train_length = min(args.train_length, 20)
    args.rhos, args.forget_biases = tuple(args.rhos), tuple(args.forget_biases)
    args.lengths = sorted(args.lengths)
    for name in ("hidden", "seeds", "batch", "train_seeds", "train_length"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if min(args.lengths) < 2:
        parser.error("--lengths must all be >= 2 (the ratio compares step 1 with step T)")
    return args


# --------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------


def readout_loss(readout: dict, targets: jax.Array):
    """``L(ys) = 1/2 sum_b (h_T W + b - y_b)^2``, a squared error on the last state."""
    return lambda ys: (
        0.5 * jnp.sum(jnp.square(ys[..., -1, :] @ readout["weight"] + readout["bias"] - targets))
    )


@functools.partial(jax.jit, static_argnames=("family", "hidden"))
def measure(family: Family, hidden: int, values, params, readouts, inputs, targets):
    """``||dL/dcarry_t||`` per carry leaf, leaves ``[C, S, B, T]``.

    ``values [C]``; ``params`` and ``readouts`` with leading ``[C, S]``; ``inputs
    [S, B, T, F]`` and ``targets [S, B, O]`` shared across configurations (common
    random numbers).  Also returns the Pascanu ``eta [C, S]`` for the tanh RNN.
    """

    def one(value, cell_params, readout, xs, ys):
        cell = family.make_cell(value, hidden, cell_params["weight_hh"].dtype)
        norms = diagnostics.carry_grad_norms(
            cell, cell_params, xs, readout_loss(readout, ys), per_example=True
        )
        eta = diagnostics.pascanu_eta(cell, cell_params) if family.name == "tanh" else None
        return norms, eta

    over_seeds = jax.vmap(one, in_axes=(None, 0, 0, 0, 0))
    return jax.vmap(over_seeds, in_axes=(0, 0, 0, None, None))(
        values, params, readouts, inputs, targets
    )


@functools.partial(jax.jit, static_argnames=("family", "hidden"))
def init_params(family: Family, hidden: int, values, keys):
    """Cell params and a random readout ``N(0, 1/H)``, leaves ``[C, S, ...]``."""

    def one(value, key):
        cell_key, readout_key = jax.random.split(key)
        weight = jax.random.normal(readout_key, (hidden, 1), jnp.float64) / math.sqrt(hidden)
        readout = {"weight": weight, "bias": jnp.zeros(1, jnp.float64)}
        return family.make_cell(value, hidden).init(cell_key, FEATURES), readout

    return jax.vmap(jax.vmap(one, in_axes=(None, 0)), in_axes=(0, None))(values, keys)


class Measured(NamedTuple):
    """Per-sample curves of one family at one length, as float64 NumPy arrays."""

    leaves: dict[str, np.ndarray]  # {"h": [C, N, T], "c": ...}, N = seeds x batch
    eta: np.ndarray | None  # [C, S]


def to_measured(norms, eta) -> Measured:
    leaves = norms._asdict() if isinstance(norms, rnnlab.LSTMCarry) else {"h": norms}
    leaves = {
        name: np.asarray(value, np.float64).reshape(value.shape[0], -1, value.shape[-1])
        for name, value in leaves.items()
    }
    return Measured(leaves, None if eta is None else np.asarray(eta, np.float64))


def last_informative_step(leaf: str) -> int:
    """Index of the denominator step: ``c_T`` never reaches a loss on ``h_T``."""
    return -2 if leaf == "c" else -1


def decay_ratios(curves: np.ndarray, leaf: str) -> np.ndarray:
    """``||g_1|| / ||g_T||`` per sample: ``[..., T] -> [...]``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return curves[..., 0] / curves[..., last_informative_step(leaf)]


def band_stats(samples: np.ndarray, axis=0) -> dict[str, np.ndarray]:
    """Median, band percentiles and geometric mean over ``axis`` (log-scale quantities)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        log = np.log(samples)
    return {
        "median": np.median(samples, axis=axis),
        "low": np.percentile(samples, BAND[0], axis=axis),
        "high": np.percentile(samples, BAND[1], axis=axis),
        "geomean": np.exp(np.mean(log, axis=axis)),
    }


def normalized(curves: np.ndarray, leaf: str) -> np.ndarray:
    """Curves divided by their value at the last informative step; trailing zeros dropped."""
    step = last_informative_step(leaf)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = curves / curves[..., step : step + 1 if step != -1 else None]
    if step == -2:
        out[..., -1] = np.nan
    return out


# --------------------------------------------------------------------------------------
# Training hook
# --------------------------------------------------------------------------------------


def trained_params(family: Family, args, key):
    """Trains every configuration of ``family`` on the adding problem (Le et al. 2015).

    The hook of this study into :mod:`rnnlab.train`: one vmapped, jitted run over
    configurations x ``args.train_seeds`` seeds, ``args.train_steps`` Adam steps at
    ``T = args.train_length``.

    Returns:
      ``(init, trained, history, task)``: params dicts ``{"cell", "readout"}`` with
      leading ``[C, S]`` axes before and after training (float64), the training
      history ``[C, S, chunks]`` and the task (for evaluation batches).
    """
    chunk = math.gcd(args.train_steps, 100)
    trainer = make_train(
        TrainConfig(
            task="adding",
            length=args.train_length,
            cell=family.train_cell,
            hidden_size=args.hidden,
            steps=args.train_steps,
            chunk_steps=chunk,
            eval_batch_size=256,
            learning_rate=3e-3,
            clip_norm=1.0,
        )  # fmt: skip
    )
    defaults = trainer.default_hparams()
    values = jnp.asarray(family.values, jnp.float32)
    keys = jax.random.split(key, args.train_seeds)

    def run(value, key):
        hparams = dict(defaults)
        if family.parameter:
            hparams[family.parameter] = value
        start = trainer.init(key, hparams).params
        state, history = trainer.train(key, hparams)
        return start, state.params, history

    grid = jax.vmap(jax.vmap(run, in_axes=(None, 0)), in_axes=(0, None))
    start, trained, history = jax.jit(grid)(values, keys)
    as64 = functools.partial(jax.tree.map, lambda a: np.asarray(a, np.float64))
    return as64(start), as64(trained), history, trainer.task


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def panel_curves(family: Family, measured: Measured) -> list[grad_norm_plots.Curve]:
    """One normalized curve per configuration and carry leaf, in ``family.values`` order
    (for the LSTM: ``h`` dashed, then ``c``), with the Pascanu bound for the tanh RNN."""
    curves = []
    for c, value in enumerate(family.values):
        for leaf, samples in measured.leaves.items():
            stats = band_stats(normalized(samples[c], leaf))
            bound = None
            if measured.eta is not None:
                steps = samples.shape[-1]
                bound = np.asarray(diagnostics.pascanu_bound(np.median(measured.eta[c]), steps))
            label = family.label(value)
            if len(measured.leaves) > 1:
                label += f" ({'cell state c' if leaf == 'c' else 'hidden h'})"
            dashed = leaf == "h" and len(measured.leaves) > 1
            curves.append(
                grad_norm_plots.Curve(
                    label, stats["median"], stats["low"], stats["high"], bound, dashed
                )
            )
    return curves


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


def measure_study(study: list[Family], args, key) -> dict[tuple[str, int], Measured]:
    """Every family at every length, from N(0, 1) inputs; float64 (call under x64)."""
    param_key, data_key = jax.random.split(key)
    seed_keys = jax.random.split(param_key, args.seeds)
    measured = {}
    with Progress(len(study) * len(args.lengths), "grad norms", unit="runs") as bar:
        for family in study:
            values = jnp.asarray(family.values, jnp.float64)
            params, readouts = init_params(family, args.hidden, values, seed_keys)
            for length in args.lengths:
                x_key, y_key = jax.random.split(jax.random.fold_in(data_key, length))
                shape = (args.seeds, args.batch, length, FEATURES)
                inputs = jax.random.normal(x_key, shape, jnp.float64)
                targets = jax.random.normal(y_key, (args.seeds, args.batch, 1), jnp.float64)
                norms, eta = measure(family, args.hidden, values, params, readouts, inputs, targets)
                measured[family.name, length] = to_measured(norms, eta)
                bar.update(1, family=family.name, T=length)
    return measured


def summarize(study: list[Family], args, measured) -> tuple[dict, list[dict], list[dict]]:
    """``(summary, ratio_rows, curve_rows)`` of the measurements."""
    summary = {
        "definition": {
            "decay_ratio": "median over seeds x inputs of ||dL/dh_1|| / ||dL/dh_T|| (h); "
            "||dL/dc_1|| / ||dL/dc_{T-1}|| for the LSTM cell state c",
            "band": f"{BAND[0]}-{BAND[1]}th percentiles",
        },
        "decay_ratio": {},
        "decay_ratio_detail": [],
        # REFERENCES.md: LSTM at init, H=64, T=100, ||dL/dc_1|| / ||dL/dc_T||.
        "reference_lstm_c_T100": {
            "forget_bias=0": 2e-19,
            "forget_bias=1": 1e-6,
            "forget_bias=2": 4e-2,
        },
    }
    ratio_rows, rows = [], []
    for family in study:
        for length in args.lengths:
            m = measured[family.name, length]
            rows += curve_rows(family, length, m)
            for c, value in enumerate(family.values):
                for leaf, curves in m.leaves.items():
                    ratios = decay_ratios(curves[c], leaf)
                    stats = band_stats(ratios)
                    by_config = summary["decay_ratio"].setdefault(family.name, {})
                    by_leaf = by_config.setdefault(family.key(value), {})
                    by_leaf.setdefault(leaf, {})[str(length)] = stats["median"]
                    where = {"family": family.name, "config": family.key(value), "leaf": leaf,
                             "length": length}  # fmt: skip
                    summary["decay_ratio_detail"].append({**where, **stats, "samples": ratios.size})
                    ratio_rows += [{**where, "sample": i, "ratio": r} for i, r in enumerate(ratios)]
    return summary, ratio_rows, rows


def decay_series(family: Family, args, measured) -> list[grad_norm_plots.DecaySeries]:
    series = []
    for c, value in enumerate(family.values):
        for leaf in measured[family.name, args.lengths[0]].leaves:
            stats = [
                band_stats(decay_ratios(measured[family.name, T].leaves[leaf][c], leaf))
                for T in args.lengths
            ]
            label = family.label(value) + (f" ({leaf})" if family.name == "lstm" else "")
            median, low, high = (np.array([s[k] for s in stats]) for k in ("median", "low", "high"))
            dashed = family.name == "lstm" and leaf == "h"
            series.append(
                grad_norm_plots.DecaySeries(
                    label, np.array(args.lengths), median, low, high, dashed
                )
            )
    return series


def main(argv=None) -> dict:
    args = parse_args(argv)
    runtime.tune_allocator()  # avoid XLA's per-step page faults at long T
    start_time = time.perf_counter()
    out, study = args.out, families(args)
    io.write_json(
        out / "config.json",
        {
            **vars(args),
            "families": {f.name: {"title": f.title, f.parameter: f.values} for f in study},
            "features": FEATURES,
            "loss": "0.5 * sum_b (h_T W + b - y_b)^2, W ~ N(0, 1/H), y ~ N(0, 1)",
            "inputs": "x ~ N(0, 1) i.i.d.",
            "dtype": "float64",
            "band_percentiles": BAND,
            "jax_version": jax.__version__,
        },
    )  # fmt: skip
    measure_key, train_key = jax.random.split(jax.random.PRNGKey(args.seed))
    band = f"{BAND[0]}-{BAND[1]}th percentile"
    with jax.enable_x64(True):
        measured = measure_study(study, args, measure_key)
        summary, ratio_rows, rows = summarize(study, args, measured)
        io.write_csv(out / "curves.csv", rows)
        io.write_csv(out / "ratios.csv", ratio_rows)
        for length in args.lengths:
            panels = {f.title: panel_curves(f, measured[f.name, length]) for f in study}
            title = f"Gradient norms at initialization (H={args.hidden}, T={length}, loss on $h_T$)"
            figure = grad_norm_plots.curves_figure(panels, length=length, band=band, title=title)
            plots.save(figure, out / f"curves_T{length}.png")
        decay_panels = {family.title: decay_series(family, args, measured) for family in study}
        title = f"Decay of the gradient with sequence length at initialization (H={args.hidden})"
        plots.save(
            grad_norm_plots.decay_figure(decay_panels, band=band, title=title), out / "decay.png"
        )

    if args.train_steps:
        summary["trained"] = train_and_remeasure(study, args, train_key, out)

    summary["wall_time_s"] = time.perf_counter() - start_time
    io.write_json(out / "summary.json", summary)
    pngs = " ".join(sorted(p.name for p in out.glob("*.png")))
    print(f"wrote {out}/: config.json summary.json curves.csv ratios.csv {pngs}", flush=True)
    return summary


def train_and_remeasure(study: list[Family], args, key, out) -> dict:
    """The hook into :mod:`rnnlab.train`: train briefly on the adding problem, then
    measure the same curves (on adding-problem inputs, with the model's own readout and
    targets) before and after training."""
    results, panels = {}, {}
    with Progress(len(study), "train + re-measure", unit="families") as bar:
        for family in study:
            start, trained, history, task = trained_params(family, args, key)
            batch = task.sample(jax.random.PRNGKey(args.seed + 1), args.batch)
            inputs, targets = (
                np.broadcast_to(np.asarray(a, np.float64), (args.train_seeds, *a.shape))
                for a in (batch.inputs, batch.targets)
            )
            values = np.asarray(family.values, np.float64)
            curves = {}
            with jax.enable_x64(True):
                for stage, params in (("init", start), ("trained", trained)):
                    cell_params, readout = params["cell"], params["readout"]
                    norms, eta = measure(
                        family, args.hidden, values, cell_params, readout, inputs, targets
                    )
                    curves[stage] = to_measured(norms, eta)
                panels[family.title] = [
                    curve._replace(
                        label=f"{curve.label.split(' (')[0]} ({stage})",
                        dashed=stage == "init",
                        bound=None if stage == "init" else curve.bound,
                    )
                    for stage in ("init", "trained")
                    for curve in panel_curves(family, curves[stage])
                    if "hidden" not in curve.label
                ]
            test_loss = np.asarray(history["final_test_loss"])
            for c, value in enumerate(family.values):
                for leaf in curves["init"].leaves:
                    ratio = {
                        stage: float(np.median(decay_ratios(curves[stage].leaves[leaf][c], leaf)))
                        for stage in curves
                    }
                    by_config = results.setdefault(family.name, {}).setdefault(
                        family.key(value), {}
                    )
                    by_config[leaf] = ratio
                    by_config["final_test_mse"] = test_loss[c].tolist()
            bar.update(1, family=family.name)
    title = (
        f"Before (dashed) and after (solid) {args.train_steps} Adam steps on the adding problem "
        f"(T={args.train_length}, H={args.hidden}; LSTM: cell state)"
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
