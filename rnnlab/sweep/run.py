"""``run_sweep``: validation, groups, strategy choice, chunked execution, resume, result files."""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh

from rnnlab import _checks, io
from rnnlab.progress import Progress
from rnnlab.sweep.execute import (
    STRATEGIES,
    Builder,
    ChunkResult,
    GroupExecutor,
    ProcessPool,
    config_mesh,
    default_strategy,
    group_configs,
    iter_chunks,
    pad_to,
)
from rnnlab.sweep.results import (
    Threshold,
    _curve,
    append_rows,
    load_rows,
    make_row,
    repair_files,
    write_results,
)
from rnnlab.train.config import MAX_SEED
from rnnlab.train.divergence import DEFAULT_FACTOR, DEFAULT_PATIENCE

__all__ = ["SweepResult", "compare_strategies", "run_sweep"]

#: Calibration needs this many configurations per candidate strategy in one group;
#: below it the extra compilations cost more than a better choice could save.
MIN_CALIBRATION = 4
#: At most this many configurations per calibration chunk: the slow strategies'
#: chunks are real work, but slow, so keep them short.
CALIBRATION_SIZE = 8
#: ``"auto"`` calibrates only when the other candidates' chunks are predicted to cost at
#: most this fraction of the rest of the sweep run with the fallback strategy: a bound on
#: a prediction from the fallback's first chunk (:func:`_calibration_decision`).
CALIBRATION_OVERHEAD = 0.1


def fallback_strategy(workers: int) -> str:
    """The CPU strategy of groups that run before (or without) a calibration.

    One single-threaded process per core was the fastest on our 2-core CPU at
    every shape we measured (e.g. LSTM H=32, B=32, T=50: processes 680,
    loop 194, vmap 134 configurations x steps / s; see the sweep experiment's
    ``--compare-strategies``), so it is the default when there are several cores.
    """
    return "processes" if workers > 1 else "loop"


def _calibration_decision(chunk_seconds, run_seconds, chunk_size, remaining, others) -> dict:
    """Whether ``"auto"`` should time the other candidates, from the fallback's first chunk.

    The fallback's chunk took ``chunk_seconds`` in all (compilation and worker start-up
    included), ``run_seconds`` of it training; the rest of the sweep (``remaining``
    configurations) is predicted to take ``remaining * run_seconds / chunk_size`` with
    it.  Each of the ``others`` candidates compiles its own program and may train up to
    3x slower (vmap and a loop against one process per core, measured on this 2-core
    CPU), so its chunk is predicted to cost up to ``chunk_seconds + 2 run_seconds`` more
    than the fallback would have; calibration runs only if that pessimistic cost is at
    most :data:`CALIBRATION_OVERHEAD` of ``predicted``.  Short sweeps, and studies the
    size of ``make sweep``'s, keep the fallback; sweeps long enough that a better choice
    could pay for the measurement are calibrated.
    """
    predicted = remaining * run_seconds / max(chunk_size, 1)
    cost = others * (chunk_seconds + 2 * run_seconds)
    return {
        "fallback_chunk_s": chunk_seconds,
        "predicted_rest_s": predicted,
        "calibration_cost_s": cost,
        "calibrate": cost <= CALIBRATION_OVERHEAD * predicted,
    }


class SweepResult(NamedTuple):
    """``rows``: one dict per configuration, in input order; ``summary``: as in summary.json."""

    rows: list[dict]
    summary: dict


class _Throughput:
    """Configurations x steps per second, per strategy, compile time excluded."""

    def __init__(self):
        self.work: dict[str, float] = {}
        self.seconds: dict[str, float] = {}

    def add(self, strategy: str, config_steps: float, seconds: float) -> None:
        self.work[strategy] = self.work.get(strategy, 0.0) + config_steps
        self.seconds[strategy] = self.seconds.get(strategy, 0.0) + seconds

    def rates(self) -> dict[str, float]:
        return {s: self.work[s] / max(self.seconds[s], 1e-9) for s in self.work}


