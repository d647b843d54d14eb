"""One function per section of the benchmark report; each returns JSON-ready data.

Every section takes ``options``, the benchmark's resolved configuration (the CLI's
namespace, or any object with the same attributes): ``quick``, ``cells``, ``lengths``,
``batch_size``, ``input_size``, ``hidden_size``, ``large_hidden_size``,
``repetitions``, ``baselines``, ``allocator``.  Sections that need a fresh process go
through :mod:`rnnlab.bench.harness`.  The sections and their summary keys:

========================  ============================================================
``timing``                training step and inference of rnnlab, its generic scan,
                          torch and flax (PERF.md's standard shape), interleaved
``flops``                 GFLOP/s of each timed training step against a 2048^2 matmul
``memory``                XLA temporary MiB of the training step, with/without remat
``compile``               compile seconds of the LSTM training step against T
``paths``                 sequential against parallel scan of the linear cells
``gpu``                   ``timing`` against cuDNN when a GPU is present
``allocator``             ``timing`` of the LSTM in children: glibc default, env, mallopt
``flags``                 ``timing`` of the LSTM in children under a few ``XLA_FLAGS``
``sweep_scaling``         configurations x steps / s against the number of configurations
``peak_memory``           peak RSS of ``make run`` and of one long LSTM training step
``startup``               wall seconds of ``import jax``, ``import rnnlab``, ``--help``
``compile_program``       compile seconds of ``jit(train)`` against ``value_and_grad``
``log``                   the LSTM-against-torch experiment log (:mod:`rnnlab.bench.log`)
========================  ============================================================
"""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path

import numpy as np

from rnnlab.bench import harness, systems

__all__ = [
    "FLAG_VARIANTS",
    "SECTIONS",
    "allocator_section",
    "compile_program_section",
    "compile_section",
    "flags_section",
    "flops_section",
    "gpu_section",
    "log_section",
    "memory_section",
    "paths_section",
    "peak_matmul",
    "peak_memory_section",
    "startup_section",
    "sweep_scaling_section",
    "timing_section",
]

#: Report sections in the order they run (CLI spellings use hyphens).
SECTIONS = (
    "timing",
    "flops",
    "memory",
    "compile",
    "paths",
    "gpu",
    "allocator",
    "flags",
    "sweep_scaling",
    "peak_memory",
    "startup",
    "compile_program",
    "log",
)
#: Training programs the ``timing`` section compiled, by (cell, T, H, B, I, system):
#: ``memory`` reads their ``memory_analysis()`` instead of compiling them again.
_TRAIN_PROGRAMS: dict[tuple, object] = {}

FLAG_VARIANTS = (
    "",
    "--xla_cpu_multi_thread_eigen=false",
    "--xla_cpu_use_xnnpack=true",
    "--xla_cpu_use_thunk_runtime=false",
)


# --------------------------------------------------------------------------- timing


