"""Smoke test of experiments/bench.py (the CLI over rnnlab.bench) in a tiny configuration.

Oracle: the files the spec asks for exist and hold the expected keys.
"""

import json

import pytest
from conftest import load_experiment


@pytest.fixture(scope="module")
def bench():
    return load_experiment("bench")


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
            "--lengths",
            "4",
            "--repetitions",
            "1",
            "--hidden-size",
            "8",
            "--sections",
            "timing",
            "memory",
            "flops",
            "gpu",
            "log",
        ]
    )
    for name in ("report.md", "summary.json", "config.json", "timings.csv", "bench.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {"config", "machine", "timing", "memory", "flops", "gpu", "log"} <= set(summary)
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
    # Oracle: every row of rnnlab.bench.log's table appears in the report.
    assert len(summary["log"]) >= 10
    assert all(row["idea"] in report for row in summary["log"])


RENAMED = [
    ("--steps", "--lengths"),
    ("--reps", "--repetitions"),
    ("--hidden", "--hidden-size"),
    ("--batch", "--batch-size"),
]


@pytest.mark.parametrize("old, new", RENAMED)
def test_renamed_flags_fail_naming_the_new_flag(bench, capsys, old, new):
    """Oracle: VOCAB.md's table; an old spelling exits 2 and names the new flag."""
    with pytest.raises(SystemExit) as exit_info:
        bench.parse_args(["--out", "x", old, "4"])
    assert exit_info.value.code == 2
    assert new in capsys.readouterr().err


def test_peak_rss_of_a_child_is_its_own():
    """Oracle: a child that allocates 32 MiB reports a peak RSS of at least that and
    a wall time of at least its sleep, while this process holds 128 MiB more that must
    not count (Linux's ru_maxrss of a plain fork starts at the parent's RSS)."""
    import sys

    import numpy as np

    from rnnlab.bench import harness

    held = np.ones(2**25, np.float32)  # 128 MiB, touched
    code = "import time; b = bytearray(32 * 2**20); time.sleep(0.2)"
    run = harness.run_process([sys.executable, "-c", code])
    assert run["returncode"] == 0, run["stderr"]
    assert 32 <= run["peak_rss_mib"] < 100, run["peak_rss_mib"]
    assert run["wall_s"] >= 0.2
    del held