def _check(strategy: str, chunk_size: int, workers: int | None) -> None:
    _checks.choice("strategy", strategy, STRATEGIES)
    _checks.positive_int("chunk_size", chunk_size)
    if workers is not None:
        _checks.positive_int("workers", workers)


def check_configs(configs: Sequence[Mapping[str, Any]], build: Builder) -> None:
    """Validates every configuration before anything runs or is written.

    Each needs an ``"id"``; no value may be NaN; a ``"seed"`` must be an int in
    ``[0, 2**31 - 1]``; and a builder with a ``validate(config)`` method (such as
    :class:`~rnnlab.sweep.TrainerBuilder`, which checks a learning rate > 0, a clip
    norm > 0, the cell's hyperparameter ranges, ... as ``train.py`` does) checks the rest.

    Raises:
      ArgumentError: naming the key (``error.argument``) and the configuration.
    """
    validate = getattr(build, "validate", None)
    for config in configs:
        if "id" not in config:
            raise _checks.ArgumentError(
                "configs", "every configuration needs an 'id'; build them with configurations()"
            )
        try:
            for key, value in config.items():
                if isinstance(value, (float, np.floating)) and math.isnan(value):
                    raise _checks.ArgumentError(key, f"{key} must be a number, got {value!r}")
            if "seed" in config:
                _checks.integer("seed", config["seed"], minimum=0, maximum=MAX_SEED)
            if validate is not None:
                validate(config)
        except _checks.ArgumentError as error:
            shown = {k: v for k, v in config.items() if k != "id"}
            raise _checks.ArgumentError(
                error.argument, f"{error} (configuration {config['id']}: {shown})"
            ) from None


def _divergence(build: Builder, divergence) -> tuple[float | None, int]:
    """The explosion criterion: given, else the builder's base config's, else the defaults."""
    if divergence is not None:
        return divergence
    base = getattr(build, "base", None) or {}
    return (
        base.get("divergence_loss_factor", DEFAULT_FACTOR),
        base.get("divergence_patience", DEFAULT_PATIENCE),
    )


def run_sweep(
    configs: Sequence[Mapping[str, Any]],
    build: Builder,
    *,
    out: str | Path | None = None,
    strategy: str = "auto",
    chunk_size: int = 64,
    mesh: Mesh | None = None,
    threshold: Threshold = None,
    workers: int | None = None,
    progress: bool = True,
    label: str = "sweep",
    baseline: Threshold = None,
    divergence: tuple[float | None, int] | None = None,
) -> SweepResult:
    """Trains every configuration; vmaps within static groups; resumes from ``out``.

    Every configuration is validated first (:func:`check_configs`); nothing runs or is
    written before.  ``out`` is locked for the sweep (:func:`rnnlab.io.lock_folder`),
    and unreadable lines of its JSONL files are moved aside before appending.

    Args:
      configs: configurations with stable ids (:func:`rnnlab.sweep.configurations`).
        A configuration's ``"seed"`` becomes ``jax.random.key(seed)``; the keys
        outside ``build.static_part(config)`` are traced hyperparameters, and the
        static part groups configurations: each group compiles once.
      build: a picklable :class:`~rnnlab.sweep.execute.Builder`.
      out: folder for ``results.jsonl``, ``curves.jsonl``, ``results.csv`` and
        ``summary.json``; configurations already in its ``results.jsonl`` are not
        rerun.  ``None`` keeps everything in memory.
      strategy: ``"auto"``, ``"vmap"``, ``"loop"`` or ``"processes"``
        (see :mod:`rnnlab.sweep.execute`).
      chunk_size: configurations per compiled call (memory bound) and per
        resumable unit; rounded up to a multiple of the mesh size.
      mesh: the 1-D device mesh for ``"vmap"``; default all devices.
      threshold: test loss for ``steps_to_threshold`` (number or function of the config).
      workers: processes of ``"processes"``; default ``os.cpu_count()``.
      progress: print a progress line to stderr.
      label: the progress line's label.
      baseline: the task's baseline loss (a number or a function of the config) for
        the explosion criterion of :mod:`rnnlab.train.divergence`, applied to each
        finished history; default the builder's ``baseline_loss(config)`` if it has
        one (once per group), else no explosion check.
      divergence: ``(divergence_loss_factor, divergence_patience)``; default the
        builder's base config's values, else those of :class:`rnnlab.train.TrainConfig`.

    Returns:
      A :class:`SweepResult`.  ``summary["throughput"]`` is configurations x steps
      per second per strategy used; ``summary["calibration"]`` the measurements
      behind ``"auto"``'s choice.
    """
    _check(strategy, chunk_size, workers)
    check_configs(configs, build)
    writer = out is not None and jax.process_index() == 0
    with contextlib.ExitStack() as stack:
        if writer:
            out = stack.enter_context(io.lock_folder(io.check_out(out)))
            repair_files(out)
        return _run_sweep(
            configs, build, out, strategy, chunk_size, mesh, threshold, workers, progress,
            label, baseline, _divergence(build, divergence), writer,
        )  # fmt: skip


