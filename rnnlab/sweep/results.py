"""Result rows: one per configuration, written as JSONL (append, resumable), CSV and summary.

Files in a sweep's ``out`` folder:

- ``results.jsonl``: one row per finished configuration, appended after each
  chunk and flushed, so a killed sweep keeps every finished chunk.  Resuming
  reads it and skips the ids found there (ids hash the base config too, so rows
  of a different experiment in the same folder are never reused).  A torn or
  corrupt line is skipped and moved to ``results.jsonl.damaged``
  (:func:`rnnlab.io.repair_jsonl`); only its configuration runs again.
- ``curves.jsonl``: the per-evaluation history of each configuration.
- ``results.csv``: the rows of the current sweep, in configuration order.
- ``summary.json``: counts, strategy, throughput and timing of this session.
- ``sessions.jsonl``: one line per ``run_sweep`` call (what it ran, its strategy,
  throughput and timing), so a resumed sweep keeps the first session's numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rnnlab.io import append_jsonl, read_jsonl, repair_jsonl, write_csv, write_json
from rnnlab.train.divergence import DEFAULT_FACTOR, DEFAULT_PATIENCE, explosion_step

__all__ = [
    "CURVES_FILE",
    "CSV_FILE",
    "JSONL_FILE",
    "SESSIONS_FILE",
    "SUMMARY_FILE",
    "append_rows",
    "load_rows",
    "make_row",
    "repair_files",
    "steps_to_threshold",
    "write_results",
]

JSONL_FILE = "results.jsonl"
CURVES_FILE = "curves.jsonl"
CSV_FILE = "results.csv"
SUMMARY_FILE = "summary.json"
SESSIONS_FILE = "sessions.jsonl"

Threshold = float | Callable[[Mapping[str, Any]], float] | None


def steps_to_threshold(history: Mapping[str, np.ndarray], threshold: float | None) -> int | None:
    """The first evaluation step whose ``test_loss`` is below ``threshold``; ``None`` if never.

    Args:
      history: ``{"step": [E], "test_loss": [E], ...}``.
      threshold: the loss to reach; ``None`` disables the measure.
    """
    if threshold is None or "test_loss" not in history:
        return None
    below = np.flatnonzero(np.asarray(history["test_loss"]) < threshold)
    return int(np.asarray(history["step"])[below[0]]) if below.size else None


def _float(value) -> float:
    return float(np.asarray(value))


def make_row(
    config: Mapping[str, Any],
    history: Mapping[str, np.ndarray],
    *,
    group: str = "",
    threshold: Threshold = None,
    baseline: Threshold = None,
    divergence_loss_factor: float | None = DEFAULT_FACTOR,
    divergence_patience: int = DEFAULT_PATIENCE,
) -> dict[str, Any]:
    """One result row: the configuration, then final metrics, divergence and speed.

    Args:
      config: the configuration (with ``"id"``).
      history: per-evaluation arrays ``[E]`` (``"step"``, ``"train_loss"``,
        ``"test_loss"``, ...) and scalars (``"diverged"``).
      group: the id of the configuration's static group.
      threshold: test loss for ``steps_to_threshold``: a number, or a function
        of the configuration (e.g. a fraction of its task's baseline).
      baseline: the task's baseline loss (a number or a function of the
        configuration) for the explosion criterion of
        :mod:`rnnlab.train.divergence`; ``None`` skips that criterion.
      divergence_loss_factor, divergence_patience: the criterion's settings, as in
        :class:`rnnlab.train.TrainConfig`.

    Returns:
      ``{"id", "group", **config, "steps", "final_<metric>"..., <scalar entries of
      history>, "best_test_loss", "diverged", "divergence", "diverged_step",
      "threshold", "steps_to_threshold"}``.  ``diverged`` is the engine's flag, any
      non-finite loss, or a loss explosion (``divergence`` says which, and
      ``diverged_step`` when); final metrics are the last evaluation (finite for a
      diverged run when the engine freezes the last good parameters, ``nan`` otherwise).
    """
    row: dict[str, Any] = {"id": config["id"], "group": group}
    row.update({k: v for k, v in config.items() if k != "id"})
    steps = np.asarray(history.get("step", [0]))
    row["steps"] = int(steps[-1]) if steps.size else 0
    non_finite = False
    for name, values in history.items():
        values = np.asarray(values)
        if name == "step":
            continue
        if values.ndim == 0:  # engine summaries such as diverged_step
            row.setdefault(name, values.item())
            continue
        row[f"final_{name}"] = _float(values[-1]) if values.size else math.nan
        if name.endswith("loss"):
            non_finite |= not np.all(np.isfinite(values))
    if "test_loss" in history:
        finite = np.asarray(history["test_loss"])[np.isfinite(history["test_loss"])]
        row["best_test_loss"] = float(finite.min()) if finite.size else math.nan
    non_finite |= bool(np.asarray(history.get("diverged", False)))
    level = baseline(config) if callable(baseline) else baseline
    exploded = None
    if "train_loss" in history and "step" in history:
        exploded = explosion_step(
            history["step"], history["train_loss"], level, divergence_loss_factor,
            divergence_patience,
        )  # fmt: skip
    row["diverged"] = non_finite or exploded is not None
    row["divergence"] = None
    if non_finite:
        row["divergence"] = "non-finite"
    elif exploded is not None:
        row["divergence"] = "loss explosion"
        row["diverged_step"] = exploded
    level = threshold(config) if callable(threshold) else threshold
    row["threshold"] = level
    row["steps_to_threshold"] = steps_to_threshold(history, level)
    return row


def _curve(config: Mapping, history: Mapping[str, np.ndarray]) -> dict:
    return {"id": config["id"], **{k: np.asarray(v) for k, v in history.items()}}


def append_rows(out: str | Path, rows: Sequence[dict], curves: Sequence[dict] = ()) -> None:
    """Appends finished rows (and their curves) to ``results.jsonl`` / ``curves.jsonl``."""
    if curves:
        append_jsonl(Path(out) / CURVES_FILE, curves)
    append_jsonl(Path(out) / JSONL_FILE, rows)


def load_rows(out: str | Path | None) -> dict[str, dict]:
    """Finished rows by id from ``out/results.jsonl`` (empty if none); the last copy wins.

    Unreadable lines are skipped and reported (the file is not changed).
    """
    if out is None:
        return {}
    rows = read_jsonl(Path(out) / JSONL_FILE)
    return {row["id"]: _restore(row) for row in rows if "id" in row}


def repair_files(out: str | Path) -> None:
    """Moves unreadable lines of the sweep's JSONL files aside (before appending)."""
    for name in (JSONL_FILE, CURVES_FILE, SESSIONS_FILE):
        repair_jsonl(Path(out) / name)


def _restore(row: dict) -> dict:
    """JSON stores non-finite floats as strings (``rnnlab.io.to_jsonable``); undo that."""
    return {k: float(v) if v in ("nan", "inf", "-inf") else v for k, v in row.items()}


def write_results(out: str | Path, rows: Sequence[dict], summary: Mapping[str, Any]) -> dict:
    """Writes ``results.csv`` (``rows`` in order), appends the session, writes ``summary.json``.

    Returns:
      ``summary`` plus ``"sessions"``: every session's record, oldest first.
    """
    out = Path(out)
    write_csv(out / CSV_FILE, rows)
    append_jsonl(out / SESSIONS_FILE, [summary])
    summary = {**summary, "sessions": read_jsonl(out / SESSIONS_FILE)}
    write_json(out / SUMMARY_FILE, summary)
    return summary
