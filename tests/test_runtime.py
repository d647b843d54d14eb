"""rnnlab.runtime: where the compilation cache lives, and that processes share it safely."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rnnlab import runtime

ROOT = Path(__file__).resolve().parents[1]

# A small recurrent training step: compiles in well over CACHE_MIN_COMPILE_SECONDS.
_PROGRAM = textwrap.dedent(
    """
    import json, sys
    import jax, jax.numpy as jnp
    import numpy as np
    from jax import monitoring
    from rnnlab import runtime

    counts = {"hits": 0, "misses": 0}
    def listen(event, **_):
        if event == "/jax/compilation_cache/cache_hits":
            counts["hits"] += 1
        if event == "/jax/compilation_cache/cache_misses":
            counts["misses"] += 1
    monitoring.register_event_listener(listen)
    settings = runtime.configure()

    def loss(w, xs):
        def step(h, x):
            h = jnp.tanh(h @ w + x)
            return h, h
        return jnp.mean(jax.lax.scan(step, jnp.zeros(16), xs)[1] ** 2)

    # Inputs and outputs stay NumPy, so the step is the only program: eager jnp ops would
    # each compile a tiny program, which the cache skips below CACHE_MIN_COMPILE_SECONDS
    # (so a quiet machine would count their recompiles as misses).
    w = np.eye(16, dtype=np.float32) * np.float32(0.5)
    xs = np.linspace(-1.0, 1.0, 40 * 16, dtype=np.float32).reshape(40, 16)
    value, grad = jax.jit(jax.value_and_grad(loss))(w, xs)
    print(json.dumps({**counts, **settings, "value": float(value),
                      "grad": float(np.asarray(grad).sum())}))
    """
)


def _start(cache: str) -> subprocess.Popen:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", runtime.CACHE_DIR_ENV: cache}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.Popen(
        [sys.executable, "-c", _PROGRAM], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def _result(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=240)
    assert process.returncode == 0, err.decode()
    return json.loads(out.decode().strip().splitlines()[-1])


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    """Oracle: the documented order: RNNLAB_CACHE_DIR (or 'off'), JAX_COMPILATION_CACHE_DIR,
    XDG_CACHE_HOME, then ~/.cache."""
    for name in (runtime.CACHE_DIR_ENV, "JAX_COMPILATION_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert runtime.cache_dir() == tmp_path / "home" / ".cache" / "rnnlab" / "jax"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert runtime.cache_dir() == tmp_path / "xdg" / "rnnlab" / "jax"
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax"))
    assert runtime.cache_dir() == tmp_path / "jax"
    monkeypatch.setenv(runtime.CACHE_DIR_ENV, str(tmp_path / "mine"))
    assert runtime.cache_dir() == tmp_path / "mine"
    for off in ("off", "OFF", "0", "false", "no", "none", ""):
        monkeypatch.setenv(runtime.CACHE_DIR_ENV, off)
        assert runtime.cache_dir() is None


def test_cache_stays_off_without_filelock(monkeypatch, tmp_path):
    """Oracle: the docstring's rule: no file lock, no shared cache (a warning, not an error)."""
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "filelock" else find_spec(name, *a),
    )
    with pytest.warns(RuntimeWarning, match="filelock"):
        assert runtime.enable_compilation_cache(tmp_path / "cache") is None
    assert not (tmp_path / "cache").exists()


def test_processes_share_the_cache_and_a_rerun_compiles_nothing(tmp_path):
    """Oracle: JAX's own cache counters.  Two processes that compile the same program into one
    empty folder at the same time both succeed; a third process then loads it (hits, no miss)
    and computes the same numbers bit for bit."""
    cache = str(tmp_path / "cache")
    first = [_result(process) for process in [_start(cache), _start(cache)]]
    assert all(result["compilation_cache"] == cache for result in first)
    # At least one of them compiled; the other may already find the entry (a hit).
    assert sum(result["misses"] for result in first) >= 1
    assert all(result["misses"] + result["hits"] == 1 for result in first), first
    assert any(path.name.endswith("-cache") for path in Path(cache).iterdir())
    rerun = _result(_start(cache))
    assert rerun["hits"] == 1 and rerun["misses"] == 0, rerun
    assert rerun["value"] == first[0]["value"] == first[1]["value"]
    assert rerun["grad"] == first[0]["grad"]
