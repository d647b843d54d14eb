"""The curse of memory (Zucchet & Orvieto 2024): students imitating a linear teacher whose
memory |lambda| approaches 1, and the parameter sensitivity that explains it.

Two parts:

1. **Sensitivity, no training.**  For the scalar recurrence ``h_{t+1} = lambda h_t + x_t``
   with ``x ~ N(0, 1)`` (an ``rnnlab.rnn(1, activation="linear")`` with ``W = lambda``, ``U = 1``),
   ``dh_T/dlambda`` is measured by ``jax.jvp`` over ``--sequences`` sequences of
   ``T = max(100, 25 / (1 - lambda))`` steps (long enough to be stationary) and its mean
   square compared with ``(1 + lambda^2) / (1 - lambda^2)^3``: the sensitivity of the
   state to the recurrent parameter explodes as the memory approaches 1, although the
   gradient through time does not.
2. **Training.**  Each student of :data:`STUDENTS` is trained with :mod:`rnnlab.train`
   (Adam, cosine schedule, no clipping) on :func:`rnnlab.tasks.teacher_student` at every
   teacher memory, ``--seeds`` seeds vmapped in one program; reported is the final test
   loss divided by the teacher's output power (1 = the zero predictor), and the top
   eigenvalue of the training-loss Hessian at the end (Lanczos,
   :func:`rnnlab.dynamics.hessian_top_eigenvalues`), which Zucchet & Orvieto track.

The protocol of the paper is T = 300, a 64-unit student, memories {0.36, 0.68, 0.84,
0.92, 0.96, 0.98, 0.99}, 10 seeds, batch 128 and 10,000 Adam steps with the learning rate
tuned per model; the defaults here keep T, the student size and the memories but train
far less (see ``--steps``, ``--batch-size``, ``--seeds``) to fit in 10 minutes on 2 CPU
cores, with one learning rate per student.

Artifacts in ``--out``: ``config.json``, ``summary.json`` (both tables), ``training.csv``
(every seed), ``sensitivity.csv``, ``history.csv`` (test loss per chunk) and
``curse_of_memory.png``.

Run: ``PYTHONPATH=. python experiments/curse_of_memory.py [--quick] [--out DIR]``.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import rnnlab
from rnnlab import cli, dynamics, io, plots, runtime
from rnnlab.plots import dynamics as dynamics_plots
from rnnlab.progress import Progress
from rnnlab.tasks import Batch
from rnnlab.tasks.base import squared_error
from rnnlab.train import TrainConfig, make_train

PERCENTILES = (10, 50, 90)


class Student(NamedTuple):
    """One row of :data:`STUDENTS`: a :class:`TrainConfig` override and its learning rate."""

    name: str
    title: str
    cell: str  # a registered cell
    cell_options: tuple  # (hyperparameter, value) pairs
    learning_rate: float


#: The students.  The LRU's gamma = sqrt(1 - |lambda|^2) is recomputed from lambda
#: ("function"), the normalization Zucchet & Orvieto analyse, or left out ("none").
STUDENTS = (
    Student("rnn", "tanh RNN", "rnn", (), 1e-3),
    Student("gru", "GRU", "gru", (), 3e-3),
    Student("lru", "LRU, γ-normalized", "lru", (("normalization", "function"),), 1e-2),
    Student("lru_no_gamma", "LRU, no γ", "lru", (("normalization", "none"),), 1e-2),
)


def parse_args(argv=None):
    parser = cli.Parser(
        description=__doc__.split("\n")[0], renamed={"--hessian-batch": "--hessian-batch-size"}
    )
    parser.add_argument("--out", type=Path, default=Path("results/curse_of_memory"))
    parser.add_argument(
        "--memories", type=float, nargs="+", default=[0.36, 0.68, 0.84, 0.92, 0.96, 0.98, 0.99]
    )  # fmt: skip
    parser.add_argument("--students", nargs="+", default=[s.name for s in STUDENTS])
    parser.add_argument("--length", type=int, default=300)
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--teacher-size", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--chunk-steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--eval-batch-size", type=int, default=128)
    parser.add_argument("--learning-rate-scale", type=float, default=1.0,
                        help="multiplies every student's learning rate")  # fmt: skip
    parser.add_argument("--hessian-iterations", type=int, default=10, help="0: skip")
    parser.add_argument("--hessian-batch-size", type=int, default=32)
    parser.add_argument(
        "--lambdas", type=float, nargs="+",
        default=[0.0, 0.36, 0.5, 0.68, 0.84, 0.9, 0.92, 0.96, 0.98, 0.99, 0.995],
    )  # fmt: skip
    parser.add_argument("--sequences", type=int, default=8192)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny smoke-test sizes")
    args = parser.parse_args(argv)
    if args.quick:
        args.memories, args.length, args.hidden_size, args.teacher_size = [0.9], 30, 8, 4
        args.seeds, args.steps, args.chunk_steps, args.batch_size = 2, 20, 10, 8
        args.eval_batch_size, args.hessian_iterations, args.hessian_batch_size = 16, 4, 4
        args.lambdas, args.sequences = [0.5, 0.9], 1024
        args.students = args.students[:1]  # every student is the same pipeline
    known = {s.name for s in STUDENTS}
    if set(args.students) - known:
        parser.error(f"--students: unknown {sorted(set(args.students) - known)}; known {known}")
    if args.steps % args.chunk_steps:
        parser.error("--chunk-steps must divide --steps")
    if any(not 0 <= m < 1 for m in args.memories + args.lambdas):
        parser.error("--memories and --lambdas must lie in [0, 1)")
    return args


# --------------------------------------------------------------------------------------
# Part 1: E[(dh/dlambda)^2] of the scalar recurrence
# --------------------------------------------------------------------------------------


def sensitivity_steps(lam: float) -> int:
    """Steps after which ``T^2 lambda^(2T)`` (the distance to stationarity) is < 1e-15."""
    return max(100, math.ceil(25.0 / (1.0 - lam)))


def measure_sensitivity(lam: float, sequences: int, key) -> tuple[float, float]:
    """``(mean, standard error)`` of ``(dh_T/dlambda)^2`` over ``sequences`` sequences.

    ``h`` is the state of ``rnnlab.rnn(1, activation="linear")`` with ``W = lambda`` and ``U = 1``,
    stepped by ``cell.step`` in a ``lax.scan``; the derivative is ``jax.jvp`` along
    ``W``.  Float64.
    """
    cell = rnnlab.rnn(1, activation="linear", param_dtype=jnp.float64)
    params = {
        "weight_ih": jnp.ones((1, 1), jnp.float64),
        "weight_hh": jnp.full((1, 1), lam, jnp.float64),
        "bias_ih": jnp.zeros(1, jnp.float64),
        "bias_hh": jnp.zeros(1, jnp.float64),
    }
    xs = jax.random.normal(key, (sensitivity_steps(lam), sequences, 1), jnp.float64)

    def final_state(weight_hh):
        step = lambda h, x: (cell.step({**params, "weight_hh": weight_hh}, h, x)[0], None)  # noqa: E731
        final, _ = jax.lax.scan(step, cell.initial_carry((sequences,)), xs)
        return final[:, 0]

    _, derivative = jax.jit(jax.jvp, static_argnums=0)(
        final_state, (params["weight_hh"],), (jnp.ones((1, 1), jnp.float64),)
    )
    squares = np.square(np.asarray(derivative, np.float64))
    return float(squares.mean()), float(squares.std(ddof=1) / math.sqrt(sequences))


def sensitivity_study(args, key) -> list[dict]:
    rows = []
    with Progress(len(args.lambdas), "sensitivity", unit="lambdas") as bar:
        for i, lam in enumerate(args.lambdas):
            mean, error = measure_sensitivity(lam, args.sequences, jax.random.fold_in(key, i))
            theory = (1 + lam**2) / (1 - lam**2) ** 3
            rows.append(
                {
                    "lambda": lam, "steps": sensitivity_steps(lam), "sequences": args.sequences,
                    "measured": mean, "standard_error": error, "theory": theory,
                    "ratio": mean / theory, "deviation_in_standard_errors": (mean - theory) / error,
                }
            )  # fmt: skip
            bar.update(1, lam=lam)
    return rows


# --------------------------------------------------------------------------------------
# Part 2: training students
# --------------------------------------------------------------------------------------


def student_config(student: Student, memory: float, args) -> TrainConfig:
    """The student's :class:`TrainConfig` on the teacher of ``memory``.

    Raises:
      ValueError: from :class:`TrainConfig` for a student the engine does not support.
    """
    values = dict(
        task="teacher_student",
        length=args.length,
        task_options={"memory": memory, "teacher_size": args.teacher_size},
        hidden_size=args.hidden_size,
        optimizer="adam",
        schedule="cosine",
        batch_size=args.batch_size,
        steps=args.steps,
        chunk_steps=args.chunk_steps,
        eval_batch_size=args.eval_batch_size,
        learning_rate=student.learning_rate * args.learning_rate_scale,
        clip_norm=None,
        seed=args.seed,
    )
    values.update(cell=student.cell, cell_options=dict(student.cell_options))
    return TrainConfig.from_dict(values)


def make_sharpness(trainer, iterations: int):
    """``sharpness(params [S, ...], inputs, targets) -> [S]``: the top Hessian eigenvalue
    of the training loss (mean squared error at every step) of each seed's params.

    The loss depends on the memory only through the data, so one compiled program
    serves every teacher.
    """
    model = trainer.model(trainer.default_hparams())

    def one(params, inputs, targets):
        def loss(p):
            return jnp.mean(squared_error(model.apply(p, inputs), targets))

        return dynamics.hessian_top_eigenvalues(loss, params, 1, iterations=iterations)

    return jax.jit(jax.vmap(one, in_axes=(0, None, None)))


def train_student(student: Student, args, bar) -> tuple[list[dict], list[dict]]:
    """Trains ``student`` at every memory; returns (per-seed rows, history rows)."""
    rows, history_rows, sharpness = [], [], None
    keys = jax.vmap(jax.random.key)(jnp.arange(args.seed, args.seed + args.seeds))
    for memory in args.memories:
        trainer = make_train(student_config(student, memory, args))
        hparams = jax.tree.map(lambda v: jnp.full((args.seeds,), v), trainer.default_hparams())
        state, history = jax.jit(jax.vmap(trainer.train))(keys, hparams)
        baseline = trainer.task.baseline_loss
        top = [np.nan] * args.seeds
        if args.hessian_iterations:
            sharpness = sharpness or make_sharpness(trainer, args.hessian_iterations)
            batch: Batch = trainer.task.sample(
                jax.random.key(args.seed + 1), args.hessian_batch_size
            )
            top = np.asarray(sharpness(state.params, batch.inputs, batch.targets).eigenvalues[:, 0])
        final = np.asarray(history["final_test_loss"], np.float64)
        diverged = np.asarray(history["diverged"])
        for seed in range(args.seeds):
            rows.append(
                {
                    "student": student.name, "memory": memory, "seed": args.seed + seed,
                    "final_test_loss": final[seed], "baseline_loss": baseline,
                    "normalized_loss": final[seed] / baseline, "hessian_top_eigenvalue": top[seed],
                    "diverged": bool(diverged[seed]),
                }
            )  # fmt: skip
            for chunk, step in enumerate(np.asarray(history["step"][seed])):
                history_rows.append(
                    {
                        "student": student.name, "memory": memory, "seed": args.seed + seed,
                        "step": int(step),
                        "train_loss": float(history["train_loss"][seed, chunk]),
                        "test_loss": float(history["test_loss"][seed, chunk]),
                    }
                )  # fmt: skip
        bar.update(1, student=student.name, memory=memory, loss=float(np.median(final / baseline)))
    return rows, history_rows


def summarize_training(students: list[Student], args, rows: list[dict]) -> dict:
    table = {}
    for student in students:
        mine = [r for r in rows if r["student"] == student.name]
        by_memory = {}
        for memory in args.memories:
            here = [r for r in mine if r["memory"] == memory]
            by_memory[f"{memory:g}"] = {
                "final_test_loss": [r["final_test_loss"] for r in here],
                "median_final_test_loss": float(np.median([r["final_test_loss"] for r in here])),
                "baseline_loss": here[0]["baseline_loss"],
                "median_normalized_loss": float(np.median([r["normalized_loss"] for r in here])),
                "median_hessian_top_eigenvalue": float(
                    np.median([r["hessian_top_eigenvalue"] for r in here])
                ),
                "diverged": sum(r["diverged"] for r in here),
            }
        table[student.name] = {"title": student.title, "by_memory": by_memory}
    return table


def percentile_table(rows, memories, key) -> np.ndarray:
    return np.array(
        [np.percentile([r[key] for r in rows if r["memory"] == m], PERCENTILES) for m in memories]
    )


def format_tables(summary: dict) -> str:
    lines = ["\nsensitivity E[(dh/dlambda)^2]", "| λ | T | measured ± s.e. | theory | ratio |"]
    lines.append("|---|---|---|---|---|")
    for row in summary["sensitivity"]:
        lines.append(
            f"| {row['lambda']:g} | {row['steps']} | {row['measured']:.4g} ± "
            f"{row['standard_error']:.2g} | {row['theory']:.4g} | {row['ratio']:.3f} |"
        )
    for result in summary["training"].values():
        lines += [
            f"\n{result['title']}: final test loss (median over seeds)",
            "| memory | final loss | zero-predictor loss | loss / zero | Hessian top eig. |",
            "|---|---|---|---|---|",
        ]
        for memory, cell in result["by_memory"].items():
            lines.append(
                f"| {memory} | {cell['median_final_test_loss']:.4g} | {cell['baseline_loss']:.4g} "
                f"| {cell['median_normalized_loss']:.3g} | "
                f"{cell['median_hessian_top_eigenvalue']:.4g} |"
            )
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    runtime.configure()  # compilation cache; allocator (no per-step page faults at long T)
    start_time = time.perf_counter()
    chosen = [s for s in STUDENTS if s.name in args.students]
    io.write_config(
        args.out,
        "curse_of_memory",
        vars(args),
        details={
            "students": {s.name: s._asdict() for s in chosen},
            "optimizer": "adam, cosine schedule to 0, no clipping",
            "loss": "squared error summed over outputs, mean over steps and sequences",
        },
    )
    summary = {}
    students = chosen

    with jax.enable_x64(True):
        sensitivity = sensitivity_study(args, jax.random.key(args.seed))
    summary["sensitivity"] = sensitivity
    io.write_csv(args.out / "sensitivity.csv", sensitivity)

    rows, history_rows = [], []
    with Progress(len(students) * len(args.memories), "training", unit="runs") as bar:
        for student in students:
            student_rows, student_history = train_student(student, args, bar)
            rows += student_rows
            history_rows += student_history
    io.write_csv(args.out / "training.csv", rows)
    io.write_csv(args.out / "history.csv", history_rows)
    summary["training"] = summarize_training(students, args, rows)

    series = [
        dynamics_plots.StudentSeries(
            student.title,
            np.asarray(args.memories),
            percentile_table([r for r in rows if r["student"] == student.name], args.memories, "normalized_loss"),  # noqa: E501
            percentile_table([r for r in rows if r["student"] == student.name], args.memories, "hessian_top_eigenvalue")  # noqa: E501
            if args.hessian_iterations else None,
        )
        for student in students
    ]  # fmt: skip
    lambdas = np.array([row["lambda"] for row in sensitivity])
    figure = dynamics_plots.curse_of_memory_figure(
        series,
        lambdas,
        np.array([row["measured"] for row in sensitivity]),
        np.array([row["standard_error"] for row in sensitivity]),
        np.array([row["theory"] for row in sensitivity]),
        title=(
            f"Curse of memory: teacher-student (T={args.length}, student H={args.hidden_size}, "
            f"{args.steps} Adam steps, {args.seeds} seeds)"
        ),
    )
    plots.save(figure, args.out / "curse_of_memory.png")
    summary["wall_time_s"] = time.perf_counter() - start_time
    io.write_json(args.out / "summary.json", summary)
    print(format_tables(summary), flush=True)
    print(f"wrote {args.out}/: config.json summary.json training.csv history.csv "
          "sensitivity.csv curse_of_memory.png", flush=True)  # fmt: skip
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
