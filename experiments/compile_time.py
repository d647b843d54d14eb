"""Compile time of the training program against its model, and cold/warm process times.

Issue 13's compile target: a whole ``Trainer.train`` program should compile in at most 2x
the time of its model's ``value_and_grad`` alone, and re-running an experiment with the
same shapes should compile nothing (the persistent cache, :mod:`rnnlab.runtime`).

Sections:

- ``programs``: per cell, in this process with every cache off, the trace (lower) and XLA
  compile seconds of (a) ``jit(value_and_grad(loss))`` of the model on one minibatch and
  (b) ``jit(trainer.train)``, the whole run (init, nested scans, sampler, optimizer,
  evaluation); their ratio; and the number of fusions (XLA CPU kernels) in each
  optimized program.  Medians over ``--repetitions``; ``jax.clear_caches()`` between them.
- ``processes``: wall seconds of whole commands in fresh processes, cold (an empty
  compilation cache folder) and then warm (the same folder again): ``experiments/train.py``
  at the ``programs`` shape, and with ``--with-experiments`` also ``grad_norms.py --quick``
  and ``sweep.py --quick``.

Run: ``PYTHONPATH=$PWD .venv/bin/python experiments/compile_time.py --out results/compile``
(``--quick`` for a smoke test).  Writes ``config.json``, ``summary.json``, ``report.md``
and ``compile_time.png``.  Timings of a shared machine are noisy: use medians.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rnnlab import cli, io, plots, runtime
from rnnlab.bench import programs

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    parser = cli.Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cells", nargs="+", default=["lstm", "gru", "rnn"])
    parser.add_argument("--hidden-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=100)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--chunk-steps", type=int, default=50)
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--sections", nargs="+", default=["programs", "processes"])
    parser.add_argument(
        "--with-experiments",
        action="store_true",
        help="also time grad_norms.py --quick and sweep.py --quick cold and warm (minutes)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one rep")
    args = parser.parse_args(argv)
    if args.quick:
        args.cells, args.hidden_size, args.length = args.cells[:1], 4, 5
        args.steps, args.chunk_steps, args.repetitions = 4, 2, 1
    parser.check_at_least(args, 1, "hidden_size", "length", "steps", "chunk_steps", "repetitions")
    if args.steps % args.chunk_steps:
        parser.error("--chunk-steps must divide --steps")
    return args


def measure_programs(args, cell) -> dict:
    """Median trace/compile seconds and fusion counts of the model's gradient and the run."""
    return programs.measure_programs(
        cell,
        hidden_size=args.hidden_size,
        length=args.length,
        steps=args.steps,
        chunk_steps=args.chunk_steps,
        repetitions=args.repetitions,
    )


def _wall(command: list[str], cache: Path) -> float:
    env = {**os.environ, runtime.CACHE_DIR_ENV: str(cache), "JAX_PLATFORMS": "cpu"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def measure_processes(args, scratch: Path) -> dict:
    """Cold then warm wall seconds of each command, each pair in its own fresh cache folder."""
    python = sys.executable
    cell = args.cells[0]
    commands = {
        f"train.py ({cell}, adding T={args.length}, {args.steps} steps)": [
            python,
            str(ROOT / "experiments" / "train.py"),
            "--task=adding",
            f"--cell={cell}",
            f"--length={args.length}",
            f"--hidden-size={args.hidden_size}",
            f"--steps={args.steps}",
            f"--chunk-steps={args.chunk_steps}",
            "--quiet",
        ],
    }
    if args.with_experiments:
        commands["grad_norms.py --quick (make run, quick)"] = [
            python,
            str(ROOT / "experiments" / "grad_norms.py"),
            "--quick",
        ]
        commands["sweep.py --quick"] = [python, str(ROOT / "experiments" / "sweep.py"), "--quick"]
    result = {}
    for index, (name, command) in enumerate(commands.items()):
        cache = scratch / f"cache{index}"
        walls = {}
        for phase in ("cold", "warm"):
            out = scratch / f"out{index}_{phase}"
            walls[phase] = _wall([*command, f"--out={out}"], cache)
        walls["warm_over_cold"] = walls["warm"] / walls["cold"]
        walls["command"] = " ".join(Path(part).name if i < 2 else part
                                    for i, part in enumerate(command))  # fmt: skip
        result[name] = walls
    return result


def write_report(summary: dict, out: Path) -> None:
    lines = ["# Compile time", "", f"Command: `{summary['command']}`", ""]
    if "programs" in summary:
        lines += [
            "## Training program against its model (median seconds, trace + XLA compile)",
            "",
            "| cell | value_and_grad | train | ratio | fusions (vg / train) |",
            "|---|---|---|---|---|",
        ]
        for cell, row in summary["programs"].items():
            vg, train = row["value_and_grad"], row["train"]
            lines.append(
                f"| {cell} | {vg['total_s']:.2f} | {train['total_s']:.2f} | "
                f"{row['ratio']:.1f}x | {vg['fusions']} / {train['fusions']} |"
            )
        lines.append("")
    if "processes" in summary:
        lines += [
            "## Whole processes, cold and warm persistent cache (wall seconds)",
            "",
            "| command | cold | warm | warm / cold |",
            "|---|---|---|---|",
        ]
        for name, row in summary["processes"].items():
            lines.append(
                f"| {name} | {row['cold']:.1f} | {row['warm']:.1f} | {row['warm_over_cold']:.2f} |"
            )
        lines.append("")
    io.write_text(out / "report.md", "\n".join(lines))


def plot(summary: dict, out: Path) -> None:
    rows = summary.get("programs", {})
    if not rows:
        return
    fig, ax = plots.figure(figsize=(6, 3.5))
    cells = list(rows)
    width = 0.38
    for offset, name in ((-width / 2, "value_and_grad"), (width / 2, "train")):
        ax.bar(
            [i + offset for i in range(len(cells))],
            [rows[c][name]["total_s"] for c in cells],
            width,
            label=f"jit({name})",
        )
    ax.set_xticks(range(len(cells)), cells)
    ax.set_ylabel("trace + compile, s (median)")
    ax.set_title(f"Compile time: the whole run against its model ({summary['shape']})")
    ax.legend()
    plots.save(fig, out / "compile_time.png")


def main(argv=None) -> dict:
    args = parse_args(argv)
    runtime.tune_allocator()
    args.out.mkdir(parents=True, exist_ok=True)
    io.write_config(args.out, "compile_time", vars(args))
    summary = {
        "command": " ".join(["experiments/compile_time.py", *(argv or sys.argv[1:])]),
        "shape": f"adding T={args.length}, H={args.hidden_size}, {args.steps} steps",
    }
    if "programs" in args.sections:
        with programs.no_persistent_cache():
            summary["programs"] = {cell: measure_programs(args, cell) for cell in args.cells}
        io.write_json(args.out / "summary.json", summary)
    if "processes" in args.sections:
        with tempfile.TemporaryDirectory(prefix="rnnlab-compile-") as scratch:
            summary["processes"] = measure_processes(args, Path(scratch))
    io.write_json(args.out / "summary.json", summary)
    write_report(summary, args.out)
    plot(summary, args.out)
    print((args.out / "report.md").read_text())
    return summary


if __name__ == "__main__":
    main()
