"""Tests of rnnlab.seq2seq: Bahdanau attention, masking, greedy decoding, learning."""

from __future__ import annotations

import dataclasses
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rnnlab
from rnnlab import seq2seq
from rnnlab.tasks import translation

SOURCE, TARGET, HIDDEN = 5, 7, 6


@functools.cache
def _model(attention: bool):
    """The model, its params and its functions compiled once for every test of this file."""
    model = seq2seq.encoder_decoder(HIDDEN, attention=attention, embedding_size=4)
    # Eager initialization would compile every small random op separately.
    params = jax.jit(model.init, static_argnums=(1, 2))(jax.random.key(0), SOURCE, TARGET)
    compiled = {
        "encode": jax.jit(model.encode),
        "step": jax.jit(model.decoder_step),
        "apply": jax.jit(model.apply),
        "greedy": jax.jit(
            functools.partial(model.greedy_decode, max_length=5, start_token=START, end_token=END)
        ),
    }
    return model, params, compiled


START, END = 1, 2
DECODER_INPUTS = jnp.array([[1, 3, 4, 2], [1, 5, 6, 0], [1, 2, 2, 2]])


def _sources(garbage=False):
    """Three sources of lengths 6, 1 and 4, padded to 6 steps with zeros or noise.

    Built in NumPy: eager JAX ops would each compile a kernel.
    """
    rng = np.random.default_rng(1)
    sources = rng.normal(size=(3, 6, SOURCE)).astype(np.float32)
    lengths = np.array([6, 1, 4], np.int32)
    padding = np.arange(6)[None, :] >= lengths[:, None]
    if garbage:
        sources[padding] = rng.normal(size=(padding.sum(), SOURCE))
    else:
        sources[padding] = 0.0
    return jnp.asarray(sources), jnp.asarray(lengths)


def test_attention_step_matches_a_numpy_transcription_of_bahdanau():
    """Oracle: Bahdanau et al. 2015 eq. (5)-(6), written in NumPy from the paper:
    e_j = v^T tanh(W_a s_{i-1} + U_a h_j) over valid j, alpha = softmax(e), c = sum alpha_j h_j;
    padding gets weight exactly 0 and the weights sum to 1; s_0 = tanh(W_s h_bwd_1 + b_s)."""
    model, params, compiled = _model(True)
    sources, lengths = _sources()
    memory = compiled["encode"](params, sources, lengths)
    state = model.initial_state(memory)
    _, (logits, weights) = compiled["step"](params, memory, state, jnp.array([1, 2, 3]))
    annotations = np.asarray(memory.annotations, np.float64)
    attention = jax.tree.map(lambda a: np.asarray(a, np.float64), params["attention"])
    query = np.asarray(state.output, np.float64)
    for row, length in enumerate(np.asarray(lengths)):
        h = annotations[row, :length]
        e = np.tanh(query[row] @ attention["query"] + h @ attention["key"]) @ attention["score"]
        alpha = np.exp(e - e.max()) / np.exp(e - e.max()).sum()
        np.testing.assert_allclose(weights[row, :length], alpha, rtol=1e-5, atol=1e-6)
        assert np.all(np.asarray(weights[row, length:]) == 0.0)
        assert float(weights[row].sum()) == pytest.approx(1.0, abs=1e-6)
    backward_first = annotations[:, 0, HIDDEN:]
    bridge = jax.tree.map(lambda a: np.asarray(a, np.float64), params["bridge"])
    np.testing.assert_allclose(
        memory.initial_state, np.tanh(backward_first @ bridge["weight"] + bridge["bias"]), rtol=1e-5
    )
    chex.assert_shape(logits, (3, TARGET))


@pytest.mark.parametrize("attention", [True, False], ids=["attention", "fixed_context"])
def test_padding_does_not_change_outputs(attention):
    """Oracle: padding is invisible — noise instead of zeros in the padded steps gives the
    same logits and attention weights, and an unpadded source (no lengths) gives what it
    gives inside the padded batch."""
    model, params, compiled = _model(attention)
    sources, lengths = _sources()
    logits, weights = compiled["apply"](params, sources, lengths, DECODER_INPUTS)
    noisy, noisy_weights = compiled["apply"](params, *_sources(garbage=True), DECODER_INPUTS)
    np.testing.assert_allclose(noisy, logits, rtol=1e-5, atol=1e-5)
    alone, alone_weights = compiled["apply"](params, sources[2:, :4], None, DECODER_INPUTS[2:])
    np.testing.assert_allclose(alone[0], logits[2], rtol=1e-5, atol=1e-5)
    if attention:
        np.testing.assert_allclose(noisy_weights, weights, atol=1e-6)
        np.testing.assert_allclose(alone_weights[0], weights[2, :, :4], atol=1e-6)
        valid = np.arange(6) < np.asarray(lengths)[:, None, None]
        assert np.all(np.asarray(weights)[~np.broadcast_to(valid, weights.shape)] == 0.0)
        np.testing.assert_allclose(np.asarray(weights).sum(-1), 1.0, atol=1e-6)
    else:
        assert weights is None


