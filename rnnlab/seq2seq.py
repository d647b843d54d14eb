r"""Encoder-decoder networks with and without additive attention, as pure functions.

The model of Bahdanau, Cho & Bengio 2015 (*Neural machine translation by jointly
learning to align and translate*), with a linear output layer in place of their
maxout one:

- **Encoder**: a bidirectional RNN over the source ``x_1..x_S`` gives annotations
  ``h_j = [h_fwd_j ; h_bwd_j]`` (``[..., S, 2H]``); padded steps are zero.
- **Initial state**: ``s_0 = tanh(h_bwd_1 W_s + b_s)``.
- **Attention** (additive): ``e_ij = v^T tanh(s_{i-1} W_a + h_j U_a)``,
  ``alpha_ij = softmax_j(e_ij)`` over the valid source positions (exactly 0 on
  padding), context ``c_i = sum_j alpha_ij h_j``.  ``h_j U_a`` is computed once per
  source, outside the decoding loop.
- **Decoder**: ``s_i = f(s_{i-1}, [E y_{i-1} ; c_i])`` with ``f`` a recurrent cell
  (a GRU by default), and logits ``[s_i ; c_i ; E y_{i-1}] W_o + b_o``.

Without attention (``attention=False``) the context is one fixed vector for every
step, ``c = [h_fwd_L ; h_bwd_1]`` (the two directions' final states; Cho et al.
2014's encoder-decoder, here with the bidirectional encoder), and everything else is
the same, so the two models differ in attention only.

Training is teacher-forced (:meth:`EncoderDecoder.apply` on the shifted targets,
:func:`shift_right`); decoding is greedy under ``jit`` with a fixed maximum length
(:meth:`EncoderDecoder.greedy_decode`, one ``lax.scan``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from rnnlab import cells
from rnnlab.cells import Cell
from rnnlab.layers import Layer, bidirectional

__all__ = ["DecoderState", "EncoderDecoder", "Memory", "encoder_decoder", "shift_right"]


class Memory(NamedTuple):
    """What the decoder reads of an encoded source.

    Attributes:
      annotations: ``[..., S, 2H]`` the encoder's outputs ``h_j`` (zero on padding).
      keys: ``[..., S, A]`` ``h_j U_a``, precomputed (``None`` without attention).
      mask: ``[..., S]`` bool, true at valid source positions.
      summary: ``[..., 2H]`` ``[h_fwd_L ; h_bwd_1]``, the fixed context without attention.
      initial_state: ``[..., D]`` ``s_0``.
    """

    annotations: jax.Array
    keys: jax.Array | None
    mask: jax.Array
    summary: jax.Array
    initial_state: jax.Array


class DecoderState(NamedTuple):
    """The decoder's carry between steps: the cell's carry and its last output ``s_{i-1}``."""

    carry: Any
    output: jax.Array


def shift_right(targets: jax.Array, start_token: int) -> jax.Array:
    """Teacher forcing's decoder inputs: ``[y_1..y_U] -> [<s>, y_1..y_{U-1}]`` (``[..., U]``)."""
    start = jnp.full((*targets.shape[:-1], 1), start_token, targets.dtype)
    return jnp.concatenate([start, targets[..., :-1]], axis=-1)


@dataclasses.dataclass(frozen=True, eq=False)
class EncoderDecoder:
    """An immutable record of the pure functions of an encoder-decoder.

    Attributes:
      name: e.g. ``"gru_attention"``.
      attention: whether the decoder attends (else a fixed context).
      encoder: the bidirectional :class:`rnnlab.layers.Layer`.
      decoder_cell: the decoder's :class:`rnnlab.cells.Cell`.
      init: ``init(key, source_size, target_size) -> params``.
      encode: ``encode(params, sources [..., S, F], lengths [...] | None) -> Memory``;
        every source needs ``lengths >= 1`` (``None``: all ``S`` steps are valid).
      initial_state: ``initial_state(memory) -> DecoderState``.
      decoder_step: ``decoder_step(params, memory, state, token [...]) -> (state,
        (logits [..., V], weights [..., S] | None))``: one step given the previous
        target token ``y_{i-1}``.
      apply: ``apply(params, sources, lengths, decoder_inputs [..., U]) -> (logits
        [..., U, V], weights [..., U, S] | None)``, teacher-forced.
      greedy_decode: ``greedy_decode(params, sources, lengths, *, max_length,
        start_token, end_token=None, pad_token=0) -> (tokens [..., U], logits
        [..., U, V], weights [..., U, S] | None)``.  After ``end_token`` the tokens
        are ``pad_token``.
    """

    name: str
    attention: bool
    encoder: Layer
    decoder_cell: Cell
    init: Callable
    encode: Callable
    initial_state: Callable
    decoder_step: Callable
    apply: Callable
    greedy_decode: Callable


