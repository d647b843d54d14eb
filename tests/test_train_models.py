"""Tests of the engine's model families and model selection: bidirectional and flattened
readouts, the encoder-decoder, selection and early stopping on validation, matched
parameter counts, and the comparison helpers of rnnlab.train.compare."""

from __future__ import annotations

import argparse
import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import io, seq2seq
from rnnlab.tasks import make_task
from rnnlab.train import TrainConfig, make_train, run
from rnnlab.train.compare import contrast, seed_claims
from rnnlab.train.config import add_config_arguments, config_from_arguments
from rnnlab.train.sizing import matched_hidden_size, parameter_count

#: Sunspots with a validation split: a real data set with every split, cheap to compile.
SUNSPOTS = dict(
    task="sunspots",
    length=6,
    task_options={"validation_fraction": 0.2, "horizon": 2},
    cell="gru",
    hidden_size=4,
    batch_size=8,
    steps=60,
    chunk_steps=10,
    learning_rate=3e-2,
)


def _hand_unroll(cell, params, xs, steps):
    """Oracle: ``cell.step`` in a Python loop over the given step indices; the final output."""
    carry = cell.initial_carry(())
    y = None
    for t in steps:
        carry, y = cell.step(params, carry, xs[t])
    return np.asarray(y)


def test_bidirectional_readout_reads_forward_at_the_last_valid_step_and_backward_at_zero():
    """Oracle: hand-stepped loops — the forward cell over steps 0..L-1 and the backward cell
    from L-1 down to 0 of each sequence, concatenated and read out; padding is ignored."""
    config = TrainConfig(task="japanese_vowels", cell="rnn", hidden_size=3, bidirectional=True)
    trainer = make_train(config)
    model = trainer.model(trainer.default_hparams())
    assert model.step is None
    params = jax.jit(model.init)(jax.random.key(0))
    batch = trainer.task.validation_set()
    inputs, lengths = batch.inputs[:4], batch.lengths[:4]
    outputs = np.asarray(jax.jit(model.apply)(params, inputs, lengths))
    forward, backward = model.layer.children
    cell_params = params["cell"]
    for row in range(4):
        xs, length = np.asarray(inputs[row]), int(lengths[row])
        features = np.concatenate([
            _hand_unroll(forward.cell, cell_params["forward"], xs, range(length)),
            _hand_unroll(backward.cell, cell_params["backward"], xs, range(length - 1, -1, -1)),
        ])  # fmt: skip
        expected = features @ params["readout"]["weight"] + params["readout"]["bias"]
        np.testing.assert_allclose(outputs[row], expected, rtol=1e-5, atol=1e-6)


def test_flatten_readout_and_parameter_counts_match_the_closed_form():
    """Oracle: torch's layout, g (I H + H^2 + 2 H) per direction with g = 1, 3, 4 gates, plus
    the readout (T 2H + 1) O for the flattened bidirectional model — MNIST-1D's README GRU
    (6 units) has 5,134 parameters; the flattened readout is the linear map of every
    step's outputs (a hand reshape of the layer's outputs)."""
    config = TrainConfig(
        task="mnist1d", cell="gru", hidden_size=6, bidirectional=True, sequence_readout="flatten"
    )
    trainer = make_train(config)
    task = trainer.task
    assert parameter_count(config, task) == 2 * 3 * (1 * 6 + 36 + 12) + (40 * 12 + 1) * 10 == 5134
    for cell, gates in (("rnn", 1), ("gru", 3), ("lstm", 4)):
        one_way = config.replace(cell=cell, bidirectional=False, sequence_readout="last")
        assert parameter_count(one_way.replace(hidden_size=7), task) == (
            gates * (7 + 49 + 14) + 7 * 10 + 10
        )
    model = trainer.model(trainer.default_hparams())
    params = jax.jit(model.init)(jax.random.key(1))
    inputs = task.test_set().inputs[:3]
    ys, _ = model.layer.apply(params["cell"], inputs)
    expected = np.asarray(ys).reshape(3, -1) @ params["readout"]["weight"]
    np.testing.assert_allclose(
        np.asarray(jax.jit(model.apply)(params, inputs)),
        expected + np.asarray(params["readout"]["bias"]),
        rtol=1e-5,
        atol=1e-5,
    )


