"""The resumable runner: compiled chunks, with logging, evaluation and checkpoints between them.

Everything here happens outside the compiled code, at chunk boundaries:
progress bar, ``metrics.jsonl`` (one line per chunk), evaluation, and an orbax
``CheckpointManager``.  Re-running with the same ``out`` folder resumes from the
last checkpoint; the result is bit-identical to an uninterrupted run on CPU.

Files in ``out``:

- ``config.json``: the resolved config, hparams, task, seed and package versions;
- ``metrics.jsonl``: one record per chunk (see :func:`rnnlab.train.engine.summarize_chunk`);
- ``checkpoints/<step>/``: the :class:`TrainState` after chunks;
- ``summary.json``: final evaluation, baseline, ``diverged``;
- ``learning_curves.png``, ``gradients.png``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from rnnlab import io
from rnnlab.progress import Progress
from rnnlab.train.config import TrainConfig
from rnnlab.train.engine import Trainer, TrainState, make_train, summarize_chunk

__all__ = ["RunResult", "package_versions", "restore_state", "run", "train_seeds"]

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "rnnlab")
CHECKPOINTS = "checkpoints"


def package_versions() -> dict[str, str]:
    """Versions of python and the packages a result depends on."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@dataclasses.dataclass
class RunResult:
    """What :func:`run` returns: the summary dict, the final state and the trainer."""

    summary: dict
    state: TrainState
    trainer: Trainer


def _to_saveable(state: TrainState) -> TrainState:
    """Typed PRNG keys become their ``uint32`` data and empty arrays (tbptt:k's history
    when k1 = k2) one zero, which orbax can store."""
    state = state._replace(
        key=jax.random.key_data(state.key), eval_key=jax.random.key_data(state.eval_key)
    )
    return jax.tree.map(lambda leaf: jnp.zeros((1,), leaf.dtype) if leaf.size == 0 else leaf, state)


def _from_saveable(state: TrainState, abstract: TrainState) -> TrainState:
    """Undoes :func:`_to_saveable`; ``abstract`` is the state's true shapes."""
    state = jax.tree.map(
        lambda leaf, like: leaf if like is None or like.size else jnp.zeros(like.shape, like.dtype),
        state,
        abstract._replace(key=None, eval_key=None),
        is_leaf=lambda leaf: leaf is None,
    )
    return state._replace(
        key=jax.random.wrap_key_data(state.key), eval_key=jax.random.wrap_key_data(state.eval_key)
    )


def _manager(out: Path, read_only: bool = False) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=2, enable_async_checkpointing=False, read_only=read_only
    )
    return ocp.CheckpointManager((out / CHECKPOINTS).absolute(), options=options)


def restore_state(out: str | Path, trainer: Trainer | None = None, step: int | None = None):
    """The :class:`TrainState` saved in ``out/checkpoints`` (latest ``step`` by default).

    Returns ``None`` if there is no checkpoint.
    """
    out = Path(out)
    if trainer is None:
        trainer = make_train(TrainConfig.from_dict(io.read_json(out / "config.json")["config"]))
    with _manager(out, read_only=True) as manager:
        return _restore(manager, trainer, step)


def _restore(manager, trainer: Trainer, step: int | None = None):
    step = manager.latest_step() if step is None else step
    if step is None:
        return None
    hparams = trainer.default_hparams()
    actual = jax.eval_shape(lambda: trainer.init(jax.random.key(0), hparams))
    abstract = jax.eval_shape(lambda: _to_saveable(trainer.init(jax.random.key(0), hparams)))
    restored = manager.restore(step, args=ocp.args.StandardRestore(abstract))
    return _from_saveable(TrainState(*restored), actual)


@functools.lru_cache(maxsize=8)
def _compiled(config_json: str):
    """The trainer and its jitted chunk and evaluation, shared by runs of the same config."""
    trainer = make_train(TrainConfig.from_dict(json.loads(config_json)))
    return trainer, jax.jit(trainer.train_chunk), jax.jit(trainer.evaluate)


def _write_config(out: Path, trainer: Trainer) -> None:
    """Writes ``config.json``, or checks that an existing one describes the same run."""
    config = trainer.config
    path = out / "config.json"
    wanted = io.to_jsonable(config.to_dict())
    if path.exists():
        saved = io.read_json(path)["config"]
        changed = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
        if changed:
            details = ", ".join(f"{k}: {saved.get(k)!r} -> {wanted.get(k)!r}" for k in changed)
            raise ValueError(
                f"{out} holds a run with a different config ({details}); resume it with the "
                "same arguments or pass a new --out"
            )
        return
    task = trainer.task
    io.write_json(
        path,
        {
            "config": wanted,
            "hparams": {k: float(v) for k, v in trainer.default_hparams().items()},
            "seed": config.seed,
            "task": {
                "name": task.name,
                **task.describe,
                "steps": task.steps,
                "input_size": task.input_size,
                "output_size": task.output_size,
                "readout": task.readout,
                "objective": task.objective,
                "metric": task.metric_name,
                "baseline_loss": task.baseline_loss,
                "baseline_metric": task.baseline_metric,
            },
            "versions": package_versions(),
            "backend": jax.default_backend(),
        },
    )


def _python_row(row: dict) -> dict:
    return {k: np.asarray(v).item() for k, v in row.items()}


