"""Process settings for fast CPU runs: the persistent compilation cache and glibc's allocator.

Call :func:`configure` first thing in a script (every experiment does); it applies both.

**Compilation cache.**  XLA's CPU compiler costs seconds per training program, and a
short experiment or sweep spends most of its time there.  :func:`enable_compilation_cache`
turns on JAX's persistent cache, so a program compiled once (same shapes, same
versions, same ``XLA_FLAGS``) is loaded from disk by every later process.  The folder
is ``$RNNLAB_CACHE_DIR``, else JAX's own ``$JAX_COMPILATION_CACHE_DIR``, by default
``~/.cache/rnnlab/jax`` (under ``$XDG_CACHE_HOME`` when that is set);
``RNNLAB_CACHE_DIR=off`` turns the cache off.  The cache is bounded
(:data:`CACHE_MAX_BYTES`, least recently used entries go first), which makes JAX guard
every read and write with a file lock (the ``filelock`` package): several processes
(sweep workers, parallel experiments) may share one folder.  Without ``filelock`` the
cache stays off, since unlocked writes could be read half-written by another process.
Deleting the folder is always safe.

**Allocator.**  XLA's CPU runtime frees its large temporary buffer at the end of every
call and allocates it again at the next.  Under glibc's defaults a block that large is
served by ``mmap`` and returned by ``munmap``, so every call touches fresh pages: about
73k minor page faults per LSTM training step at T=1000 (``experiments/bench.py`` counts
them).  Keeping freed memory in the heap removes the faults.  Two equivalent ways:

- before the process starts, the environment :data:`TUNED_MALLOC_ENV`;
- inside a running process, :func:`tune_allocator` (glibc's ``mallopt``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import os
import warnings
from pathlib import Path

__all__ = [
    "CACHE_DIR_ENV",
    "CACHE_MAX_BYTES",
    "TUNED_MALLOC_ENV",
    "cache_dir",
    "configure",
    "enable_compilation_cache",
    "tune_allocator",
]

#: The environment variable naming the compilation cache's folder (``off`` disables it).
CACHE_DIR_ENV = "RNNLAB_CACHE_DIR"
#: The cache's bound in bytes.  A bound (any) also makes JAX lock the folder during
#: reads and writes, which is what makes sharing it between processes safe.
CACHE_MAX_BYTES = 4 * 2**30
#: Programs that compile faster than this are not written to the cache: eager
#: operations compile in milliseconds each and would only fill the folder.
CACHE_MIN_COMPILE_SECONDS = 0.05
_OFF = ("off", "0", "false", "no", "none")

#: glibc tunables read at process start: one arena, no mmap for large blocks, and
#: never give memory back to the system (trim) or pad the heap top by 512 MiB.
TUNED_MALLOC_ENV = {
    "MALLOC_ARENA_MAX": "1",
    "MALLOC_MMAP_MAX_": "0",
    "MALLOC_TRIM_THRESHOLD_": "100000000000",
    "MALLOC_TOP_PAD_": "536870912",
}

# mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -2, -4, -8
_INT_MAX = 2**31 - 1  # mallopt takes a C int, so the trim threshold is capped at 2 GiB


def cache_dir() -> Path | None:
    """The compilation cache's folder from the environment, or ``None`` if turned off.

    ``$RNNLAB_CACHE_DIR`` when set (``off``, ``0``, ``false``, ``no``, ``none`` or empty
    turn the cache off); else ``$JAX_COMPILATION_CACHE_DIR`` when set; else
    ``$XDG_CACHE_HOME/rnnlab/jax``; else ``~/.cache/rnnlab/jax``.
    """
    setting = os.environ.get(CACHE_DIR_ENV)
    if setting is None and os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return Path(os.environ["JAX_COMPILATION_CACHE_DIR"]).expanduser()
    if setting is not None:
        if setting.strip().lower() in _OFF or not setting.strip():
            return None
        return Path(setting).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rnnlab" / "jax"


def enable_compilation_cache(path: str | Path | None = None) -> Path | None:
    """Turns on JAX's persistent compilation cache in ``path`` (default :func:`cache_dir`).

    Takes effect for every program compiled afterwards in this process.  Also exports
    ``RNNLAB_CACHE_DIR``, so child processes (sweep workers) that call it share the
    folder.  Calling it again with another folder switches to that folder.

    Returns:
      The folder, or ``None`` when the environment turns the cache off or the
      ``filelock`` package is missing (then a cache enabled earlier in this process is
      turned off too).
    """
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    folder = cache_dir() if path is None else Path(path).expanduser()
    previous = jax.config.jax_compilation_cache_dir
    if folder is not None and importlib.util.find_spec("filelock") is None:
        warnings.warn(
            "rnnlab: the compilation cache stays off: install the 'filelock' package, "
            "which makes a shared cache safe for several processes",
            RuntimeWarning,
            stacklevel=2,
        )
        folder = None
    if folder is None:
        if previous is not None:
            jax.config.update("jax_enable_compilation_cache", False)
            compilation_cache.reset_cache()
        return None
    folder = folder.absolute()
    folder.mkdir(parents=True, exist_ok=True)
    if previous is not None and Path(previous) != folder:
        compilation_cache.reset_cache()
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_compilation_cache_max_size", CACHE_MAX_BYTES)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", CACHE_MIN_COMPILE_SECONDS)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    os.environ[CACHE_DIR_ENV] = str(folder)
    return folder


def tune_allocator() -> bool:
    """Applies :data:`TUNED_MALLOC_ENV` to the running process with ``mallopt``.

    Affects allocations made after the call, for every library in the process
    (XLA, and torch when both run in one process).  The arena limit only binds
    threads that have not allocated yet.

    Returns:
      True if glibc accepted every setting; False where there is no glibc
      (macOS, musl), in which case nothing changes.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = (
        (_M_MMAP_MAX, 0),
        (_M_TRIM_THRESHOLD, _INT_MAX),
        (_M_TOP_PAD, int(TUNED_MALLOC_ENV["MALLOC_TOP_PAD_"])),
        (_M_ARENA_MAX, int(TUNED_MALLOC_ENV["MALLOC_ARENA_MAX"])),
    )
    return all(mallopt(param, value) == 1 for param, value in settings)


