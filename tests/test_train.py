"""Tests of the compiled training engine rnnlab.train: learning, clipping, divergence, configs."""

from __future__ import annotations

import functools
import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rnnlab import io
from rnnlab.train import TrainConfig, make_train, restore_state, run
from rnnlab.train.engine import learning_rate_factor

TINY = dict(
    task="adding", length=6, cell="rnn", hidden_size=8, batch_size=16, steps=20, chunk_steps=10
)


@pytest.fixture(scope="module")
def tiny():
    return make_train(TrainConfig(**TINY, eval_batch_size=64))


def test_training_lowers_the_loss_below_the_baseline():
    """Oracle: the task's trivial baseline (training-set prior) — a short run on row-wise
    digits must beat it by far, and the test loss must fall."""
    trainer = make_train(
        TrainConfig(task="digits", hidden_size=32, steps=300, chunk_steps=100, learning_rate=1e-2)
    )
    state, history = jax.jit(trainer.train)(jax.random.key(0), trainer.default_hparams())
    chex.assert_shape(history["test_loss"], (3,))
    assert float(history["test_loss"][-1]) < float(history["test_loss"][0])
    assert float(history["final_test_loss"]) < 0.5 * trainer.task.baseline_loss
    assert float(history["final_test_metric"]) > 0.7  # accuracy; the baseline is 0.08
    assert not bool(history["diverged"])
    np.testing.assert_array_equal(history["step"], [100, 200, 300])


def test_train_vmaps_over_keys_and_hparams_and_matches_unbatched(tiny):
    """Oracle: the unbatched run of each configuration; hparams are traced, so changing a
    value does not recompile."""
    hparams = tiny.default_hparams()
    batched = jax.tree.map(lambda v: jnp.stack([v, v]), hparams)
    batched["learning_rate"] = jnp.array([1e-3, 3e-2])
    batched["recurrent_scale"] = jnp.array([0.5, 1.5])
    keys = jax.random.split(jax.random.key(3), 2)
    _, history = jax.jit(jax.vmap(tiny.train))(keys, batched)
    chex.assert_shape(history["test_loss"], (2, 2))
    single = jax.jit(tiny.train)
    for index in range(2):
        one = jax.tree.map(lambda v, i=index: v[i], batched)
        _, expected = single(keys[index], one)
        np.testing.assert_allclose(history["test_loss"][index], expected["test_loss"], rtol=2e-4)
    assert single._cache_size() == 1
    assert not np.allclose(history["test_loss"][0], history["test_loss"][1])


def test_init_uses_hparams_for_recurrent_scale_and_forget_bias():
    """Oracle: the LSTM definition — W_hh scales linearly with recurrent_scale and the
    forget-gate slice of b_ih equals forget_bias (zero bias init)."""
    trainer = make_train(TrainConfig(**{**TINY, "cell": "lstm"}))
    hparams = trainer.default_hparams()
    init = jax.jit(trainer.init)
    base = init(jax.random.key(0), hparams)
    scaled = init(jax.random.key(0), {**hparams, "recurrent_scale": 2.0, "forget_bias": 3.0})
    np.testing.assert_allclose(
        scaled.params["cell"]["weight_hh"], 2.0 * base.params["cell"]["weight_hh"], rtol=1e-6
    )
    np.testing.assert_array_equal(scaled.params["cell"]["bias_ih"][8:16], 3.0)


def _step_and_gradients(trainer):
    """One engine step from a fresh state, and the raw gradients of its minibatch."""
    hparams = trainer.default_hparams()
    state = trainer.init(jax.random.key(1), hparams)
    new_state, metrics = trainer.train_step(state, hparams)
    batch = trainer.batch(state)
    model = trainer.model(hparams)
    grads = jax.grad(lambda p: trainer.task.loss(model.apply(p, batch.inputs), batch))(state.params)
    return state.params, new_state.params, metrics, grads


