"""Running a sweep: group by static shape, then ``jit(vmap(train))`` chunks on a device mesh.

The engine is abstract: a *builder* maps the static part of a configuration
(cell, hidden size, sequence length, ...; anything that changes array shapes or
Python control flow) to a :class:`Trainable`, whose ``train(key, hparams)`` is
a pure function of a PRNG key and a dict of scalar hyperparameters.  Everything
in ``Trainable.hparams`` is traced, so configurations that differ only there
share one compiled program and are batched with ``jax.vmap``.

Strategies (``strategy=``):

- ``"vmap"``: ``jit(vmap(train))`` over chunks of ``chunk_size`` configurations.
  The configuration axis is sharded over a 1-D :class:`jax.sharding.Mesh`
  (axis ``"configs"``) with :class:`~jax.sharding.NamedSharding`, so the same code
  runs on 1 CPU, 8 GPUs or a TPU slice; chunks are padded to a multiple of the
  device count (padding lanes are discarded).
- ``"loop"``: one ``jit(train)`` called per configuration.
- ``"processes"``: one process per core (``spawn``), each limited to one XLA
  matmul thread (``--xla_cpu_multi_thread_eigen=false``; TensorFlow's
  ``intra_op_parallelism_threads=1`` is not an XLA flag: XLA ignores it),
  each running a loop over its share of the chunk.
- ``"auto"``: on accelerators, or with several devices, ``"vmap"``.  On one CPU
  device it runs ``"processes"`` (``"loop"`` on one core), the fastest in our CPU
  measurements, and times it on the first chunk (at most 8 configurations) of the
  first group with at least four configurations per candidate.  If the rest of the
  sweep is predicted to be long enough that timing the other candidates costs at most
  10% of it (``rnnlab.sweep.run.CALIBRATION_OVERHEAD``), each of them gets one chunk
  of that real work (nothing is thrown away), and the fastest, in configurations x
  steps per second with compile time excluded, runs the rest of the sweep.

Multi-host (a TPU pod or several GPU hosts): call ``jax.distributed.initialize()``
in every process before anything else, then run the same script everywhere.
``jax.devices()`` is then global, the mesh spans all hosts, every process builds
the identical configuration list (the space is deterministic), inputs are
assembled with ``jax.make_array_from_callback`` (each host fills only its own
shards), results are gathered with ``multihost_utils.process_allgather``, and
only process 0 writes result files.  Use ``strategy="vmap"`` there.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from rnnlab.sweep.space import config_id

__all__ = [
    "STRATEGIES",
    "Builder",
    "ChunkResult",
    "Group",
    "Trainable",
    "config_mesh",
    "group_configs",
    "iter_chunks",
    "GroupExecutor",
    "ProcessPool",
    "default_strategy",
    "pad_to",
    "single_thread_xla_flags",
]

STRATEGIES = ("auto", "vmap", "loop", "processes")
CONFIG_AXIS = "configs"
#: Keys of a configuration that are never static: the id, and the seed (it becomes the key).
RESERVED = ("id", "seed")


class Trainable(NamedTuple):
    """A pure training function and its default traced hyperparameters.

    Attributes:
      train: ``train(key, hparams) -> (state, history)``; ``key`` is a raw
        ``uint32[2]`` PRNG key, ``hparams`` a dict of scalar arrays, ``history`` a
        dict of arrays ``[E]`` (one entry per evaluation) plus scalars.  Must be
        vmappable over both arguments.
      hparams: defaults, ``dict[str, scalar jax.Array]``; their names are the
        hyperparameters a sweep may vary without recompiling.
      steps: training steps per run, for throughput (configurations x steps / s).
    """

    train: Callable[[jax.Array, Mapping[str, jax.Array]], tuple[Any, Mapping[str, jax.Array]]]
    hparams: Mapping[str, jax.Array]
    steps: int


class Builder(Protocol):
    """Picklable ``builder(static) -> Trainable`` that knows which keys it traces.

    ``static_part(config)`` returns the part of a configuration that selects the
    compiled program (for example with :func:`split_config`); the rest are traced
    hyperparameters (keys of ``Trainable.hparams``), ``"id"`` and ``"seed"``.
    """

    def static_part(self, config: Mapping[str, Any]) -> dict: ...

    def __call__(self, static: Mapping[str, Any]) -> Trainable: ...


class Group(NamedTuple):
    """Configurations that share one compiled program.

    Attributes:
      id: stable id of ``static``.
      static: the shape-changing settings, shared by every member.
      configs: the member configurations (full dicts, with ``"id"``).
    """

    id: str
    static: dict
    configs: list[dict]


class ChunkResult(NamedTuple):
    """Histories of a chunk's configurations and how long they took.

    ``run_seconds`` excludes compilation; for ``"processes"`` it is the slowest
    worker's run time (the workers run in parallel).
    """

    histories: list[dict[str, np.ndarray]]
    run_seconds: float
    compile_seconds: float


def split_config(config: Mapping, dynamic_names: Sequence[str]) -> dict:
    """The static part of ``config``: everything except dynamic names, id and seed."""
    return {k: v for k, v in config.items() if k not in dynamic_names and k not in RESERVED}


def group_configs(
    configs: Sequence[Mapping], static_part: Callable[[Mapping], dict] | Sequence[str]
) -> list[Group]:
    """Groups configurations by their static part, in first-seen order.

    Args:
      configs: configurations (dicts with ``"id"``).
      static_part: ``static_part(config) -> dict`` (a builder's), or the names of the
        keys that are traced hyperparameters (vmappable).

    Returns:
      One :class:`Group` per distinct static part.
    """
    if not callable(static_part):
        names = tuple(static_part)
        static_part = lambda config: split_config(config, names)  # noqa: E731
    groups: dict[str, Group] = {}
    for config in configs:
        static = static_part(config)
        gid = config_id(static)
        groups.setdefault(gid, Group(gid, static, []))
        groups[gid].configs.append(dict(config))
    return list(groups.values())


def iter_chunks(items: Sequence, size: int) -> Iterator[list]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def config_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over ``devices`` (default: all, across hosts) with axis ``"configs"``."""
    devices = list(jax.devices() if devices is None else devices)
    return Mesh(np.array(devices), (CONFIG_AXIS,))


def _inputs(trainable: Trainable, configs: Sequence[Mapping], size: int):
    """Keys ``uint32[size, 2]`` and hparams ``{name: [size]}``, padded by repeating the last.

    The keys travel as the raw data of ``jax.random.key(seed)`` (NumPy can stack and
    shard them); the trainer wraps them back into typed keys.
    """
    padded = list(configs) + [configs[-1]] * (size - len(configs))
    keys = np.stack([jax.random.key_data(jax.random.key(int(c.get("seed", 0)))) for c in padded])
    hparams = {}
    for name, default in trainable.hparams.items():
        dtype = np.asarray(default).dtype
        hparams[name] = np.array([c.get(name, np.asarray(default)) for c in padded], dtype=dtype)
    return keys, hparams


def _unstack(history: Mapping[str, np.ndarray], count: int) -> list[dict[str, np.ndarray]]:
    return [{k: np.asarray(v[i]) for k, v in history.items()} for i in range(count)]


def _history_only(train):
    return lambda key, hparams: train(key, hparams)[1]


class GroupExecutor:
    """Runs chunks of one group; each program (strategy, chunk size) compiles once.

    Args:
      build: the builder (the processes strategy rebuilds in each worker).
      group: the group.
      mesh: the device mesh of ``"vmap"``.
      pool: the worker pool of ``"processes"`` (needed only for that strategy).
    """

    def __init__(self, build: Builder, group: Group, mesh: Mesh, pool: ProcessPool | None = None):
        self.build, self.group, self.mesh, self.pool = build, group, mesh, pool
        self.trainable = build(group.static)
        self._programs: dict = {}

    def run(self, strategy: str, configs: list[dict], size: int | None = None) -> ChunkResult:
        """Runs ``configs`` with a concrete strategy.

        Args:
          strategy: ``"vmap"``, ``"loop"`` or ``"processes"``.
          configs: members of the group.
          size: the padded chunk size of ``"vmap"`` (a multiple of the mesh size);
            defaults to ``len(configs)`` rounded up to the mesh size.
        """
        if strategy == "vmap":
            return self._vmap(configs, size or pad_to(len(configs), self.mesh.size))
        if strategy == "loop":
            return self._loop(configs)
        if strategy == "processes":
            if self.pool is None:
                raise ValueError("strategy='processes' needs GroupExecutor(pool=ProcessPool())")
            return self.pool.run(self.build, self.group.static, configs)
        raise ValueError(f"strategy={strategy!r} is not concrete; use one of {STRATEGIES[1:]}")

    def _program(self, name, make, *args) -> tuple[Callable, float]:
        key = (name, tuple(np.shape(leaf) for leaf in jax.tree.leaves(args)))
        if key in self._programs:
            return self._programs[key], 0.0
        start = time.perf_counter()
        self._programs[key] = make().lower(*args).compile()
        return self._programs[key], time.perf_counter() - start

    def _vmap(self, configs, size: int) -> ChunkResult:
        sharding = NamedSharding(self.mesh, PartitionSpec(CONFIG_AXIS))

        def place(array):
            return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])

        inputs = jax.tree.map(place, _inputs(self.trainable, configs, size))
        program, compile_seconds = self._program(
            "vmap",
            lambda: jax.jit(
                jax.vmap(_history_only(self.trainable.train)),
                in_shardings=(sharding, sharding),
                out_shardings=sharding,
            ),
            *inputs,
        )
        start = time.perf_counter()
        history = jax.block_until_ready(program(*inputs))
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            history = multihost_utils.process_allgather(history, tiled=True)
        history = jax.device_get(history)
        seconds = time.perf_counter() - start
        return ChunkResult(_unstack(history, len(configs)), seconds, compile_seconds)

    def _loop(self, configs) -> ChunkResult:
        keys, hparams = _inputs(self.trainable, configs, len(configs))
        singles = [jax.tree.map(lambda a, i=i: a[i], (keys, hparams)) for i in range(len(configs))]
        program, compile_seconds = self._program(
            "loop", lambda: jax.jit(_history_only(self.trainable.train)), *singles[0]
        )
        start = time.perf_counter()
        histories = [jax.device_get(jax.block_until_ready(program(*args))) for args in singles]
        seconds = time.perf_counter() - start
        histories = [{k: np.asarray(v) for k, v in h.items()} for h in histories]
        return ChunkResult(histories, seconds, compile_seconds)