def time_configuration(options, cell_name, length, hidden_size, *, passes, with_generic,
                       device="cpu"):  # fmt: skip
    """Interleaved timings of every system for one (cell, T, H); one dict per mode."""
    xs, target = systems.make_problem(
        cell_name, options.batch_size, length, options.input_size, hidden_size
    )
    compile_seconds, jax_systems = {}, {}
    builders = {"rnnlab": lambda: systems.rnnlab_system(cell_name, xs, target, hidden_size)}
    if with_generic:
        builders["rnnlab-generic"] = lambda: systems.rnnlab_system(
            cell_name, xs, target, hidden_size, fused_path=False
        )
    if options.baselines == "all":
        builders["flax"] = lambda: systems.flax_system(cell_name, xs, target, hidden_size)
    for name, build in builders.items():
        system = build()
        if system is not None:
            jax_systems[name], compile_seconds[name] = systems.compile_jax(system)
            if device == "cpu":
                key = (cell_name, length, hidden_size, options.batch_size, options.input_size)
                _TRAIN_PROGRAMS[(*key, name)] = jax_systems[name]["train"].compiled
    torch_callables = systems.torch_system(cell_name, xs, target, hidden_size, device)
    flops = systems.training_flops(
        cell_name, options.batch_size, length, options.input_size, hidden_size
    )
    results = []
    for mode in ("train", "infer"):
        callables = {name: system[mode] for name, system in jax_systems.items()}
        callables["torch"] = torch_callables[mode]
        runs = [harness.interleaved(callables, options.repetitions) for _ in range(passes)]
        entries = {}
        for name in callables:
            all_seconds = [s for run in runs for s in run[name]["seconds"]]
            median = float(np.median(all_seconds))
            entries[name] = {
                "ms": 1e3 * median,
                "ms_per_pass": [harness.median_ms(run[name]["seconds"]) for run in runs],
                "ms_quartiles": [1e3 * float(q) for q in np.percentile(all_seconds, [25, 75])],
                "faults_per_step": float(np.mean([run[name]["faults_per_call"] for run in runs])),
                "compile_s": compile_seconds.get(name, {}).get(mode),
            }
            if mode == "train":
                entries[name]["gflops"] = flops / median / 1e9
        torch_per_pass = entries["torch"]["ms_per_pass"]
        for entry in entries.values():
            per_pass = [a / b for a, b in zip(entry["ms_per_pass"], torch_per_pass, strict=True)]
            entry["ratio_vs_torch"] = entry["ms"] / entries["torch"]["ms"]
            entry["ratio_vs_torch_per_pass"] = per_pass
        results.append(
            dict(
                cell=cell_name,
                mode=mode,
                T=length,
                H=hidden_size,
                B=options.batch_size,
                I=options.input_size,
                device=device,
                reps=options.repetitions,
                passes=passes,
                flops=flops,
                systems=entries,
            )
        )
    return results


def timing_section(options, progress=None, device="cpu", on_rows=lambda rows: None):
    """PERF.md's standard shape for every cell and T; plus ``T=1000`` at the large H."""
    configurations = [
        (cell, length, options.hidden_size, 2, True)
        for cell in options.cells
        for length in options.lengths
    ]
    if not options.quick:
        # The large H is matmul-bound and slow: one pass, no generic variant.
        configurations += [(cell, 1000, options.large_hidden_size, 1, False)
                           for cell in options.cells]  # fmt: skip
    rows = []
    for cell, length, hidden_size, passes, with_generic in configurations:
        rows += time_configuration(
            options,
            cell,
            length,
            hidden_size,
            passes=1 if options.quick else passes,
            with_generic=with_generic and options.baselines == "all",
            device=device,
        )
        if progress is not None:
            progress.update(1, cell=cell, T=length, H=hidden_size)
        on_rows(rows)
    return rows


def timing_configurations(options) -> int:
    """How many configurations :func:`timing_section` times (for a progress bar)."""
    return len(options.cells) * (len(options.lengths) + (0 if options.quick else 1))


# --------------------------------------------------------------------------- flops


def peak_matmul(options, size=None):
    """Median seconds and GFLOP/s of a ``size x size`` float32 matmul in JAX.

    ``size`` defaults to 2048 (PERF.md), 1024 under ``--quick``.
    """
    import jax
    import jax.numpy as jnp

    size = size or (1024 if options.quick else 2048)
    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    matmul = jax.jit(lambda a: a @ a)
    timed = harness.interleaved(
        {"matmul": lambda: jax.block_until_ready(matmul(a))}, max(options.repetitions, 5)
    )
    seconds = float(np.median(timed["matmul"]["seconds"]))
    return {"size": size, "ms": 1e3 * seconds, "gflops": 2.0 * size**3 / seconds / 1e9}


