"""Compare models on one task: seeds trained as one vmapped program, selection on validation.

What every application study does: train a few configurations (cells, directions,
sizes) for several seeds, select each run's params on the validation split
(:meth:`rnnlab.train.Trainer.select`), report test scores at the selected params,
and keep the selected params for samples and figures.  :func:`train_models` does it;
:func:`summary_rows`, :func:`history_rows` and :func:`experiment_record` turn the
results into the rows and records an experiment writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab.progress import Progress
from rnnlab.train.config import TrainConfig
from rnnlab.train.engine import Trainer, make_train
from rnnlab.train.sizing import parameter_count

__all__ = [
    "FAST_COMPILE",
    "ModelResult",
    "add_arguments",
    "base_config",
    "contrast",
    "csv_row",
    "experiment_record",
    "history_rows",
    "markdown_table",
    "parse_arguments",
    "print_report",
    "result_from_run",
    "seed_claims",
    "summary_rows",
    "train_models",
    "write_comparison",
    "write_record",
]

#: Packages the application data come from, recorded beside the core versions.
DATA_PACKAGES = ("scikit-learn", "statsmodels", "sktime", "music21", "mnist1d", "pandas")

#: XLA options for smoke runs: about half the compile time, several times the run time.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


@dataclasses.dataclass
class ModelResult:
    """One configuration trained for several seeds.

    Attributes:
      label: the name it is reported under, e.g. ``"bidirectional gru"``.
      config: its :class:`TrainConfig` (seed ``s`` of ``seeds`` ran from
        ``jax.random.key(config.seed + s)``).
      trainer: its :class:`Trainer` (the task, the model).
      history: :meth:`Trainer.train`'s history as NumPy, with a leading ``[seeds]``
        axis.
      best_params: the selected (best-validation) params, leading ``[seeds]`` axis.
      parameters: trainable scalars of one model.
      wall_time_s: compiling and training all seeds.
    """

    label: str
    config: TrainConfig
    trainer: Trainer
    history: dict[str, np.ndarray]
    best_params: Any
    parameters: int
    wall_time_s: float

    @property
    def seeds(self) -> int:
        return len(self.history["final_test_loss"])

    @property
    def best_seed(self) -> int:
        """The seed whose selected params have the lowest validation loss (the first
        seed without a validation split: choosing on test would select on test)."""
        if "best_validation_loss" not in self.history:
            return 0
        return int(np.argmin(self.history["best_validation_loss"]))

    def params(self, seed: int | None = None):
        """The selected params of seed index ``seed`` (default :attr:`best_seed`)."""
        seed = self.best_seed if seed is None else seed
        return jax.tree.map(lambda leaf: leaf[seed], self.best_params)

    def model(self):
        """The :class:`rnnlab.train.Model` with the config's default hyperparameters."""
        return self.trainer.model(self.trainer.default_hparams())


def train_models(
    configs: Mapping[str, TrainConfig],
    seeds: int,
    *,
    label: str = "models",
    progress: bool = True,
    compiler_options: Mapping[str, Any] | None = None,
) -> dict[str, ModelResult]:
    """Trains every configuration for ``seeds`` seeds, each as one ``jit(vmap(train))``.

    Args:
      configs: ``{label: config}``; all on the same task for a fair comparison.
      seeds: seeds per configuration, ``config.seed`` up.
      label: the progress line's label.
      progress: print one progress line per configuration to stderr.
      compiler_options: XLA options of the compiled run (e.g. :data:`FAST_COMPILE`
        for smoke runs).

    Returns:
      ``{label: ModelResult}`` in the order of ``configs``.
    """
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be a positive int, got {seeds!r}")
    results = {}
    with contextlib.ExitStack() as stack:
        bar = None
        if progress:
            bar = stack.enter_context(Progress(len(configs), label, unit="model", every=0.0))
        for name, config in configs.items():
            start = time.perf_counter()
            trainer = make_train(config)
            keys = jax.vmap(jax.random.key)(jnp.arange(config.seed, config.seed + seeds))
            hparams = jax.tree.map(lambda v: jnp.full((seeds,), v), trainer.default_hparams())
            program = jax.jit(jax.vmap(trainer.train)).lower(keys, hparams)
            state, history = program.compile(compiler_options=compiler_options)(keys, hparams)
            history = jax.tree.map(np.asarray, history)
            results[name] = ModelResult(
                label=name,
                config=config,
                trainer=trainer,
                history=history,
                best_params=state.best_params,
                parameters=parameter_count(config, trainer.task),
                wall_time_s=time.perf_counter() - start,
            )
            if bar is not None:
                metric = float(np.mean(history["final_test_metric"]))
                bar.update(1, model=name, **{trainer.task.metric_name: metric})
    return results


