"""Compile time of a whole training program against its model's gradient (issue 13).

:func:`measure_programs` lowers and compiles (a) ``jit(value_and_grad(loss))`` of the
model on one minibatch and (b) ``jit(trainer.train)``, the whole run (init, nested
scans, sampler, optimizer, evaluation), and counts the fusions (XLA CPU kernels) of
each optimized program.  Used by ``experiments/compile_time.py`` and the bench's
``compile_program`` section.
"""

from __future__ import annotations

import contextlib
import re
import statistics
import time

__all__ = ["fusions", "measure_programs", "no_persistent_cache", "timed_compile"]

_FUSION = re.compile(r"=\s*\S+\s+fusion\(")


@contextlib.contextmanager
def no_persistent_cache():
    """Measures compilation itself: the persistent cache off, restored afterwards."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    was_on = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    compilation_cache.reset_cache()
    try:
        yield
    finally:
        jax.config.update("jax_enable_compilation_cache", was_on)
        compilation_cache.reset_cache()


def fusions(compiled) -> int:
    """The number of fusions in a compiled program's optimized HLO text."""
    return len(_FUSION.findall(compiled.as_text()))


def timed_compile(function, *arguments) -> dict:
    """``{"trace_s", "compile_s", "fusions"}`` of ``jax.jit(function)`` at ``arguments``."""
    import jax

    start = time.perf_counter()
    lowered = jax.jit(function).lower(*arguments)
    traced = time.perf_counter()
    compiled = lowered.compile()
    done = time.perf_counter()
    return {"trace_s": traced - start, "compile_s": done - traced, "fusions": fusions(compiled)}


def measure_programs(
    cell: str,
    *,
    hidden_size: int = 32,
    length: int = 100,
    steps: int = 200,
    chunk_steps: int = 50,
    repetitions: int = 5,
    task: str = "adding",
) -> dict:
    """Median trace/compile seconds and fusion counts of the model's gradient and the run.

    ``jax.clear_caches()`` runs before every compile, so each repetition compiles; turn
    the persistent cache off around the call (:func:`no_persistent_cache`).

    Returns:
      ``{"value_and_grad": {...}, "train": {...}, "ratio": train / value_and_grad}``,
      each with median ``trace_s``, ``compile_s``, ``total_s``, every repetition's
      ``all_total_s`` and ``fusions``.
    """
    import jax

    from rnnlab.train import TrainConfig
    from rnnlab.train.engine import make_train

    config = TrainConfig(task=task, cell=cell, length=length, hidden_size=hidden_size,
                         steps=steps, chunk_steps=chunk_steps)  # fmt: skip
    trainer = make_train(config)
    hparams = trainer.default_hparams()
    model = trainer.model(hparams)
    params = model.init(jax.random.key(0))
    batch = trainer.task.sample(jax.random.key(1), trainer.config.batch_size)

    def loss(params, batch):
        return trainer.task.loss(model.apply(params, batch.inputs, batch.lengths), batch)

    rows = {"value_and_grad": [], "train": []}
    for _ in range(repetitions):
        jax.clear_caches()
        rows["value_and_grad"].append(timed_compile(jax.value_and_grad(loss), params, batch))
        jax.clear_caches()
        rows["train"].append(timed_compile(trainer.train, jax.random.key(0), hparams))
    result = {}
    for name, reps in rows.items():
        result[name] = {
            key: statistics.median(rep[key] for rep in reps) for key in ("trace_s", "compile_s")
        }
        result[name]["fusions"] = reps[0]["fusions"]
        result[name]["total_s"] = result[name]["trace_s"] + result[name]["compile_s"]
        result[name]["all_total_s"] = [rep["trace_s"] + rep["compile_s"] for rep in reps]
    result["ratio"] = result["train"]["total_s"] / result["value_and_grad"]["total_s"]
    return result
