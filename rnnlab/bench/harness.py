"""How the benchmark times things: interleaved repetitions, medians, fresh processes.

PERF.md's protocol: the systems run in one process, round-robin (A B A B ...), after
one warm-up call each; the figure is the median.  What needs a fresh process (the
allocator's environment, ``XLA_FLAGS``, start-up time, peak RSS) runs through
:func:`run_process`, which reports the child's own wall time and peak RSS.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "clean_environment",
    "interleaved",
    "median_ms",
    "run_blocking",
    "run_bench_child",
    "run_process",
    "rotations",
]


def rotations(names: Sequence, repetitions: int):
    """Yields the round-robin order of each repetition: rotated by one every time.

    So no system always runs right after the same neighbour.
    """
    names = list(names)
    for repetition in range(repetitions):
        shift = repetition % len(names)
        yield names[shift:] + names[:shift]


def interleaved(callables: Mapping[str, Callable[[], object]], repetitions: int) -> dict:
    """Times each callable ``repetitions`` times, round-robin, after one warm-up call each.

    Returns per system the seconds of every repetition and the minor page faults
    per call (``getrusage``; counts the whole process, so only one system runs at a
    time).
    """
    for run in callables.values():
        run()
    seconds = {name: [] for name in callables}
    faults = {name: 0 for name in callables}
    for order in rotations(callables, repetitions):
        for name in order:
            run = callables[name]
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)
            faults[name] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    return {
        name: {"seconds": seconds[name], "faults_per_call": faults[name] / repetitions}
        for name in callables
    }


def median_ms(seconds: Sequence[float]) -> float:
    return 1e3 * float(np.median(seconds))


def run_blocking(compiled, *args) -> None:
    import jax

    jax.block_until_ready(compiled(*args))


def clean_environment(extra: Mapping[str, str] | None = None) -> dict:
    """This process's environment without ``MALLOC_*`` settings, plus ``extra``.

    A child then starts with glibc's default allocator unless ``extra`` sets it
    (e.g. :data:`rnnlab.runtime.TUNED_MALLOC_ENV`).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(extra or {})
    return env


#: Runs ``argv[3:]``; writes its wall seconds and peak RSS (KiB) to ``argv[1]``.  A small
#: interpreter between the caller and the command, because Linux's ``ru_maxrss`` of a
#: forked child starts at its parent's RSS: a 700 MiB caller would report 700 MiB for
#: ``python -c pass``.  Forked from this small process, the command reports its own.
_MEASURE = """
import resource, subprocess, sys, time
start = time.perf_counter()
try:
    code = subprocess.call(sys.argv[3:], timeout=float(sys.argv[2]))
except subprocess.TimeoutExpired:
    code = -9
wall = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
with open(sys.argv[1], "w") as file:
    file.write(f"{wall} {peak}")
sys.exit(code if code >= 0 else 1)
"""


def run_process(command: Sequence[str], env: Mapping[str, str] | None = None, timeout=3600):
    """Runs ``command`` to completion; returns wall seconds, peak RSS and its output.

    Returns:
      ``{"wall_s", "peak_rss_mib", "returncode", "stdout", "stderr"}``: the command's
      own wall time and peak RSS (``ru_maxrss`` of the command and the children it
      waited for, Linux KiB / 1024), measured by a small wrapper process, so neither
      the calling process's memory nor the wrapper's start-up counts.  A command still
      running after ``timeout`` seconds is killed.
    """
    with tempfile.TemporaryDirectory(prefix="rnnlab-run-") as scratch:
        measured = Path(scratch) / "measured"
        wrapper = [sys.executable, "-c", _MEASURE, str(measured), str(timeout)]
        done = subprocess.run(
            [*wrapper, *command],
            env=dict(env) if env is not None else None,
            capture_output=True,
            text=True,
        )
        wall, peak = (float(v) for v in measured.read_text().split())
    return {
        "wall_s": wall,
        "peak_rss_mib": peak / 1024,
        "returncode": done.returncode,
        "stdout": done.stdout,
        "stderr": done.stderr,
    }


def run_bench_child(task: str, options: Mapping, env: Mapping[str, str] | None = None) -> dict:
    """Runs ``python -m rnnlab.bench TASK OPTIONS_JSON`` in a fresh process.

    The child prints one JSON line last; returns it, with the child's wall seconds
    and peak RSS (MiB), or ``{"error": stderr tail}``.
    """
    command = [sys.executable, "-m", "rnnlab.bench", task, json.dumps(dict(options))]
    result = run_process(command, env)
    if result["returncode"] != 0:
        return {"error": result["stderr"][-2000:]}
    lines = [line for line in result["stdout"].splitlines() if line.startswith("{")]
    payload = json.loads(lines[-1])
    payload.update(wall_s=result["wall_s"], peak_rss_mib=result["peak_rss_mib"])
    return payload