def single_thread_xla_flags(existing: str = "") -> str:
    """``XLA_FLAGS`` for a worker limited to one CPU thread (drops forced device counts)."""
    kept = [f for f in existing.split() if "force_host_platform_device_count" not in f]
    return " ".join([*kept, "--xla_cpu_multi_thread_eigen=false"])


@contextlib.contextmanager
def _worker_environment():
    """Spawned workers inherit ``os.environ`` at start: single-threaded XLA on the CPU."""
    saved = {k: os.environ.get(k) for k in ("XLA_FLAGS", "JAX_PLATFORMS", "OMP_NUM_THREADS")}
    os.environ["XLA_FLAGS"] = single_thread_xla_flags(saved["XLA_FLAGS"] or "")
    os.environ["JAX_PLATFORMS"] = "cpu"
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_WORKER_EXECUTORS: dict = {}
#: Seconds between a worker's checks that its parent is alive.
PARENT_POLL_SECONDS = 0.2


def _watch_parent(parent: int, death_signal: bool) -> None:
    """Worker initializer: exit as soon as the sweep's process is gone.

    A killed parent (``kill -9`` included) cannot shut its pool down, and a spawned
    worker blocked on the task queue would run on forever.  A daemon thread polls
    ``os.getppid()``: when the parent dies the worker is re-parented, and exits.
    On Linux, ``prctl(PR_SET_PDEATHSIG)`` also delivers SIGKILL at once; only when the
    main thread started the workers (the signal follows the starting *thread*).
    """
    import ctypes
    import signal
    import sys

    if death_signal and sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died while this worker started
        os._exit(1)

    def watch():
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def _share_compilation_cache() -> None:
    """Turns on the parent's persistent compilation cache in a worker, if it had one.

    A spawned worker inherits the environment, not ``jax.config``; the parent's
    :func:`rnnlab.runtime.enable_compilation_cache` exported the folder as
    ``RNNLAB_CACHE_DIR``.  Without it (or with ``off``) the worker compiles uncached.
    """
    from rnnlab import runtime

    if os.environ.get(runtime.CACHE_DIR_ENV) and jax.config.jax_compilation_cache_dir is None:
        runtime.enable_compilation_cache()