def test_clipping_is_pascanu_algorithm_1():
    """Oracle: an independent SGD step with g <- tau g/||g|| on the same minibatch."""
    config = TrainConfig(**TINY, optimizer="sgd", momentum=0.0, clip_norm=1e-3, learning_rate=0.5)
    params, new_params, metrics, grads = jax.jit(_step_and_gradients, static_argnums=0)(
        make_train(config)
    )
    norm = float(optax.tree.norm(grads))
    assert bool(metrics["clipped"]) and float(metrics["grad_norm"]) == pytest.approx(norm, 1e-5)
    expected = jax.tree.map(lambda p, g: p - 0.5 * 1e-3 * g / norm, params, grads)
    chex.assert_trees_all_close(new_params, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rmsprop", "adamw"])
def test_every_optimizer_matches_optax(optimizer):
    """Oracle: optax's own optimizer applied to the same gradients (no clipping)."""
    config = TrainConfig(**TINY, optimizer=optimizer, clip_norm=None, weight_decay=1e-2)
    params, new_params, _, grads = jax.jit(_step_and_gradients, static_argnums=0)(
        make_train(config)
    )
    lr, wd = 3e-3, 1e-2
    reference = {
        "sgd": optax.chain(optax.add_decayed_weights(wd), optax.sgd(lr, momentum=0.9)),
        "adam": optax.chain(optax.add_decayed_weights(wd), optax.adam(lr)),
        "rmsprop": optax.chain(optax.add_decayed_weights(wd), optax.rmsprop(lr, momentum=0.0)),
        "adamw": optax.adamw(lr, weight_decay=wd),
    }[optimizer]
    with jax.numpy_dtype_promotion("standard"):  # optax mixes its int32 count with floats
        updates, _ = reference.update(grads, reference.init(params), params)
    expected = optax.apply_updates(params, updates)
    chex.assert_trees_all_close(new_params, expected, rtol=1e-5, atol=1e-7)


def test_learning_rate_schedules():
    """Oracle: the closed forms — linear warm-up, cosine (1+cos(pi p))/2, linear 1-p."""
    cosine = TrainConfig(**{**TINY, "steps": 110}, schedule="cosine", warmup_steps=10)
    assert float(learning_rate_factor(cosine, 4)) == pytest.approx(0.5)
    assert float(learning_rate_factor(cosine, 10)) == pytest.approx(1.0)
    assert float(learning_rate_factor(cosine, 60)) == pytest.approx(0.5)
    assert float(learning_rate_factor(cosine, 110)) == pytest.approx(0.0, abs=1e-7)
    linear = TrainConfig(**{**TINY, "steps": 100}, schedule="linear")
    assert float(learning_rate_factor(linear, 25)) == pytest.approx(0.75)


def test_injected_nan_freezes_params_and_records_the_step(tiny):
    """Oracle: a run that takes exactly the good steps — after a NaN at step 4 the params stay
    those after 4 steps, and diverged_step says 4."""
    config = TrainConfig(**TINY, inject_nan_at_step=4)
    trainer = make_train(config)
    hparams = trainer.default_hparams()
    state = trainer.init(jax.random.key(0), hparams)
    final, metrics = jax.jit(trainer.train_chunk)(state, hparams)
    np.testing.assert_array_equal(metrics["finite"], np.arange(10) != 4)
    assert int(final.diverged_step) == 4

    @jax.jit
    def four_good_steps(state):
        return jax.lax.scan(lambda s, _: trainer.train_step(s, hparams), state, length=4)[0]

    chex.assert_trees_all_close(final.params, four_good_steps(state).params, rtol=1e-6)
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(final.params))


