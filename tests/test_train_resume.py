"""Resuming rnnlab.train runs: after a kill, the result is bit-identical to an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import chex
import numpy as np
import pytest

from rnnlab import io
from rnnlab.train import TrainConfig, restore_state, run, runner

ROOT = Path(__file__).resolve().parents[1]
CONFIG = dict(task="adding", length=8, hidden_size=8, batch_size=8, steps=60, chunk_steps=10)
ARGS = [
    "--task=adding",
    "--length=8",
    "--hidden-size=8",
    "--batch-size=8",
    "--steps=40",
    "--chunk-steps=5",
    "--quiet",
]
TIMING = "steps_per_second"
#: Summary entries that differ between sessions by nature: timing and the sessions' log.
SESSION = ("wall_time_s", "history")


def _records(out: Path) -> list[dict]:
    records = io.read_jsonl(out / "metrics.jsonl")
    return [{k: v for k, v in record.items() if k != TIMING} for record in records]


def _final(out: Path) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    return {k: v for k, v in summary.items() if k not in SESSION}


def _assert_same_run(resumed: Path, uninterrupted: Path) -> None:
    assert _records(resumed) == _records(uninterrupted)
    assert _final(resumed) == _final(uninterrupted)
    chex.assert_trees_all_equal(restore_state(resumed), restore_state(uninterrupted))


def test_stop_and_resume_in_process_is_bit_identical(tmp_path):
    """Oracle: the uninterrupted run with the same seed — params, optimizer state, PRNG key,
    metrics and summary agree bit for bit after stopping at a chunk boundary and resuming,
    also when a metrics record was appended after the last checkpoint (a kill between the
    two writes): it is replayed, not duplicated."""
    config = TrainConfig(**CONFIG)
    stopped = run(config, tmp_path / "a", stop_after_chunks=3, progress=False, plots=False)
    assert stopped.summary == {"stopped_at_step": 30}
    assert not (tmp_path / "a" / "summary.json").exists()
    records = io.read_jsonl(tmp_path / "a" / "metrics.jsonl")
    io.append_jsonl(tmp_path / "a" / "metrics.jsonl", [{**records[-1], "step": 40}])
    train_chunk = runner._compiled(runner._program_key(config))[0]
    compiled = train_chunk._cache_size()
    run(config, tmp_path / "a", progress=False, plots=False)
    run(config, tmp_path / "b", progress=False, plots=False)
    _assert_same_run(tmp_path / "a", tmp_path / "b")
    # Oracle: jax's own count of compiled programs.  Neither the resumed session nor one
    # continuing the run to more steps compiles the chunk again.
    longer = run(config.replace(steps=70), tmp_path / "a", progress=False, plots=False)
    assert longer.summary["steps"] == 70
    assert train_chunk._cache_size() == compiled
    with pytest.raises(ValueError, match="hidden_size"):
        run(config.replace(hidden_size=16), tmp_path / "a", progress=False)


def _train(out: Path, cache: Path, *extra: str) -> subprocess.Popen:
    """``experiments/train.py`` of this checkout in a subprocess; a shared compilation cache
    saves recompiling."""
    command = [sys.executable, str(ROOT / "experiments" / "train.py"), *ARGS, f"--out={out}"]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "JAX_PLATFORMS": "cpu",
        "JAX_COMPILATION_CACHE_DIR": str(cache),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }
    return subprocess.Popen(
        [*command, *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def test_sigkill_then_rerun_is_bit_identical(tmp_path):
    """Oracle: an uninterrupted subprocess run — SIGKILL mid-run, re-run the same command
    with the same --out, and the final params and metrics agree bit for bit.  The kill is
    deterministic: the run pauses (a hidden test hook) after its third chunk's records
    and checkpoint are on disk, and is killed there, five chunks before its end."""
    killed, reference, cache = tmp_path / "killed", tmp_path / "reference", tmp_path / "cache"
    uninterrupted = _train(reference, cache)
    assert uninterrupted.wait(timeout=300) == 0, uninterrupted.stderr.read().decode()
    process = _train(killed, cache, "--pause-after-chunks=3")
    try:
        paused = process.stdout.readline()  # blocks until the pause (or EOF on a crash)
        assert paused.startswith(b"paused after step 15"), process.stderr.read().decode()
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert not (killed / "summary.json").exists()
    assert [r["step"] for r in _records(killed)] == [5, 10, 15]
    resumed = _train(killed, cache)
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr.decode()
    assert b"resuming" in stderr and b"step 15" in stderr
    _assert_same_run(killed, reference)
    assert np.isfinite(_final(killed)["final_test_loss"])
