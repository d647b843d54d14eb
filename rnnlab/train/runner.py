"""The resumable runner: compiled chunks, with logging, evaluation and checkpoints between them.

Everything here happens outside the compiled code, at chunk boundaries:
progress bar, ``metrics.jsonl`` (one line per chunk), evaluation, the explosion
criterion (:mod:`rnnlab.train.divergence`) and an orbax ``CheckpointManager``.
Re-running with the same ``out`` folder resumes from the last checkpoint; the result
is bit-identical to an uninterrupted run on CPU.

What survives what:

- a kill at any moment (``kill -9`` included): re-run the same command;
- a damaged checkpoint: each checkpoint carries a manifest of its files' SHA-256;
  restore verifies it and falls back to the newest restorable checkpoint, moving the
  damaged ones to ``checkpoints-damaged/`` (never deleting them) and saying why;
- a torn or corrupt line in ``metrics.jsonl``: moved to ``metrics.jsonl.damaged``;
- a second run on the same folder: refused while the first holds the folder's lock
  (released by the kernel when its holder dies);
- re-running a finished run: reported, and nothing in the folder is touched;
- a run given more ``steps``: continued from its last checkpoint when nothing else
  that shaped the steps already taken changed (see :data:`CONTINUABLE`), and recorded
  in the history of ``config.json`` and ``summary.json``.

Files in ``out``:

- ``config.json``: the resolved config, hparams, task, package versions, history;
- ``metrics.jsonl``: one record per chunk (see :func:`rnnlab.train.engine.summarize_chunk`);
- ``checkpoints/<step>/``: the :class:`TrainState` after chunks;
- ``summary.json``: final evaluation, baseline, ``diverged`` (written last);
- ``learning_curves.png``, ``gradients.png``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from rnnlab import _checks, io
from rnnlab.progress import Progress
from rnnlab.train.config import MAX_SEED, TrainConfig
from rnnlab.train.divergence import explosion_step, loss_bound
from rnnlab.train.engine import Trainer, TrainState, make_train, summarize_chunk

__all__ = [
    "CONTINUABLE",
    "RunResult",
    "available_memory",
    "check_memory",
    "format_bytes",
    "memory_estimate",
    "package_versions",
    "restore_state",
    "run",
    "train_grid",
    "train_seeds",
]

CHECKPOINTS = "checkpoints"
DAMAGED_CHECKPOINTS = "checkpoints-damaged"
MANIFEST = "rnnlab_manifest.json"
METRICS = "metrics.jsonl"
#: Config fields a re-run may change: they do not alter the steps already taken.
#: ``steps`` only with the constant schedule (the others decay over ``steps``), and
#: ``chunk_steps`` only when it divides the steps done.
CONTINUABLE = (
    "steps",
    "chunk_steps",
    "eval_batch_size",
    "divergence_loss_factor",
    "divergence_patience",
)
#: Config fields the compiled program does not depend on: the optimizer's values travel
#: in ``hparams``, the seed in the key, the divergence criterion stays in the runner.
_NOT_COMPILED = (
    "learning_rate",
    "clip_norm",
    "weight_decay",
    "momentum",
    "seed",
    "divergence_loss_factor",
    "divergence_patience",
)

package_versions = io.package_versions


@dataclasses.dataclass
class RunResult:
    """What :func:`run` returns.

    Attributes:
      summary: the summary dict (as in ``summary.json``).
      state: the final state (``None`` if a finished run's checkpoint is unreadable).
      trainer: the :class:`Trainer`.
      already_finished: the folder held this finished run; nothing was done.
    """

    summary: dict
    state: TrainState | None
    trainer: Trainer
    already_finished: bool = False


def _to_saveable(state: TrainState) -> TrainState:
    """Typed PRNG keys become their ``uint32`` data and empty arrays (tbptt:k's history
    when k1 = k2) one zero, which orbax can store."""
    state = state._replace(
        key=jax.random.key_data(state.key), eval_key=jax.random.key_data(state.eval_key)
    )
    return jax.tree.map(lambda leaf: jnp.zeros((1,), leaf.dtype) if leaf.size == 0 else leaf, state)


def _from_saveable(state: TrainState, abstract: TrainState) -> TrainState:
    """Undoes :func:`_to_saveable`; ``abstract`` is the state's true shapes.

    orbax returns arrays committed to a device, which ``jax.jit`` caches apart from the
    uncommitted arrays of a fresh ``init``: the restored leaves are made uncommitted, so
    a resumed or continued run reuses the compiled chunk instead of compiling it again.
    """

    def leaf_of(leaf, like):
        if like is not None and not like.size:
            return jnp.zeros(like.shape, like.dtype)
        return jnp.asarray(np.asarray(leaf)) if isinstance(leaf, jax.Array) else leaf

    state = jax.tree.map(
        leaf_of, state, abstract._replace(key=None, eval_key=None), is_leaf=lambda x: x is None
    )
    return state._replace(
        key=jax.random.wrap_key_data(state.key), eval_key=jax.random.wrap_key_data(state.eval_key)
    )


def _manager(out: Path, read_only: bool = False) -> ocp.CheckpointManager:
    if read_only:  # the options a read-only manager forces, given so orbax does not warn
        options = ocp.CheckpointManagerOptions(
            read_only=True, save_interval_steps=0, max_to_keep=None, create=False
        )
        absl = logging.getLogger("absl")
        level = absl.level
        absl.setLevel(logging.ERROR)  # "Given directory is read only"
        try:
            return ocp.CheckpointManager((out / CHECKPOINTS).absolute(), options=options)
        finally:
            absl.setLevel(level)
    options = ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False)
    return ocp.CheckpointManager((out / CHECKPOINTS).absolute(), options=options)


# --------------------------------------------------------------------------------------
# Verified checkpoints
# --------------------------------------------------------------------------------------


def _digests(directory: Path) -> dict[str, list]:
    """``{relative path: [size, sha256]}`` of every file in a checkpoint folder."""
    out = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.name != MANIFEST:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            out[str(path.relative_to(directory))] = [path.stat().st_size, digest]
    return out


def _write_manifest(directory: Path) -> None:
    io.write_json(directory / MANIFEST, {"files": _digests(directory)})


def _manifest_problem(directory: Path) -> str | None:
    """Why the files of a checkpoint differ from its manifest; ``None`` if they match.

    A checkpoint without a manifest (a kill between saving and writing it, or an older
    run) is not judged here: restoring it is the test.
    """
    path = directory / MANIFEST
    if not path.exists():
        return None
    try:
        wanted = io.read_json(path)["files"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return f"its {MANIFEST} is unreadable"
    found = _digests(directory)
    missing = sorted(set(wanted) - set(found))
    if missing:
        return f"{len(missing)} file(s) missing, e.g. {missing[0]}"
    changed = sorted(name for name in wanted if found[name] != wanted[name])
    if changed:
        return f"{len(changed)} file(s) changed since saving, e.g. {changed[0]}"
    return None


def _move_aside(out: Path, step: int) -> Path:
    """Moves ``checkpoints/<step>`` to ``checkpoints-damaged/<step>[-n]``; never deletes."""
    target_root = out / DAMAGED_CHECKPOINTS
    target_root.mkdir(exist_ok=True)
    target, count = target_root / str(step), 1
    while target.exists():
        count += 1
        target = target_root / f"{step}-{count}"
    os.replace(out / CHECKPOINTS / str(step), target)
    return target


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200] if text else ''}"


def _restore(manager, trainer: Trainer, out: Path, step: int | None = None, repair: bool = True):
    """The newest restorable :class:`TrainState` (or that of ``step``), or ``None``.

    Each candidate's files are checked against its manifest, then restored and
    checked to hold its own step.  A damaged one is moved aside (``repair``) or skipped,
    with a message naming it and why; an intact one that cannot be restored (a
    checkpoint of another rnnlab version) is an error, not damage.
    """
    hparams = trainer.default_hparams()
    actual = jax.eval_shape(lambda: trainer.init(jax.random.key(0), hparams))
    abstract = jax.eval_shape(lambda: _to_saveable(trainer.init(jax.random.key(0), hparams)))
    steps = sorted(manager.all_steps(), reverse=True) if step is None else [step]
    for candidate in steps:
        directory = out / CHECKPOINTS / str(candidate)
        problem = _manifest_problem(directory)
        if problem is None:
            try:
                restored = _from_saveable(
                    TrainState(
                        *manager.restore(candidate, args=ocp.args.StandardRestore(abstract))
                    ),
                    actual,
                )
            except Exception as error:  # orbax raises many types on damaged files
                if (directory / MANIFEST).exists():
                    raise RuntimeError(
                        f"the checkpoint {directory} is intact (its manifest matches) but "
                        f"cannot be restored into this config's TrainState ({_first_line(error)}); "
                        "use the rnnlab version recorded in config.json"
                    ) from error
                problem = f"restoring it failed ({_first_line(error)})"
            else:
                if int(restored.step) == candidate:
                    return restored
                problem = f"it holds step {int(restored.step)}"
        if repair:
            where = _move_aside(out, candidate)
            manager.reload()
            print(
                f"warning: checkpoint {directory} is damaged ({problem}); moved it to {where} "
                "and trying the previous one",
                file=sys.stderr,
            )
        else:
            print(f"warning: skipping damaged checkpoint {directory} ({problem})", file=sys.stderr)
    return None


def restore_state(out: str | Path, trainer: Trainer | None = None, step: int | None = None):
    """The :class:`TrainState` saved in ``out/checkpoints`` (the newest intact one by default).

    Reads only: a damaged checkpoint is skipped with a message, not moved.  Returns
    ``None`` if there is no restorable checkpoint.
    """
    out = Path(out)
    if trainer is None:
        saved = io.read_json(out / io.CONFIG_FILE)["config"]
        trainer = make_train(TrainConfig.from_dict(saved))
    with _manager(out, read_only=True) as manager:
        return _restore(manager, trainer, out, step, repair=False)


# --------------------------------------------------------------------------------------
# Validation: everything is checked before anything is written
# --------------------------------------------------------------------------------------


def _nbytes(tree) -> int:
    return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(tree))


def format_bytes(count: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if count < 1024 or unit == "PiB":
            return f"{count:.3g} {unit}"
        count /= 1024
    return f"{count:.3g} PiB"


#: Bytes kept per example, step and carry byte for the backward pass (gate activations,
#: inputs and outputs of each step); a rough factor that errs high.
ACTIVATION_FACTOR = 8


def memory_estimate(trainer: Trainer) -> dict[str, int]:
    """A rough estimate of the memory a run needs, from shapes alone (nothing allocated).

    ``state``: params and optimizer state (``jax.eval_shape`` of ``init``) plus the
    gradients and updates (twice the params); ``activations``: what the backward pass
    keeps, ``ACTIVATION_FACTOR x batch x T x carry bytes`` (the evaluation's forward
    pass keeps ``batch x T x output``).
    """
    config, task = trainer.config, trainer.task
    hparams = trainer.default_hparams()
    state = jax.eval_shape(lambda: trainer.init(jax.random.key(0), hparams))
    state = (state.params, state.opt_state)
    params = _nbytes(state[0])
    model = trainer.model(hparams)
    carry = _nbytes(jax.eval_shape(lambda: model.initial_carry(())))
    steps = int(task.length)
    train = ACTIVATION_FACTOR * config.batch_size * steps * carry
    evaluation = config.eval_batch_size * steps * carry
    return {
        "parameters": sum(leaf.size for leaf in jax.tree.leaves(state[0])),
        "state": _nbytes(state) + 2 * params,
        "activations": max(train, evaluation),
    }


def available_memory() -> int | None:
    """Bytes of memory of the default device (its limit on GPU/TPU, physical RAM on CPU)."""
    device = jax.devices()[0]
    with contextlib.suppress(Exception):
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"])
    with contextlib.suppress(ValueError, OSError, AttributeError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return None


def check_memory(trainer: Trainer) -> dict[str, int]:
    """:func:`memory_estimate`, or an error when it exceeds the device's memory.

    Raises:
      ArgumentError: naming ``hidden_size`` (when params dominate) or ``batch_size``,
        with the estimate and the memory available.
    """
    estimate = memory_estimate(trainer)
    available = available_memory()
    needed = estimate["state"] + estimate["activations"]
    if available is not None and needed > available:
        config = trainer.config
        argument = "hidden_size" if estimate["state"] >= estimate["activations"] else "batch_size"
        raise _checks.ArgumentError(
            argument,
            f"the run needs about {format_bytes(needed)} ({estimate['parameters']:.3g} parameters "
            f"with optimizer state: {format_bytes(estimate['state'])}; activations for "
            f"batch_size={config.batch_size} x T={trainer.task.length}: "
            f"{format_bytes(estimate['activations'])}) but {jax.devices()[0].platform} memory is "
            f"{format_bytes(available)}; lower hidden_size, num_layers, batch_size or length",
        )
    return estimate


def _task_argument(error: ValueError, config: TrainConfig) -> str:
    """The config field a task factory's error is about."""
    text = str(error)
    for key in config.task_options:
        if key in text:
            return f"task_options[{key!r}]"
    return "length" if "length" in text else "task"


def _build(config: TrainConfig) -> Trainer:
    try:
        return make_train(config)
    except _checks.ArgumentError:
        raise
    except ValueError as error:
        raise _checks.ArgumentError(_task_argument(error, config), str(error)) from None


def _normalize_saved(saved: dict) -> dict:
    """A saved config in the current schema (fields added since default)."""
    try:
        return io.to_jsonable(TrainConfig.from_dict(saved).to_dict())
    except ValueError:
        return saved


def _continuation_problem(config: TrainConfig, changes: dict, done: int) -> str | None:
    """Why this config cannot continue a run at step ``done`` with these ``changes``."""
    if "steps" in changes:
        old = changes["steps"][0]
        if config.steps < done:
            return (
                f"steps: the run already took {done} steps; steps={config.steps} would undo "
                f"them; pass steps >= {done} or another folder"
            )
        if config.schedule != "constant":
            return (
                f"steps: schedule={config.schedule!r} decays over steps, so steps={config.steps} "
                f"would change the learning rates of the steps already taken; keep "
                f"steps={old} or pass another folder"
            )
    if done % config.chunk_steps:
        return (
            f"chunk_steps: the run is at step {done}, which chunk_steps={config.chunk_steps} "
            f"does not divide; pick chunk_steps dividing {done} and {config.steps}"
        )
    return None


@functools.lru_cache(maxsize=8)
def _compiled(program_json: str):
    """The jitted chunk, evaluation and validation selection of a program, shared by
    runs that differ only in values that are not compiled in (:data:`_NOT_COMPILED`)."""
    trainer = make_train(TrainConfig.from_dict(json.loads(program_json)))
    return jax.jit(trainer.train_chunk), jax.jit(trainer.evaluate), jax.jit(trainer.select)


def _program_key(config: TrainConfig) -> str:
    defaults = TrainConfig()
    program = config.replace(**{name: getattr(defaults, name) for name in _NOT_COMPILED})
    if config.schedule == "constant":
        # steps enters a chunk only through a decaying schedule, so continuing a run to
        # more steps reuses the compiled chunk; the smallest valid steps stands in for it.
        chunks = max(1, -(-config.warmup_steps // config.chunk_steps))
        program = program.replace(steps=chunks * config.chunk_steps)
    sweepable = set(config.cell_spec.sweepable)
    options = {k: v for k, v in program.cell_options.items() if k not in sweepable}
    return json.dumps(io.to_jsonable(program.replace(cell_options=options).to_dict()))


def _config_details(trainer: Trainer) -> dict:
    task = trainer.task
    return {
        "hparams": {k: float(v) for k, v in trainer.default_hparams().items()},
        "seed": trainer.config.seed,
        "task": {
            "name": task.name,
            **task.describe,
            "length": task.length,
            "input_size": task.input_size,
            "output_size": task.output_size,
            "readout": task.readout,
            "objective": task.objective,
            "metric": task.metric_name,
            "baseline_loss": task.baseline_loss,
            "baseline_metric": task.baseline_metric,
        },
    }


def _python_row(row: dict) -> dict:
    return {k: np.asarray(v).item() for k, v in row.items()}


# --------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------


def run(
    config: TrainConfig,
    out: str | Path,
    *,
    stop_after_chunks: int | None = None,
    progress: bool = True,
    plots: bool = True,
    after_chunk: Callable[[int, int], None] | None = None,
) -> RunResult:
    """Trains ``config``, writing results to ``out``; resumes if ``out`` holds a checkpoint.

    Everything is validated before anything is written: the config, the task, a
    memory estimate, the folder (not a file, writable, not another kind of run, not
    another config, not in use by a live run).  ``config.json`` is written when the
    run really starts.

    Args:
      config: the run's :class:`TrainConfig`; ``config.seed`` seeds everything.
      out: the output folder.
      stop_after_chunks: stop (as if killed) after this many chunks of this call,
        before writing ``summary.json``; a test hook for resuming.
      progress: print a progress bar (loss, metric, steps/s) to stderr.
      plots: write the learning-curve PNGs.
      after_chunk: called as ``after_chunk(chunks_run, step)`` after each chunk's
        records and checkpoint are on disk (a test hook: a deterministic kill point).

    Returns:
      A :class:`RunResult`.  If the loss or gradients became non-finite, or the loss
      exploded (the criterion of :mod:`rnnlab.train.divergence`), the run stops at
      that chunk: ``summary["diverged"]`` is true, ``summary["message"]`` names the
      step, and the last good checkpoint and metrics stay on disk.  If ``out`` holds
      this run finished, nothing is done or written (``already_finished``).

    Raises:
      ArgumentError: (a ``ValueError`` naming the argument) for a config the task or
        the memory cannot take, or an ``out`` that is a file, unwritable, in use
        (:class:`rnnlab.io.FolderBusy`), or holds another run
        (:class:`rnnlab.io.FolderConflict`).
    """
    trainer = _build(config)
    check_memory(trainer)
    folder = io.RunFolder.open(
        out,
        "train",
        io.to_jsonable(config.to_dict()),
        may_change=CONTINUABLE,
        work=(METRICS, CHECKPOINTS),
        normalize=_normalize_saved,
    )
    out = folder.path
    previous = _read_summary(out) if folder.binding else None
    if previous is not None:
        complete = not previous.get("diverged") and previous.get("steps") == config.steps
        if complete or not folder.changes:
            return _finished(trainer, out, previous)
    if previous is not None and "steps" in folder.changes:
        problem = _continuation_problem(config, folder.changes, int(previous.get("steps") or 0))
        if problem:
            raise _checks.ArgumentError(problem.split(":")[0], problem)

    with folder.lock():
        return _train(trainer, folder, previous, stop_after_chunks, progress, plots, after_chunk)


def _read_summary(out: Path) -> dict | None:
    """The folder's ``summary.json``, or ``None`` when absent or unreadable (then the run
    is resumed from its checkpoints and the summary written again)."""
    with contextlib.suppress(OSError, ValueError, UnicodeDecodeError):
        summary = io.read_json(out / io.SUMMARY_FILE)
        return summary if isinstance(summary, dict) else None
    return None


def _finished(trainer: Trainer, out: Path, summary: dict) -> RunResult:
    """Reports a finished run without touching its folder (it may be read-only)."""
    with _manager(out, read_only=True) as manager:
        state = _restore(manager, trainer, out, repair=False)
    what = (
        f"diverged at step {summary.get('diverged_step')}"
        if summary.get("diverged")
        else (f"finished at step {summary.get('steps')}")
    )
    print(
        f"{out} holds this run, {what} (summary.json); nothing to do.  Pass more steps to "
        "continue it, or another folder to run it again",
        file=sys.stderr,
    )
    return RunResult(summary, state, trainer, already_finished=True)


def _train(trainer, folder, previous, stop_after_chunks, progress, plots, after_chunk):
    config, task, out = trainer.config, trainer.task, folder.path
    train_chunk, evaluate, select = _compiled(_program_key(config))
    hparams = trainer.default_hparams()
    metrics_path = out / METRICS
    bound = loss_bound(task.baseline_loss, config.divergence_loss_factor)
    io.repair_jsonl(metrics_path)

    with _manager(out) as manager:
        state = _restore(manager, trainer, out)
        if state is None:
            state = trainer.init(jax.random.key(config.seed), hparams)
        done = int(state.step)
        problem = _continuation_problem(config, folder.changes, done)
        if problem:
            raise _checks.ArgumentError(problem.split(":")[0], problem)
        # Records written after the last checkpoint (a kill between the two) are replayed.
        saved_records = io.read_jsonl(metrics_path)
        records = [r for r in saved_records if r["step"] <= done]
        if records != saved_records:
            lines = (json.dumps(io.to_jsonable(record)) + "\n" for record in records)
            io.write_text(metrics_path, "".join(lines))
        folder.start(_config_details(trainer), session={"from_step": done})
        if done:
            print(f"resuming {out} from the checkpoint at step {done}", file=sys.stderr)

        diverged_step = int(state.diverged_step)
        exploded = None
        stopped = bool(trainer.stopped(state))
        chunks_run = 0
        start = time.perf_counter()
        label = f"{task.name} {config.cell} from step {done}"
        with contextlib.ExitStack() as stack:
            bar = None
            if progress:
                bar = stack.enter_context(Progress(config.steps - done, label, unit="step"))
            while (
                int(state.step) < config.steps
                and diverged_step < 0
                and exploded is None
                and not stopped
            ):
                if stop_after_chunks is not None and chunks_run >= stop_after_chunks:
                    return RunResult({"stopped_at_step": int(state.step)}, state, trainer)
                chunk_start = time.perf_counter()
                state, metrics = train_chunk(state, hparams)
                evals = evaluate(state, hparams, key=state.eval_key)
                state, validation = select(state, hparams)
                row = _python_row({**summarize_chunk(task, state, metrics, evals), **validation})
                elapsed = time.perf_counter() - chunk_start
                row["steps_per_second"] = config.chunk_steps / elapsed
                diverged_step = int(state.diverged_step)
                stopped = bool(trainer.stopped(state))
                io.append_jsonl(metrics_path, [row])
                records.append(row)
                chunks_run += 1
                exploded = explosion_step(
                    [r["step"] for r in records],
                    [r["train_loss"] for r in records],
                    task.baseline_loss,
                    config.divergence_loss_factor,
                    config.divergence_patience,
                )
                # A chunk above the bound is not checkpointed until the loss comes back
                # under it, so the last checkpoint of an exploded run is a good one.
                healthy = bound is None or row["train_loss"] <= bound
                if diverged_step < 0 and exploded is None and healthy:
                    manager.save(row["step"], args=ocp.args.StandardSave(_to_saveable(state)))
                    manager.wait_until_finished()
                    _write_manifest(out / CHECKPOINTS / str(row["step"]))
                if bar is not None:
                    bar.update(
                        config.chunk_steps,
                        loss=row["train_loss"],
                        test_loss=row["test_loss"],
                        **{task.metric_name: row["test_metric"]},
                    )
                if after_chunk is not None:
                    after_chunk(chunks_run, row["step"])
        last_good = manager.latest_step()

    session_seconds = time.perf_counter() - start
    summary = _summary(trainer, records, diverged_step, exploded, last_good, out)
    earlier = 0.0
    if previous is not None and folder.binding and "steps" in folder.changes:
        earlier = float(previous.get("wall_time_s") or 0.0)  # a continued finished run
    if task.validation_set is not None and records:
        summary.update(_selected(trainer, state, records, stopped))
    summary["wall_time_s"] = earlier + session_seconds
    if plots and records:
        from rnnlab.plots.training import plot_run

        plot_run(records, task, out)
    summary["history"] = folder.finish(wall_time_s=session_seconds, to_step=summary["steps"])
    io.write_json(out / io.SUMMARY_FILE, summary)  # last: it marks the run finished
    if summary["diverged"]:
        print(summary["message"], file=sys.stderr)
    return RunResult(summary, state, trainer)


def _summary(trainer: Trainer, records, diverged_step: int, exploded, last_good, out) -> dict:
    task, config = trainer.task, trainer.config
    final = records[-1] if records else {}
    diverged = diverged_step >= 0 or exploded is not None
    summary = {
        "task": task.name,
        "cell": config.cell,
        "seed": config.seed,
        "steps": final.get("step", 0),
        "final_test_loss": final.get("test_loss"),
        "final_train_loss": final.get("train_loss"),
        "metric": task.metric_name,
        task.metric_name: final.get("test_metric"),
        "baseline_loss": task.baseline_loss,
        "baseline_metric": task.baseline_metric,
        "loss_over_baseline": (final["test_loss"] / task.baseline_loss if records else None),
        "diverged": diverged,
        "diverged_step": None,
    }
    if not diverged:
        return summary
    if diverged_step >= 0:
        summary["diverged_step"] = diverged_step
        summary["divergence"] = "non-finite"
        why = (
            f"diverged at step {diverged_step}: the loss or gradient norm became non-finite. "
            "Params were frozen at their last finite values"
        )
    else:
        summary["diverged_step"] = exploded
        summary["divergence"] = "loss explosion"
        bound = loss_bound(task.baseline_loss, config.divergence_loss_factor)
        patience = config.divergence_patience
        why = (
            f"diverged at step {exploded}: the chunk-mean training loss "
            f"({final.get('train_loss'):.4g}) stayed above {config.divergence_loss_factor:g} x "
            f"the task's baseline {task.baseline_loss:.4g} = {bound:.4g} for {patience} "
            f"chunk{'s' if patience > 1 else ''} (divergence_loss_factor, divergence_patience)"
        )
    summary["last_good_checkpoint_step"] = last_good
    if last_good is None:
        where = (
            "There is no checkpoint: the run diverged before a good chunk was saved, so there "
            "is nothing to resume from"
        )
    else:
        where = f"The last good checkpoint (step {last_good}) is in {out / CHECKPOINTS}"
    summary["message"] = (
        f"{why}. {where}; metrics.jsonl holds the records so far.  Lower the learning rate "
        "or clip the gradients."
    )
    return summary


def _selected(trainer: Trainer, state: TrainState, records, stopped: bool) -> dict:
    """The test scores of the best-validation params (recorded in the chunk that produced
    them): the run's reported ``final_test_loss`` and metric; the last evaluation's stay
    as ``last_test_*``."""
    task = trainer.task
    nan = {"test_loss": float("nan"), "test_metric": float("nan")}  # no finite validation loss
    best = next((r for r in records if r["step"] == int(state.best_step)), nan)
    return {
        "selection": "best validation loss",
        "best_step": int(state.best_step),
        "best_validation_loss": float(state.best_validation_loss),
        "stopped_early": stopped,
        "final_test_loss": best["test_loss"],
        task.metric_name: best["test_metric"],
        "loss_over_baseline": best["test_loss"] / task.baseline_loss,
        "last_test_loss": records[-1]["test_loss"],
        "last_test_metric": records[-1]["test_metric"],
    }


def train_seeds(config: TrainConfig, num_seeds: int) -> dict[str, np.ndarray]:
    """Trains seeds ``config.seed, ..., config.seed + num_seeds - 1`` as one vmapped program.

    Seed ``s`` starts from ``jax.random.key(s)``, the key :func:`run` uses, so each
    row matches ``experiments/train.py --seed s`` up to float reassociation.

    Returns:
      The :meth:`Trainer.train` history with a leading ``[num_seeds]`` axis, as numpy.
    """
    _checks.integer("num_seeds", num_seeds, minimum=1, maximum=MAX_SEED - config.seed + 1)
    trainer = make_train(config)
    seeds = jnp.arange(config.seed, config.seed + num_seeds)
    keys = jax.vmap(jax.random.key)(seeds)
    hparams = jax.tree.map(lambda v: jnp.full((num_seeds,), v), trainer.default_hparams())
    _, history = jax.jit(jax.vmap(trainer.train))(keys, hparams)
    return jax.tree.map(np.asarray, history)


def train_grid(trainer: Trainer, keys: jax.Array, hparams: Mapping[str, Any] | None = None):
    """Trains configurations x keys as one jitted program, keeping the initial params too.

    Args:
      trainer: from :func:`rnnlab.train.make_train`.
      keys: ``[S]`` PRNG keys, one run each (with ``Trainer.train``'s key streams).
      hparams: ``{name: [C]}`` values of traced hyperparameters (names of
        ``trainer.default_hparams()``), one configuration per index; the others keep
        their defaults.  ``None`` or ``{}``: one configuration, ``C = 1``.

    Returns:
      ``(initial_params, params, history)``: the params before and after training with
      leading ``[C, S]`` axes, and the :meth:`Trainer.train` history ``[C, S, ...]``.

    Raises:
      ValueError: naming ``hparams`` for a name the trainer does not take, or values of
        different lengths.
    """
    defaults = trainer.default_hparams()
    grid = dict(hparams or {})
    unknown = sorted(set(grid) - set(defaults))
    if unknown:
        raise _checks.ArgumentError(
            "hparams",
            f"hparams {unknown} are not traced by this trainer; it takes {sorted(defaults)}",
        )
    grid = {k: jnp.asarray(v, jnp.asarray(defaults[k]).dtype) for k, v in grid.items()}
    counts = {int(v.shape[0]) for v in grid.values()}
    if len(counts) > 1:
        raise _checks.ArgumentError("hparams", f"hparams need one length, got {sorted(counts)}")

    def run(values, key):
        chosen = {**defaults, **values}
        state, history = trainer.train(key, chosen)
        return trainer.init(key, chosen).params, state.params, history

    if not grid:
        single = jax.jit(jax.vmap(lambda key: run({}, key)))(keys)
        return jax.tree.map(lambda leaf: leaf[None], single)
    over_keys = jax.vmap(run, in_axes=(None, 0))
    return jax.jit(jax.vmap(over_keys, in_axes=(0, None)))(grid, keys)