def test_matched_hidden_size_is_the_brute_force_closest():
    """Oracle: brute force over H = 1..200 of |count(H) - N| with the closed-form count of a
    tanh RNN on 88-key rolls, I H + H^2 + 2H + 88 H + 88 (the first H on ties)."""
    config = TrainConfig(task="sunspots", length=5, cell="rnn", hidden_size=4)
    task = make_task("bach_chorales", 8)
    for target in (1000, 20_000, 23_456):
        counts = {h: 88 * h + h * h + 2 * h + 88 * h + 88 for h in range(1, 201)}
        best = min(counts, key=lambda h: (abs(counts[h] - target), h))
        assert matched_hidden_size(config, target, task) == best
    with pytest.raises(ValueError, match="parameters"):
        matched_hidden_size(config, 0, task)


def test_selection_keeps_the_best_validation_params_and_reports_their_test_scores():
    """Oracle: the recorded curves — best_step is the first argmin of the validation loss,
    the reported test scores are that evaluation's, and best_params equal the params of
    that chunk in a hand loop of train_chunk / evaluate / select."""
    trainer = make_train(TrainConfig(**SUNSPOTS))
    hparams = trainer.default_hparams()
    # A key whose validation curve is not monotone (the engine draws minibatches by step).
    key = jax.random.key(5)
    state, history = jax.jit(trainer.train)(key, hparams)
    validation = np.asarray(history["validation_loss"])
    best = int(np.argmin(validation))
    assert int(history["best_step"]) == int(history["step"][best])
    assert float(history["best_validation_loss"]) == pytest.approx(float(validation[best]))
    assert float(history["final_test_loss"]) == float(history["test_loss"][best])
    assert float(history["final_test_metric"]) == float(history["test_metric"][best])
    assert best < len(validation) - 1, "the test needs a run whose last chunk is not its best"
    chunk, select = jax.jit(trainer.train_chunk), jax.jit(trainer.select)
    hand = trainer.init(key, hparams)
    for _ in range(best + 1):
        hand, _ = chunk(hand, hparams)
        hand, _ = select(hand, hparams)
    chex.assert_trees_all_close(state.best_params, hand.params, rtol=1e-5, atol=1e-6)


def test_patience_freezes_the_params_after_that_many_evaluations_without_improvement():
    """Oracle: the definition — with patience 2 and 10-step chunks, a state whose best step
    is 20 at step 40 is stopped (a step keeps params and optimizer state, and counts
    the step), and at step 39 it is not."""
    trainer = make_train(TrainConfig(**SUNSPOTS, patience=2))
    hparams = trainer.default_hparams()
    state = trainer.init(jax.random.key(0), hparams)
    step = jax.jit(trainer.train_step)
    stopped = state._replace(step=jnp.int32(40), best_step=jnp.int32(20))
    after, _ = step(stopped, hparams)
    assert bool(trainer.stopped(stopped)) and int(after.step) == 41
    chex.assert_trees_all_equal(after.params, stopped.params)
    chex.assert_trees_all_equal(after.opt_state, stopped.opt_state)
    running = stopped._replace(step=jnp.int32(39))
    assert not bool(trainer.stopped(running))
    moved, _ = step(running, hparams)
    assert not np.allclose(moved.params["readout"]["bias"], running.params["readout"]["bias"])


