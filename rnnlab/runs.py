"""Runs are objects: load a finished (or interrupted) run, evaluate it, sample from it, and
compare several runs or sweeps.

A run is the folder :func:`rnnlab.train.run` (``experiments/train.py``) writes:
``config.json``, ``metrics.jsonl``, ``checkpoints/`` and, once finished,
``summary.json``.  A sweep is the folder :func:`rnnlab.sweep.run_sweep` writes
(``results.jsonl`` and ``curves.jsonl``).

Example::

    run = rnnlab.runs.load("results/train/adding_lstm")
    run.config.cell, run.summary["final_test_loss"]
    run.evaluate(length=400)                   # the checkpoint on longer sequences
    run.curve("test_loss")                     # (steps [C], values [C])
    rnnlab.runs.compare(["results/a", "results/b"], "compare.png")
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rnnlab import io

__all__ = ["Run", "compare", "load"]

#: The splits :meth:`Run.evaluate` scores on.
SPLITS = ("test", "validation", "fresh")


@dataclasses.dataclass(frozen=True)
class Run:
    """A training run on disk.

    Attributes:
      path: the run's folder.
      record: ``config.json`` as written (config, hparams, task, versions, history).
      metrics: the rows of ``metrics.jsonl``, one per chunk, in step order.
      summary: ``summary.json``, or ``None`` for a run that has not finished.
    """

    path: Path
    record: dict
    metrics: list[dict]
    summary: dict | None

    @property
    def config(self):
        """The run's :class:`rnnlab.train.TrainConfig`."""
        from rnnlab.train import TrainConfig

        return TrainConfig.from_dict(self.record["config"])

    @functools.cached_property
    def trainer(self):
        """``make_train(self.config)``: the run's compiled program's pure functions."""
        from rnnlab.train import make_train

        return make_train(self.config)

    @property
    def finished(self) -> bool:
        return self.summary is not None

    def state(self, step: int | None = None):
        """The saved :class:`rnnlab.train.TrainState` (latest checkpoint by default).

        Raises:
          ValueError: if the run has no checkpoint yet.
        """
        from rnnlab.train.runner import restore_state

        state = restore_state(self.path, self.trainer, step)
        if state is None:
            raise ValueError(f"{self.path} holds no checkpoint yet; train it first")
        return state

    def curve(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` of a ``metrics.jsonl`` column, e.g. ``"test_loss"``.

        Raises:
          ValueError: naming the columns, for an unknown metric.
        """
        if not self.metrics:
            return np.zeros(0, int), np.zeros(0)
        if metric not in self.metrics[0]:
            raise ValueError(f"metric={metric!r} is not a column of {self.path}/metrics.jsonl; "
                             f"use one of {sorted(self.metrics[0])}")  # fmt: skip
        steps = np.array([row["step"] for row in self.metrics])
        values = np.array([_number(row[metric]) for row in self.metrics], float)
        return steps, values

    def evaluate(
        self,
        *,
        length: int | None = None,
        split: str = "test",
        batch_size: int | None = None,
        seed: int = 0,
        step: int | None = None,
    ) -> dict[str, Any]:
        """Scores the checkpoint on the task at any sequence length or on a held-out split.

        Args:
          length: the task's sequence length; default the run's.  The cell's params do
            not depend on it, so a model trained at ``T`` is scored at any ``T'``.
          split: ``"test"`` (the task's held-out test set; for a synthetic task the
            run's own evaluation sequences, so at the trained length this reproduces
            the run's final test loss), ``"validation"`` (its validation set), or
            ``"fresh"`` (newly sampled sequences, seeded by ``seed``).
          batch_size: sequences to score for a synthetic task; default the run's
            ``eval_batch_size``.
          seed: seeds the ``"fresh"`` sequences.
          step: the checkpoint; default the latest.

        Returns:
          ``{"loss", <metric>, "baseline_loss", "length", "split", "step"}``.
        """
        import jax

        from rnnlab import _checks
        from rnnlab.tasks import make_task
        from rnnlab.train.engine import EVAL_STREAM, draw_key

        _checks.choice("split", split, SPLITS)
        config = self.config
        state = self.state(step)
        task = self.trainer.task
        if length is not None and length != task.length:
            task = make_task(config.task, _checks.positive_int("length", length),
                             **config.task_options)  # fmt: skip
        if split == "validation":
            held_out = getattr(task, "validation_set", None)
            if held_out is None:
                raise ValueError(f"task {task.name!r} has no validation split; use 'test'")
            batch = held_out()
        elif split == "test" and task.test_set is not None:
            batch = task.test_set()
        else:
            size = _checks.positive_int("batch_size", batch_size or config.eval_batch_size)
            if split == "test":  # the engine's evaluation sequences (Trainer.eval_batch)
                key = draw_key(state.eval_key, EVAL_STREAM)
            else:
                key = jax.random.key(seed)
            batch = task.sample(key, size)
        model = self.trainer.model(self.trainer.default_hparams())
        outputs = jax.jit(model.apply)(state.params, batch.inputs, batch.lengths)
        return {
            "loss": float(task.loss(outputs, batch)),
            task.metric_name: float(task.metric(outputs, batch)),
            "baseline_loss": task.baseline_loss,
            "length": task.length,
            "split": split,
            "step": int(state.step),
        }

    def sample(
        self,
        num_chars: int = 400,
        *,
        prompt: str | None = None,
        temperature: float = 1.0,
        seed: int = 0,
        step: int | None = None,
    ) -> str:
        """Text drawn from a character-model run's checkpoint (``softmax(logits / T)``).

        Raises:
          ValueError: for a run whose task is not a character model, or whose model
            cannot be stepped one character at a time (a bidirectional layer).
        """
        import jax

        from rnnlab import _checks
        from rnnlab.tasks import generate

        task = self.trainer.task
        vocabulary = task.extras.get("vocabulary")
        if vocabulary is None:
            raise ValueError(f"{self.path} trained {task.name!r}, not a character model")
        model = self.trainer.model(self.trainer.default_hparams())
        if model.step is None:
            raise ValueError(f"the model of {self.path} runs both directions; it cannot sample")
        params = self.state(step).params
        if prompt is None:
            prompt = "\n" if "\n" in vocabulary else vocabulary[0]
        temperature = _checks.number("temperature", temperature, minimum=0, strict_minimum=True)
        return generate(
            lambda carry, x: model.step(params, carry, x), model.initial_carry(()),
            vocabulary, prompt, num_chars, temperature, key=jax.random.key(seed),
        )  # fmt: skip


def _number(value) -> float:
    """JSON numbers, and the strings ``"nan"``/``"inf"`` that :mod:`rnnlab.io` writes."""
    return float(value) if value is not None else float("nan")


def load(path: str | Path) -> Run:
    """The run in ``path`` (see the module doc).

    Raises:
      ValueError: if ``path`` is not a run folder (no ``config.json`` with a training
        config), naming what it holds instead.
    """
    path = Path(path)
    config_path = path / "config.json"
    if not config_path.is_file():
        raise ValueError(f"{path} is not a run folder: it has no config.json")
    record = io.read_json(config_path)
    if "config" not in record or record.get("kind", "train") != "train":
        if "kind" in record:
            kind = f"a {record['kind']} run"
        else:  # config.json files written before kinds were recorded
            kind = "a sweep" if (path / "results.jsonl").exists() else "another experiment"
        raise ValueError(f"{path} holds {kind}, not a training run; pass a folder train.py wrote")
    summary_path = path / "summary.json"
    summary = io.read_json(summary_path) if summary_path.is_file() else None
    metrics = sorted(io.read_jsonl(path / "metrics.jsonl"), key=lambda row: row["step"])
    return Run(path, record, metrics, summary)


def _sweep_curves(path: Path, metric: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Per configuration of a sweep folder (``curves.jsonl``): ``(label, steps, values)``."""
    from rnnlab.sweep.results import CURVES_FILE, load_rows

    rows = load_rows(path)
    curves = []
    for curve in io.read_jsonl(path / CURVES_FILE):
        if metric not in curve:
            continue
        row = rows.get(curve["id"], {})
        parts = [str(row[k]) for k in ("cell",) if k in row]
        parts += [f"lr={row['learning_rate']:.2g}"] if "learning_rate" in row else []
        label = " ".join(parts) or curve["id"][:8]
        values = np.array([_number(v) for v in curve[metric]], float)
        steps = np.asarray(curve.get("step", np.arange(1, len(values) + 1)))
        curves.append((label, steps, values))
    return curves


def compare(
    paths: Sequence[str | Path],
    out: str | Path,
    *,
    metric: str = "test_loss",
    labels: Sequence[str] | None = None,
) -> dict[str, dict]:
    """Overlays the learning curves of several runs (or sweeps) in one PNG, with a table
    of their summary metrics beside it.

    Args:
      paths: run folders (``experiments/train.py``) or sweep folders.
      out: the PNG to write.
      metric: the ``metrics.jsonl`` column to plot (``test_loss``, ``train_loss``,
        ``test_metric``, ``grad_norm``, ``clip_rate``).
      labels: one legend label per path; default the folder names.

    Returns:
      ``{label: {"final": value, "best": value, "steps": last step, ...summary}}``.
    """
    from rnnlab.plots import figure, save

    if not paths:
        raise ValueError("paths is empty: pass at least one run or sweep folder")
    labels = list(labels) if labels is not None else [Path(p).name for p in paths]
    if len(labels) != len(paths):
        raise ValueError(f"labels has {len(labels)} entries but there are {len(paths)} paths")
    fig, axes = figure(1, 1, figsize=(9.5, 5.0), squeeze=False)
    ax = axes[0, 0]
    table = {}
    for label, path in zip(labels, paths, strict=True):
        path = Path(path)
        if (path / "results.jsonl").exists() and not (path / "metrics.jsonl").exists():
            for name, steps, values in _sweep_curves(path, metric):
                ax.plot(steps, values, lw=1.0, alpha=0.6, label=f"{label}: {name}")
            continue
        run = load(path)
        steps, values = run.curve(metric)
        ax.plot(steps, values, lw=1.8, marker="o", ms=3, label=label)
        finite = values[np.isfinite(values)]
        table[label] = {
            "final": float(values[-1]) if values.size else None,
            "best": float(finite.min()) if finite.size else None,
            "steps": int(steps[-1]) if steps.size else 0,
            "cell": run.config.cell,
            "task": run.config.task,
            **({k: run.summary[k] for k in ("diverged", "baseline_loss") if k in run.summary}
               if run.summary else {}),
        }  # fmt: skip
        baseline = (run.summary or {}).get("baseline_loss")
        if baseline is not None and metric.endswith("loss"):
            ax.axhline(baseline, color="0.6", lw=0.8, ls=":")
    if metric.endswith("loss"):
        ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(metric)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set_title(f"{metric} (dotted: the task's trivial baseline)")
    fig.tight_layout()
    save(fig, out)
    return table
