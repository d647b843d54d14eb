"""Shared test settings: strict dtype promotion everywhere, and, sized for a 2-core CI
machine, hypothesis profiles and XLA's CPU backend without its LLVM optimization passes.

Every test runs with ``jax_numpy_dtype_promotion="strict"`` (set globally, so threads the
library starts are strict too): an implicit upcast, in a test or in the library, is an
error.  A test that must mix dtypes says so with ``jax.numpy_dtype_promotion("standard")``.

Most of the suite's time is XLA compiling small programs that then run for
milliseconds.  ``--xla_backend_optimization_level=0`` skips LLVM's optimizations: on
``tests/test_cells.py tests/test_unroll.py`` it cut CPU time from 87 s to 55 s with every
tolerance unchanged.  ``--xla_cpu_use_fusion_emitters=false`` emits fusions with XLA's
elemental LLVM emitter instead of its MLIR fusion emitters (the same HLO, compiled in
about 60% of the time: 4.2 s to 2.4 s for one cell's program in
``tests/test_cell_contract.py``).  Speed is measured by ``experiments/bench.py``, never
here.  Set ``RNNLAB_TEST_XLA_OPT=1`` to test the default, optimized backend.
"""

import os

# Experiments' main() turns on the persistent compilation cache (rnnlab.runtime); the
# suite runs as on a fresh clone (every program compiled), writing nothing to ~/.cache.
os.environ.setdefault("RNNLAB_CACHE_DIR", "off")

if os.environ.get("RNNLAB_TEST_XLA_OPT") != "1":  # before anything imports jax
    _flags = os.environ.get("XLA_FLAGS", "")
    for _name, _value in (
        ("backend_optimization_level", "0"),
        ("cpu_use_fusion_emitters", "false"),
    ):
        if f"xla_{_name}" not in _flags:
            _flags = f"{_flags} --xla_{_name}={_value}".strip()
    os.environ["XLA_FLAGS"] = _flags

import jax
from hypothesis import HealthCheck, settings

jax.config.update("jax_numpy_dtype_promotion", "strict")

# Each hypothesis example of a shape property compiles a new XLA program (about 0.5 s), so
# CI draws 10 examples per property; HYPOTHESIS_PROFILE=dev draws 60.
settings.register_profile(
    "ci",
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def load_experiment(name: str):
    """The module of ``experiments/<name>.py`` (experiments are scripts, not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "experiments" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"experiment_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sequential_and_parallel(cell, xs, carry, *, seed: int = 3):
    """``(params, {path: (ys, final)})``: ``cell.init(jax.random.key(seed), F)`` unrolled
    from ``carry`` over ``xs: [..., T, F]`` on the sequential and on the parallel path, for
    a test that checks both against a NumPy transcription of the paper."""
    import jax
    import numpy as np

    import rnnlab

    params = jax.tree.map(np.asarray, cell.init(jax.random.key(seed), xs.shape[-1]))
    unroll = jax.jit(rnnlab.unroll, static_argnums=0, static_argnames="path")
    paths = ("sequential", "parallel")
    return params, {path: unroll(cell, params, xs, carry=carry, path=path) for path in paths}


def ks_distance_to_uniform(values, low: float, high: float) -> float:
    """The Kolmogorov-Smirnov distance of ``values`` to the uniform CDF on ``[low, high]``
    (critical values for n draws: 1.36/sqrt(n) at 5%, 1.63/sqrt(n) at 1%)."""
    import numpy as np

    values = np.sort(np.asarray(values, np.float64).ravel())
    cdf = (values - low) / (high - low)
    return float(np.max(np.abs(cdf - np.arange(1, values.size + 1) / values.size)))
