"""Gradient estimators against BPTT: cosine to the exact gradient against T, and cost.

For each cell of the table :data:`CELLS` (tanh RNN, LSTM and GRU at their default
initialization), on the adding problem (Le et al. 2015; one prediction read after the
last step), this measures with :mod:`rnnlab.gradients`:

- the cosine (and relative error, per parameter group) of tbptt(k), uoro, snap1 and rtrl
  to the BPTT gradient of the same minibatch, against the length T: ``cosine.png``,
  ``cosine.csv``.  Each point pools ``--draws`` independent (params, minibatch) draws and,
  for UORO, ``--uoro-samples`` independent estimates of each: median and 10-90% band;
- the time per step (median of interleaved repetitions) and XLA's temporary memory of
  each estimator's compiled update, against BPTT, at H in ``--cost-hidden``:
  ``cost.png``, ``cost.csv``.  RTRL above its documented size threshold is refused by
  the library, and the refusal is recorded.

tbptt:k at T <= k truncates nothing and is drawn as BPTT (cosine 1).  Results also go
to ``config.json`` (with package versions) and ``summary.json`` (the cosine and cost
tables).

Run: ``PYTHONPATH=. python experiments/gradient_quality.py [--quick] [--out DIR]``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import rnnlab
from rnnlab import cli, gradients, io, plots, runtime
from rnnlab.plots import gradients as gradient_plots
from rnnlab.progress import Progress
from rnnlab.tasks import make_task
from rnnlab.tasks.base import squared_error

#: Percentiles of the shaded bands.
BAND = (10, 90)


class CellEntry(NamedTuple):
    """One row of the study: a cell by name and the online estimators that apply to it."""

    name: str
    title: str
    online: tuple[str, ...]


#: The study: a cell by registered name and the online estimators that apply to it.
CELLS = (
    CellEntry("rnn", "tanh RNN", ("uoro", "snap1", "rtrl")),
    CellEntry("lstm", "LSTM (forget bias 1)", ("uoro", "snap1", "rtrl")),
    CellEntry("gru", "GRU", ("uoro", "snap1", "rtrl")),
    # A linear diagonal recurrence: diagonal RTRL is exact for it (Zucchet et al. 2023).
    CellEntry("lru", "LRU (Orvieto et al. 2023)", ("uoro", "snap1", "diagonal_rtrl")),
)


def make_cell(name: str, hidden: int) -> rnnlab.Cell:
    return rnnlab.cells.make(name, hidden)


def parse_args(argv=None):
    parser = cli.Parser(
        description=__doc__.split("\n")[0],
        renamed={"--cost-hidden": "--cost-hidden-size", "--cost-batch": "--cost-batch-size"},
    )
    parser.add_argument("--out", type=Path, default=Path("results/gradient_quality"))
    parser.add_argument(
        "--cells", nargs="+", default=None, choices=[e.name for e in CELLS],
        help="default: every cell of the table (--quick: the tanh RNN)",
    )  # fmt: skip
    parser.add_argument("--lengths", type=int, nargs="+", default=[8, 16, 32, 64, 128, 256])
    parser.add_argument("--truncations", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--hidden-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--draws", type=int, default=4, help="independent params and batches")
    parser.add_argument("--uoro-samples", type=int, default=8)
    parser.add_argument("--cost-hidden-size", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--cost-length", type=int, default=32)
    parser.add_argument("--cost-batch-size", type=int, default=4)
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny smoke-test sizes")
    args = parser.parse_args(argv)
    if args.quick:
        args.lengths, args.truncations, args.hidden_size, args.batch_size = [4, 8, 16], [4], 8, 4
        args.draws, args.uoro_samples, args.repetitions = 2, 3, 2
        args.cost_hidden_size, args.cost_length, args.cost_batch_size = [8], 8, 2
        args.cells = args.cells or ["rnn"]
    args.cells = args.cells or [entry.name for entry in CELLS]
    parser.check_at_least(args, 1, "hidden_size", "batch_size", "draws", "uoro_samples",
                          "cost_length", "cost_batch_size", "repetitions")  # fmt: skip
    args.lengths = sorted(set(args.lengths))
    for k in args.truncations:
        try:
            gradients.parse_estimator(f"tbptt:{k}")
        except ValueError as error:
            parser.error(f"--truncations: {error}")
        if any(T > k and T % k for T in args.lengths):
            parser.error(f"--truncations: every length above {k} must be a multiple of it")
    return args


# --------------------------------------------------------------------------------------
# The problem: the adding task with its loss read at the last step
# --------------------------------------------------------------------------------------


def step_loss(params, y, data):
    """The adding task's squared error, weighted 1 at the last step and 0 elsewhere."""
    prediction = y @ params["readout"]["weight"] + params["readout"]["bias"]
    return data["weight"] * squared_error(prediction, data["target"])