def _run_sweep(
    configs, build, out, strategy, chunk_size, mesh, threshold, workers, progress, label,
    baseline, divergence, writer,
) -> SweepResult:  # fmt: skip
    started = time.perf_counter()
    mesh = config_mesh() if mesh is None else mesh
    workers = workers or os.cpu_count() or 1
    groups = group_configs(configs, build.static_part)
    ids = {config["id"] for config in configs}
    finished = {k: v for k, v in load_rows(out).items() if k in ids}
    pending_total = sum(c["id"] not in finished for c in configs)
    if baseline is None and hasattr(build, "baseline_loss"):
        baseline = build.baseline_loss
    baselines: dict[str, float] = {}

    def group_baseline(group):
        if not callable(baseline):
            return baseline
        if group.id not in baselines:
            baselines[group.id] = baseline(group.configs[0])
        return baselines[group.id]

    chosen = strategy if strategy != "auto" else default_strategy(mesh)
    candidates = ["vmap", "loop"] + (["processes"] if workers > 1 else [])
    calibration: dict[str, float] = {}
    throughput = _Throughput()
    compile_seconds = 0.0
    pool = ProcessPool(workers) if workers > 1 or strategy == "processes" else None
    bar = Progress(pending_total, label, unit="cfg") if progress else None
    factor, patience = divergence

    done = 0
    decision: dict[str, Any] = {}

    def record(group, executor, strategy_used, chunk, result: ChunkResult):
        nonlocal compile_seconds, done
        done += len(chunk)
        compile_seconds += result.compile_seconds
        throughput.add(strategy_used, len(chunk) * executor.trainable.steps, result.run_seconds)
        level = group_baseline(group)
        rows = [
            make_row(
                config,
                history,
                group=group.id,
                threshold=threshold,
                baseline=level,
                divergence_loss_factor=factor,
                divergence_patience=patience,
            )  # fmt: skip
            for config, history in zip(chunk, result.histories, strict=True)
        ]
        for row in rows:
            finished[row["id"]] = row
        if writer:
            curves = [_curve(c, h) for c, h in zip(chunk, result.histories, strict=True)]
            append_rows(out, rows, curves)
        rate = len(chunk) * executor.trainable.steps / max(result.run_seconds, 1e-9)
        if bar is not None:
            diverged = sum(row["diverged"] for row in rows)
            bar.update(len(chunk), strategy=strategy_used, cfg_steps_per_s=rate, diverged=diverged)
        return rate

    try:
        for group in groups:
            queue = [c for c in group.configs if c["id"] not in finished]
            if not queue:
                continue
            executor = GroupExecutor(build, group, mesh, pool)
            if chosen is None and len(queue) >= MIN_CALIBRATION * len(candidates):
                size = min(chunk_size, len(queue) // len(candidates), CALIBRATION_SIZE)
                fallback = fallback_strategy(workers)
                order = [fallback] + [c for c in candidates if c != fallback]
                for index, candidate in enumerate(order):
                    chunk, queue = queue[:size], queue[size:]
                    start = time.perf_counter()
                    result = executor.run(candidate, chunk, pad_to(size, mesh.size))
                    calibration[candidate] = record(group, executor, candidate, chunk, result)
                    if index == 0:
                        decision = _calibration_decision(
                            time.perf_counter() - start, result.run_seconds, len(chunk),
                            pending_total - done, len(order) - 1,
                        )  # fmt: skip
                        if not decision["calibrate"]:
                            break
                chosen = max(calibration, key=calibration.get)
            current = chosen or fallback_strategy(workers)
            size = pad_to(min(chunk_size, max(len(queue), 1)), mesh.size)
            for chunk in iter_chunks(queue, size):
                record(group, executor, current, chunk, executor.run(current, chunk, size))
    finally:
        if pool is not None:
            pool.close()
        if bar is not None:
            bar.__exit__(None, None, None)

    rows = [finished[c["id"]] for c in configs]
    summary = {
        "configurations": len(configs),
        "run": pending_total,
        "resumed": len(configs) - pending_total,
        "groups": len(groups),
        "diverged": sum(bool(row["diverged"]) for row in rows),
        "strategy": {"requested": strategy, "chosen": chosen or fallback_strategy(workers)},
        "calibration": calibration,
        "calibration_decision": decision,
        "throughput": throughput.rates(),
        "devices": mesh.size,
        "platform": mesh.devices.flat[0].platform,
        "workers": workers,
        "chunk_size": chunk_size,
        "compile_seconds": compile_seconds,
        "wall_seconds": time.perf_counter() - started,
    }
    if writer:
        summary = write_results(out, rows, summary)
    return SweepResult(rows, summary)


def compare_strategies(
    configs: Sequence[Mapping[str, Any]],
    build: Builder,
    *,
    repeats: int = 5,
    workers: int | None = None,
    mesh: Mesh | None = None,
) -> dict[str, dict[str, Any]]:
    """Measures vmap, loop and process-per-core on the same configurations, interleaved.

    The configurations must form one static group.  Each strategy first runs
    once untimed (compilation, worker start-up), then the strategies take turns
    ``repeats`` times (round-robin, so load from other processes hits all alike).

    Returns:
      ``{strategy: {"throughput": [configs x steps / s per repeat], "median": ...,
      "compile_seconds": ...}}``.
    """
    mesh = config_mesh() if mesh is None else mesh
    groups = group_configs(configs, build.static_part)
    if len(groups) != 1:
        raise ValueError(f"configs span {len(groups)} static groups; pass one group's configs")
    workers = workers or os.cpu_count() or 1
    pool = ProcessPool(workers)
    executor = GroupExecutor(build, groups[0], mesh, pool)
    configs = groups[0].configs
    size = pad_to(len(configs), mesh.size)
    work = len(configs) * executor.trainable.steps
    strategies = ["vmap", "loop"] + (["processes"] if workers > 1 else [])
    out = {s: {"throughput": [], "compile_seconds": 0.0} for s in strategies}
    try:
        for strategy in strategies:
            out[strategy]["compile_seconds"] = executor.run(strategy, configs, size).compile_seconds
        for _ in range(repeats):
            for strategy in strategies:
                seconds = executor.run(strategy, configs, size).run_seconds
                out[strategy]["throughput"].append(work / seconds)
    finally:
        pool.close()
    for values in out.values():
        values["median"] = float(np.median(values["throughput"]))
    return out
