"""Sweeps under faults and bad input: spec draws at full precision, validation like train.py,
corrupt results files, explosions without NaN, and workers that die with their parent."""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from rnnlab import io
from rnnlab.sweep import Trainable, configurations, make_row, parse_spec, product, run_sweep, seeds
from rnnlab.sweep.engine import TrainerBuilder
from rnnlab.sweep.execute import split_config

ROOT = Path(__file__).resolve().parents[1]


@given(
    kind=st.sampled_from(["uniform", "loguniform", "loggrid"]),
    low=st.floats(1e-6, 1e3),
    decades=st.integers(-17, 3),
    n=st.integers(1, 64),
)
def test_specs_give_n_distinct_values_in_range_or_say_why(kind, low, decades, n):
    """Oracle: the spec's own numbers: N values, all in [LOW, HIGH], all distinct, as N
    configurations; a range holding too few floats for N distinct values is an error, and
    only then (fewer than ~100 N floats in the range)."""
    high = low * (1 + 10.0**decades)
    assume(high > low)
    dim = parse_spec(f"{kind}:{low!r}:{high!r}:{n}", "--x")
    try:
        values = dim.expand("x", seed=1)
    except ValueError as error:
        assert "too few floats" in str(error)
        assert (high - low) / np.spacing(high) < 100 * n
        return
    assert len(values) == n == len(set(values))
    assert all(low <= value <= high for value in values)
    assert len(configurations(product(x=dim))) == n


@pytest.mark.parametrize(
    ("text", "count"), [("uniform:0.9:0.9001:8", 8), ("loguniform:1e-4:1e-1:5000", 5000)]
)
def test_random_draws_are_not_rounded_into_fewer_configurations(text, count):
    """Oracle: the issue's cases: 8 and 5000 draws are 8 and 5000 configurations (rounding to
    4 digits used to give 2 and 4,908)."""
    assert len(configurations(product(x=parse_spec(text), seed=seeds(1)))) == count


def test_absurd_spaces_fail_fast_with_a_size_estimate():
    """Oracle: the limit: 1e8 values, or a product over a million, fail before expanding."""
    with pytest.raises(
        ValueError, match=r"--learning-rate: .*100,000,000 values .* about 95.4 GiB"
    ):
        parse_spec("loguniform:1e-4:1e-1:100000000", "--learning-rate")
    space = product(a=parse_spec("uniform:0:1:1000"), b=parse_spec("uniform:0:1:1001"))
    started = time.perf_counter()
    with pytest.raises(ValueError, match="1,001,000 configurations"):
        configurations(space)
    assert time.perf_counter() - started < 1.0


BASE = {"task": "adding", "length": 4, "hidden_size": 4, "steps": 10, "chunk_steps": 10}


@pytest.mark.parametrize(
    ("bad", "argument", "message"),
    [
        ({"learning_rate": -1.0}, "learning_rate", "must be > 0"),
        ({"forget_bias": math.nan}, "forget_bias", "must be a number"),
        ({"clip_norm": 0.0}, "clip_norm", "must be > 0"),
        ({"seed": -1}, "seed", ">= 0"),
        ({"momentum": 1.0}, "momentum", "< 1"),
    ],
)
def test_sweeps_validate_every_configuration_before_anything(tmp_path, bad, argument, message):
    """Oracle: TrainConfig's rules (what train.py rejects): a sweep with one bad configuration
    among good ones raises naming the key, and creates no folder."""
    good = {"cell": "lstm", "learning_rate": 1e-2, "seed": 0}
    configs = configurations(product(**good) | product(**{**good, **bad}))
    with pytest.raises(ValueError, match=message) as error:
        run_sweep(configs, TrainerBuilder(BASE), out=tmp_path / "sweep", progress=False)
    assert error.value.argument == argument
    assert not (tmp_path / "sweep").exists()


