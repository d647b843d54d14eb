"""The edge of chaos: the largest Lyapunov exponent against a cell's hyperparameter, beside
the gradient decay it predicts.

For each cell family of :data:`FAMILIES` (the tanh RNN with ``W ~ N(0, g^2/N)`` against
``g``, the LSTM against its forget bias, and the LRU against ``r_max``), at each size
``N`` and value, over ``--seeds`` weight draws:

- ``lambda_max`` by :func:`rnnlab.dynamics.max_lyapunov` on an autonomous trajectory
  over ``--lyapunov-length`` time steps (zero input by default, ``--input-std`` to drive it)
  from a random initial carry, after ``--warmup`` steps;
- from the same post-warm-up state, the gradient decay ratio
  ``||dL/dh_1|| / ||dL/dh_T||`` at ``T = --length`` by
  :func:`rnnlab.diagnostics.carry_grad_norms`, for ``L = (r . y_T - 1)^2`` with a random
  readout ``r ~ N(0, 1/N)`` (the norm is over the whole carry, ``(h, c)`` for the LSTM).

``||dL/dh_1|| = ||J(T, 1)^T dL/dh_T||`` grows like ``exp(lambda_max (T - 1))``, so the
gradient rate ``log(ratio) / (T - 1)`` should sit on ``lambda_max``: the figure shows
both against the hyperparameter and against each other.  Sompolinsky, Crisanti &
Sommers 1988: for large N the autonomous tanh network turns chaotic at ``g = 1``; for
``g < 1`` the state decays to 0, where ``lambda_max = log rho(W) ~ log g``.

Artifacts in ``--out``: ``config.json``, ``summary.json`` (the table of median
``lambda_max`` and gradient rate per configuration, and the value where each crosses 0),
``samples.csv`` (every seed) and ``edge_of_chaos.png``.  Float64 throughout.

Run: ``PYTHONPATH=. python experiments/edge_of_chaos.py [--quick] [--out DIR]``.
"""

from __future__ import annotations

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
from rnnlab import cli, diagnostics, dynamics, io, plots, runtime
from rnnlab.plots import dynamics as dynamics_plots
from rnnlab.progress import Progress

#: Input features of every cell (the input is zero unless --input-std > 0).
FEATURES = 1
#: Percentiles of the bands and of the table.
PERCENTILES = (10, 50, 90)


class Family(NamedTuple):
    """A cell family swept over one hyperparameter: one row of :data:`FAMILIES`.

    Attributes:
      name: the key in ``summary.json``.
      title: panel title.
      cell: the registered cell name, looked up by :func:`make_cell`.
      fixed: hyperparameters held fixed, as ``(name, value)`` pairs (hashable: the
        family is a static argument of the compiled measurement).
      parameter: the swept hyperparameter (a keyword of the cell factory).
      symbol: its symbol on the x axis.
      values_argument: the command-line option holding its values.
    """

    name: str
    title: str
    cell: str
    fixed: tuple
    parameter: str
    symbol: str
    values_argument: str

    def make_cell(self, value, hidden_size: int, dtype=jnp.float32) -> rnnlab.Cell:
        """The cell at ``parameter = value`` with parameters (and carry) of ``dtype``."""
        options = {**dict(self.fixed), self.parameter: value, "param_dtype": dtype}
        return rnnlab.cells.make(self.cell, hidden_size, **options)


#: The study.  Adding a registered cell family is one entry here and one option.
FAMILIES = (
    Family(
        "tanh", "tanh RNN, W ~ N(0, g²/N)", "rnn",
        (("activation", "tanh"), ("recurrent_init", "normal")), "recurrent_scale", "g", "gains",
    ),
    Family(
        "lstm", "LSTM (uniform init)", "lstm", (), "forget_bias", "forget bias", "forget_biases"
    ),
    Family("lru", "LRU", "lru", (), "r_max", "r_max", "r_max"),
)  # fmt: skip