def flops_section(options, timing_rows=()):
    """The matmul peak and each timed training step's share of it."""
    peak = peak_matmul(options)
    rows = []
    for row in timing_rows:
        if row["mode"] != "train":
            continue
        for name, entry in row["systems"].items():
            rows.append(
                dict(
                    cell=row["cell"],
                    T=row["T"],
                    H=row["H"],
                    system=name,
                    gflops=entry["gflops"],
                    fraction=entry["gflops"] / peak["gflops"],
                )
            )
    return {"peak": peak, "rows": rows}


# --------------------------------------------------------------------------- compile, memory


def compile_section(options):
    """Compile seconds of the LSTM training step (rnnlab and flax) against T."""
    lengths = [50, 1000] if options.quick else [50, 1000, 10000]
    hidden_size = options.hidden_size
    rows = []
    for length in lengths:
        xs, target = systems.make_problem(
            "lstm", options.batch_size, length, options.input_size, hidden_size
        )
        row = {"T": length}
        builders = {
            "rnnlab": functools.partial(systems.rnnlab_system, "lstm", xs, target, hidden_size),
            "rnnlab-remat": functools.partial(
                systems.rnnlab_system, "lstm", xs, target, hidden_size, remat=True
            ),
            "flax": functools.partial(systems.flax_system, "lstm", xs, target, hidden_size),
        }
        for name, build in builders.items():
            start = time.perf_counter()
            lowered, _ = build()["train"]
            lower_s = time.perf_counter() - start
            start = time.perf_counter()
            lowered.compile()
            row[name] = {"trace_s": lower_s, "compile_s": time.perf_counter() - start}
        rows.append(row)
    return rows


def memory_section(options):
    """XLA temporary MiB of the training step, with and without remat."""
    lengths = [options.lengths[-1]] if options.quick else [1000]
    rows = []
    for cell in options.cells:
        for length in lengths:
            xs, target = systems.make_problem(
                cell, options.batch_size, length, options.input_size, options.hidden_size
            )
            row = {"cell": cell, "T": length}
            key = (cell, length, options.hidden_size, options.batch_size, options.input_size)
            for name, kwargs in (
                ("rnnlab", {}),
                ("rnnlab-remat", {"remat": True}),
                ("rnnlab-generic", {"fused_path": False}),
            ):
                compiled = _TRAIN_PROGRAMS.get((*key, name))
                if compiled is None:
                    lowered, _ = systems.rnnlab_system(
                        cell, xs, target, options.hidden_size, **kwargs
                    )["train"]
                    compiled = lowered.compile()
                stats = compiled.memory_analysis()
                row[name] = stats.temp_size_in_bytes / 2**20
            row["remat_cut"] = 1.0 - row["rnnlab-remat"] / row["rnnlab"]
            rows.append(row)
    return rows


# --------------------------------------------------------------------------- paths


def paths_section(options, progress=None):
    """Sequential against parallel (associative) scan of every linear cell.

    The cells are those registered with a ``linear`` recurrence; the figures are
    behind ``rnnlab.unrolling.AUTO_PREFERENCE`` on this backend.
    """
    import jax
    import jax.numpy as jnp

    import rnnlab

    lengths = [64, 256] if options.quick else [256, 1024, 4096, 16384]
    batch, width = (4, 16) if options.quick else (16, 64)
    linear = [n for n in rnnlab.cells.available() if rnnlab.cells.make(n, 2).linear is not None]
    rows = []
    for name in linear:
        cell = rnnlab.cells.make(name, width)
        params = cell.init(jax.random.key(0), width)
        for length in lengths:
            xs = jax.random.normal(jax.random.key(1), (batch, length, width))
            callables = {}
            for path in ("sequential", "parallel"):

                def infer(params, xs, path=path, cell=cell):
                    return rnnlab.unroll(cell, params, xs, path=path)[0]

                def loss(params, xs, infer=infer):
                    return jnp.mean(infer(params, xs) ** 2)

                train = jax.jit(jax.grad(loss)).lower(params, xs).compile()
                forward = jax.jit(infer).lower(params, xs).compile()
                for mode, compiled in (("train", train), ("infer", forward)):
                    callables[f"{path}/{mode}"] = functools.partial(
                        harness.run_blocking, compiled, params, xs
                    )
            timed = harness.interleaved(callables, options.repetitions)
            for mode in ("train", "infer"):
                ms = {p: harness.median_ms(timed[f"{p}/{mode}"]["seconds"])
                      for p in ("sequential", "parallel")}  # fmt: skip
                rows.append({"cell": name, "mode": mode, "T": length, "B": batch, "H": width,
                             "sequential_ms": ms["sequential"], "parallel_ms": ms["parallel"],
                             "parallel_over_sequential": ms["parallel"] / ms["sequential"],
                             "backend": jax.default_backend()})  # fmt: skip
            if progress is not None:
                progress.update(1, cell=name, T=length)
    return rows