def _start_worker(_) -> int:
    """Initializes JAX in a worker (so start-up is not counted as run time)."""
    _share_compilation_cache()
    return len(jax.devices())


def _worker(build: Builder, static: dict, configs: list[dict]) -> ChunkResult:
    """Runs in a spawned process: builds and compiles once per group, loops over ``configs``."""
    _share_compilation_cache()
    gid = config_id(static)
    if gid not in _WORKER_EXECUTORS:
        _WORKER_EXECUTORS.clear()
        group = Group(gid, static, [])
        _WORKER_EXECUTORS[gid] = GroupExecutor(build, group, config_mesh(jax.devices()[:1]))
    return _WORKER_EXECUTORS[gid].run("loop", configs)


class ProcessPool:
    """One spawned single-threaded worker per core; reused across groups and chunks.

    Workers die with the process that made the pool, even when it is killed (see
    :func:`_watch_parent`).
    """

    def __init__(self, workers: int | None = None):
        self.workers = workers or os.cpu_count() or 1
        self._executor = None

    def start(self) -> list[int]:
        """Starts the workers (if not yet running); returns their pids."""
        if self._executor is None:
            with _worker_environment():
                context = multiprocessing.get_context("spawn")
                self._executor = concurrent.futures.ProcessPoolExecutor(
                    self.workers,
                    mp_context=context,
                    initializer=_watch_parent,
                    initargs=(os.getpid(), threading.current_thread() is threading.main_thread()),
                )
                # Workers start lazily on submit; start them all while the environment is set.
                list(self._executor.map(_start_worker, range(self.workers)))
        return sorted(process.pid for process in self._executor._processes.values())

    def run(self, build: Builder, static: dict, configs: list[dict]) -> ChunkResult:
        """Splits ``configs`` evenly over the workers; returns them in order."""
        self.start()
        shares = [s.tolist() for s in np.array_split(np.arange(len(configs)), self.workers)]
        futures = [
            self._executor.submit(_worker, build, static, [configs[i] for i in share])
            for share in shares
            if share
        ]
        parts = [future.result() for future in futures]
        return ChunkResult(
            [h for part in parts for h in part.histories],
            max(part.run_seconds for part in parts),
            max(part.compile_seconds for part in parts),
        )

    def close(self, timeout: float = 30.0) -> None:
        """Stops the workers.  Every result has been collected when this runs, so a worker
        that has not exited ``timeout`` seconds after the shutdown request is terminated:
        ``ProcessPoolExecutor.shutdown(wait=True)`` was seen to hang forever (the
        manager thread missed its wake-up while the idle workers waited on the call
        queue), which would hang the sweep after its last result was saved."""
        if self._executor is None:
            return
        executor, self._executor = self._executor, None
        processes = list((executor._processes or {}).values())
        executor.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + timeout
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
        for process in processes:
            if process.is_alive():
                process.terminate()  # the manager thread sees the sentinel and exits
                process.join(5.0)


def default_strategy(mesh: Mesh) -> str | None:
    """``"vmap"`` where the choice needs no measurement (accelerators, several devices)."""
    devices = mesh.devices.flat
    if mesh.size > 1 or any(d.platform != "cpu" for d in devices):
        return "vmap"
    return None


def pad_to(count: int, multiple: int) -> int:
    """``count`` rounded up to a multiple of ``multiple`` (chunks split evenly over devices)."""
    return -(-count // multiple) * multiple