def _mean_std(values) -> tuple[float, float]:
    values = np.asarray(values, np.float64)
    return float(values.mean()), float(values.std())


def summary_rows(results: Mapping[str, ModelResult]) -> list[dict[str, Any]]:
    """One row per model: size, the selected test scores over seeds, selection, time.

    ``test_metric`` and ``test_loss`` are the test scores of each seed's
    best-validation params (mean, standard deviation over seeds, and each seed's).
    """
    rows = []
    for result in results.values():
        history, config = result.history, result.config
        metric_mean, metric_std = _mean_std(history["final_test_metric"])
        loss_mean, loss_std = _mean_std(history["final_test_loss"])
        row = {
            "model": result.label,
            "cell": config.cell,
            "bidirectional": config.bidirectional,
            "hidden_size": config.hidden_size,
            "parameters": result.parameters,
            "seeds": result.seeds,
            "steps": config.steps,
            "metric": result.trainer.task.metric_name,
            "test_metric": metric_mean,
            "test_metric_std": metric_std,
            "test_loss": loss_mean,
            "test_loss_std": loss_std,
            "test_metric_per_seed": history["final_test_metric"].tolist(),
        }
        if "best_validation_loss" in history:
            row["validation_loss"] = _mean_std(history["best_validation_loss"])[0]
            row["best_step_per_seed"] = history["best_step"].tolist()
        row["diverged_seeds"] = int(np.sum(history["diverged"]))
        row["wall_time_s"] = result.wall_time_s
        rows.append(row)
    return rows


def history_rows(results: Mapping[str, ModelResult]) -> list[dict[str, Any]]:
    """The learning curves as flat rows: one per model, seed and evaluation."""
    rows = []
    for result in results.values():
        curves = {k: v for k, v in result.history.items() if v.ndim == 2}
        for seed in range(result.seeds):
            for index in range(curves["step"].shape[1]):
                row = {"model": result.label, "seed": result.config.seed + seed}
                row.update({k: v[seed, index].item() for k, v in curves.items()})
                rows.append(row)
    return rows


def experiment_record(
    kind: str, arguments: Mapping[str, Any], configs: Mapping[str, TrainConfig], **extra
) -> dict[str, Any]:
    """What an application's ``config.json`` holds (:func:`write_record` writes it).

    ``config`` is the resolved command line; the details are every resolved
    :class:`TrainConfig` (``configs``) and ``extra``.
    """
    details = {
        "configs": {name: config.to_dict() for name, config in configs.items()},
        **extra,
    }
    return {"kind": kind, "config": dict(arguments), "details": details}


def write_record(out, record: Mapping[str, Any]) -> dict[str, Any]:
    """Writes ``record`` (:func:`experiment_record`) as ``out/config.json`` through
    :func:`rnnlab.io.write_config`, with the versions of the data packages too."""
    from rnnlab import io

    return io.write_config(
        out, record["kind"], record["config"], details=record["details"], packages=DATA_PACKAGES
    )