# --------------------------------------------------------------------------- child processes


def _child_options(options, **changes) -> dict:
    """The options of a child's LSTM timing: one pass, standard shape, torch only."""
    resolved = {
        "quick": True,
        "cells": ["lstm"],
        "lengths": list(options.lengths),
        "batch_size": options.batch_size,
        "input_size": options.input_size,
        "hidden_size": options.hidden_size,
        "large_hidden_size": options.large_hidden_size,
        "repetitions": options.repetitions,
        "baselines": "torch",
        "allocator": options.allocator,
    }
    resolved.update(changes)
    return resolved


def _child_timing(options, env, **changes):
    result = harness.run_bench_child(
        "timing", _child_options(options, **changes), harness.clean_environment(env)
    )
    return result if "error" in result else result["timing"]


def allocator_section(options):
    """The LSTM timing in children: glibc default, ``MALLOC_*`` env, in-process mallopt."""
    from rnnlab.runtime import TUNED_MALLOC_ENV

    variants = {
        "default": ({}, "default"),
        "env": (TUNED_MALLOC_ENV, "default"),
        "mallopt": ({}, "tuned"),
    }
    return {name: _child_timing(options, env, allocator=allocator)
            for name, (env, allocator) in variants.items()}  # fmt: skip


def flags_section(options, variants=FLAG_VARIANTS):
    """The LSTM timing at T=200 (or the first T) in children under each ``XLA_FLAGS``."""
    lengths = [200] if 200 in options.lengths else [options.lengths[0]]
    return {
        flags or "(none)": _child_timing(options, {"XLA_FLAGS": flags}, lengths=lengths)
        for flags in variants
    }


def gpu_section(options):
    available, reason = systems.gpu_available()
    if not available:
        return {"skipped": True, "reason": reason}
    return {"timing": timing_section(options, device="cuda")}


# --------------------------------------------------------------------------- sweeps


#: The study size at which ``auto`` must be within 10% of the best strategy: about one
#: cell's group of ``make sweep``'s default study (8 learning rates x 3 x 2 seeds = 48).
DEFAULT_STUDY = 64