def adding_chunk(key, length: int, batch: int) -> gradients.Chunk:
    """A minibatch of the adding problem with per-step loss data ``[B, T, ...]``."""
    sample = make_task("adding", length).sample(key, batch)
    weight = jnp.zeros((batch, length)).at[:, -1].set(1.0)
    target = jnp.broadcast_to(sample.targets[:, None, :], (batch, length, 1))
    return gradients.Chunk(sample.inputs, {"weight": weight, "target": target})


def model_params(cell: rnnlab.Cell, key, features: int = 2) -> dict:
    """Cell params at the cell's default init and a readout ``N(0, 1/H)``, as the engine."""
    cell_key, readout_key = jax.random.split(key)
    hidden = cell.hidden_size
    weight = jax.random.normal(readout_key, (hidden, 1)) / jnp.sqrt(hidden)
    return {"cell": cell.init(cell_key, features),
            "readout": {"weight": weight, "bias": jnp.zeros((1,))}}  # fmt: skip


# --------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------


def measure_quality(args, entries, key) -> list[dict]:
    """Rows of :func:`rnnlab.gradients.compare_gradients` for every cell, draw and T (one
    compiled call per estimator and cell; the draws reuse it)."""
    rows = []
    with Progress(len(entries) * args.draws, "cosine", unit="draws") as bar:
        for entry in entries:
            cell = make_cell(entry.name, args.hidden_size)
            estimators = [f"tbptt:{k}" for k in args.truncations] + list(entry.online)
            for draw in range(args.draws):
                draw_key = jax.random.fold_in(key, draw)
                params = model_params(cell, draw_key)
                chunks = [
                    adding_chunk(jax.random.fold_in(draw_key, length), length, args.batch_size)
                    for length in args.lengths
                ]
                for row in gradients.compare_gradients(
                    cell, step_loss, params, chunks, estimators,
                    samples=args.uoro_samples, key=jax.random.fold_in(draw_key, 2**20),
                ):  # fmt: skip
                    rows.append({"cell": entry.name, "draw": draw, **row})
                bar.update(1, cell=entry.name, draw=draw)
    return rows


def measure_cost(args, entries, key) -> list[dict]:
    """Time per step and XLA temporary memory of every estimator at each ``--cost-hidden``."""
    rows = []
    with Progress(len(entries) * len(args.cost_hidden_size), "cost", unit="models") as bar:
        for entry in entries:
            for hidden in args.cost_hidden_size:
                cell = make_cell(entry.name, hidden)
                params = model_params(cell, key)
                chunk = adding_chunk(key, args.cost_length, args.cost_batch_size)
                names = ["bptt", f"tbptt:{min(args.truncations)}", *entry.online]
                names = [n for n in dict.fromkeys(names) if not _too_long(n, args.cost_length)]
                estimators, refused = {}, {}
                for name in names:
                    estimator = gradients.make_estimator(name, cell, step_loss)
                    try:
                        estimator.init(params, (args.cost_batch_size,), key=key)
                    except ValueError as error:  # rtrl above its size threshold
                        refused[name] = str(error)
                        continue
                    estimators[name] = estimator
                costs = gradients.estimator_costs(
                    estimators, params, chunk, repetitions=args.repetitions, key=key
                )
                base = costs["bptt"]
                for name in names:
                    where = {"cell": entry.name, "hidden": hidden, "estimator": name,
                             "T": args.cost_length, "batch": args.cost_batch_size}  # fmt: skip
                    if name in refused:
                        rows.append({**where, "refused": refused[name]})
                        continue
                    cost = costs[name]
                    rows.append({
                        **where, **cost,
                        "time_vs_bptt": cost["seconds_per_step"] / base["seconds_per_step"],
                        "temp_vs_bptt": cost["temp_bytes"] / max(base["temp_bytes"], 1),
                    })  # fmt: skip
                bar.update(1, cell=entry.name, H=hidden)
    return rows


def _too_long(name: str, length: int) -> bool:
    spec = gradients.parse_estimator(name)
    return spec.name == "tbptt" and spec.options["k1"] > length


# --------------------------------------------------------------------------------------
# Summaries and figures
# --------------------------------------------------------------------------------------


