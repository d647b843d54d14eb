"""Sweep execution: grouping, vmap vs alone, sharding, processes, resume, divergence.

Two engines: ``ToyBuilder``, a tiny pure gradient-descent stand-in that compiles
in milliseconds (for the machinery), and rnnlab's real trainer at a tiny size.
"""

import dataclasses
import functools
import json
import os
import socket
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rnnlab.sweep import (
    Trainable,
    compare_strategies,
    configurations,
    group_configs,
    load_rows,
    product,
    run_sweep,
    seeds,
)
from rnnlab.sweep import run as sweep_run
from rnnlab.sweep.engine import TrainerBuilder
from rnnlab.sweep.execute import split_config
from rnnlab.train import TrainConfig, make_train

TOY_STEPS, TOY_EVALS = 40, 4


def toy_train(dim, key, hparams):
    """Gradient descent on ``|w - target|^2 scale``: it diverges to NaN when ``lr scale > 1``."""
    target = jax.random.normal(key, (dim,))

    def step(w, _):
        w = w - hparams["learning_rate"] * 2 * hparams["scale"] * (w - target)
        return w, jnp.sum((w - target) ** 2)

    w, losses = jax.lax.scan(step, jnp.zeros(dim), None, length=TOY_STEPS)
    every = losses.reshape(TOY_EVALS, -1)[:, -1]
    history = {
        "step": jnp.arange(1, TOY_EVALS + 1) * (TOY_STEPS // TOY_EVALS),
        "train_loss": every,
        "test_loss": every,
        "diverged": ~jnp.all(jnp.isfinite(losses)),
    }
    return w, history


@dataclasses.dataclass(frozen=True)
class ToyBuilder:
    """Static ``dim`` changes shapes; ``learning_rate`` and ``scale`` are traced."""

    fail_on_dim: int | None = None

    def static_part(self, config):
        return split_config(config, ("learning_rate", "scale"))

    def __call__(self, static):
        if static["dim"] == self.fail_on_dim:
            raise KeyboardInterrupt("simulated interruption")
        BUILT.append(static["dim"])
        defaults = {"learning_rate": jnp.float32(0.1), "scale": jnp.float32(1.0)}
        return Trainable(lambda k, h: toy_train(static["dim"], k, h), defaults, TOY_STEPS)


BUILT: list = []

TOY_SPACE = product(dim=[2, 3], learning_rate=[0.01, 0.1, 1.0], scale=[1.0, 4.0], seed=seeds(2))
TOY_ALONE = {dim: jax.jit(functools.partial(toy_train, dim)) for dim in (2, 3)}


def toy_alone(config):
    """One configuration trained on its own, outside the sweep machinery."""
    hparams = {name: np.float32(config[name]) for name in ("learning_rate", "scale")}
    return TOY_ALONE[config["dim"]](jax.random.key(config["seed"]), hparams)[1]


@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "cell": st.sampled_from(["lstm", "gru"]),
                "hidden_size": st.sampled_from([4, 8]),
                "learning_rate": st.floats(1e-4, 1e-1),
                "seed": st.integers(0, 3),
            }
        ),
        min_size=1,
        max_size=12,
    )
)
def test_groups_partition_by_static_values(configs):
    """Oracle: a partition: every configuration is in exactly one group, and two configurations
    share a group iff their non-traced, non-seed values are equal."""
    configs = [{"id": str(i), **c} for i, c in enumerate(configs)]
    groups = group_configs(configs, ("learning_rate",))
    members = [c["id"] for g in groups for c in g.configs]
    assert sorted(members) == sorted(c["id"] for c in configs)
    for group in groups:
        for config in group.configs:
            assert {"cell": config["cell"], "hidden_size": config["hidden_size"]} == group.static
    assert len({json.dumps(g.static, sort_keys=True) for g in groups}) == len(groups)


