"""Benchmark suite: rnnlab against torch.nn and flax, following /shared/PERF.md.

One process, the systems interleaved round-robin, medians of ``--reps`` repetitions,
compile time apart.  Sections:

- ``timing``: training step (forward and backward through time, mean-squared loss over
  all outputs) and forward-only inference, LSTM/GRU/tanh RNN, ``B=32, I=32, H=128``,
  ``T in {50, 200, 1000}``, plus ``T=1000, H=512``; rnnlab's fast path, its generic
  scan (``path="sequential"``), ``torch.nn`` and flax
  ``nn.RNN(OptimizedLSTMCell)``.  The key ratios (H=128) are measured in two passes.
- ``compile``: jit compile time of the training step against T, up to 10,000.
- ``memory``: XLA temporary memory of the training step with and without ``remat``.
- ``flops``: achieved GFLOP/s against a timed 2048x2048 float32 matmul.
- ``allocator``: child processes with glibc's default allocator, with
  ``rnnlab.runtime.TUNED_MALLOC_ENV`` in the environment, and with the in-process
  ``rnnlab.runtime.tune_allocator()``; minor page faults per step are counted.
- ``flags``: child processes under a few ``XLA_FLAGS``.
- ``gpu``: the timing section against torch's cuDNN modules, when a GPU is present.

The parent process calls ``rnnlab.runtime.tune_allocator()`` first, so its timings
compare both systems under the tuned allocator; the ``allocator`` section shows both.

Usage::

    .venv/bin/python experiments/bench.py --out results/bench          # about 10 min
    .venv/bin/python experiments/bench.py --out /tmp/bench --quick     # under 1 min
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SECTIONS = ("timing", "flops", "memory", "compile", "paths", "gpu", "allocator", "flags")
CELLS = ("lstm", "gru", "rnn")
FLAG_VARIANTS = (
    "",
    "--xla_cpu_multi_thread_eigen=false",
    "--xla_cpu_use_xnnpack=true",
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--quick", action="store_true", help="small smoke run (under 1 min)")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--cells", nargs="+", choices=CELLS, default=list(CELLS))
    parser.add_argument("--steps", nargs="+", type=int, help="T values of the standard shape")
    parser.add_argument("--reps", type=int, help="timed repetitions per pass (median)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--input-size", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--large-hidden", type=int, default=512)
    parser.add_argument(
        "--allocator",
        choices=("tuned", "default"),
        default="tuned",
        help="tuned: call rnnlab.runtime.tune_allocator() at start (default)",
    )
    parser.add_argument(
        "--baselines",
        choices=("all", "torch"),
        default="all",
        help="torch: time rnnlab against torch only (no generic scan, no flax)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps is None:
        args.steps = [50] if args.quick else [50, 200, 1000]
    if args.reps is None:
        args.reps = 3 if args.quick else 7
    if args.reps < 1 or min(args.steps) < 1:
        parser.error("--reps and --steps must be positive")
    return args


# --------------------------------------------------------------------------- systems


def make_problem(cell_name, batch, steps, input_size, hidden, seed=0):
    rng = np.random.default_rng(seed)
    xs = rng.standard_normal((batch, steps, input_size), dtype=np.float32)
    target = rng.standard_normal((batch, steps, hidden), dtype=np.float32)
    return xs, target


def rnnlab_system(cell_name, xs, target, hidden, *, fused_path=True, remat=False):
    """Returns ``{"train": f, "infer": f}`` jitted callables and their arguments."""
    import jax
    import jax.numpy as jnp

    import rnnlab

    cell = rnnlab.cells.make(cell_name, hidden)
    params = cell.init(jax.random.key(0), xs.shape[-1])
    xs, target = jnp.asarray(xs), jnp.asarray(target)

    path = "auto" if fused_path else "sequential"

    def infer(params, xs):
        return rnnlab.unroll(cell, params, xs, remat=remat, path=path)[0]

    def loss(params, xs, target):
        return jnp.mean((infer(params, xs) - target) ** 2)

    train = jax.jit(jax.value_and_grad(loss)).lower(params, xs, target)
    infer_lowered = jax.jit(infer).lower(params, xs)
    return {"train": (train, (params, xs, target)), "infer": (infer_lowered, (params, xs))}


def flax_system(cell_name, xs, target, hidden):
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    if cell_name != "lstm":
        return None
    model = nn.RNN(nn.OptimizedLSTMCell(hidden))
    xs, target = jnp.asarray(xs), jnp.asarray(target)
    variables = model.init(jax.random.key(0), xs)

    def loss(variables, xs, target):
        return jnp.mean((model.apply(variables, xs) - target) ** 2)

    train = jax.jit(jax.value_and_grad(loss)).lower(variables, xs, target)
    infer = jax.jit(model.apply).lower(variables, xs)
    return {"train": (train, (variables, xs, target)), "infer": (infer, (variables, xs))}


def compile_jax(system):
    """Compiles the lowered functions; returns blocking callables and compile seconds."""
    import jax

    callables, seconds = {}, {}
    for mode, (lowered, args) in system.items():
        start = time.perf_counter()
        compiled = lowered.compile()
        seconds[mode] = time.perf_counter() - start

        def run(compiled=compiled, args=args):
            jax.block_until_ready(compiled(*args))

        callables[mode] = run
    return callables, seconds


def torch_system(cell_name, xs, target, hidden, device="cpu"):
    import torch

    import rnnlab

    module_type = getattr(torch.nn, rnnlab.cells.make(cell_name, hidden).exports["torch"])
    module = module_type(xs.shape[-1], hidden, batch_first=True).to(device)
    xs, target = torch.from_numpy(xs).to(device), torch.from_numpy(target).to(device)
    sync = torch.cuda.synchronize if device != "cpu" else (lambda: None)

    def train():
        module.zero_grad(set_to_none=True)
        loss = torch.mean((module(xs)[0] - target) ** 2)
        loss.backward()
        sync()

    def infer():
        with torch.no_grad():
            module(xs)
        sync()

    return {"train": train, "infer": infer}


# --------------------------------------------------------------------------- timing


def interleaved(callables: dict, reps: int) -> dict:
    """Times each callable ``reps`` times, round-robin, after one warm-up call each.

    The order rotates by one system every repetition.

    Returns per system the seconds of every repetition and the minor page faults
    per call (``getrusage``; counts the whole process, so only one system runs at a
    time).
    """
    for run in callables.values():
        run()
    seconds = {name: [] for name in callables}
    faults = {name: 0 for name in callables}
    names = list(callables)
    for rep in range(reps):
        # Rotate the order, so no system always runs right after the same neighbour.
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            run = callables[name]
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)
            faults[name] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    return {
        name: {"seconds": seconds[name], "faults_per_call": faults[name] / reps}
        for name in callables
    }


def training_flops(cell_name, batch, steps, input_size, hidden) -> float:
    """Matmul FLOPs of one training step: ``6 * B * T * G * H * (I + H)``.

    Forward: ``2 B G H (I + H)`` per step for ``x W_ih`` and ``h W_hh``.  Backward:
    twice that (the input gradients and the weight gradients).  The pointwise work
    is left out, so this is a lower bound on the work done.
    """
    return 6.0 * batch * steps * _gates(cell_name, hidden) * hidden * (input_size + hidden)


def _gates(cell_name, hidden) -> int:
    """``G`` of a dense gated cell, read off its recurrent weight ``[H, G*H]``."""
    import jax

    import rnnlab

    cell = rnnlab.cells.make(cell_name, hidden)
    shapes = jax.eval_shape(lambda key: cell.init(key, 1), jax.random.key(0))
    return shapes["weight_hh"].shape[-1] // hidden


def time_configuration(args, cell_name, steps, hidden, *, passes, with_generic, device="cpu"):
    """Interleaved timings of every system for one (cell, T, H); one dict per mode."""
    xs, target = make_problem(cell_name, args.batch, steps, args.input_size, hidden)
    compile_seconds, jax_systems = {}, {}
    builders = {"rnnlab": lambda: rnnlab_system(cell_name, xs, target, hidden)}
    if with_generic:
        builders["rnnlab-generic"] = lambda: rnnlab_system(
            cell_name, xs, target, hidden, fused_path=False
        )
    if args.baselines == "all":
        builders["flax"] = lambda: flax_system(cell_name, xs, target, hidden)
    for name, build in builders.items():
        system = build()
        if system is not None:
            jax_systems[name], compile_seconds[name] = compile_jax(system)
    torch_callables = torch_system(cell_name, xs, target, hidden, device)
    flops = training_flops(cell_name, args.batch, steps, args.input_size, hidden)
    results = []
    for mode in ("train", "infer"):
        callables = {name: system[mode] for name, system in jax_systems.items()}
        callables["torch"] = torch_callables[mode]
        runs = [interleaved(callables, args.reps) for _ in range(passes)]
        systems = {}
        for name in callables:
            all_seconds = [s for run in runs for s in run[name]["seconds"]]
            median = float(np.median(all_seconds))
            systems[name] = {
                "ms": 1e3 * median,
                "ms_per_pass": [1e3 * float(np.median(run[name]["seconds"])) for run in runs],
                "ms_quartiles": [1e3 * float(q) for q in np.percentile(all_seconds, [25, 75])],
                "faults_per_step": float(np.mean([run[name]["faults_per_call"] for run in runs])),
                "compile_s": compile_seconds.get(name, {}).get(mode),
            }
            if mode == "train":
                systems[name]["gflops"] = flops / median / 1e9
        torch_per_pass = systems["torch"]["ms_per_pass"]
        for entry in systems.values():
            per_pass = [a / b for a, b in zip(entry["ms_per_pass"], torch_per_pass, strict=True)]
            entry["ratio_vs_torch"] = entry["ms"] / systems["torch"]["ms"]
            entry["ratio_vs_torch_per_pass"] = per_pass
        results.append(
            dict(
                cell=cell_name,
                mode=mode,
                T=steps,
                H=hidden,
                B=args.batch,
                I=args.input_size,
                device=device,
                reps=args.reps,
                passes=passes,
                flops=flops,
                systems=systems,
            )
        )
    return results


def timing_section(args, progress, device="cpu", on_rows=lambda rows: None):
    configurations = [
        (cell, steps, args.hidden, 2, True) for cell in args.cells for steps in args.steps
    ]
    if not args.quick:
        # H=512 is matmul-bound and slow: one pass, no generic variant.
        configurations += [(cell, 1000, args.large_hidden, 1, False) for cell in args.cells]
    rows = []
    for cell, steps, hidden, passes, with_generic in configurations:
        rows += time_configuration(
            args,
            cell,
            steps,
            hidden,
            passes=1 if args.quick else passes,
            with_generic=with_generic and args.baselines == "all",
            device=device,
        )
        progress.update(1, cell=cell, T=steps, H=hidden)
        on_rows(rows)
    return rows


# --------------------------------------------------------------------------- other sections


def compile_section(args):
    """Compile seconds of the LSTM training step (rnnlab and flax) against T."""
    steps_list = [50, 1000] if args.quick else [50, 1000, 10000]
    rows = []
    for steps in steps_list:
        xs, target = make_problem("lstm", args.batch, steps, args.input_size, args.hidden)
        row = {"T": steps}
        builders = {
            "rnnlab": lambda xs=xs, target=target: rnnlab_system("lstm", xs, target, args.hidden),
            "rnnlab-remat": lambda xs=xs, target=target: rnnlab_system(
                "lstm", xs, target, args.hidden, remat=True
            ),
            "flax": lambda xs=xs, target=target: flax_system("lstm", xs, target, args.hidden),
        }
        for name, build in builders.items():
            start = time.perf_counter()
            system = build()
            lowered, _ = system["train"]
            lower_s = time.perf_counter() - start
            start = time.perf_counter()
            lowered.compile()
            row[name] = {"trace_s": lower_s, "compile_s": time.perf_counter() - start}
        rows.append(row)
    return rows


def memory_section(args):
    """XLA temporary bytes of the training step, with and without remat."""
    steps_list = [args.steps[-1]] if args.quick else [1000]
    rows = []
    for cell in args.cells:
        for steps in steps_list:
            xs, target = make_problem(cell, args.batch, steps, args.input_size, args.hidden)
            row = {"cell": cell, "T": steps}
            for name, kwargs in (
                ("rnnlab", {}),
                ("rnnlab-remat", {"remat": True}),
                ("rnnlab-generic", {"fused_path": False}),
            ):
                lowered, _ = rnnlab_system(cell, xs, target, args.hidden, **kwargs)["train"]
                stats = lowered.compile().memory_analysis()
                row[name] = stats.temp_size_in_bytes / 2**20
            row["remat_cut"] = 1.0 - row["rnnlab-remat"] / row["rnnlab"]
            rows.append(row)
    return rows


def _run_blocking(compiled, *args):
    import jax

    jax.block_until_ready(compiled(*args))


def paths_section(args, progress=None):
    """Sequential ``lax.scan`` against the parallel associative scan, for every registered
    cell with a :class:`~rnnlab.cells.LinearRecurrence`, forward and training step.

    Shape: B=16, F=H=64 (the LRU's state N=64), T in {256, 1024, 4096, 16384}; the
    two paths are timed interleaved in one process.  This table is the measurement
    behind ``rnnlab.unrolling.AUTO_PREFERENCE`` on this backend.
    """
    import jax
    import jax.numpy as jnp

    import rnnlab

    lengths = [64, 256] if args.quick else [256, 1024, 4096, 16384]
    batch, width = (4, 16) if args.quick else (16, 64)
    linear = [n for n in rnnlab.cells.available() if rnnlab.cells.make(n, 2).linear is not None]
    rows = []
    for name in linear:
        cell = rnnlab.cells.make(name, width)
        params = cell.init(jax.random.key(0), width)
        for steps in lengths:
            xs = jax.random.normal(jax.random.key(1), (batch, steps, width))
            systems = {}
            for path in ("sequential", "parallel"):

                def infer(params, xs, path=path, cell=cell):
                    return rnnlab.unroll(cell, params, xs, path=path)[0]

                def loss(params, xs, infer=infer):
                    return jnp.mean(infer(params, xs) ** 2)

                train = jax.jit(jax.grad(loss)).lower(params, xs).compile()
                forward = jax.jit(infer).lower(params, xs).compile()
                for mode, compiled in (("train", train), ("infer", forward)):
                    systems[f"{path}/{mode}"] = functools.partial(
                        _run_blocking, compiled, params, xs
                    )
            timed = interleaved(systems, args.reps)
            for mode in ("train", "infer"):
                ms = {p: 1e3 * float(np.median(timed[f"{p}/{mode}"]["seconds"]))
                      for p in ("sequential", "parallel")}  # fmt: skip
                rows.append({"cell": name, "mode": mode, "T": steps, "B": batch, "H": width,
                             "sequential_ms": ms["sequential"], "parallel_ms": ms["parallel"],
                             "parallel_over_sequential": ms["parallel"] / ms["sequential"],
                             "backend": jax.default_backend()})  # fmt: skip
            if progress is not None:
                progress.update(1, cell=name, T=steps)
    return rows


def peak_matmul(args, size=2048):
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    matmul = jax.jit(lambda a: a @ a)
    result = interleaved({"matmul": lambda: jax.block_until_ready(matmul(a))}, max(args.reps, 5))
    seconds = float(np.median(result["matmul"]["seconds"]))
    return {"size": size, "ms": 1e3 * seconds, "gflops": 2.0 * size**3 / seconds / 1e9}


def run_child(args, extra_env, extra_args, out):
    """Runs this script's timing section in a fresh process; returns its rows."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(extra_env)
    command = [
        sys.executable,
        __file__,
        "--child",
        "--out",
        str(out),
        "--sections",
        "timing",
        "--cells",
        "lstm",
        "--reps",
        str(args.reps),
        "--quick",  # one pass, standard shape only
        "--baselines",
        "torch",
        *extra_args,
    ]
    completed = subprocess.run(command, env=env, capture_output=True, text=True)
    if completed.returncode != 0:
        return {"error": completed.stderr[-2000:]}
    return json.loads((out / "summary.json").read_text())["timing"]


def allocator_section(args):
    from rnnlab.runtime import TUNED_MALLOC_ENV

    steps = [str(t) for t in args.steps]
    variants = {
        "default": ({}, ["--allocator", "default"]),
        "env": (TUNED_MALLOC_ENV, ["--allocator", "default"]),
        "mallopt": ({}, ["--allocator", "tuned"]),
    }
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (env, extra) in variants.items():
            out = Path(tmp) / name
            results[name] = run_child(args, env, [*extra, "--steps", *steps], out)
    return results


def flags_section(args):
    steps = ["200"] if 200 in args.steps else [str(args.steps[0])]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for index, flags in enumerate(FLAG_VARIANTS):
            out = Path(tmp) / str(index)
            results[flags or "(none)"] = run_child(
                args, {"XLA_FLAGS": flags}, ["--allocator", args.allocator, "--steps", *steps], out
            )
    return results


def gpu_available() -> tuple[bool, str]:
    import jax
    import torch

    backend = jax.default_backend()
    cuda = torch.cuda.is_available()
    return backend == "gpu" and cuda, f"jax backend {backend!r}, torch.cuda {cuda}"


# --------------------------------------------------------------------------- report


def _fmt_ratio(entry):
    per_pass = entry["ratio_vs_torch_per_pass"]
    spread = f" ({min(per_pass):.2f}-{max(per_pass):.2f})" if len(per_pass) > 1 else ""
    return f"{entry['ratio_vs_torch']:.2f}x{spread}"


def timing_table(rows, mode):
    systems = ["rnnlab", "rnnlab-generic", "torch", "flax"]
    lines = [
        "| cell | T | H | " + " | ".join(f"{s} ms" for s in systems) + " | rnnlab / torch |",
        "|---|---|---|" + "---|" * len(systems) + "---|",
    ]
    for row in rows:
        if row["mode"] != mode:
            continue
        cells = [f"{row['systems'][s]['ms']:.1f}" if s in row["systems"] else "-" for s in systems]
        ratio = _fmt_ratio(row["systems"]["rnnlab"])
        lines.append(f"| {row['cell']} | {row['T']} | {row['H']} | {' | '.join(cells)} | {ratio} |")
    return "\n".join(lines)


def write_report(summary: dict, command: str) -> str:
    parts = [
        "# rnnlab benchmark",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {summary['machine']}",
        "",
        "Protocol: one process, systems interleaved round-robin, median of "
        f"{summary['config']['reps']} repetitions per pass; ratios per pass in parentheses "
        "(min-max). rnnlab = `rnnlab.unroll` (fast path), rnnlab-generic = plain `lax.scan` "
        "autodiff (`path='sequential'`), flax = `nn.RNN(OptimizedLSTMCell)`. "
        f"Allocator in this process: {summary['config']['allocator']}.",
    ]
    if "timing" in summary:
        parts += ["", "## Training step (forward + backward), ms", ""]
        parts += [timing_table(summary["timing"], "train")]
        parts += ["", "## Forward-only inference, ms", ""]
        parts += [timing_table(summary["timing"], "infer")]
        key = [r for r in summary["timing"] if r["mode"] == "train" and r["cell"] == "lstm"]
        key = [r for r in key if r["T"] == 200 and r["H"] == 128]
        if key:
            entry = key[0]["systems"]
            parts += [
                "",
                f"**Key figure:** one LSTM training step at B=32, T=200, I=32, H=128: "
                f"rnnlab {entry['rnnlab']['ms']:.1f} ms, torch.nn.LSTM "
                f"{entry['torch']['ms']:.1f} ms, ratio {_fmt_ratio(entry['rnnlab'])}.",
            ]
    if "flops" in summary:
        flops = summary["flops"]
        parts += [
            "",
            "## Achieved GFLOP/s (training step)",
            "",
            f"Peak: {flops['peak']['size']}^2 float32 matmul in JAX, "
            f"{flops['peak']['gflops']:.0f} GFLOP/s. FLOPs = 6 B T G H (I + H) "
            "(matmuls only, G gates).",
            "",
            "| cell | T | H | system | GFLOP/s | % of peak |",
            "|---|---|---|---|---|---|",
        ]
        for row in flops["rows"]:
            parts.append(
                f"| {row['cell']} | {row['T']} | {row['H']} | {row['system']} | "
                f"{row['gflops']:.1f} | {100 * row['fraction']:.0f}% |"
            )
    if "compile" in summary:
        parts += [
            "",
            "## Compile time of the LSTM training step, s (trace / XLA compile)",
            "",
            "| T | rnnlab | rnnlab remat | flax |",
            "|---|---|---|---|",
        ]
        for row in summary["compile"]:
            cells = [
                f"{row[s]['trace_s']:.2f} / {row[s]['compile_s']:.2f}"
                for s in ("rnnlab", "rnnlab-remat", "flax")
            ]
            parts.append(f"| {row['T']} | {' | '.join(cells)} |")
    if "paths" in summary:
        parts += [
            "",
            "## Sequential against parallel (associative) scan, linear cells, ms",
            "",
            "| cell | mode | T | sequential | parallel | parallel / sequential |",
            "|---|---|---|---|---|---|",
        ]
        for row in summary["paths"]:
            parts.append(
                f"| {row['cell']} | {row['mode']} | {row['T']} | {row['sequential_ms']:.2f} | "
                f"{row['parallel_ms']:.2f} | {row['parallel_over_sequential']:.2f}x |"
            )
    if "memory" in summary:
        parts += [
            "",
            "## XLA temporary memory of the training step, MiB",
            "",
            "| cell | T | rnnlab | rnnlab remat | generic scan | remat cut |",
            "|---|---|---|---|---|---|",
        ]
        for row in summary["memory"]:
            parts.append(
                f"| {row['cell']} | {row['T']} | {row['rnnlab']:.1f} | {row['rnnlab-remat']:.1f} "
                f"| {row['rnnlab-generic']:.1f} | {100 * row['remat_cut']:.0f}% |"
            )
    for section, title, label in (
        ("allocator", "Allocator (child processes, LSTM training step)", "setting"),
        ("flags", "XLA_FLAGS (child processes, LSTM training step)", "XLA_FLAGS"),
    ):
        if section not in summary:
            continue
        parts += [
            "",
            f"## {title}",
            "",
            f"| {label} | T | rnnlab ms | torch ms | rnnlab / torch | "
            "rnnlab faults/step | torch faults/step |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, rows in summary[section].items():
            if isinstance(rows, dict):
                parts.append(f"| {name} | failed: {rows['error'][-200:]!r} | | | | | |")
                continue
            for row in rows:
                if row["mode"] != "train":
                    continue
                mine, theirs = row["systems"]["rnnlab"], row["systems"]["torch"]
                parts.append(
                    f"| `{name}` | {row['T']} | {mine['ms']:.1f} | {theirs['ms']:.1f} | "
                    f"{mine['ratio_vs_torch']:.2f}x | {mine['faults_per_step']:.0f} | "
                    f"{theirs['faults_per_step']:.0f} |"
                )
    if "gpu" in summary:
        parts += ["", "## GPU", ""]
        gpu = summary["gpu"]
        if gpu.get("skipped"):
            parts.append(f"Skipped: no GPU ({gpu['reason']}).")
        else:
            parts += [
                timing_table(gpu["timing"], "train"),
                "",
                timing_table(gpu["timing"], "infer"),
            ]
    text = "\n".join(parts) + "\n"
    return text


def flops_rows(summary):
    peak = summary["flops"]["peak"]["gflops"]
    rows = []
    for row in summary.get("timing", []):
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
                    fraction=entry["gflops"] / peak,
                )
            )
    return rows


