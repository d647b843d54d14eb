"""Benchmark suite: rnnlab against torch.nn and flax, following ../shared/PERF.md.

One process, the systems interleaved round-robin, medians of ``--repetitions``, compile
time apart.  The work is in :mod:`rnnlab.bench` (systems, harness, sections, report);
this script parses the configuration, runs the sections and writes ``config.json``,
``summary.json``, ``report.md``, ``timings.csv`` and ``bench.png`` into ``--out``.
Sections (``--sections``; see :mod:`rnnlab.bench.sections`): timing, flops, memory,
compile, paths, gpu, allocator, flags, sweep-scaling, peak-memory, startup,
compile-program, log.

The process calls ``rnnlab.runtime.tune_allocator()`` first (``--allocator tuned``), so
its timings compare both systems under the tuned allocator; ``allocator`` shows both.

Usage::

    .venv/bin/python experiments/bench.py --out results/bench          # make bench
    .venv/bin/python experiments/bench.py --out /tmp/bench --quick     # a few minutes
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
from pathlib import Path

from rnnlab.bench.sections import SECTIONS
from rnnlab.cli import Parser

ROOT = Path(__file__).resolve().parents[1]
CELLS = ("lstm", "gru", "rnn")

#: The benchmark's own renames (rnnlab.cli.RENAMED_FLAGS holds the shared ones): here
#: ``--steps`` used to mean the sequence length.
RENAMED_FLAGS = {"--steps": "--lengths", "--large-hidden": "--large-hidden-size"}


def parse_args(argv=None):
    parser = Parser(description=__doc__.split("\n\n")[0], allow_abbrev=False, renamed=RENAMED_FLAGS)
    spellings = [s.replace("_", "-") for s in SECTIONS]
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--sections", nargs="+", choices=spellings, default=spellings)
    parser.add_argument("--cells", nargs="+", choices=CELLS, default=list(CELLS))
    parser.add_argument("--lengths", nargs="+", type=int, help="T of the standard shape")
    parser.add_argument("--repetitions", type=int, help="timed repetitions per pass (median)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--input-size", type=int, default=32)
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--large-hidden-size", type=int, default=512)
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
    parser.add_argument(
        "--full-make-run",
        action="store_true",
        help="peak-memory: run make run's command in full (default: with --quick)",
    )
    args = parser.parse_args(argv)
    if args.lengths is None:
        args.lengths = [50] if args.quick else [50, 200, 1000]
    if args.repetitions is None:
        args.repetitions = 3 if args.quick else 7
    if args.repetitions < 1:
        parser.error("--repetitions: must be an int >= 1")
    if min(args.lengths) < 1:
        parser.error("--lengths: every T must be an int >= 1")
    args.sections = [s.replace("-", "_") for s in args.sections]
    if args.quick:  # the flags section is minutes of child processes
        args.sections = [s for s in args.sections if s != "flags"]
    return args


def _allocator(args) -> str:
    if args.allocator == "tuned":
        from rnnlab import runtime

        if runtime.tune_allocator():
            return "tuned (rnnlab.runtime.tune_allocator)"
        return "default (mallopt unavailable)"
    extra = " + MALLOC_* environment" if "MALLOC_MMAP_MAX_" in os.environ else ""
    return "glibc default" + extra


def main(argv=None):
    args = parse_args(argv)
    allocator = _allocator(args)

    import jax
    import torch

    from rnnlab import io, progress
    from rnnlab.bench import report, sections
    from rnnlab.plots import bench as bench_plots

    torch.set_num_threads(os.cpu_count())
    command = " ".join([".venv/bin/python", "experiments/bench.py", *(argv or sys.argv[1:])])
    details = {
        "command": command,
        "allocator": allocator,
        "torch_threads": torch.get_num_threads(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
    document = io.write_config(args.out, "bench", vars(args), details=details)
    summary = {
        # The report's protocol line reads ``reps``.
        "config": {**details, **document["config"], "reps": args.repetitions,
                   "versions": document["versions"]},
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"jax {jax.__version__} ({jax.default_backend()}), torch {torch.__version__}",
    }  # fmt: skip

    def save(current):
        """Writes what is measured so far, so a killed run keeps its finished sections."""
        report.write_artifacts(args.out, current, command)

    with tempfile.TemporaryDirectory(prefix="rnnlab-bench-") as scratch:
        runs = {
            "flops": lambda: sections.flops_section(args, summary.get("timing", ())),
            "memory": lambda: sections.memory_section(args),
            "compile": lambda: sections.compile_section(args),
            "paths": lambda: sections.paths_section(args),
            "gpu": lambda: sections.gpu_section(args),
            "allocator": lambda: sections.allocator_section(args),
            "flags": lambda: sections.flags_section(args),
            "sweep_scaling": lambda: sections.sweep_scaling_section(args),
            "peak_memory": lambda: sections.peak_memory_section(
                args, ROOT, Path(scratch), full_run=args.full_make_run
            ),
            "startup": lambda: sections.startup_section(args, ROOT),
            "compile_program": lambda: sections.compile_program_section(args),
            "log": lambda: sections.log_section(args),
        }
        for section in [s for s in SECTIONS if s in args.sections]:
            if section == "timing":
                total = sections.timing_configurations(args)
                with progress.Progress(total, "bench timing", unit="config") as bar:
                    summary["timing"] = sections.timing_section(
                        args, bar, on_rows=lambda rows: save({**summary, "timing": rows})
                    )
            else:
                summary[section] = runs[section]()
            print(f"bench: {section} done", file=sys.stderr, flush=True)
            save(summary)
    text = report.write_artifacts(args.out, summary, command)
    if summary.get("timing"):
        bench_plots.plot_timings(summary["timing"], args.out / "bench.png")
    print(text)
    written = sorted(path.name for path in args.out.iterdir())
    print(f"wrote {', '.join(written)} in {args.out}", file=sys.stderr)
    return summary


if __name__ == "__main__":
    main()
