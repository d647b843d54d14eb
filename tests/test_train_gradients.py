"""The engine's gradient estimators, stateful streams and Pascanu's Omega, and the tasks and
initializer they use, against independent truths.

Oracles:

- stateful chunked training: one long character sequence per stream, stepped by a Python
  loop of ``cell.step`` with ``stop_gradient`` on the carry every ``k`` steps (TBPTT(k)
  inside each chunk, hence also at the chunk boundaries) and the carry reset where a
  document starts, with the SGD update done by hand between chunks;
- tbptt in the engine: :func:`rnnlab.gradients.make_estimator`'s update on the same
  minibatch, with a per-step loss written here, and SGD by hand;
- Omega in the engine: ``grad(task loss) + alpha grad(pascanu_regularizer(...,
  constant_error=True))`` by the library function, and SGD by hand;
- the text stream: NumPy slices of the training text; the Pascanu temporal-order variant:
  a transcription of the generator of their code (windows, symbols, class ``v0 + 2 v1``);
- the "smart tanh" init: NumPy's eigenvalues and non-zero counts.
"""

from __future__ import annotations

import argparse
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import cells, gradients
from rnnlab.tasks import char_lm, make_task, temporal_order
from rnnlab.tasks.text import document_starts
from rnnlab.train import TrainConfig, make_train, restore_state, run
from rnnlab.train.config import add_config_arguments, config_from_arguments

#: Both sides of every comparison compile alike; XLA's backend optimizations would only
#: lengthen the compile, which dominates these tests.
FAST_COMPILE = {"xla_backend_optimization_level": 0}
fast_jit = functools.partial(jax.jit, compiler_options=FAST_COMPILE)

SGD = dict(optimizer="sgd", momentum=0.0, learning_rate=0.5, clip_norm=None)
TEXT = "ab(ba)\n((a))b\nb[a]a\n" * 40


def sgd(params, grads, learning_rate):
    return jax.tree.map(lambda p, g: p - learning_rate * g, params, grads)


def assert_trees_close(actual, expected, rtol=2e-5, atol=2e-6):
    jax.tree.map(
        lambda a, e: np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=rtol,
                                                atol=atol),
        actual,
        expected,
    )  # fmt: skip


def cross_entropy(logits, label):
    return -jax.nn.log_softmax(logits)[label]


# --------------------------------------------------------------------------------------
# Stateful training on a text stream
# --------------------------------------------------------------------------------------