def main(argv=None):
    args = parse_args(argv)
    if args.allocator == "tuned":
        from rnnlab import runtime

        allocator = "tuned (rnnlab.runtime.tune_allocator)"
        if not runtime.tune_allocator():
            allocator = "default (mallopt unavailable)"
    else:
        allocator = "glibc default" + (
            " + MALLOC_* environment" if "MALLOC_MMAP_MAX_" in os.environ else ""
        )

    import jax
    import torch

    from rnnlab import io, progress
    from rnnlab.plots import bench as bench_plots

    torch.set_num_threads(os.cpu_count())
    command = " ".join([".venv/bin/python", "experiments/bench.py", *sys.argv[1:]])
    config = {
        "command": command,
        "allocator": allocator,
        "torch_threads": torch.get_num_threads(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        **{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    summary = {
        "config": config,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"jax {jax.__version__} ({jax.default_backend()}), torch {torch.__version__}",
    }
    if not args.child:
        io.write_json(args.out / "config.json", config)
    sections = [s for s in SECTIONS if s in args.sections]
    if args.quick:
        sections = [s for s in sections if s != "flags"]
    if args.child:
        sections = [s for s in sections if s not in ("allocator", "flags", "gpu")]

    def save(summary):
        """Writes what is measured so far, so a killed run keeps its finished sections."""
        io.write_json(args.out / "summary.json", summary)
        if not args.child:
            io.write_text(args.out / "report.md", write_report(summary, command))

    total = len(args.cells) * len(args.steps) + (0 if args.quick else len(args.cells))
    for section in sections:
        if section == "timing":
            with progress.Progress(total, "bench timing", unit="config") as bar:
                summary["timing"] = timing_section(
                    args, bar, on_rows=lambda rows: save({**summary, "timing": rows})
                )
        elif section == "flops":
            summary["flops"] = {"peak": peak_matmul(args)}
            summary["flops"]["rows"] = flops_rows(summary)
        elif section == "compile":
            summary["compile"] = compile_section(args)
        elif section == "paths":
            summary["paths"] = paths_section(args)
        elif section == "memory":
            summary["memory"] = memory_section(args)
        elif section == "allocator":
            summary["allocator"] = allocator_section(args)
        elif section == "flags":
            summary["flags"] = flags_section(args)
        elif section == "gpu":
            available, reason = gpu_available()
            if available:
                summary["gpu"] = {"timing": timing_section(args, progress.Progress(0), "cuda")}
            else:
                summary["gpu"] = {"skipped": True, "reason": reason}
        print(f"bench: {section} done", file=sys.stderr, flush=True)
        save(summary)
    if args.child:
        return summary
    report = write_report(summary, command)
    if "timing" in summary:
        io.write_csv(
            args.out / "timings.csv",
            [
                dict(
                    cell=r["cell"],
                    mode=r["mode"],
                    T=r["T"],
                    H=r["H"],
                    system=name,
                    **{k: entry[k] for k in ("ms", "ratio_vs_torch", "faults_per_step")},
                )
                for r in summary["timing"]
                for name, entry in r["systems"].items()
            ],
        )
        bench_plots.plot_timings(summary["timing"], args.out / "bench.png")
    print(report)
    print(f"wrote {args.out}/report.md, summary.json, timings.csv, bench.png", file=sys.stderr)
    return summary


if __name__ == "__main__":
    main()