def configure() -> dict:
    """The settings of an rnnlab script: the allocator and the compilation cache.

    Returns:
      ``{"allocator_tuned": bool, "compilation_cache": str | None}``, for the
      experiment's ``config.json``.
    """
    tuned = tune_allocator()
    folder = enable_compilation_cache()
    return {"allocator_tuned": tuned, "compilation_cache": None if folder is None else str(folder)}


#: Environment variables read by :func:`initialize_distributed` when its arguments are
#: ``None`` (set them on every host; ``RNNLAB_PROCESS_ID`` differs per process).
DISTRIBUTED_ENV = ("RNNLAB_COORDINATOR", "RNNLAB_NUM_PROCESSES", "RNNLAB_PROCESS_ID")


def initialize_distributed(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> dict | None:
    """Joins a multi-process JAX run (several hosts, or several processes on one host).

    Call it before anything touches JAX's devices.  Each argument left ``None`` is read
    from :data:`DISTRIBUTED_ENV`; if none is set anywhere and the process runs under
    SLURM with more than one task (``SLURM_NTASKS``), JAX's own cluster detection
    supplies all three.  Otherwise this is a single-process run and nothing happens.
    On CPU, cross-process collectives use gloo (``jax_cpu_collectives_implementation``);
    accelerators use their own (NCCL on GPU).  A sweep then shards its configurations
    over every process's devices (:func:`rnnlab.sweep.run_sweep`), gathers the results
    on every process, and process 0 alone writes files.

    Args:
      coordinator: ``"host:port"`` of process 0, reachable from every process.
      num_processes: the number of processes.
      process_id: this process's index in ``[0, num_processes)``.

    Returns:
      ``None`` for a single-process run, else ``{"process_index", "process_count",
      "local_devices", "devices"}``.

    Raises:
      ValueError: naming the missing or invalid setting when only some are given.
    """
    given = dict(zip(DISTRIBUTED_ENV, (coordinator, num_processes, process_id), strict=True))
    for name, value in given.items():
        if value is None and os.environ.get(name):
            given[name] = os.environ[name]
    slurm = int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1
    if all(value is None for value in given.values()) and not slurm:
        return None
    if any(value is not None for value in given.values()):
        missing = [name for name, value in given.items() if value is None]
        if missing:
            raise ValueError(
                f"initialize_distributed: {', '.join(missing)} not set; a multi-process run "
                f"needs all of {DISTRIBUTED_ENV} (or the arguments coordinator, "
                "num_processes, process_id)"
            )
        count, index = int(given["RNNLAB_NUM_PROCESSES"]), int(given["RNNLAB_PROCESS_ID"])
        if count < 1 or not 0 <= index < count:
            raise ValueError(
                f"initialize_distributed: process_id={index} must be in [0, num_processes={count})"
            )
        kwargs = {"coordinator_address": str(given["RNNLAB_COORDINATOR"]),
                  "num_processes": count, "process_id": index}  # fmt: skip
    else:
        kwargs = {}  # SLURM: JAX reads the cluster from the environment
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**kwargs)
    return {"process_index": jax.process_index(), "process_count": jax.process_count(),
            "local_devices": jax.local_device_count(), "devices": jax.device_count()}  # fmt: skip