def parse_args(argv=None):
    # --steps counted time steps; in rnnlab's vocabulary steps are optimizer updates.
    parser = cli.Parser(
        description=__doc__.split("\n")[0], renamed={"--steps": "--lyapunov-length"}
    )
    parser.add_argument("--out", type=Path, default=Path("results/edge_of_chaos"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument(
        "--gains", type=float, nargs="+",
        default=[0.5, 0.7, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.2, 1.3, 1.5, 1.75, 2.0, 2.5, 3.0],
    )  # fmt: skip
    parser.add_argument(
        "--forget-biases", type=float, nargs="+", default=[-2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 6.0]
    )  # fmt: skip
    parser.add_argument(
        "--r-max", type=float, nargs="+", default=[0.5, 0.8, 0.9, 0.95, 0.99, 0.999]
    )  # fmt: skip
    parser.add_argument("--families", nargs="+", default=[f.name for f in FAMILIES])
    parser.add_argument("--seeds", type=int, default=8, help="weight draws per configuration")
    parser.add_argument("--warmup", type=int, default=300, help="time steps before measuring")
    parser.add_argument(
        "--lyapunov-length", type=int, default=1000, help="time steps of the Lyapunov run"
    )
    parser.add_argument("--transient", type=int, default=100, help="of the tangent vector")
    parser.add_argument("--length", type=int, default=200, help="T of the gradient ratio")
    parser.add_argument("--input-std", type=float, default=0.0, help="0: autonomous")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny smoke-test sizes")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.seeds = [16], 2
        args.warmup, args.lyapunov_length, args.transient, args.length = 50, 120, 20, 40
        args.gains, args.forget_biases, args.r_max = [0.5, 1.0, 2.0], [0.0, 3.0], [0.5, 0.99]
    unknown = set(args.families) - {f.name for f in FAMILIES}
    if unknown:
        parser.error(f"--families: unknown {sorted(unknown)}; known {[f.name for f in FAMILIES]}")
    parser.check_at_least(args, 1, "seeds", "lyapunov_length")
    parser.check_at_least(args, 2, "length")
    if args.transient >= args.lyapunov_length:
        parser.error("--transient must be smaller than --lyapunov-length")
    if args.length > args.lyapunov_length:
        parser.error("--length: the gradient ratio's T must be <= --lyapunov-length")
    return args


# --------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------


def _float64_params(family: Family, size: int, value, key: jax.Array):
    """``(cell, params)`` in float64 (complex128 for complex leaves).

    The weights are drawn as the float32 cell draws them and then widened, so a study in
    float64 measures the very networks a float32 user would build.
    """
    cell = family.make_cell(value, size, jnp.float64)
    drawn = family.make_cell(value, size, jnp.float32).init(key, FEATURES)
    wide = jax.eval_shape(lambda: cell.init(key, FEATURES))
    return cell, jax.tree.map(lambda leaf, like: leaf.astype(like.dtype), drawn, wide)


def _random_carry(cell: rnnlab.Cell, key: jax.Array):
    """A carry of ``cell``'s dtypes with ``N(0, 1)`` entries."""
    template = jax.eval_shape(cell.initial_carry, ())
    leaves, treedef = jax.tree.flatten(template)
    keys = jax.random.split(key, len(leaves))
    drawn = [
        jax.random.normal(k, leaf.shape, leaf.dtype) for k, leaf in zip(keys, leaves, strict=True)
    ]
    return jax.tree.unflatten(treedef, drawn)


def _draws(size: int, args, key):
    """``(param_key, carry_key, inputs [warmup + lyapunov_length, F], readout [N])`` of one
    seed; the readout ``r ~ N(0, 1/N)``."""
    param_key, carry_key, input_key, readout_key = jax.random.split(key, 4)
    length = args.warmup + args.lyapunov_length
    xs = args.input_std * jax.random.normal(input_key, (length, FEATURES), jnp.float64)
    readout = jax.random.normal(readout_key, (size,), jnp.float64) / math.sqrt(size)
    return param_key, carry_key, xs, readout


def _lyapunov_one(family: Family, size: int, args, value, param_key, carry_key, xs):
    """``(lambda_max, participation_ratio, params, carry)`` of one weight draw: the carry
    after the warm-up, where both measurements start."""
    cell, params = _float64_params(family, size, value, param_key)
    _, carry = rnnlab.unroll(cell, params, xs[: args.warmup], carry=_random_carry(cell, carry_key))
    lyapunov = dynamics.max_lyapunov(
        cell, params, xs[args.warmup :], carry=carry, transient=args.transient
    )
    return lyapunov.exponent, lyapunov.participation_ratio, params, carry


def _readout_loss(ys, readout, targets):
    """``L = (r . Re(y_T) - 1)^2``."""
    del targets
    return jnp.square(jnp.real(ys[-1]) @ readout - 1.0)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _measure_grid(family: Family, size: int, args, values, keys):
    """``[V, S]`` arrays: every value (traced) times every seed, in one program."""
    param_keys, carry_keys, xs, readouts = jax.vmap(functools.partial(_draws, size, args))(keys)
    lyapunov = functools.partial(_lyapunov_one, family, size, args)
    over_seeds = jax.vmap(lyapunov, (None, 0, 0, 0))
    exponent, participation, params, carry = jax.vmap(over_seeds, (0, None, None, None))(
        values, param_keys, carry_keys, xs
    )
    readouts = jnp.broadcast_to(readouts, (len(values), *readouts.shape))
    gradient_xs = xs[:, args.warmup : args.warmup + args.length]
    norms, _ = diagnostics.carry_grad_norms_grid(
        family.make_cell, size, values, params, gradient_xs, _readout_loss, readouts,
        carry=carry,
    )  # fmt: skip
    total = jnp.sqrt(sum(jnp.square(leaf) for leaf in jax.tree.leaves(norms)))  # [V, S, T]
    return exponent, participation, total[..., 0] / total[..., -1]


class Config(NamedTuple):
    """The hashable subset of the arguments that fixes a measurement program."""

    warmup: int
    lyapunov_length: int
    transient: int
    length: int
    input_std: float


def measure(family: Family, size: int, args, keys) -> dict[str, np.ndarray]:
    """``{"lambda_max", "participation_ratio", "decay_ratio"}``, each ``[V, S]``.

    The swept value is traced (the cell factory must take an array), so each family and
    size compiles once.
    """
    config = Config(args.warmup, args.lyapunov_length, args.transient, args.length, args.input_std)
    values = np.asarray(getattr(args, family.values_argument), np.float64)
    results = _measure_grid(family, size, config, jnp.asarray(values), keys)
    names = ("lambda_max", "participation_ratio", "decay_ratio")
    return {n: np.asarray(r, np.float64) for n, r in zip(names, results, strict=True)}


# --------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------


def zero_crossing(values: np.ndarray, rates: np.ndarray) -> float | None:
    """The first ``x`` where ``rates`` goes from < 0 to >= 0, linearly interpolated."""
    for i in range(len(values) - 1):
        a, b = rates[i], rates[i + 1]
        if np.isfinite(a) and np.isfinite(b) and a < 0 <= b:
            return float(values[i] + (values[i + 1] - values[i]) * (-a) / (b - a))
    return None


def summarize_family(family: Family, size: int, args, measured) -> tuple[dict, list[dict]]:
    """``(summary, rows, stats)``: per-value medians, percentiles and zero crossings for
    ``summary.json``, one CSV row per value and seed, and the ``[V, 3]`` percentile tables
    (10th, 50th, 90th) the figure draws."""
    values = np.asarray(getattr(args, family.values_argument), np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.log(measured["decay_ratio"]) / (args.length - 1)
    stats = {
        "lambda_max": np.percentile(measured["lambda_max"], PERCENTILES, axis=1).T,
        "gradient_rate": np.nanpercentile(rate, PERCENTILES, axis=1).T,
        "decay_ratio": np.nanpercentile(measured["decay_ratio"], PERCENTILES, axis=1).T,
        "participation_ratio": np.percentile(
            measured["participation_ratio"], PERCENTILES, axis=1
        ).T,
    }
    median = {name: table[:, 1] for name, table in stats.items()}
    summary = {
        "parameter": family.parameter,
        "values": values,
        "median": median,
        "p10": {name: table[:, 0] for name, table in stats.items()},
        "p90": {name: table[:, 2] for name, table in stats.items()},
        "lambda_max_crosses_zero_at": zero_crossing(values, median["lambda_max"]),
        "gradient_rate_crosses_zero_at": zero_crossing(values, median["gradient_rate"]),
    }
    rows = [
        {
            "family": family.name, "size": size, family.parameter: value, "seed": seed,
            "lambda_max": measured["lambda_max"][v, seed],
            "gradient_rate": rate[v, seed], "decay_ratio": measured["decay_ratio"][v, seed],
            "participation_ratio": measured["participation_ratio"][v, seed],
        }
        for v, value in enumerate(values)
        for seed in range(args.seeds)
    ]  # fmt: skip
    return summary, rows, stats


def main(argv=None) -> dict:
    args = parse_args(argv)
    runtime.configure()  # compilation cache; allocator (no per-step page faults at long T)
    start_time = time.perf_counter()
    study = [family for family in FAMILIES if family.name in args.families]
    io.write_config(
        args.out,
        "edge_of_chaos",
        vars(args),
        details={
            "families": {f.name: f._asdict() for f in study},
            "loss": "(r . y_T - 1)^2 with r ~ N(0, 1/N); norms over the whole carry",
            "gradient_rate": "log(||dL/dh_1|| / ||dL/dh_T||) / (T - 1)",
            "initial_carry": "N(0, 1) entries, then --warmup steps",
            "dtype": "float64",
        },
    )
    summary = {"families": {}, "skipped": {}, "length": args.length}
    rows, panels = [], {}
    seed_keys = jax.random.split(jax.random.key(args.seed), args.seeds)
    available = []
    for family in study:
        first = getattr(args, family.values_argument)[0]
        try:
            family.make_cell(first, 2)
            available.append(family)
        except (LookupError, ValueError, TypeError) as error:
            print(f"skipping {family.name}: {error}", flush=True)
            summary["skipped"][family.name] = str(error)
    with jax.enable_x64(True), Progress(len(available) * len(args.sizes), "edge of chaos") as bar:
        for family in available:
            series = []
            for size in args.sizes:
                measured = measure(family, size, args, seed_keys)
                result, family_rows, stats = summarize_family(family, size, args, measured)
                summary["families"].setdefault(family.name, {})[f"N={size}"] = result
                rows += family_rows
                values = result["values"]
                reference = None
                if family.name == "tanh":  # below g = 1 the state decays to h = 0
                    stable = values[values <= 1.0]
                    reference = (stable, np.log(stable), "log g (linearized at h = 0)")
                series.append(
                    dynamics_plots.RateSeries(
                        f"N = {size}", values, stats["lambda_max"], stats["gradient_rate"],
                        reference if size == args.sizes[-1] else None,
                    )
                )  # fmt: skip
                bar.update(1, family=family.name, N=size)
            panels[family.title] = (family.symbol, series)
    io.write_csv(args.out / "samples.csv", rows)
    if panels:
        title = (
            f"Largest Lyapunov exponent and gradient growth per step (median over {args.seeds} "
            f"draws; input std {args.input_std:g})"
        )
        figure = dynamics_plots.edge_of_chaos_figure(panels, length=args.length, title=title)
        plots.save(figure, args.out / "edge_of_chaos.png")
    summary["wall_time_s"] = time.perf_counter() - start_time
    io.write_json(args.out / "summary.json", summary)
    print(format_table(summary), flush=True)
    print(f"wrote {args.out}/: config.json summary.json samples.csv edge_of_chaos.png", flush=True)
    return summary


def format_table(summary: dict) -> str:
    """The median table as Markdown, one block per family."""
    lines = []
    for name, by_size in summary["families"].items():
        sizes = list(by_size)
        parameter = by_size[sizes[0]]["parameter"]
        header = [parameter] + [f"{k} {s}" for s in sizes for k in ("λ_max", "grad rate")]
        lines += [f"\n{name}", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for i, value in enumerate(by_size[sizes[0]]["values"]):
            cells = [f"{value:g}"]
            for s in sizes:
                median = by_size[s]["median"]
                cells += [f"{median['lambda_max'][i]:+.4f}", f"{median['gradient_rate'][i]:+.4f}"]
            lines.append("| " + " | ".join(cells) + " |")
        crossings = [
            f"{s}: λ_max = 0 at {by_size[s]['lambda_max_crosses_zero_at']}, "
            f"gradient rate = 0 at {by_size[s]['gradient_rate_crosses_zero_at']}"
            for s in sizes
        ]
        lines.append("crossings: " + "; ".join(crossings))
    return "\n".join(lines)


if __name__ == "__main__":
    main(sys.argv[1:])