def test_toy_sweep_matches_alone_and_isolates_divergence():
    """Oracle: each configuration trained alone with jax.jit; NaN in one vmapped lane must not
    change the others, and is recorded as diverged."""
    configs = configurations(TOY_SPACE)
    result = run_sweep(configs, ToyBuilder(), strategy="vmap", chunk_size=5, progress=False)
    diverged = 0
    for config, row in zip(configs, result.rows, strict=True):
        alone = toy_alone(config)
        assert row["diverged"] == bool(alone["diverged"])
        diverged += row["diverged"]
        if not row["diverged"]:
            np.testing.assert_allclose(row["final_test_loss"], alone["test_loss"][-1], rtol=1e-5)
    assert 0 < diverged < len(configs)  # lr 1 x scale 4 diverges, the rest do not
    assert result.summary["diverged"] == diverged


def test_processes_strategy_matches_loop():
    """Oracle: the in-process loop: the same configurations in spawned single-threaded workers
    give the same rows (processes change scheduling, not arithmetic)."""
    configs = configurations(TOY_SPACE)[:6]
    loop = run_sweep(configs, ToyBuilder(), strategy="loop", progress=False)
    procs = run_sweep(configs, ToyBuilder(), strategy="processes", workers=2, progress=False)
    for a, b in zip(loop.rows, procs.rows, strict=True):
        np.testing.assert_allclose(a["final_test_loss"], b["final_test_loss"], rtol=1e-5)
    assert procs.summary["throughput"].keys() == {"processes"}


def test_process_workers_share_the_parents_compilation_cache(tmp_path, monkeypatch):
    """Oracle: the cache folder's entries.  With ``strategy="processes"`` the training
    program compiles only in the spawned worker; it lands in the folder the parent's
    ``runtime.enable_compilation_cache`` chose (workers inherit the environment, not
    ``jax.config``; before the fix a warm ``sweep.py --quick`` compiled everything again)."""
    from jax.experimental.compilation_cache import compilation_cache

    from rnnlab import runtime

    monkeypatch.setenv(runtime.CACHE_DIR_ENV, str(tmp_path / "cache"))
    previous = jax.config.jax_compilation_cache_dir
    try:
        runtime.enable_compilation_cache()
        run_sweep(configurations(TOY_SPACE)[:2], ToyBuilder(), strategy="processes", workers=1,
                  progress=False)  # fmt: skip
    finally:
        jax.config.update("jax_compilation_cache_dir", previous)
        compilation_cache.reset_cache()
    entries = [p.name for p in (tmp_path / "cache").iterdir()]
    assert any(name.startswith("jit__lambda-") and name.endswith("-cache") for name in entries), (
        entries
    )


def test_resume_skips_finished_work(tmp_path):
    """Oracle: the count of builds: after an interruption in the second group, rerunning
    builds only that group, and the rows equal an uninterrupted sweep's."""
    configs = configurations(TOY_SPACE)
    BUILT.clear()
    with pytest.raises(KeyboardInterrupt):
        run_sweep(configs, ToyBuilder(fail_on_dim=3), out=tmp_path, strategy="vmap", progress=False)
    assert BUILT == [2]
    finished = load_rows(tmp_path)
    assert set(finished) == {c["id"] for c in configs if c["dim"] == 2}
    BUILT.clear()
    resumed = run_sweep(configs, ToyBuilder(), out=tmp_path, strategy="vmap", progress=False)
    assert BUILT == [3]
    assert resumed.summary["resumed"] == len(finished)
    BUILT.clear()
    again = run_sweep(configs, ToyBuilder(), out=tmp_path, strategy="vmap", progress=False)
    assert BUILT == [] and again.summary["run"] == 0
    sessions = again.summary["sessions"]
    assert [session["run"] for session in sessions] == [len(configs) - len(finished), 0]
    fresh = run_sweep(configs, ToyBuilder(), strategy="vmap", progress=False)
    for a, b in zip(resumed.rows, fresh.rows, strict=True):
        assert a["id"] == b["id"]
        np.testing.assert_allclose(a["final_test_loss"], b["final_test_loss"], rtol=1e-6)
    lines = (tmp_path / "results.csv").read_text().splitlines()
    assert len(lines) == len(configs) + 1
    assert json.loads((tmp_path / "summary.json").read_text())["configurations"] == len(configs)