def test_runner_stops_on_divergence_and_keeps_the_last_good_checkpoint(tmp_path):
    """Oracle: the run's own records — a NaN injected in chunk 3 stops the run there with a
    message naming the step; the checkpoint of chunk 2, metrics and summary survive."""
    config = TrainConfig(**{**TINY, "steps": 50}, inject_nan_at_step=23)
    result = run(config, tmp_path, progress=False, plots=False)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["diverged"] is True and summary["diverged_step"] == 23
    assert "step 23" in summary["message"]
    assert int(result.state.diverged_step) == 23
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(result.state.params))
    assert summary["last_good_checkpoint_step"] == 20
    records = io.read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [10, 20, 30]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.is_dir()) == [
        "10",
        "20",
    ]
    restored = restore_state(tmp_path)
    assert int(restored.step) == 20 and int(restored.diverged_step) == -1
    stopped = run(config, tmp_path / "again", stop_after_chunks=2, progress=False)
    chex.assert_trees_all_equal(restored, stopped.state)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"hidden_size": 0}, "hidden_size"),
        ({"cell": "lstn"}, "lstm"),
        ({"optimizer": "adagrad"}, "optimizer"),
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"clip_norm": 0.0}, "clip_norm"),
        ({"chunk_steps": 7}, "chunk_steps"),
        ({"momentum": 1.5}, "momentum"),
        ({"cell": "lstm", "cell_options": {"activation": "relu"}}, "activation"),
        ({"cell": "gru", "cell_options": {"forget_bias": 2.0}}, "forget_bias.*accepts"),
        ({"cell": "rnn", "cell_options": {"activation": "gelu"}}, "activation='gelu'"),
        ({"cell": "lstm", "cell_options": {"forget_bias": float("nan")}}, "forget_bias"),
        ({"forget_bias": 2.0}, "cell_options"),
        ({"lenght": 100}, "length"),
        ({"batch_size": 2.5}, "batch_size"),
    ],
)
def test_bad_configs_name_the_field(changes, field):
    """Oracle: the documented constraints of TrainConfig; unknown names suggest the known one."""
    with pytest.raises(ValueError, match=field):
        TrainConfig.from_dict({**TINY, **changes})


def test_bad_task_options_and_hparams_name_the_field(tiny):
    """Oracle: the task factory's signature and the trainer's hparam names."""
    with pytest.raises(ValueError, match="num_classes"):
        make_train(TrainConfig(task="temporal_order", length=20, task_options={"num_classes": 3}))
    with pytest.raises(ValueError, match="varient"):
        make_train(TrainConfig(task="adding", task_options={"varient": "le"}))
    with pytest.raises(ValueError, match="learning_rate"):
        tiny.init(jax.random.key(0), {"lr": 1.0})


def test_stacked_layers_and_text_generation():
    """Oracle: shapes of the two-layer model and the vocabulary of sampled text."""
    from rnnlab.tasks import generate

    config = TrainConfig(
        task="char_lm",
        length=16,
        cell="gru",
        num_layers=2,
        hidden_size=8,
        batch_size=4,
        steps=10,
        chunk_steps=10,
    )
    trainer = make_train(config)
    hparams = trainer.default_hparams()
    state, history = jax.jit(trainer.train)(jax.random.key(0), hparams)
    assert len(state.params["cell"]) == 2
    assert np.isfinite(history["final_test_metric"])  # bits per character
    model = trainer.model(hparams)
    vocabulary = trainer.task.extras["vocabulary"]
    text = generate(
        lambda carry, x: model.step(state.params, carry, x),
        model.initial_carry(()),
        vocabulary,
        "(",
        20,
        key=jax.random.key(1),
    )
    assert len(text) == 20 and set(text) <= set(vocabulary)


def test_train_grid_matches_a_single_run_and_its_initial_params():
    """Oracle: one (configuration, key) of the grid run alone with ``trainer.train`` and
    ``trainer.init``, unvmapped; names the trainer does not trace are refused."""
    from rnnlab.train import train_grid

    trainer = make_train(TrainConfig(task="adding", length=5, hidden_size=4, steps=4,
                                     chunk_steps=2, batch_size=4, eval_batch_size=8))  # fmt: skip
    keys = jax.random.split(jax.random.key(3), 2)
    rates = [1e-2, 1e-1]
    start, params, history = train_grid(trainer, keys, {"learning_rate": rates})
    assert history["test_loss"].shape == (2, 2, 2)
    hparams = {**trainer.default_hparams(), "learning_rate": jnp.float32(rates[1])}
    state, alone = jax.jit(trainer.train)(keys[0], hparams)
    np.testing.assert_allclose(history["test_loss"][1, 0], alone["test_loss"], rtol=1e-5)
    at = functools.partial(jax.tree.map, lambda a: a[1, 0])
    chex.assert_trees_all_close(at(params), state.params, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_equal(at(start), trainer.init(keys[0], hparams).params)
    with pytest.raises(ValueError, match="hparams .*'bogus'"):
        train_grid(trainer, keys, {"bogus": [1.0]})