def _dense(key, fan_in: int, fan_out: int, bias: bool = True) -> dict:
    """``N(0, 1/fan_in)`` weights (and zero bias): unit-variance outputs for unit inputs."""
    weight = jax.random.normal(key, (fan_in, fan_out)) / jnp.sqrt(fan_in)
    return {"weight": weight, "bias": jnp.zeros((fan_out,))} if bias else {"weight": weight}


def _check_decoder_cell(cell: Cell) -> None:
    shapes = jax.tree.leaves(jax.eval_shape(lambda: cell.initial_carry(())))
    if any(leaf.shape != (cell.hidden_size,) for leaf in shapes):
        raise ValueError(
            f"decoder_cell {cell.name!r} has carry leaves of shapes "
            f"{[leaf.shape for leaf in shapes]}; s_0 initializes every leaf, so each must be "
            f"[{cell.hidden_size}] (as for rnnlab.gru, rnnlab.lstm and rnnlab.rnn)"
        )


def _time_last(tree, batch_ndim: int):
    """Moves the leading (scan) time axis of every leaf to position ``batch_ndim``."""
    return jax.tree.map(lambda leaf: jnp.moveaxis(leaf, 0, batch_ndim), tree)


def encoder_decoder(
    hidden_size: int,
    *,
    attention: bool = True,
    embedding_size: int | None = None,
    attention_size: int | None = None,
    encoder_cell: Cell | None = None,
    decoder_cell: Cell | None = None,
) -> EncoderDecoder:
    r"""An encoder-decoder with a bidirectional encoder and (optionally) additive attention.

    Args:
      hidden_size: ``H`` of the default cells: encoder ``rnnlab.gru(H)`` in each
        direction (annotations ``2H``) and decoder ``rnnlab.gru(H)``.
      attention: Bahdanau attention (default) or a fixed context (see the module).
      embedding_size: ``E`` of the target embeddings; default ``hidden_size``.
      attention_size: ``A`` of the attention's hidden layer; default ``hidden_size``.
      encoder_cell: the cell of both encoder directions (separate params).
      decoder_cell: the decoder cell; every leaf of its carry starts at ``s_0``, so
        its carry leaves must be ``[D]`` vectors.

    Returns:
      An :class:`EncoderDecoder`.  Params are a dict with ``"encoder"``,
      ``"bridge"`` (``W_s, b_s``), ``"embedding"`` ``[V, E]``, ``"decoder"`` (the
      cell's), ``"readout"`` (``W_o [D + 2H + E, V], b_o``) and, with attention,
      ``"attention"`` (``query [D, A]`` = ``W_a``, ``key [2H, A]`` = ``U_a``,
      ``score [A]`` = ``v``).

    Raises:
      ValueError: naming ``decoder_cell`` if its carry leaves are not ``[D]`` vectors.
    """
    encoder_cell = cells.make("gru", hidden_size) if encoder_cell is None else encoder_cell
    decoder_cell = cells.make("gru", hidden_size) if decoder_cell is None else decoder_cell
    _check_decoder_cell(decoder_cell)
    encoder = bidirectional(encoder_cell)
    annotation_size = encoder.output_size
    backward_size = annotation_size - encoder_cell.hidden_size
    state_size = decoder_cell.hidden_size
    embedding_size = hidden_size if embedding_size is None else embedding_size
    attention_size = hidden_size if attention_size is None else attention_size

    def init(key, source_size: int, target_size: int):
        keys = jax.random.split(key, 8)
        params = {
            "encoder": encoder.init(keys[0], source_size),
            "bridge": _dense(keys[1], backward_size, state_size),
            "embedding": jax.random.normal(keys[2], (target_size, embedding_size)),
            "decoder": decoder_cell.init(keys[3], embedding_size + annotation_size),
            "readout": _dense(keys[4], state_size + annotation_size + embedding_size, target_size),
        }
        if attention:
            params["attention"] = {
                "query": _dense(keys[5], state_size, attention_size, bias=False)["weight"],
                "key": _dense(keys[6], annotation_size, attention_size, bias=False)["weight"],
                "score": jax.random.normal(keys[7], (attention_size,)) / jnp.sqrt(attention_size),
            }
        return params

    def encode(params, sources, lengths=None) -> Memory:
        steps = sources.shape[-2]
        if lengths is None:
            lengths = jnp.full(sources.shape[:-2], steps, jnp.int32)
        annotations, _ = encoder.apply(params["encoder"], sources, lengths=lengths)
        mask = jnp.arange(steps) < lengths[..., None]
        forward_size = annotation_size - backward_size
        last = jnp.take_along_axis(annotations, (lengths - 1)[..., None, None], axis=-2)[..., 0, :]
        first_backward = annotations[..., 0, forward_size:]
        summary = jnp.concatenate([last[..., :forward_size], first_backward], axis=-1)
        bridge = params["bridge"]
        initial_state = jnp.tanh(first_backward @ bridge["weight"] + bridge["bias"])
        keys = annotations @ params["attention"]["key"] if attention else None
        return Memory(annotations, keys, mask, summary, initial_state)

    def initial_state(memory: Memory) -> DecoderState:
        batch_shape = memory.initial_state.shape[:-1]
        template = decoder_cell.initial_carry(batch_shape)
        carry = jax.tree.map(lambda leaf: memory.initial_state.astype(leaf.dtype), template)
        return DecoderState(carry, memory.initial_state)

    def attend(params, memory: Memory, query):
        """``(context [..., 2H], weights [..., S])`` for the previous state ``query``."""
        hidden = jnp.tanh(memory.keys + (query @ params["attention"]["query"])[..., None, :])
        scores = hidden @ params["attention"]["score"]
        weights = jax.nn.softmax(jnp.where(memory.mask, scores, -jnp.inf), axis=-1)
        context = jnp.einsum("...s,...sh->...h", weights, memory.annotations)
        return context, weights

    def decoder_step(params, memory: Memory, state: DecoderState, token):
        if attention:
            context, weights = attend(params, memory, state.output)
        else:
            context, weights = memory.summary, None
        embedded = jnp.take(params["embedding"], token, axis=0)
        carry, output = decoder_cell.step(
            params["decoder"], state.carry, jnp.concatenate([embedded, context], axis=-1)
        )
        features = jnp.concatenate([output, context, embedded], axis=-1)
        logits = features @ params["readout"]["weight"] + params["readout"]["bias"]
        return DecoderState(carry, output), (logits, weights)

    def apply(params, sources, lengths, decoder_inputs):
        memory = encode(params, sources, lengths)
        batch_ndim = decoder_inputs.ndim - 1

        def body(state, token):
            return decoder_step(params, memory, state, token)

        tokens = jnp.moveaxis(decoder_inputs, -1, 0)
        _, outputs = jax.lax.scan(body, initial_state(memory), tokens)
        return _time_last(outputs, batch_ndim)

    def greedy_decode(
        params,
        sources,
        lengths=None,
        *,
        max_length: int,
        start_token: int,
        end_token=None,
        pad_token: int = 0,
    ):
        memory = encode(params, sources, lengths)
        batch_shape = memory.initial_state.shape[:-1]

        def body(loop, _):
            state, token, done = loop
            state, (logits, weights) = decoder_step(params, memory, state, token)
            token = jnp.argmax(logits, axis=-1).astype(jnp.int32)
            emitted = jnp.where(done, pad_token, token)
            if end_token is not None:
                done = done | (token == end_token)
            return (state, token, done), (emitted, logits, weights)

        start = jnp.full(batch_shape, start_token, jnp.int32)
        done = jnp.zeros(batch_shape, bool)
        _, outputs = jax.lax.scan(body, (initial_state(memory), start, done), length=max_length)
        return _time_last(outputs, len(batch_shape))

    return EncoderDecoder(
        name=f"{encoder_cell.name}_{'attention' if attention else 'fixed_context'}",
        attention=attention,
        encoder=encoder,
        decoder_cell=decoder_cell,
        init=init,
        encode=encode,
        initial_state=initial_state,
        decoder_step=decoder_step,
        apply=apply,
        greedy_decode=greedy_decode,
    )