def test_auto_strategy_calibrates_every_candidate_and_picks_the_fastest(monkeypatch):
    """Oracle: the recorded measurements: auto tried vmap, loop and processes on real work,
    chose the largest throughput, and still produced every row.  (The toy sweep is far
    too short to pay for calibration: the overhead bound is lifted.)"""
    monkeypatch.setattr(sweep_run, "CALIBRATION_OVERHEAD", float("inf"))
    configs = configurations(TOY_SPACE)
    result = run_sweep(configs, ToyBuilder(), strategy="auto", workers=2, progress=False)
    calibration = result.summary["calibration"]
    assert calibration.keys() == {"vmap", "loop", "processes"}
    assert result.summary["strategy"]["chosen"] == max(calibration, key=calibration.get)
    assert result.summary["calibration_decision"]["calibrate"]
    assert [row["id"] for row in result.rows] == [c["id"] for c in configs]


def test_auto_keeps_the_fallback_when_calibration_would_cost_more_than_it_could_save():
    """Oracle: the decision rule on the fallback's own timing: the toy sweep is
    compile-bound, so with the documented 10% bound auto times only the fallback and runs
    every configuration with it."""
    configs = configurations(TOY_SPACE)
    result = run_sweep(configs, ToyBuilder(), strategy="auto", workers=2, progress=False)
    decision = result.summary["calibration_decision"]
    assert result.summary["calibration"].keys() == {"processes"}
    assert result.summary["strategy"]["chosen"] == "processes"
    assert not decision["calibrate"]
    assert (
        decision["calibration_cost_s"]
        > sweep_run.CALIBRATION_OVERHEAD * decision["predicted_rest_s"]
    )
    assert [row["id"] for row in result.rows] == [c["id"] for c in configs]