def sweep_scaling_section(options, counts=None, strategies=None):
    """Configurations x steps / s of ``run_sweep`` against the number of configurations.

    A tiny model (LSTM, H=16, adding at T=50, batch 32, 20 optimizer steps in one
    chunk, one evaluation of 32 sequences; ``--quick``: H=4, T=5, 4 steps, batch 4),
    learning rates log-spaced, one static group.  For each count, every strategy runs
    once, in a rotating order (one process, interleaved).
    ``config_steps_per_s`` is end to end (configurations x steps over the call's wall
    time: compilation, calibration and worker start-up included), the figure ``auto``
    is judged by; ``run_config_steps_per_s`` is ``run_sweep``'s own figure per strategy
    used, compilation excluded; ``compile_s`` is the call's compile seconds, once per
    shape group and chunk shape (``groups`` says how many groups shared it).
    """
    import rnnlab.sweep as sweep
    from rnnlab.sweep.execute import STRATEGIES

    if counts is None:
        counts = [1, 4] if options.quick else [1, 4, 16, 64, 256]
    if strategies is None:
        strategies = [s for s in STRATEGIES if s != "auto"] + ["auto"]
        if options.quick:
            strategies = [s for s in strategies if s != "processes"]
    shape = (
        dict(hidden_size=4, length=5, steps=4, chunk_steps=4, batch_size=4, eval_batch_size=4)
        if options.quick
        else dict(
            hidden_size=16, length=50, steps=20, chunk_steps=20, batch_size=32, eval_batch_size=32
        )  # fmt: skip
    )
    base = dict(task="adding", cell="lstm", **shape)
    build = sweep.TrainerBuilder(base)
    rows = []
    for count, order in zip(counts, harness.rotations(strategies, len(counts)), strict=True):
        space = sweep.product(learning_rate=sweep.loggrid(1e-3, 1e-1, count))
        configs = sweep.configurations(space, context=base)
        for strategy in order:
            start = time.perf_counter()
            result = sweep.run_sweep(configs, build, strategy=strategy, progress=False)
            wall = time.perf_counter() - start
            summary = result.summary
            rows.append({
                "configurations": count,
                "strategy": strategy,
                "chosen": summary["strategy"]["chosen"],
                "config_steps_per_s": count * shape["steps"] / wall,
                "run_config_steps_per_s": summary["throughput"],
                "compile_s": summary["compile_seconds"],
                "groups": summary["groups"],
                "wall_s": wall,
            })  # fmt: skip
    check = _auto_check(rows, DEFAULT_STUDY if not options.quick else counts[-1])
    return {"shape": base, "counts": counts, "strategies": strategies, "rows": rows,
            "auto_check": check}  # fmt: skip


def _auto_check(rows, count):
    at = {r["strategy"]: r["config_steps_per_s"] for r in rows if r["configurations"] == count}
    concrete = {k: v for k, v in at.items() if k != "auto" and v}
    if "auto" not in at or not concrete or not at["auto"]:
        return {"configurations": count, "met": None}
    best = max(concrete, key=concrete.get)
    ratio = at["auto"] / concrete[best]
    return {"configurations": count, "best": best, "auto_over_best": ratio, "met": ratio >= 0.9}


# --------------------------------------------------------------------------- processes


def _make_run_command(root: Path) -> list[str]:
    """``make run``'s command (the Makefile's ``run`` target), with this interpreter."""
    return [sys.executable, str(root / "experiments" / "grad_norms.py")]


def peak_memory_section(options, root: Path, scratch: Path, *, full_run=False):
    """Peak RSS of ``make run`` and of one long LSTM training step, each in a fresh process.

    ``make run`` runs with ``--quick`` unless ``full_run``.  The training step is
    ``B=32, I=32, H=128, T=10,000`` (``--quick``: ``B=4, H=16, T=1000``) on rnnlab's
    default (fused) path, the generic scan, and the generic scan with ``remat``; each
    child also reports XLA's ``memory_analysis()`` temporary bytes.
    """
    env = harness.clean_environment({"PYTHONPATH": str(root)})
    command = [*_make_run_command(root), "--out", str(scratch / "make_run")]
    if not full_run:
        command.append("--quick")
    run = harness.run_process(command, env)
    make_run = {
        "command": " ".join(["python", "experiments/grad_norms.py", *command[2:]]),
        "wall_s": run["wall_s"],
        "peak_rss_mib": run["peak_rss_mib"],
    }
    if run["returncode"]:
        make_run["error"] = run["stderr"][-2000:]
    shape = (
        dict(batch_size=4, input_size=32, hidden_size=16, length=1000)
        if options.quick
        else dict(batch_size=32, input_size=32, hidden_size=128, length=10_000)
    )
    steps = {}
    for name, variant in (
        ("rnnlab", dict(fused_path=True, remat=False)),
        ("rnnlab-generic", dict(fused_path=False, remat=False)),
        ("rnnlab-remat", dict(fused_path=False, remat=True)),
    ):
        steps[name] = harness.run_bench_child("train-step", {**shape, **variant}, env)
    return {"make_run": make_run, "step_shape": shape, "steps": steps}