def contrast(
    results: Mapping[str, ModelResult], better: str, worse: str, *, higher_is_better: bool
) -> dict[str, Any]:
    """Does model ``better`` beat model ``worse`` on the selected test metric?

    The difference of the seed means (oriented so that positive favours ``better``)
    and its standard error ``sqrt(s_a^2/n_a + s_b^2/n_b)`` (sample standard
    deviations; 0 with one seed).  The verdict is ``"holds"`` when the difference
    exceeds two standard errors, ``"reversed"`` when it is below minus two, and
    ``"inconclusive"`` otherwise (always, with a single seed each).
    """
    a = np.asarray(results[better].history["final_test_metric"], np.float64)
    b = np.asarray(results[worse].history["final_test_metric"], np.float64)
    difference = (a.mean() - b.mean()) * (1.0 if higher_is_better else -1.0)
    variance = sum(v.var(ddof=1) / len(v) for v in (a, b) if len(v) > 1)
    error = float(np.sqrt(variance))
    if min(len(a), len(b)) < 2:
        verdict = "inconclusive"
    elif difference > 2 * error:
        verdict = "holds"
    elif difference < -2 * error:
        verdict = "reversed"
    else:
        verdict = "inconclusive"
    return {
        "claim": f"{better} beats {worse}",
        "better_mean": float(a.mean()),
        "worse_mean": float(b.mean()),
        "difference": float(difference),
        "standard_error": error,
        "verdict": verdict,
    }


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """``rows`` as a Markdown table of ``columns`` (floats to 4 significant digits)."""

    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_comparison(
    out,
    record: Mapping[str, Any],
    results: Mapping[str, ModelResult],
    *,
    baselines: Mapping[str, float],
    summary: Mapping[str, Any],
    title: str = "",
) -> dict[str, Any]:
    """Writes a comparison's artifacts into ``out`` and returns the summary written.

    - ``config.json``: ``record`` (:func:`experiment_record`, :func:`write_record`);
    - ``results.csv``: :func:`summary_rows`; ``metrics.csv``: :func:`history_rows`;
    - ``summary.json``: ``summary`` with the rows and ``baselines`` added;
    - ``learning_curves.png`` (:func:`rnnlab.plots.apps.plot_curves`) and
      ``comparison.png`` (:func:`rnnlab.plots.apps.plot_comparison`).
    """
    from pathlib import Path

    from rnnlab import io
    from rnnlab.plots.apps import plot_comparison, plot_curves

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_record(out, record)
    rows = summary_rows(results)
    io.write_csv(out / "results.csv", [csv_row(row) for row in rows])
    io.write_csv(out / "metrics.csv", history_rows(results))
    metric = next(iter(results.values())).trainer.task.metric_name
    written = io.to_jsonable({**summary, "metric": metric, "baselines": baselines, "models": rows})
    io.write_json(out / "summary.json", written)
    plot_curves(results, out / "learning_curves.png", metric_name=metric, baselines=baselines)
    plot_comparison(rows, out / "comparison.png", metric_name=metric, baselines=baselines,
                    title=title)  # fmt: skip
    return written


def csv_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """CSV cells: lists become space-separated strings."""
    return {
        k: " ".join(f"{x:.6g}" if isinstance(x, float) else str(x) for x in v)
        if isinstance(v, list)
        else v
        for k, v in row.items()
    }


def add_arguments(parser, *, out: str, quick: Mapping[str, Any], **defaults) -> None:
    """The flags every application study shares, with its own defaults.

    ``--out``, ``--cells``, ``--seeds``, ``--steps``, ``--chunk-steps``,
    ``--hidden-size``, ``--batch-size``, ``--learning-rate`` and ``--quick`` (which
    sets the values in ``quick`` and compiles with :data:`FAST_COMPILE`).
    """
    values = {
        "cells": ["rnn", "lstm", "gru"],
        "seeds": 3,
        "steps": 2000,
        "chunk_steps": 100,
        "hidden_size": 64,
        "batch_size": 32,
        "learning_rate": 3e-3,
        **defaults,
    }
    parser.add_argument("--out", default=out, help=f"output folder (default {out})")
    parser.add_argument(
        "--cells", nargs="+", default=values.pop("cells"), help="registered cell names"
    )
    for name, value in values.items():
        parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    summary = ", ".join(f"{k}={v}" for k, v in quick.items())
    parser.add_argument("--quick", action="store_true", help=f"a smoke run: {summary}")
    parser.set_defaults(_quick=dict(quick))