def test_stateful_tbptt_training_equals_one_long_sequence_cut_every_k_steps():
    """Oracle: per stream, one long sequence of the training text from the stream's start,
    a Python loop of ``cell.step`` whose carry passes through ``stop_gradient`` every k
    steps (so at every chunk boundary) and restarts at each document start; chunk ``c``'s
    loss is the mean cross-entropy of its steps, and SGD updates the params (by hand)
    before the next chunk, whose carry comes from the previous params' forward pass."""
    length, k, batch, chunks = 8, 4, 2, 3
    config = TrainConfig(
        task="char_lm", length=length, task_options={"text": TEXT, "document_separator": "\n"},
        cell="lstm", hidden_size=4, batch_size=batch, steps=chunks, chunk_steps=chunks,
        gradient=f"tbptt:{k}", stateful=True, **SGD,
    )  # fmt: skip
    trainer = make_train(config)
    hparams = trainer.default_hparams()
    start = trainer.init(jax.random.key(2), hparams)
    end, metrics = fast_jit(trainer.train_chunk)(start, hparams)

    vocabulary = trainer.task.extras["vocabulary"]
    train_text = TEXT[: trainer.task.extras["split_characters"]["train"]]
    codes = np.array([vocabulary.index(c) for c in train_text])
    starts = document_starts(train_text, "\n")
    positions = np.asarray(start.stream.data.position)
    assert len(set(positions // (len(codes) // batch))) == batch  # one stream per part
    part = len(codes) // batch
    assert np.all(positions + chunks * length + 1 <= (positions // part + 1) * part)  # no wrap
    cell = trainer.model(hparams).layer.cell
    inputs, codes, starts = jnp.eye(len(vocabulary))[codes], jnp.asarray(codes), jnp.asarray(starts)

    def chunk_loss_and_carry(params, carry, chunk_index):
        def one_stream(carry, position):
            loss, initial = 0.0, cell.initial_carry(())
            for t in range(length):
                index = position + chunk_index * length + t
                if t % k == 0:
                    carry = jax.lax.stop_gradient(carry)
                fresh = starts[index] | ((chunk_index == 0) & (t == 0))
                carry = jax.tree.map(lambda i, c, f=fresh: jnp.where(f, i, c), initial, carry)
                carry, y = cell.step(params["cell"], carry, inputs[index])
                logits = y @ params["readout"]["weight"] + params["readout"]["bias"]
                loss = loss + cross_entropy(logits, codes[index + 1]) / length
            return loss, carry

        losses, carries = jax.vmap(one_stream)(carry, positions)
        return jnp.mean(losses), carries

    gradient_and_carry = fast_jit(jax.grad(chunk_loss_and_carry, has_aux=True))
    params, carry = start.params, cell.initial_carry((batch,))
    for chunk_index in range(chunks):
        grads, carry = gradient_and_carry(params, carry, chunk_index)
        params = sgd(params, grads, config.learning_rate)
    assert_trees_close(end.params, params)
    assert_trees_close(end.stream.estimator.carry, carry)
    np.testing.assert_array_equal(end.stream.data.position, positions + chunks * length)


def test_text_stream_is_contiguous_and_resets_at_document_starts():
    """Oracle: NumPy slices of the training text; resets where a character follows the
    separator, at a stream's first step, and after wrapping to its part's start."""
    task = char_lm(5, text=TEXT, document_separator="\n", test_fraction=0.1)
    vocabulary = task.extras["vocabulary"]
    train = TEXT[: task.extras["split_characters"]["train"]]
    part = len(train) // 3
    state = task.stream.init(jax.random.key(0), 3)
    position = np.array(state.position)
    next_chunk = jax.jit(task.stream.next)
    for chunk in range(40):  # long enough to wrap around within each part
        batch, resets, state = next_chunk(state)
        for b in range(3):
            text = "".join(vocabulary[i] for i in np.argmax(batch.inputs[b], -1))
            target = "".join(vocabulary[i] for i in np.asarray(batch.targets[b]))
            p = position[b]
            assert text == train[p : p + 5] and target == train[p + 1 : p + 6]
            expected = [p + t == 0 or train[p + t - 1] == "\n" for t in range(5)]
            expected[0] |= chunk == 0 or p == b * part
            np.testing.assert_array_equal(resets[b], expected)
            following = p + 5
            position[b] = b * part if following + 6 > (b + 1) * part else following
        np.testing.assert_array_equal(state.position, position)
    with pytest.raises(ValueError, match="batch_size=400 streams"):
        task.stream.init(jax.random.key(0), 400)


# --------------------------------------------------------------------------------------
# Estimators and Omega inside the engine
# --------------------------------------------------------------------------------------


def adding_step_loss(params, y, data):
    """The adding task's squared error of the last step, written out here."""
    prediction = y @ params["readout"]["weight"] + params["readout"]["bias"]
    return data["weight"] * jnp.sum(jnp.square(prediction - data["target"]))


def test_engine_tbptt_equals_the_library_estimator():
    """Oracle: ``gradients.make_estimator("tbptt:2:4")``'s update on the step's minibatch
    (carry reset at its first step, loss weight 1 at the last step), then SGD by hand."""
    config = TrainConfig(task="adding", length=8, cell="gru", hidden_size=4, batch_size=3,
                         steps=1, chunk_steps=1, gradient="tbptt:2:4", **SGD)  # fmt: skip
    trainer = make_train(config)
    hparams = trainer.default_hparams()
    state = trainer.init(jax.random.key(4), hparams)
    new_state, _ = fast_jit(trainer.train_step)(state, hparams)

    batch = trainer.batch(state)  # the step's minibatch, as the engine draws it
    cell = trainer.model(hparams).layer.cell
    estimator = gradients.make_estimator("tbptt:2:4", cell, adding_step_loss)
    weight = jnp.zeros((3, 8)).at[:, -1].set(1.0)
    target = jnp.broadcast_to(batch.targets[:, None], (3, 8, 1))
    resets = jnp.zeros((3, 8), bool).at[:, 0].set(True)
    chunk = gradients.Chunk(batch.inputs, {"weight": weight, "target": target}, resets)
    _, grads, _ = fast_jit(estimator.update)(
        state.params, estimator.init(state.params, (3,)), chunk
    )
    assert_trees_close(new_state.params, sgd(state.params, grads, config.learning_rate))


def test_engine_adds_alpha_times_the_gradient_of_omega():
    """Oracle: ``grad(task loss) + alpha grad(Omega)`` with Omega from
    :func:`rnnlab.gradients.pascanu_regularizer` (constant-error form) on the step's
    minibatch of Pascanu's temporal order (lengths drawn per batch: padded steps get no
    error and are skipped), then SGD by hand; alpha is a traced hparam."""
    task_options = {"variant": "pascanu", "min_length": 12}
    config = TrainConfig(
        task="temporal_order", length=20, task_options=task_options, cell="rnn",
        cell_options={"recurrent_init": "smart_tanh"}, hidden_size=5, batch_size=4, steps=1,
        chunk_steps=1, pascanu_alpha=2.0, **SGD,
    )  # fmt: skip
    trainer = make_train(config)
    hparams = {**trainer.default_hparams(), "pascanu_alpha": jnp.float32(3.0)}
    state = trainer.init(jax.random.key(5), hparams)
    new_state, _ = fast_jit(trainer.train_step)(state, hparams)

    batch = trainer.batch(state)  # the step's minibatch, as the engine draws it
    model = trainer.model(hparams)
    cell = model.layer.cell

    def cost(params, ys):
        last = jnp.take_along_axis(ys, (batch.lengths - 1)[:, None, None], axis=1)[:, 0]
        logits = last @ params["readout"]["weight"] + params["readout"]["bias"]
        return jnp.mean(jax.vmap(cross_entropy)(logits, batch.targets))

    def total(params):
        loss = cost(params, model.layer.apply(params["cell"], batch.inputs)[0])
        omega = gradients.pascanu_regularizer(
            cell, params["cell"], batch.inputs, functools.partial(cost, params),
            constant_error=True,
        )  # fmt: skip
        return loss + 3.0 * omega

    grads = fast_jit(jax.grad(total))(state.params)
    assert_trees_close(new_state.params, sgd(state.params, grads, config.learning_rate))
    assert float(jnp.max(jnp.abs(grads["cell"]["weight_hh"]))) > 0


# --------------------------------------------------------------------------------------
# Tasks and the initializer
# --------------------------------------------------------------------------------------


def test_pascanu_temporal_order_follows_their_generator():
    """Oracle: Pascanu et al.'s generator (``tempOrder.py``), transcribed: 6 channels,
    A/B (0/1) at one position in [L//10, 2 (L//10)) and one in [5L//10, 5L//10 + L//10),
    distractors 2-5 elsewhere, class v0 + 2 v1; one L per batch in [min_length, length];
    zero inputs after L."""
    task = temporal_order(60, variant="pascanu", min_length=20)
    assert task.input_size == 6 and task.length == 60
    seen = set()
    for seed in range(6):
        batch = jax.jit(task.sample, static_argnums=1)(jax.random.key(seed), 64)
        (length,) = set(np.asarray(batch.lengths).tolist())
        assert 20 <= length <= 60
        seen.add(length)
        inputs = np.asarray(batch.inputs)
        np.testing.assert_array_equal(inputs[:, length:], 0.0)
        np.testing.assert_array_equal(inputs[:, :length].sum(-1), 1.0)
        symbols = inputs[:, :length].argmax(-1)
        width = length // 10
        for row, label in zip(symbols, np.asarray(batch.targets), strict=True):
            relevant = np.flatnonzero(row < 2)
            assert len(relevant) == 2
            assert width <= relevant[0] < 2 * width
            assert 5 * length // 10 <= relevant[1] < 5 * length // 10 + width
            assert label == row[relevant[0]] + 2 * row[relevant[1]]
    assert len(seen) > 1
    with pytest.raises(ValueError, match="num_classes"):
        temporal_order(60, 8, variant="pascanu")
    with pytest.raises(ValueError, match="min_length=70 must not exceed length=60"):
        temporal_order(60, min_length=70)


def test_smart_tanh_init_is_sparse_with_spectral_radius_095():
    """Oracle: NumPy's eigenvalues and non-zero counts of W_hh; N(0, 0.01^2) inputs."""
    cell = cells.make("rnn", 40, recurrent_init="smart_tanh", input_init="small_normal")
    params = cell.init(jax.random.key(0), 6)
    weight = np.asarray(params["weight_hh"], np.float64)
    np.testing.assert_array_equal((weight != 0).sum(1), 15)
    np.testing.assert_allclose(np.abs(np.linalg.eigvals(weight)).max(), 0.95, rtol=1e-4)
    assert 0.006 < np.std(params["weight_ih"]) < 0.014


# --------------------------------------------------------------------------------------
# Configs and the command line
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"gradient": "bpt"}, r"gradient='bpt': unknown gradient estimator 'bpt' \(did you mean"),
        ({"gradient": "tbptt:0"}, r"gradient='tbptt:0': tbptt truncation k1 must be an int >= 1"),
        ({"gradient": "tbptt:50", "length": 20}, "k1=50 exceeds the chunk length T=20"),
        ({"gradient": "tbptt:50"}, "gradient='tbptt:50': .*k1=50 exceeds the chunk length T=12"),
        (
            {"gradient": "rtrl", "cell": "lstm", "hidden_size": 128},
            r"gradient='rtrl': rtrl would carry .* Use 'snap1' or 'uoro'",
        ),
        ({"gradient": "diagonal_rtrl"}, "gradient='diagonal_rtrl': diagonal_rtrl needs"),
        ({"gradient": "uoro", "num_layers": 2}, "gradient='uoro' need.* num_layers=1"),
        ({"pascanu_alpha": -1.0}, "pascanu_alpha must be >= 0"),
        ({"stateful": True}, "stateful=True needs a task .* task 'adding' has none"),
    ],
)
def test_bad_gradient_configs_name_the_option(changes, message):
    with pytest.raises(ValueError, match=message):
        make_train(TrainConfig(**{"task": "adding", "length": 12, "cell": "rnn", **changes}))