def train_step_child(options: dict) -> dict:
    """In a child: one LSTM training step; XLA's temporary bytes and the step's seconds."""
    import rnnlab.runtime

    rnnlab.runtime.tune_allocator()
    xs, target = systems.make_problem(
        "lstm", options["batch_size"], options["length"], options["input_size"],
        options["hidden_size"],
    )  # fmt: skip
    lowered, args = systems.rnnlab_system(
        "lstm", xs, target, options["hidden_size"],
        fused_path=options["fused_path"], remat=options["remat"],
    )["train"]  # fmt: skip
    start = time.perf_counter()
    compiled = lowered.compile()
    compile_s = time.perf_counter() - start
    harness.run_blocking(compiled, *args)
    start = time.perf_counter()
    harness.run_blocking(compiled, *args)
    stats = compiled.memory_analysis()
    return {
        "compile_s": compile_s,
        "step_s": time.perf_counter() - start,
        "temp_mib": stats.temp_size_in_bytes / 2**20,
    }


STARTUP_COMMANDS = {
    "import jax": ["-c", "import jax"],
    "import rnnlab": ["-c", "import rnnlab"],
    "train.py --help": ["experiments/train.py", "--help"],
}


def startup_section(options, root: Path):
    """Wall seconds of fresh interpreters: ``import jax``, ``import rnnlab``, ``--help``.

    Median of 5 (``--quick``: 1), interleaved.  Targets (issue 14): ``import rnnlab``
    at most 0.3 s over ``import jax``; ``train.py --help`` under 1.5 s.
    """
    repetitions = 1 if options.quick else 5
    env = harness.clean_environment({"PYTHONPATH": str(root)})
    seconds = {name: [] for name in STARTUP_COMMANDS}
    for order in harness.rotations(STARTUP_COMMANDS, repetitions):
        for name in order:
            arguments = list(STARTUP_COMMANDS[name])
            if arguments[0].endswith(".py"):
                arguments[0] = str(root / arguments[0])
            run = harness.run_process([sys.executable, *arguments], env, timeout=120)
            if run["returncode"]:
                raise RuntimeError(f"{name} failed:\n{run['stderr'][-2000:]}")
            seconds[name].append(run["wall_s"])
    medians = {name: float(np.median(values)) for name, values in seconds.items()}
    overhead = medians["import rnnlab"] - medians["import jax"]
    return {
        "repetitions": repetitions,
        "seconds": seconds,
        "median_s": medians,
        "rnnlab_over_jax_s": overhead,
        "targets": {
            "import rnnlab <= import jax + 0.3 s": overhead <= 0.3,
            "--help < 1.5 s": medians["train.py --help"] < 1.5,
        },
    }


def compile_program_section(options):
    """Compile seconds of ``jit(trainer.train)`` against ``jit(value_and_grad)``, per cell.

    Through :func:`rnnlab.bench.programs.measure_programs` (issue 13's compile target:
    the ratio at most 2).  Persistent cache off while measuring.
    """
    from rnnlab.bench import programs

    shape = (
        dict(hidden_size=4, length=5, steps=4, chunk_steps=2, repetitions=1)
        if options.quick
        else dict(hidden_size=32, length=100, steps=200, chunk_steps=50, repetitions=3)
    )
    cells = options.cells[:1] if options.quick else list(options.cells)
    with programs.no_persistent_cache():
        rows = {cell: programs.measure_programs(cell, **shape) for cell in cells}
    return {"shape": shape, "cells": rows}


def log_section(options=None):
    """The LSTM-against-torch experiment log, as rows."""
    from rnnlab.bench.log import LOG

    return [dict(entry) for entry in LOG]