@pytest.mark.parametrize("attention", [True, False], ids=["attention", "fixed_context"])
def test_greedy_decoding_equals_a_hand_stepped_loop(attention):
    """Oracle: a Python loop over decoder_step feeding back each arg-max token; after the
    end token the decoder emits padding.  Teacher forcing on the greedy tokens reproduces
    the greedy logits (the same inputs at every step)."""
    model, params, compiled = _model(attention)
    sources, lengths = _sources()
    tokens, logits, weights = compiled["greedy"](params, sources, lengths)
    memory = compiled["encode"](params, sources, lengths)
    state, token = model.initial_state(memory), jnp.full((3,), START)
    done = np.zeros(3, bool)
    for step in range(tokens.shape[1]):
        state, (step_logits, step_weights) = compiled["step"](params, memory, state, token)
        token = jnp.argmax(step_logits, -1)
        np.testing.assert_array_equal(tokens[:, step], np.where(done, 0, np.asarray(token)))
        np.testing.assert_allclose(logits[:, step], step_logits, rtol=1e-5, atol=1e-5)
        if attention:
            np.testing.assert_allclose(weights[:, step], step_weights, rtol=1e-5, atol=1e-6)
        done |= np.asarray(token) == END
    fed = seq2seq.shift_right(jnp.argmax(logits, -1), START)
    forced, _ = compiled["apply"](params, sources, lengths, fed)
    np.testing.assert_allclose(forced, logits, rtol=1e-5, atol=1e-5)


def test_a_small_model_overfits_a_small_batch_of_translations():
    """Oracle: learning — on 8 fixed number-word translations, Adam drives the teacher-forced
    cross-entropy from about ln 13 to near zero in 150 steps, and greedy decoding then
    reproduces every target exactly (the exact-match metric agrees with greedy decoding)."""
    task = translation.number_words_to_digits(1, 3)
    batch = jax.tree.map(lambda split: split[::11][:8], task.validation_set())
    model = seq2seq.encoder_decoder(24)
    params = jax.jit(model.init, static_argnums=(1, 2))(
        jax.random.key(1), task.input_size, task.output_size
    )
    optimizer = optax.adam(1e-2)

    def loss_fn(params, decoder_inputs):
        logits, _ = model.apply(params, batch.inputs, batch.lengths, decoder_inputs)
        return task.loss(logits, batch)

    @jax.jit
    def train_then_decode(params):
        """One program (one compilation): 150 Adam steps, then greedy decoding."""
        decoder_inputs = seq2seq.shift_right(batch.targets, translation.BOS)

        def update(carry, _):
            params, opt_state = carry
            loss, grads = jax.value_and_grad(loss_fn)(params, decoder_inputs)
            with jax.numpy_dtype_promotion("standard"):  # optax's bias correction mixes types
                updates, opt_state = optimizer.update(grads, opt_state)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, _), losses = jax.lax.scan(update, (params, optimizer.init(params)), length=150)
        tokens, _, _ = model.greedy_decode(
            params,
            batch.inputs,
            batch.lengths,
            max_length=batch.targets.shape[-1],
            start_token=translation.BOS,
            end_token=translation.EOS,
        )
        logits, _ = model.apply(params, batch.inputs, batch.lengths, decoder_inputs)
        return losses, tokens, task.metric(logits, batch)

    losses, tokens, exact_match = train_then_decode(params)
    assert float(losses[0]) > 1.5
    assert float(losses[-1]) < 0.05, losses[::30]
    assert bool(jnp.all(translation.sequence_correct(tokens, batch.targets)))
    assert float(exact_match) == 1.0


def test_decoder_cell_with_matrix_carry_is_refused():
    """Oracle: the documented contract — every carry leaf must be a [D] vector."""
    odd = dataclasses.replace(
        rnnlab.gru(4), initial_carry=lambda batch_shape=(): jnp.zeros((*batch_shape, 2, 4))
    )
    with pytest.raises(ValueError, match="decoder_cell"):
        seq2seq.encoder_decoder(4, decoder_cell=odd)