def run(
    config: TrainConfig,
    out: str | Path,
    *,
    stop_after_chunks: int | None = None,
    show_progress: bool = True,
    plots: bool = True,
) -> RunResult:
    """Trains ``config``, writing results to ``out``; resumes if ``out`` holds a checkpoint.

    Args:
      config: the run's :class:`TrainConfig`; ``config.seed`` seeds everything.
      out: the output folder.
      stop_after_chunks: stop (as if killed) after this many chunks of this call,
        before writing ``summary.json``; a test hook for resuming.
      show_progress: print a progress bar (loss, metric, steps/s) to stderr.
      plots: write the learning-curve PNGs.

    Returns:
      A :class:`RunResult`.  If the loss or gradients became non-finite the run
      stops at that chunk: ``summary["diverged"]`` is true, ``summary["message"]``
      names the step, and the last good checkpoint and metrics stay on disk.

    Raises:
      ValueError: if ``out`` holds a run with a different config.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    trainer, train_chunk, evaluate = _compiled(json.dumps(io.to_jsonable(config.to_dict())))
    task = trainer.task
    _write_config(out, trainer)
    hparams = trainer.default_hparams()
    metrics_path = out / "metrics.jsonl"

    with _manager(out) as manager:
        state = _restore(manager, trainer)
        if state is None:
            state = trainer.init(jax.random.key(config.seed), hparams)
        done = int(state.step)
        # Records written after the last checkpoint (a kill between the two) are replayed.
        records = [r for r in io.read_jsonl(metrics_path) if r["step"] <= done]
        if records != io.read_jsonl(metrics_path):
            lines = (json.dumps(io.to_jsonable(record)) + "\n" for record in records)
            io.write_text(metrics_path, "".join(lines))
        if done:
            print(f"resuming {out} from the checkpoint at step {done}", file=sys.stderr)

        diverged_step = int(state.diverged_step)
        chunks_run = 0
        start = time.perf_counter()
        label = f"{task.name} {config.cell} from step {done}"
        with contextlib.ExitStack() as stack:
            bar = None
            if show_progress:
                bar = stack.enter_context(Progress(config.steps - done, label, unit="step"))
            while int(state.step) < config.steps and diverged_step < 0:
                if stop_after_chunks is not None and chunks_run >= stop_after_chunks:
                    return RunResult({"stopped_at_step": int(state.step)}, state, trainer)
                chunk_start = time.perf_counter()
                state, metrics = train_chunk(state, hparams)
                evals = evaluate(state, hparams, state.eval_key)
                row = _python_row(summarize_chunk(task, state, metrics, evals))
                elapsed = time.perf_counter() - chunk_start
                row["steps_per_second"] = config.chunk_steps / elapsed
                diverged_step = int(state.diverged_step)
                io.append_jsonl(metrics_path, [row])
                records.append(row)
                chunks_run += 1
                if diverged_step < 0:
                    manager.save(row["step"], args=ocp.args.StandardSave(_to_saveable(state)))
                if bar is not None:
                    bar.update(
                        config.chunk_steps,
                        loss=row["train_loss"],
                        test_loss=row["test_loss"],
                        **{task.metric_name: row["test_metric"]},
                    )
        last_good = manager.latest_step()

    summary = _summary(trainer, records, diverged_step, last_good, out)
    summary["wall_time_s"] = time.perf_counter() - start
    io.write_json(out / "summary.json", summary)
    if summary["diverged"]:
        print(summary["message"], file=sys.stderr)
    if plots and records:
        from rnnlab.plots.training import plot_run

        plot_run(records, task, out)
    return RunResult(summary, state, trainer)


def _summary(trainer: Trainer, records, diverged_step: int, last_good, out: Path) -> dict:
    task = trainer.task
    final = records[-1] if records else {}
    summary = {
        "task": task.name,
        "cell": trainer.config.cell,
        "seed": trainer.config.seed,
        "steps": final.get("step", 0),
        "final_test_loss": final.get("test_loss"),
        "final_train_loss": final.get("train_loss"),
        "metric": task.metric_name,
        task.metric_name: final.get("test_metric"),
        "baseline_loss": task.baseline_loss,
        "baseline_metric": task.baseline_metric,
        "loss_over_baseline": (final["test_loss"] / task.baseline_loss if records else None),
        "diverged": diverged_step >= 0,
        "diverged_step": diverged_step if diverged_step >= 0 else None,
    }
    if diverged_step >= 0:
        summary["last_good_checkpoint_step"] = last_good
        summary["message"] = (
            f"diverged at step {diverged_step}: the loss or gradient norm became non-finite. "
            f"Params were frozen at their last finite values; the last good checkpoint "
            f"(step {last_good}) is in {out / CHECKPOINTS} and metrics.jsonl holds the "
            "records so far.  Lower the learning rate or clip the gradients."
        )
    return summary


def train_seeds(config: TrainConfig, num_seeds: int) -> dict[str, np.ndarray]:
    """Trains seeds ``config.seed, ..., config.seed + num_seeds - 1`` as one vmapped program.

    Seed ``s`` starts from ``jax.random.key(s)``, the key :func:`run` uses, so each
    row matches ``experiments/train.py --seed s`` up to float reassociation.

    Returns:
      The :meth:`Trainer.train` history with a leading ``[num_seeds]`` axis, as numpy.
    """
    if isinstance(num_seeds, bool) or not isinstance(num_seeds, int) or num_seeds < 1:
        raise ValueError(f"num_seeds must be a positive int, got {num_seeds!r}")
    trainer = make_train(config)
    seeds = jnp.arange(config.seed, config.seed + num_seeds)
    keys = jax.vmap(jax.random.key)(seeds)
    hparams = jax.tree.map(lambda v: jnp.full((num_seeds,), v), trainer.default_hparams())
    _, history = jax.jit(jax.vmap(trainer.train))(keys, hparams)
    return jax.tree.map(np.asarray, history)
