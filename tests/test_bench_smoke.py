"""Smoke test of experiments/bench.py in a tiny configuration.

Oracle: the files the spec asks for exist and hold the expected keys.
"""

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "experiments" / "bench.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_run_writes_report_json_and_plot(bench, tmp_path):
    """A tiny run writes report.md, summary.json, timings.csv and bench.png."""
    bench.main(
        [
            "--out",
            str(tmp_path),
            "--quick",
            "--allocator",
            "default",
            "--cells",
            "lstm",
            "--steps",
            "4",
            "--reps",
            "1",
            "--hidden",
            "8",
            "--sections",
            "timing",
            "memory",
            "flops",
            "gpu",
        ]
    )
    for name in ("report.md", "summary.json", "config.json", "timings.csv", "bench.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {"config", "machine", "timing", "memory", "flops", "gpu"} <= set(summary)
    modes = {(row["mode"], row["cell"], row["T"]) for row in summary["timing"]}
    assert modes == {("train", "lstm", 4), ("infer", "lstm", 4)}
    for row in summary["timing"]:
        systems = row["systems"]
        assert {"rnnlab", "rnnlab-generic", "torch", "flax"} <= set(systems)
        assert systems["rnnlab"]["compile_s"] > 0
    assert summary["memory"][0]["rnnlab"] > 0
    assert summary["flops"]["peak"]["gflops"] > 0
    assert "skipped" in summary["gpu"] or "timing" in summary["gpu"]
    report = (tmp_path / "report.md").read_text()
    for heading in ("Training step", "Forward-only inference", "GFLOP/s", "temporary memory"):
        assert heading in report
