"""A user's own cell, defined here (outside the package) with only init, initial_carry and
step, works everywhere after one ``register`` call: unroll (every option), layers, NNX,
diagnostics, the training engine and runner (checkpoints, resume), the CLI by name, and
sweeps (vmapped over its own hyperparameter, and in worker processes).

Oracles: a hand-stepped loop of the cell's equations in NumPy; the same run without
interruption (resume is bit-identical); each sweep configuration trained alone.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnlab
from rnnlab import cells, diagnostics
from rnnlab.sweep import configurations, product, run_sweep, seeds
from rnnlab.sweep.engine import TrainerBuilder
from rnnlab.train import TrainConfig, make_train, run


def leaky(hidden_size, *, leak=0.5, scale=1.0):
    """A leaky tanh RNN: ``h_t = (1 - leak) h_{t-1} + leak tanh(x W + h_{t-1} U)``."""

    def init(key, input_size):
        k_in, k_rec = jax.random.split(key)
        return {
            "W": jax.random.normal(k_in, (input_size, hidden_size)) / np.sqrt(input_size),
            "U": scale
            * jax.random.normal(k_rec, (hidden_size, hidden_size))
            / np.sqrt(hidden_size),
        }

    def initial_carry(batch_shape=()):
        return jnp.zeros((*batch_shape, hidden_size))

    def step(params, h, x):
        h = (1.0 - leak) * h + leak * jnp.tanh(x @ params["W"] + h @ params["U"])
        return h, h

    return cells.Cell(
        name="user_leaky",
        hidden_size=hidden_size,
        init=init,
        initial_carry=initial_carry,
        step=step,
    )


cells.register("user_leaky", leaky)
HIDDEN, FEATURES = 4, 2


def numpy_leaky(params, xs, leak=0.5):
    W, U = (np.asarray(params[k], np.float64) for k in ("W", "U"))
    h, ys = np.zeros((xs.shape[0], HIDDEN)), []
    for t in range(xs.shape[1]):
        h = (1 - leak) * h + leak * np.tanh(xs[:, t] @ W + h @ U)
        ys.append(h)
    return np.stack(ys, axis=1)


def test_registry_builds_it_and_knows_its_sweepable_hyperparameters():
    assert "user_leaky" in cells.available()
    assert cells.spec("user_leaky").sweepable == ("leak", "scale")
    cell = cells.make("user_leaky", HIDDEN, leak=0.25)
    params = cell.init(jax.random.key(0), FEATURES)
    xs = np.random.default_rng(0).standard_normal((3, 6, FEATURES))
    ys, _ = rnnlab.unroll(cell, params, xs)
    np.testing.assert_allclose(ys, numpy_leaky(params, xs, 0.25), atol=1e-5)


def test_registry_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown cell 'user_leaki'.*did you mean 'user_leaky'"):
        cells.make("user_leaki", 4)
    with pytest.raises(ValueError, match="already registered.*replace=True"):
        cells.register("user_leaky", leaky)
    with pytest.raises(
        ValueError, match="cell 'user_leaky' takes no hyperparameter 'leek'.*'leak'"
    ):
        cells.make("user_leaky", 4, leek=0.1)
    with pytest.raises(ValueError, match="keyword-only"):
        cells.register("positional", lambda hidden_size, leak=0.5: leaky(hidden_size, leak=leak))
    assert "positional" not in cells.available()


def test_every_unroll_option_and_layer():
    cell = cells.make("user_leaky", HIDDEN)
    params = cell.init(jax.random.key(0), FEATURES)
    xs = np.random.default_rng(1).standard_normal((2, 5, FEATURES)).astype(np.float32)
    lengths, resets = np.array([5, 3]), np.zeros((2, 5), bool)
    resets[:, 2] = True
    ys, final, carries = rnnlab.unroll(
        cell, params, xs, carry=jnp.ones((2, HIDDEN)), lengths=lengths, reverse=True,
        resets=resets, remat=True, unroll=2, return_carries=True,
    )  # fmt: skip
    assert ys.shape == carries.shape == (2, 5, HIDDEN) and final.shape == (2, HIDDEN)
    np.testing.assert_array_equal(ys[1, 3:], 0.0)
    with pytest.raises(ValueError, match="path='parallel'.*lru"):
        rnnlab.unroll(cell, params, xs, path="parallel")
    with pytest.raises(ValueError, match="path='fused'"):
        rnnlab.unroll(cell, params, xs, path="fused")
    layer = rnnlab.stacked([rnnlab.bidirectional(cell), cells.make("user_leaky", 3)])
    layer_params = layer.init(jax.random.key(1), FEATURES)
    out, _ = layer.apply(layer_params, xs, lengths=lengths)
    assert out.shape == (2, 5, 3)
    norms = diagnostics.carry_grad_norms(layer, layer_params, xs, jnp.sum)
    assert norms[0].forward.shape == (5,)
    assert np.all(np.isfinite(diagnostics.jacobian_norms(cell, params, xs[0])))
    with pytest.raises(ValueError, match="torch"):
        rnnlab.interop.to_torch(cell, params)


def test_nnx_module_by_name():
    from flax import nnx

    module = rnnlab.nn.Recurrent.create("user_leaky", FEATURES, HIDDEN, rngs=nnx.Rngs(0), leak=0.3)
    xs = np.random.default_rng(2).standard_normal((2, 5, FEATURES)).astype(np.float32)
    np.testing.assert_allclose(
        nnx.jit(lambda m, x: m(x))(module, xs),
        numpy_leaky(module.param_values(), xs, 0.3),
        atol=1e-5,
    )


TINY = dict(
    task="adding", length=5, cell="user_leaky", hidden_size=HIDDEN, batch_size=8, steps=4,
    chunk_steps=2, eval_batch_size=16,
)  # fmt: skip


def test_engine_traces_its_hyperparameter_and_the_runner_resumes(tmp_path):
    """Oracle: resuming after a stop equals the uninterrupted run, bit for bit."""
    config = TrainConfig(**TINY, cell_options={"leak": 0.3})
    trainer = make_train(config)
    hparams = trainer.default_hparams()
    assert float(hparams["leak"]) == pytest.approx(0.3, rel=1e-6) and "scale" in hparams
    batched = {k: jnp.stack([v, v]) for k, v in hparams.items()}
    batched["leak"] = jnp.array([0.1, 0.9])
    _, history = jax.jit(jax.vmap(trainer.train))(jax.random.split(jax.random.key(0)), batched)
    assert not np.allclose(history["test_loss"][0], history["test_loss"][1])

    whole = run(config, tmp_path / "whole", progress=False, plots=False)
    run(config, tmp_path / "resumed", progress=False, plots=False, stop_after_chunks=1)
    resumed = run(config, tmp_path / "resumed", progress=False, plots=False)
    for a, b in zip(jax.tree.leaves(whole.state.params), jax.tree.leaves(resumed.state.params),
                    strict=True):  # fmt: skip
        np.testing.assert_array_equal(a, b)


def test_cli_takes_it_by_name(tmp_path):
    from conftest import load_experiment

    train = load_experiment("train")
    argv = ["--task", "adding", "--length", "5", "--cell", "user_leaky",
            "--cell-option", "leak=0.7", "--hidden-size", "4", "--steps", "4",
            "--chunk-steps", "2", "--batch-size", "8", "--eval-batch-size", "16", "--quiet",
            "--out", str(tmp_path)]  # fmt: skip
    assert train.main(argv) == 0
    saved = rnnlab.io.read_json(tmp_path / "config.json")["config"]
    assert saved["cell"] == "user_leaky" and saved["cell_options"] == {"leak": 0.7}
    with pytest.raises(SystemExit):
        train.main([*argv[:-1], str(tmp_path / "bad"), "--cell-option", "leek=1"])


@pytest.mark.parametrize("strategy", ["vmap", "processes"])
def test_sweep_vmaps_over_its_hyperparameter(strategy):
    """Oracle: each configuration trained alone, outside the sweep."""
    configs = configurations(product(leak=[0.2, 0.6], seed=seeds(1)))
    result = run_sweep(configs, TrainerBuilder(TINY), strategy=strategy, progress=False, workers=2)
    trainer = make_train(TrainConfig(**TINY))
    for config, row in zip(configs, result.rows, strict=True):
        hparams = {**trainer.default_hparams(), "leak": jnp.float32(config["leak"])}
        _, history = jax.jit(trainer.train)(jax.random.key(config["seed"]), hparams)
        np.testing.assert_allclose(row["final_test_loss"], history["final_test_loss"], rtol=1e-4)
    with pytest.raises(ValueError, match="forget_bias.*cell 'user_leaky'"):
        TrainerBuilder(TINY).static_part({"forget_bias": 1.0})


def test_an_unpicklable_registration_reaches_workers_as_a_clear_error():
    """Oracle: pickle itself. A factory defined in exec'd code (like the README's) does not
    pickle; the snapshot sent to sweep workers still pickles, and using that cell in a
    worker raises an error naming it and the fix, instead of breaking every sweep."""
    import pickle

    from rnnlab.cells import _registry

    namespace = {}
    exec(  # noqa: S102  the README's pattern: a cell defined in __main__-like code
        "import rnnlab\n"
        "def unsendable(hidden_size, *, leak=0.5):\n"
        "    return rnnlab.cells.make('rnn', hidden_size)\n"
        "rnnlab.cells.register('test_unsendable', unsendable, replace=True)\n",
        namespace,
    )
    try:
        with pytest.raises(pickle.PicklingError):
            pickle.dumps(namespace["unsendable"])
        snapshot = pickle.loads(pickle.dumps(_registry.user_registrations()))
        del _registry._REGISTRY["test_unsendable"]  # as in a fresh worker process
        _registry.ensure_registered(snapshot)
        assert cells.make("user_leaky", 4).hidden_size == 4  # the importable one survives
        with pytest.raises(ValueError, match="'test_unsendable'.*importable module"):
            cells.make("test_unsendable", 4)
    finally:
        _registry._REGISTRY.pop("test_unsendable", None)
