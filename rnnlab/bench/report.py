"""The benchmark's report: markdown (``report.md``), JSON and CSV artifacts.

:func:`write_report` renders every section present in a summary (the dict of
section name to the data :mod:`rnnlab.bench.sections` returned); :func:`write_artifacts`
writes ``summary.json``, ``report.md`` and, with timings, ``timings.csv``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["timing_csv_rows", "timing_table", "write_artifacts", "write_report"]


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
    """The markdown report of every section in ``summary``."""
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
    parts += _new_sections(summary)
    return "\n".join(parts) + "\n"


def _new_sections(summary) -> list[str]:
    parts = []
    if "sweep_scaling" in summary:
        data = summary["sweep_scaling"]
        shape = data["shape"]
        strategies = data["strategies"]
        parts += [
            "",
            "## Sweep scaling: configurations x steps per second",
            "",
            f"`run_sweep` on {shape['cell']} H={shape['hidden_size']}, {shape['task']} "
            f"T={shape['length']}, {shape['steps']} steps, learning rates log-spaced (one "
            "static group). End to end (compilation, calibration and worker start-up "
            "included); compile seconds of each call in parentheses; `auto`'s choice after "
            "the arrow.",
            "",
            "| configurations | " + " | ".join(strategies) + " |",
            "|---|" + "---|" * len(strategies),
        ]
        for count in data["counts"]:
            cells = []
            for strategy in strategies:
                row = next(
                    r
                    for r in data["rows"]
                    if r["configurations"] == count and r["strategy"] == strategy
                )
                chosen = f" -> {row['chosen']}" if strategy == "auto" else ""
                cells.append(f"{row['config_steps_per_s']:.3g} ({row['compile_s']:.1f} s)"
                             f"{chosen}")  # fmt: skip
            parts.append(f"| {count} | " + " | ".join(cells) + " |")
        check = data["auto_check"]
        if check.get("met") is not None:
            parts += [
                "",
                f"At {check['configurations']} configurations `auto` runs at "
                f"{check['auto_over_best']:.2f}x the best strategy ({check['best']}): "
                f"target (within 10%) {'met' if check['met'] else 'not met'}.",
            ]
    if "peak_memory" in summary:
        data = summary["peak_memory"]
        run, shape = data["make_run"], data["step_shape"]
        parts += [
            "",
            "## Peak memory (fresh processes)",
            "",
            f"`make run` as `{run['command']}`: peak RSS {run['peak_rss_mib']:.0f} MiB, "
            f"{run['wall_s']:.1f} s" + (" (failed)" if "error" in run else "") + ".",
            "",
            f"One LSTM training step, B={shape['batch_size']}, I={shape['input_size']}, "
            f"H={shape['hidden_size']}, T={shape['length']}:",
            "",
            "| variant | peak RSS MiB | XLA temp MiB | step s | compile s |",
            "|---|---|---|---|---|",
        ]
        for name, row in data["steps"].items():
            if "error" in row:
                parts.append(f"| {name} | failed: {row['error'][-200:]!r} | | | |")
                continue
            parts.append(
                f"| {name} | {row['peak_rss_mib']:.0f} | {row['temp_mib']:.1f} | "
                f"{row['step_s']:.2f} | {row['compile_s']:.2f} |"
            )
    if "startup" in summary:
        data = summary["startup"]
        parts += [
            "",
            f"## Start-up, wall seconds (fresh interpreters, median of {data['repetitions']})",
            "",
            "| command | median s |",
            "|---|---|",
        ]
        parts += [f"| `{name}` | {value:.2f} |" for name, value in data["median_s"].items()]
        parts += [
            "",
            f"`import rnnlab` costs {data['rnnlab_over_jax_s']:+.2f} s over `import jax`. "
            + "; ".join(f"{k}: {'met' if v else 'not met'}" for k, v in data["targets"].items())
            + ".",
        ]
    if "compile_program" in summary:
        data = summary["compile_program"]
        shape = data["shape"]
        parts += [
            "",
            "## Compile: training program against its model (trace + XLA compile, median s)",
            "",
            f"adding T={shape['length']}, H={shape['hidden_size']}, {shape['steps']} steps; "
            "target: ratio at most 2.",
            "",
            "| cell | value_and_grad | train | ratio | fusions (vg / train) |",
            "|---|---|---|---|---|",
        ]
        for cell, row in data["cells"].items():
            vg, train = row["value_and_grad"], row["train"]
            parts.append(
                f"| {cell} | {vg['total_s']:.2f} | {train['total_s']:.2f} | "
                f"{row['ratio']:.1f}x | {vg['fusions']} / {train['fusions']} |"
            )
    if "log" in summary:
        parts += [
            "",
            "## Experiment log: the LSTM training step against torch.nn.LSTM",
            "",
            "| idea | figure | kept | source |",
            "|---|---|---|---|",
        ]
        parts += [f"| {r['idea']} | {r['figure']} | {r['kept']} | {r['source']} |"
                  for r in summary["log"]]  # fmt: skip
    return parts


def timing_csv_rows(timing_rows) -> list[dict]:
    """One CSV row per (cell, mode, T, H, system) of the ``timing`` section."""
    return [
        dict(
            cell=r["cell"],
            mode=r["mode"],
            T=r["T"],
            H=r["H"],
            system=name,
            **{k: entry[k] for k in ("ms", "ratio_vs_torch", "faults_per_step")},
        )
        for r in timing_rows
        for name, entry in r["systems"].items()
    ]


def write_artifacts(out: Path, summary: dict, command: str) -> str:
    """Writes ``summary.json``, ``report.md`` and (with timings) ``timings.csv``; returns
    the report.  Atomic writes (:mod:`rnnlab.io`), so a killed run keeps what it wrote."""
    from rnnlab import io

    report = write_report(summary, command)
    io.write_json(out / "summary.json", summary)
    io.write_text(out / "report.md", report)
    if summary.get("timing"):
        io.write_csv(out / "timings.csv", timing_csv_rows(summary["timing"]))
    return report