def test_calibration_decision_bounds_the_pessimistic_cost():
    """Oracle: the documented inequality, others x (chunk + 2 run) <= 0.1 x rest, on
    hand-computed numbers (a 16 s chunk with 11 s of training, 8 configurations)."""
    decide = sweep_run._calibration_decision
    # rest: 232 x 11/8 = 319 s; cost 2 x (16 + 22) = 76 s > 31.9 s: keep the fallback.
    assert not decide(16.0, 11.0, 8, 232, 2)["calibrate"]
    # rest: 600 x 11/8 = 825 s; cost 76 s <= 82.5 s: calibrate.
    small = decide(16.0, 11.0, 8, 600, 2)
    assert small["calibrate"] and small["predicted_rest_s"] == pytest.approx(825.0)
    assert small["calibration_cost_s"] == pytest.approx(76.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strategy": "pmap"}, "strategy"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"workers": 0}, "workers"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    """Oracle: the documented argument ranges."""
    with pytest.raises(ValueError, match=message):
        run_sweep(configurations(TOY_SPACE), ToyBuilder(), progress=False, **kwargs)


# The real engine, tiny: a ReLU/identity RNN; the recurrent_scale=1e4 lane overflows at step 0.
REAL_BASE = {
    "task": "adding",
    "length": 6,
    "cell": "irnn",
    "hidden_size": 4,
    "batch_size": 8,
    "steps": 20,
    "chunk_steps": 10,
    "eval_batch_size": 16,
}
REAL_SPACE = product(learning_rate=[1e-2, 3e-2], seed=seeds(3)) | product(
    learning_rate=1.0, recurrent_scale=1e4, clip_norm=float("inf"), seed=0
)


@pytest.fixture(scope="module")
def real_sweep():
    configs = configurations(REAL_SPACE)
    return configs, run_sweep(configs, TrainerBuilder(REAL_BASE), strategy="vmap", progress=False)


def test_real_vmapped_sweep_matches_training_alone(real_sweep):
    """Oracle: each configuration trained alone by jax.jit(make_train(config).train), outside
    the sweep; the exploding lane is flagged diverged and does not change the others."""
    configs, result = real_sweep
    trainer = make_train(TrainConfig(**REAL_BASE))
    alone = jax.jit(trainer.train)
    for config, row in zip(configs, result.rows, strict=True):
        hparams = dict(trainer.default_hparams())
        hparams.update({k: jnp.float32(v) for k, v in config.items() if k in hparams})
        _, history = alone(jax.random.key(config["seed"]), hparams)
        assert row["diverged"] == bool(history["diverged"])
        np.testing.assert_allclose(row["final_test_loss"], history["test_loss"][-1], rtol=2e-4)
        np.testing.assert_allclose(row["final_train_loss"], history["train_loss"][-1], rtol=2e-4)
    assert [row["diverged"] for row in result.rows] == [False] * 6 + [True]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def test_two_processes_with_two_devices_each_match_one_process(real_sweep, tmp_path):
    """Oracle: the single-process, single-device sweep.  The same sweep run by 2 local
    processes joined by ``jax.distributed`` (CPU collectives over gloo), each with 2 forced
    CPU devices, shards the configurations over all 4 devices of both processes; process 0
    writes the rows, every process gathers all of them, and they equal the 1-process rows."""
    configs, result = real_sweep
    script = textwrap.dedent(
        f"""
        import json, sys, jax
        from rnnlab import runtime
        info = runtime.initialize_distributed(process_id=int(sys.argv[1]))
        from rnnlab.sweep import configurations, run_sweep
        from rnnlab.sweep.engine import TrainerBuilder
        from tests.test_sweep_execute import REAL_BASE, REAL_SPACE
        result = run_sweep(configurations(REAL_SPACE), TrainerBuilder(REAL_BASE), progress=False,
                           out={str(tmp_path / "out")!r})
        print(json.dumps({{**info, "strategy": result.summary["strategy"]["chosen"],
                          "losses": [row["final_test_loss"] for row in result.rows]}}))
        """
    )
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": os.getcwd(),
        "RNNLAB_COORDINATOR": f"localhost:{_free_port()}",
        "RNNLAB_NUM_PROCESSES": "2",
    }
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(index)],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        for index in range(2)
    ]
    outputs = [worker.communicate(timeout=300) for worker in workers]
    for worker, (_, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr[-3000:]
    reports = [json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in outputs]
    assert [r["process_index"] for r in reports] == [0, 1]
    assert all(r["process_count"] == 2 and r["devices"] == 4 for r in reports), reports
    assert all(r["strategy"] == "vmap" for r in reports)
    expected = [row["final_test_loss"] for row in result.rows]
    for report in reports:  # every process gathered every configuration's result
        np.testing.assert_allclose(report["losses"], expected, rtol=2e-4)
    written = load_rows(tmp_path / "out")  # written once, by process 0
    assert sorted(written) == sorted(row["id"] for row in result.rows)
    for row in result.rows:
        assert written[row["id"]]["diverged"] == row["diverged"]
        np.testing.assert_allclose(
            written[row["id"]]["final_test_loss"], row["final_test_loss"], rtol=2e-4
        )


def test_initialize_distributed_names_a_missing_setting(monkeypatch):
    """A partial multi-process configuration is refused before JAX is touched, naming what
    is missing; nothing set at all is a single-process run."""
    from rnnlab import runtime

    for name in (*runtime.DISTRIBUTED_ENV, "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    assert runtime.initialize_distributed() is None
    with pytest.raises(ValueError, match="RNNLAB_NUM_PROCESSES, RNNLAB_PROCESS_ID not set"):
        runtime.initialize_distributed(coordinator="localhost:1234")
    with pytest.raises(ValueError, match=r"process_id=2 must be in \[0, num_processes=2\)"):
        runtime.initialize_distributed("localhost:1234", 2, 2)


def test_compare_strategies_times_each_on_one_group():
    """Oracle: the contract: one group only (else ValueError), every repeat timed per strategy,
    and the median is the median of those repeats."""
    configs = [c for c in configurations(TOY_SPACE) if c["dim"] == 2]
    timings = compare_strategies(configs, ToyBuilder(), repeats=3, workers=1)
    assert timings.keys() == {"vmap", "loop"}
    for values in timings.values():
        assert len(values["throughput"]) == 3 and min(values["throughput"]) > 0
        assert values["median"] == np.median(values["throughput"])
    with pytest.raises(ValueError, match="static groups"):
        compare_strategies(configurations(TOY_SPACE), ToyBuilder(), repeats=1, workers=1)
