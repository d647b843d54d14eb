"""How good is an estimator: its gradient against BPTT's, and its cost per step.

- :func:`gradient_similarity`: cosine, relative error and norm ratio of one gradient
  against a reference, per parameter group and overall (jit-safe).
- :func:`compare_gradients`: every estimator against BPTT on prefixes of a chunk, as a
  function of the length ``T`` (and, through the names, of the truncation).
- :func:`estimator_costs`: time per step (median of interleaved repetitions) and XLA's
  temporary memory of each estimator's compiled update.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab.cells import Cell
from rnnlab.gradients._base import Chunk, Estimator, StepLoss
from rnnlab.gradients.spec import EstimatorSpec, make_estimator, parse_estimator
from rnnlab.gradients.truncated import bptt

__all__ = ["compare_gradients", "estimator_costs", "gradient_similarity"]


def _groups(tree) -> dict[str, jax.Array]:
    """``{"cell/weight_hh": leaf, ...}`` with paths joined by ``/``."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {
        "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path): leaf
        for path, leaf in leaves
    }


def gradient_similarity(reference, estimate) -> dict[str, dict[str, jax.Array]]:
    """Per parameter group and ``"all"``: how ``estimate`` compares with ``reference``.

    Returns:
      ``{group: {"cosine": <a, b> / (|a| |b|), "relative_error": |b - a| / |a|,
      "norm_ratio": |b| / |a|}}`` with ``a`` the reference and ``b`` the estimate;
      groups are the leaves' paths (``"cell/weight_hh"``).  A zero reference gives NaN.
    """
    reference, estimate = _groups(reference), _groups(estimate)
    if reference.keys() != estimate.keys():
        raise ValueError(
            f"the gradients have different structures: {sorted(reference)} against "
            f"{sorted(estimate)}"
        )

    def measures(a: jax.Array, b: jax.Array) -> dict[str, jax.Array]:
        a, b = jnp.ravel(a), jnp.ravel(b)
        norm_a, norm_b = jnp.linalg.norm(a), jnp.linalg.norm(b)
        return {
            "cosine": jnp.vdot(a, b) / (norm_a * norm_b),
            "relative_error": jnp.linalg.norm(b - a) / norm_a,
            "norm_ratio": norm_b / norm_a,
        }

    result = {name: measures(reference[name], estimate[name]) for name in reference}
    result["all"] = measures(
        jnp.concatenate([jnp.ravel(v) for v in reference.values()]),
        jnp.concatenate([jnp.ravel(estimate[name]) for name in reference]),
    )
    return result


def _prefix(chunk: Chunk, steps: int, batch_ndim: int) -> Chunk:
    def cut(a):
        return None if a is None else jax.lax.slice_in_dim(a, 0, steps, axis=batch_ndim)

    return Chunk(cut(chunk.inputs), jax.tree.map(cut, chunk.data), cut(chunk.resets))


def _at_length(spec: EstimatorSpec, steps: int) -> EstimatorSpec:
    """tbptt:K at T <= K truncates nothing: it is evaluated as tbptt:T (BPTT)."""
    if spec.name == "tbptt" and spec.options["k1"] >= steps:
        return EstimatorSpec("tbptt", {"k1": steps, "k2": steps})
    return spec