def toy_train(key, hparams, steps=40, evals=4):
    """Gradient descent on ``|w - target|^2``: the loss grows as ``|1 - 2 lr|^(2 t)`` (finite
    in float32 for lr 1.2 and 40 steps: an explosion without NaN)."""
    target = jax.random.normal(key, (2,))

    def step(w, _):
        w = w - hparams["learning_rate"] * 2 * (w - target)
        return w, jnp.sum((w - target) ** 2)

    _, losses = jax.lax.scan(step, jnp.zeros(2), None, length=steps)
    every = losses.reshape(evals, -1)[:, -1]
    history = {"step": jnp.arange(1, evals + 1) * (steps // evals), "train_loss": every,
               "test_loss": every, "diverged": ~jnp.all(jnp.isfinite(losses))}  # fmt: skip
    return None, history


@dataclasses.dataclass(frozen=True)
class ToyBuilder:
    built: list = dataclasses.field(default_factory=list, compare=False)

    def static_part(self, config):
        return split_config(config, ("learning_rate",))

    def __call__(self, static):
        self.built.append(static)
        return Trainable(toy_train, {"learning_rate": jnp.float32(0.1)}, 40)

    def baseline_loss(self, config):
        return 1.0


def test_a_corrupt_results_line_reruns_only_its_configuration(tmp_path, capsys):
    """Oracle: the count of configurations run: with line 4 of 16 corrupt, resuming runs that
    one configuration, moves the line to results.jsonl.damaged, and a further resume runs
    nothing and leaves results.jsonl at 16 rows."""
    configs = configurations(product(learning_rate=[0.01, 0.1, 0.2, 0.3], seed=seeds(4)))
    run_sweep(configs, ToyBuilder(), out=tmp_path, strategy="vmap", progress=False)
    path = tmp_path / "results.jsonl"
    lines = path.read_text().splitlines()
    assert len(lines) == 16
    lines[3] = lines[3][:20] + "\x00\x00"
    path.write_text("\n".join(lines) + "\n")
    resumed = run_sweep(configs, ToyBuilder(), out=tmp_path, strategy="vmap", progress=False)
    assert resumed.summary["run"] == 1 and resumed.summary["resumed"] == 15
    assert "results.jsonl: 1 unreadable line (4) moved to" in capsys.readouterr().err
    again = run_sweep(configs, ToyBuilder(), out=tmp_path, strategy="vmap", progress=False)
    assert again.summary["run"] == 0
    assert len(io.read_jsonl(path)) == 16 and len(path.read_text().splitlines()) == 16
    assert json.loads((tmp_path / "results.jsonl.damaged").read_text())["line"] == 4


def test_explosions_without_nan_are_flagged_after_the_fact():
    """Oracle: the toy's closed form: lr 1.2 grows the loss as 1.4^(2t) (1e11 at step 40,
    finite), which the criterion of rnnlab.train.divergence flags at the first chunk above
    1000 x the baseline; lr 0.1 converges.  make_row applies the same rule by hand."""
    configs = configurations(product(learning_rate=[0.1, 1.2], seed=seeds(1)))
    rows = run_sweep(configs, ToyBuilder(), strategy="vmap", progress=False).rows
    calm, exploded = rows
    assert not calm["diverged"] and calm["divergence"] is None
    assert exploded["diverged"] and exploded["divergence"] == "loss explosion"
    assert np.isfinite(exploded["final_train_loss"]) and exploded["final_train_loss"] > 1e9
    history = {"step": np.array([10, 20, 30]), "train_loss": np.array([0.5, 2e3, 3e3])}
    row = make_row({"id": "x"}, history, baseline=1.0)
    assert row["diverged_step"] == 20 and row["divergence"] == "loss explosion"
    assert make_row({"id": "x"}, history, baseline=1.0, divergence_patience=3)["diverged"] is False
    assert make_row({"id": "x"}, history, baseline=None)["diverged"] is False
    nan = make_row(
        {"id": "x"}, {**history, "train_loss": np.array([0.5, np.nan, 1.0])}, baseline=1.0
    )
    assert nan["divergence"] == "non-finite"


POOLS = textwrap.dedent(
    """
    import threading, time
    from rnnlab.sweep.execute import ProcessPool
    if __name__ == "__main__":
        pools = [ProcessPool(1), ProcessPool(1)]
        pids = pools[0].start()  # started by the main thread
        starter = threading.Thread(target=lambda: pids.extend(pools[1].start()))
        starter.start()
        starter.join()  # started by a thread that has ended
        print(*pids, flush=True)
        time.sleep(300)
    """
)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killing_a_sweep_kills_its_workers(tmp_path):
    """Oracle: the kernel's process table: after SIGKILL of the process that owns two
    process pools (one started by its main thread, one by a thread that has ended), both
    workers are gone within seconds."""
    script = tmp_path / "pools.py"
    script.write_text(POOLS)
    env = {"PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"}
    parent = subprocess.Popen(
        [sys.executable, str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        workers = [int(pid) for pid in parent.stdout.readline().split()]
        started = len(workers) == 2 and all(_alive(pid) for pid in workers)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    assert started, parent.stderr.read().decode()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in workers)
