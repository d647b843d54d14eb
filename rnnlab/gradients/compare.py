"""How good is an estimator: its gradient against BPTT's, and its cost per step.

- :func:`gradient_similarity`: cosine, relative error and norm ratio of one gradient
  against a reference, per parameter group and overall (jit-safe).
- :func:`compare_gradients`: every estimator against BPTT on chunks of several lengths
  ``T`` (and, through the names, several truncations).
- :func:`estimator_costs`: time per step (median of interleaved repetitions) and XLA's
  temporary memory of each estimator's compiled update.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab.cells import Cell
from rnnlab.gradients._base import Chunk, Estimator, StepLoss
from rnnlab.gradients.spec import make_estimator, parse_estimator
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


@functools.cache
def _masked(step_loss: StepLoss) -> StepLoss:
    """``step_loss`` on ``(data, valid)``: zero (and no gradient) where ``valid`` is False;
    one wrapper per loss, so that compiled comparisons are found in the cache again."""

    def masked(params, y, data):
        data, valid = data
        loss = step_loss(params, y, data)
        return jnp.where(valid, loss, jnp.zeros_like(loss))

    return masked


def _pad_left(chunk: Chunk, steps: int, batch_ndim: int) -> Chunk:
    """``chunk`` right-aligned in ``steps`` steps, after padding that cannot matter.

    The padding repeats the first step's data (so the loss sees sane values), is masked
    out of the loss, and the real sequence starts with a reset: the carry and every
    estimator's memory start from scratch there, exactly as for the unpadded chunk.
    """
    length = jnp.shape(chunk.inputs)[batch_ndim]
    pad = steps - length

    def left(a, value=None):
        first = jax.lax.slice_in_dim(a, 0, 1, axis=batch_ndim)
        filler = jnp.repeat(first, pad, axis=batch_ndim)
        if value is not None:
            filler = jnp.full_like(filler, value)
        return jnp.concatenate([filler, a], axis=batch_ndim)

    batch_shape = jnp.shape(chunk.inputs)[:batch_ndim]
    resets = jnp.zeros((*batch_shape, length), bool) if chunk.resets is None else chunk.resets
    resets = left(resets, False).at[..., pad].set(True)
    valid = jnp.broadcast_to(jnp.arange(steps) >= pad, (*batch_shape, steps))
    return Chunk(left(chunk.inputs, 0), (jax.tree.map(left, chunk.data), valid), resets)


@functools.lru_cache(maxsize=512)
def _similarity(cell: Cell, step_loss: StepLoss, spec: str, batch_shape: tuple[int, ...]):
    """A jitted ``(params, chunks [L, ...], keys [K]) -> similarities [L, K]`` of ``spec``
    against BPTT, cached so that repeated comparisons compile once per shape."""
    estimator, reference = make_estimator(spec, cell, step_loss), bptt(cell, step_loss)

    @jax.jit
    def similarity(params, chunks, keys):
        def per_chunk(chunk):
            exact = reference.update(params, reference.init(params, batch_shape), chunk)[1]

            def one(key):
                state = estimator.init(params, batch_shape, key=key)
                return gradient_similarity(exact, estimator.update(params, state, chunk)[1])

            return jax.vmap(one)(keys)

        return jax.vmap(per_chunk)(chunks)

    return estimator, similarity


def compare_gradients(
    cell: Cell,
    step_loss: StepLoss,
    params,
    chunks: Chunk | Sequence[Chunk],
    estimators: Sequence[str],
    *,
    samples: int = 1,
    key: jax.Array | None = None,
) -> list[dict]:
    """Each estimator's gradient against BPTT's on each chunk, as a function of its length.

    Every chunk is a fresh sequence (each estimator starts from ``cell.initial_carry``),
    so the reference is the exact gradient of its loss.  Chunks of different lengths are
    right-aligned in the longest one behind masked padding and a reset (which changes
    no gradient), so each estimator runs as *one* compiled, vmapped call over the chunks
    and the draws; the compiled function is cached per (cell, step_loss, estimator,
    batch shape), so new params or data of the same shapes compile nothing.

    Args:
      cell, step_loss, params: as for :func:`rnnlab.gradients.make_estimator`.
      chunks: one chunk or several, ``[*batch, T_i, ...]`` (same batch shape), e.g. one
        minibatch per length ``T``.
      estimators: names, e.g. ``("tbptt:8", "uoro", "snap1", "rtrl")``.  ``tbptt:K`` on a
        chunk with ``T <= K`` truncates nothing.
      samples: independent draws of each stochastic estimator (vmapped over keys).
      key: the PRNG key of the draws.

    Returns:
      One row per (estimator, chunk, sample, group) with ``estimator``, ``T``,
      ``truncation`` (tbptt's k1, else ``None``), ``sample``, ``group`` (a parameter's
      path, or ``"all"``), ``cosine``, ``relative_error`` and ``norm_ratio`` (floats).

    Raises:
      ValueError: for chunks with different batch shapes, or a tbptt:K whose windows
        would not line up (the longest T and every T > K must be multiples of K).
    """
    chunks = [chunks] if isinstance(chunks, Chunk) else list(chunks)
    batch_ndim = jnp.ndim(chunks[0].inputs) - 2
    batch_shape = tuple(jnp.shape(chunks[0].inputs)[:batch_ndim])
    for chunk in chunks:
        if tuple(jnp.shape(chunk.inputs)[:-2]) != batch_shape:
            raise ValueError(
                f"chunks must share one batch shape, got {jnp.shape(chunk.inputs)[:-2]} "
                f"and {batch_shape}"
            )
    lengths = [jnp.shape(chunk.inputs)[-2] for chunk in chunks]
    longest = max(lengths)
    for name in estimators:
        spec = parse_estimator(name, length=longest)
        k1 = spec.options.get("k1")
        if k1 is not None and any(T > k1 and (longest - T) % k1 for T in lengths):
            raise ValueError(
                f"{name}: every chunk length T > k1={k1} must differ from the longest "
                f"({longest}) by a multiple of k1, got lengths {lengths}"
            )
    padded = [_pad_left(chunk, longest, batch_ndim) for chunk in chunks]
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *padded)
    keys = jax.random.split(jax.random.key(0) if key is None else key, samples)
    rows = []
    for name in estimators:
        estimator, similarity = _similarity(
            cell, _masked(step_loss), str(parse_estimator(name)), batch_shape
        )
        draws = keys if estimator.stochastic else keys[:1]
        measured = jax.device_get(similarity(params, stacked, draws))
        for index, steps in enumerate(lengths):
            for group, values in measured.items():
                for sample in range(len(draws)):
                    rows.append(
                        {
                            "estimator": name,
                            "T": steps,
                            "truncation": estimator.options.get("k1"),
                            "sample": sample,
                            "group": group,
                            **{k: float(v[index, sample]) for k, v in values.items()},
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