def test_command_line_flags():
    """Oracle: the config the flags spell."""
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    arguments = parser.parse_args(
        ["--task", "char_lm", "--gradient", "tbptt:50", "--pascanu-alpha", "2", "--stateful"]
    )
    config = config_from_arguments(arguments)
    assert (config.gradient, config.pascanu_alpha, config.stateful) == ("tbptt:50", 2.0, True)
    assert config_from_arguments(parser.parse_args([])).stateful is False
    assert make_task("shakespeare", 10).stream is not None


def test_stateful_run_resumes_bit_identically(tmp_path):
    """Oracle: the uninterrupted run with the same seed.  The checkpoint holds the stream
    positions and the estimator's state (tbptt:4 with k1 = k2 carries an empty history,
    which orbax cannot store as such), so stopping after a chunk and resuming changes
    nothing."""
    config = TrainConfig(
        task="char_lm", length=8, task_options={"text": TEXT, "document_separator": "\n"},
        cell="gru", hidden_size=4, batch_size=2, steps=4, chunk_steps=2, gradient="tbptt:4",
        stateful=True,
    )  # fmt: skip
    options = dict(progress=False, plots=False)
    assert run(config, tmp_path / "a", stop_after_chunks=1, **options).summary == {
        "stopped_at_step": 2
    }
    run(config, tmp_path / "a", **options)
    run(config, tmp_path / "b", **options)
    resumed, uninterrupted = restore_state(tmp_path / "a"), restore_state(tmp_path / "b")
    assert int(resumed.step) == 4
    chex.assert_trees_all_equal(resumed, uninterrupted)