def test_runner_reports_the_best_validation_record(tmp_path):
    """Oracle: metrics.jsonl — summary.json's test scores are the record at the minimum of
    validation_loss, the last record's stay as last_test_*, and early stopping ends the
    run within patience chunks of the best step."""
    config = TrainConfig(**{**SUNSPOTS, "steps": 200}, patience=3)
    result = run(config, tmp_path, progress=False, plots=False)
    records = io.read_jsonl(tmp_path / "metrics.jsonl")
    best = min(records, key=lambda r: r["validation_loss"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["best_step"] == best["step"] == result.summary["best_step"]
    assert summary["final_test_loss"] == best["test_loss"]
    assert summary["mse"] == best["test_metric"]
    assert summary["last_test_loss"] == records[-1]["test_loss"]
    if summary["stopped_early"]:
        assert records[-1]["step"] == best["step"] + 3 * config.chunk_steps
    else:
        assert records[-1]["step"] == config.steps


def test_encoder_decoder_model_is_seq2seq_teacher_forced_and_greedy():
    """Oracle: rnnlab.seq2seq called directly with the same params — apply_batch is the
    teacher-forced decoder on the targets shifted right after <s>, apply is greedy
    decoding; the loss is the task's cross-entropy over non-padding tokens."""
    config = TrainConfig(
        task="translation", task_options={"max_digits": 3}, model="encoder_decoder",
        cell="gru", hidden_size=5, attention=True,
    )  # fmt: skip
    trainer = make_train(config)
    task = trainer.task
    model = trainer.model(trainer.default_hparams())
    assert model.step is None and model.encoder_decoder.attention
    params = jax.jit(model.init)(jax.random.key(0))
    batch = jax.tree.map(lambda a: a[:6], task.test_set())
    network = seq2seq.encoder_decoder(5, attention=True)
    shifted = seq2seq.shift_right(batch.targets, task.extras["bos"])
    expected, _ = jax.jit(network.apply)(params, batch.inputs, batch.lengths, shifted)
    np.testing.assert_allclose(
        np.asarray(jax.jit(model.apply_batch)(params, batch)), expected, rtol=1e-5, atol=1e-6
    )
    greedy = jax.jit(
        lambda p: network.greedy_decode(
            p, batch.inputs, batch.lengths, max_length=4, start_token=1, end_token=2
        )[1]
    )(params)
    np.testing.assert_allclose(
        np.asarray(jax.jit(model.apply)(params, batch.inputs, batch.lengths)), greedy, rtol=1e-5
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"task": "copying", "length": 25, "bidirectional": True}, "bidirectional"),
        ({"task": "copying", "length": 25, "sequence_readout": "flatten"}, "sequence_readout"),
        ({"model": "encoder_decoder"}, "model"),
        ({"model": "encoder_decoder", "num_layers": 2}, "num_layers"),
        ({"attention": False}, "attention"),
        ({"patience": 2}, "patience"),
        ({"patience": 0}, "patience"),
        ({"model": "transformer"}, "model"),
        ({"bidirectional": "yes"}, "bidirectional"),
    ],
)
def test_model_options_that_do_not_fit_raise_naming_the_option(changes, field):
    """Oracle: the documented constraints (the adding task has no validation split and is
    not sequence-to-sequence; copying predicts at every step)."""
    with pytest.raises(ValueError, match=field):
        make_train(TrainConfig.from_dict({"task": "adding", "length": 5, **changes}))


def test_command_line_flags_for_the_model_options():
    """Oracle: argparse round trip — --bidirectional/--no-attention/--model/--patience."""
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    arguments = parser.parse_args(
        ["--task", "translation", "--model", "encoder_decoder", "--no-attention",
         "--patience", "3"]
    )  # fmt: skip
    config = config_from_arguments(arguments)
    assert (config.model, config.attention, config.patience, config.bidirectional) == (
        "encoder_decoder", False, 3, False,
    )  # fmt: skip
    assert config_from_arguments(parser.parse_args(["--bidirectional"])).bidirectional


def test_contrast_is_the_difference_of_seed_means_with_its_standard_error():
    """Oracle: NumPy by hand — difference of means, sqrt(s_a^2/n_a + s_b^2/n_b), and the
    two-standard-error verdicts, oriented by higher_is_better; seed_claims pairs cells
    within one direction and each bidirectional model with its one-way cell."""

    class Result:
        def __init__(self, values):
            self.history = {"final_test_metric": np.array(values)}

    results = {"a": Result([0.9, 0.92, 0.91]), "b": Result([0.8, 0.85, 0.83]),
               "c": Result([0.9, 0.7, 0.95])}  # fmt: skip
    claim = contrast(results, "a", "b", higher_is_better=True)
    error = np.sqrt(np.var([0.9, 0.92, 0.91], ddof=1) / 3 + np.var([0.8, 0.85, 0.83], ddof=1) / 3)
    assert claim["difference"] == pytest.approx(0.91 - 0.8266666, rel=1e-4)
    assert claim["standard_error"] == pytest.approx(error)
    assert claim["verdict"] == "holds"
    assert contrast(results, "a", "b", higher_is_better=False)["verdict"] == "reversed"
    assert contrast(results, "a", "c", higher_is_better=True)["verdict"] == "inconclusive"
    labelled = {"bidirectional gru": results["a"], "bidirectional lstm": results["b"],
                "gru": results["c"]}  # fmt: skip
    claims = [c["claim"] for c in seed_claims(labelled, higher_is_better=True)]
    assert claims == ["bidirectional gru beats bidirectional lstm", "bidirectional gru beats gru"]