def cosine_table(rows: list[dict]) -> dict:
    """``{cell: {estimator: {T: median cosine}}}`` over draws and samples (group "all")."""
    table = {}
    for row in rows:
        if row["group"] == "all":
            by_cell = table.setdefault(row["cell"], {})
            by_cell.setdefault(row["estimator"], {}).setdefault(row["T"], []).append(row["cosine"])
    return {
        cell: {name: {str(T): float(np.median(v)) for T, v in sorted(by_T.items())}
               for name, by_T in by_estimator.items()}
        for cell, by_estimator in table.items()
    }  # fmt: skip


def cosine_panels(rows: list[dict], entries) -> dict[str, list[gradient_plots.CosineSeries]]:
    panels = {}
    for entry in entries:
        series = []
        mine = [r for r in rows if r["cell"] == entry.name and r["group"] == "all"]
        for name in dict.fromkeys(r["estimator"] for r in mine):
            lengths = sorted({r["T"] for r in mine if r["estimator"] == name})
            values = [[r["cosine"] for r in mine if r["estimator"] == name and r["T"] == T]
                      for T in lengths]  # fmt: skip
            series.append(
                gradient_plots.CosineSeries(
                    name,
                    np.array(lengths),
                    np.array([np.median(v) for v in values]),
                    np.array([np.percentile(v, BAND[0]) for v in values]),
                    np.array([np.percentile(v, BAND[1]) for v in values]),
                )
            )
        panels[entry.title] = series
    return panels


def cost_table(rows: list[dict]) -> dict:
    """``{cell: {H: {estimator: {ms_per_step, temp_mib, x_bptt_time, x_bptt_temp} or
    {refused}}}}``."""
    table = {}
    for row in rows:
        cell = table.setdefault(row["cell"], {}).setdefault(str(row["hidden"]), {})
        if "refused" in row:
            cell[row["estimator"]] = {"refused": row["refused"]}
            continue
        cell[row["estimator"]] = {
            "ms_per_step": row["seconds_per_step"] * 1e3,
            "temp_mib": row["temp_bytes"] / 2**20,
            "trace_mib": row["trace_bytes"] / 2**20,
            "time_vs_bptt": row["time_vs_bptt"],
            "temp_vs_bptt": row["temp_vs_bptt"],
        }
    return table


def main(argv=None) -> dict:
    args = parse_args(argv)
    runtime.configure()  # compilation cache; allocator (no per-step page faults at long T)
    start = time.perf_counter()
    entries = [entry for entry in CELLS if entry.name in args.cells]
    out = args.out
    io.write_config(
        out,
        "gradient_quality",
        vars(args),
        details={
            "cells": {e.name: {"title": e.title, "online": e.online} for e in entries},
            "task": "adding (Le et al. 2015 variant), loss at the last step only",
            "params": "each cell's default init; readout N(0, 1/H); one draw per --draws",
            "loss": "mean over the batch of the squared error of the last step",
            "band_percentiles": BAND,
            "rtrl_max_sensitivity_size": gradients.RTRL_MAX_SENSITIVITY_SIZE,
            "devices": [str(d) for d in jax.devices()],
        },
    )  # fmt: skip
    quality_key, cost_key = jax.random.split(jax.random.key(args.seed))
    quality_rows = measure_quality(args, entries, quality_key)
    io.write_csv(out / "cosine.csv", quality_rows)
    band = f"{BAND[0]}-{BAND[1]}th percentile"
    title = (f"Cosine of each estimator to the BPTT gradient at initialization "
             f"(adding problem, H={args.hidden_size}, batch {args.batch_size})")  # fmt: skip
    plots.save(
        gradient_plots.cosine_figure(cosine_panels(quality_rows, entries), band=band, title=title),
        out / "cosine.png",
    )
    cost_rows = measure_cost(args, entries, cost_key)
    io.write_csv(out / "cost.csv", cost_rows)
    plots.save(
        gradient_plots.cost_figure(
            cost_rows,
            title=f"Cost of one update per step (T={args.cost_length}, batch "
            f"{args.cost_batch_size}, median of {args.repetitions} interleaved repetitions)",
        ),
        out / "cost.png",
    )
    summary = {
        "cosine_median": cosine_table(quality_rows),
        "cost": cost_table(cost_rows),
        "definitions": {
            "cosine_median": "median over draws (and UORO samples) of the cosine of the "
            "whole gradient (all parameter groups) to BPTT's",
            "ms_per_step": "median wall time of one compiled update / T",
            "temp_mib": "XLA compiled.memory_analysis().temp_size_in_bytes",
            "trace_mib": "the estimator state carried between chunks (sensitivities, ...)",
        },
        "wall_time_s": time.perf_counter() - start,
    }
    io.write_json(out / "summary.json", summary)
    print(f"wrote {out}/: config.json summary.json cosine.csv cost.csv cosine.png cost.png")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