def base_config(arguments, task: str, **extra) -> TrainConfig:
    """The :class:`TrainConfig` of a study from the flags of :func:`add_arguments`.

    ``task``, then ``hidden_size``, ``batch_size``, ``steps``, ``chunk_steps`` and
    ``learning_rate`` from ``arguments``, ``clip_norm=1.0``; ``extra`` fields (``length``,
    ``task_options``, ``model``, or overrides of the above) win.
    """
    shared = {name: getattr(arguments, name) for name in
              ("hidden_size", "batch_size", "steps", "chunk_steps", "learning_rate")}  # fmt: skip
    return TrainConfig(**{"task": task, **shared, "clip_norm": 1.0, **extra})


def parse_arguments(parser, argv=None):
    """Parses ``argv``; with ``--quick`` the study's quick values replace the flags'."""
    arguments = parser.parse_args(argv)
    quick = vars(arguments).pop("_quick")
    if arguments.quick:
        for name, value in quick.items():
            setattr(arguments, name, value)
    arguments.compiler_options = FAST_COMPILE if arguments.quick else None
    return arguments


def print_report(summary: Mapping[str, Any], columns: Sequence[str], out) -> None:
    """Prints the models' table, the baselines and the claims' verdicts."""
    print(markdown_table(summary["models"], columns))
    for name, value in summary["baselines"].items():
        print(f"baseline {name}: {value:.4g}")
    for claim in summary.get("claims", ()):
        print(
            f"{claim['claim']}: {claim['verdict']} (difference {claim['difference']:+.4g} "
            f"± {claim['standard_error']:.2g} standard error)"
        )
    print(f"wrote {out} in {summary.get('wall_time_s', float('nan')):.0f}s")


def seed_claims(results: Mapping[str, ModelResult], *, higher_is_better: bool) -> list[dict]:
    """The issue's claims these results can test, by :func:`contrast` of labelled models:

    - gated cells beat the vanilla RNN (``"lstm"`` and ``"gru"`` against ``"rnn"``);
    - the GRU matches the LSTM (``"gru"`` against ``"lstm"``: ``"inconclusive"``
      means they are within two standard errors, i.e. it matches);
    - bidirectional helps (``"bidirectional X"`` against ``"X"``).

    The cell pairs are compared one-way and, where present, bidirectional; models the
    results lack are skipped.
    """
    cells = [("lstm", "rnn"), ("gru", "rnn"), ("gru", "lstm")]
    pairs = [(prefix + a, prefix + b) for prefix in ("", "bidirectional ") for a, b in cells]
    pairs += [(label, label.removeprefix("bidirectional ")) for label in results]
    return [
        contrast(results, better, worse, higher_is_better=higher_is_better)
        for better, worse in pairs
        if better != worse and better in results and worse in results
    ]


def result_from_run(label: str, run, out) -> ModelResult:
    """A :class:`ModelResult` of one :func:`rnnlab.train.run` (one seed): its
    ``metrics.jsonl`` as the history, its summary's selected scores, its best params.

    Args:
      label: the name to report it under.
      run: the :class:`rnnlab.train.RunResult`.
      out: the run's output folder.
    """
    from pathlib import Path

    from rnnlab import io

    records = io.read_jsonl(Path(out) / "metrics.jsonl")
    summary, metric = run.summary, run.trainer.task.metric_name
    names = [name for name in records[0] if name != "steps_per_second"]
    history = {name: np.array([[record[name] for record in records]]) for name in names}
    history["final_test_loss"] = np.array([summary["final_test_loss"]])
    history["final_test_metric"] = np.array([summary[metric]])
    history["diverged"] = np.array([summary["diverged"]])
    if "best_validation_loss" in summary:
        history["best_validation_loss"] = np.array([summary["best_validation_loss"]])
        history["best_step"] = np.array([summary["best_step"]])
    return ModelResult(
        label=label,
        config=run.trainer.config,
        trainer=run.trainer,
        history=history,
        best_params=jax.tree.map(lambda leaf: leaf[None], run.state.best_params),
        parameters=parameter_count(run.trainer.config, run.trainer.task),
        wall_time_s=float(summary.get("wall_time_s", math.nan)),
    )