def compare_gradients(
    cell: Cell,
    step_loss: StepLoss,
    params,
    chunk: Chunk,
    estimators: Sequence[str],
    *,
    lengths: Sequence[int] | None = None,
    samples: int = 1,
    key: jax.Array | None = None,
) -> list[dict]:
    """Each estimator's gradient against BPTT's on the first ``T`` steps of ``chunk``.

    Every estimator starts from ``cell.initial_carry`` (a fresh state), so the reference
    is the exact gradient of the prefix's loss.

    Args:
      cell, step_loss, params: as for :func:`rnnlab.gradients.make_estimator`.
      chunk: ``[*batch, T_max, ...]`` inputs and data.
      estimators: names, e.g. ``("tbptt:8", "uoro", "snap1", "rtrl")``.  ``tbptt:K`` at a
        length ``T <= K`` is BPTT and is evaluated as such.
      lengths: the prefix lengths ``T``; default ``[T_max]``.
      samples: independent draws of each stochastic estimator (vmapped over keys).
      key: the PRNG key of the draws.

    Returns:
      One row per (estimator, T, sample, group) with ``estimator``, ``T``,
      ``truncation`` (the k1 used, or ``None``), ``sample``, ``group``, ``cosine``,
      ``relative_error`` and ``norm_ratio``, as Python floats.
    """
    batch_ndim = jnp.ndim(chunk.inputs) - 2
    batch_shape = tuple(jnp.shape(chunk.inputs)[:batch_ndim])
    lengths = [jnp.shape(chunk.inputs)[-2]] if lengths is None else list(lengths)
    specs = [parse_estimator(name) for name in estimators]
    keys = jax.random.split(jax.random.key(0) if key is None else key, samples)
    reference_estimator = bptt(cell, step_loss)

    @jax.jit
    def reference(params, prefix):
        state = reference_estimator.init(params, batch_shape)
        return reference_estimator.update(params, state, prefix)[1]

    rows = []
    for steps in lengths:
        prefix = _prefix(chunk, steps, batch_ndim)
        exact = reference(params, prefix)
        for name, spec in zip(estimators, specs, strict=True):
            estimator = make_estimator(_at_length(spec, steps), cell, step_loss)
            draws = keys if estimator.stochastic else keys[:1]

            @jax.jit
            def similarity(params, prefix, exact, draws, estimator=estimator):
                def one(key):
                    state = estimator.init(params, batch_shape, key=key)
                    grads = estimator.update(params, state, prefix)[1]
                    return gradient_similarity(exact, grads)

                return jax.vmap(one)(draws)

            measured = jax.device_get(similarity(params, prefix, exact, draws))
            truncation = estimator.options.get("k1")
            for group, values in measured.items():
                for sample in range(len(draws)):
                    rows.append(
                        {
                            "estimator": name,
                            "T": steps,
                            "truncation": truncation,
                            "sample": sample,
                            "group": group,
                            **{k: float(v[sample]) for k, v in values.items()},
                        }
                    )
    return rows


def _state_bytes(state) -> int:
    return int(sum(np.asarray(leaf).nbytes for leaf in jax.tree.leaves(state.trace)))


def estimator_costs(
    estimators: Mapping[str, Estimator],
    params,
    chunk: Chunk,
    *,
    repetitions: int = 5,
    key: jax.Array | None = None,
) -> dict[str, dict]:
    """Compiled cost of each estimator's ``update`` on ``chunk`` (shared params and data).

    Time: the median over ``repetitions`` rounds, each running every estimator once in
    turn (interleaved, so load drifts hit all alike), of the wall time of one update
    (after a warm-up call), divided by ``T``.  Memory: ``temp_size_in_bytes`` of XLA's
    ``compiled.memory_analysis()`` (scratch the update needs beyond its arguments and
    results), and the bytes of the estimator's carried trace.

    Returns:
      ``{name: {"seconds_per_step", "seconds", "temp_bytes", "trace_bytes",
      "compile_seconds"}}``.
    """
    batch_shape = tuple(jnp.shape(chunk.inputs)[:-2])
    steps = jnp.shape(chunk.inputs)[-2]
    key = jax.random.key(0) if key is None else key
    compiled, states, results = {}, {}, {}
    for name, estimator in estimators.items():
        state = estimator.init(params, batch_shape, key=key)
        start = time.perf_counter()
        executable = jax.jit(estimator.update).lower(params, state, chunk).compile()
        compile_seconds = time.perf_counter() - start
        jax.block_until_ready(executable(params, state, chunk))  # warm-up
        analysis = executable.memory_analysis()
        compiled[name], states[name] = executable, state
        results[name] = {
            "temp_bytes": None if analysis is None else int(analysis.temp_size_in_bytes),
            "trace_bytes": _state_bytes(state),
            "compile_seconds": compile_seconds,
        }
    timings = {name: [] for name in estimators}
    for _ in range(repetitions):
        for name, executable in compiled.items():
            start = time.perf_counter()
            jax.block_until_ready(executable(params, states[name], chunk))
            timings[name].append(time.perf_counter() - start)
    for name, seconds in timings.items():
        median = float(np.median(seconds))
        results[name].update(seconds=median, seconds_per_step=median / steps)
    return results
