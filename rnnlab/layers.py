"""Layers composed over :func:`rnnlab.unroll`: one direction, bidirectional, stacked.

A :class:`Layer` maps a whole sequence ``[..., T, F]`` to ``[..., T, output_size]``
and honours ``lengths`` (padded outputs are exactly zero).  Layers compose:
``stacked([bidirectional(lstm(64)), recurrent(gru(32))], dropout_rate=0.1)``.

A layer remembers what it is made of (``kind``, ``cell``, ``reverse``, ``children``,
``merge``, ``dropout_rate``), so interop, the trainer and the diagnostics walk that
structure (:func:`units`, :func:`map_units`) instead of guessing from params.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from rnnlab.cells._cell import Cell, check_input_size
from rnnlab.unrolling import unroll

__all__ = [
    "BidirectionalCarry",
    "Layer",
    "bidirectional",
    "dropout",
    "map_units",
    "recurrent",
    "stacked",
    "units",
]


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class Layer:
    """An immutable record of pure functions for a sequence-to-sequence layer, and its parts.

    Attributes:
      name: a short name.
      kind: ``"recurrent"``, ``"bidirectional"`` or ``"stacked"``.
      output_size: the size of the last axis of the outputs.
      init: ``init(key, input_size) -> params``.
      initial_carry: ``initial_carry(batch_shape=()) -> carry``.
      apply: ``apply(params, xs, *, carry=None, lengths=None, key=None,
        deterministic=False, **unroll_options) -> (ys, final_carry)`` with
        ``xs: [..., T, F]`` and ``ys: [..., T, output_size]``.  ``unroll_options``
        are ``resets``, ``unroll``, ``remat`` and ``path`` of :func:`rnnlab.unroll`.
      step: ``step(params, carry, x) -> (carry, y)``, one time step, for layers that
        run forwards only (``None`` for bidirectional ones).
      cell: the cell of a ``"recurrent"`` layer.
      reverse: whether a ``"recurrent"`` layer runs backwards in time.
      children: the sub-layers, bottom (or forward) first.
      merge: how a ``"bidirectional"`` layer merges its two directions.
      dropout_rate: a ``"stacked"`` layer's inter-layer dropout.
    """

    name: str
    kind: str
    output_size: int
    init: Callable[[jax.Array, int], Any]
    initial_carry: Callable[..., Any]
    apply: Callable[..., tuple[jax.Array, Any]]
    step: Callable | None = None
    cell: Cell | None = None
    reverse: bool = False
    children: tuple[Layer, ...] = ()
    merge: str | Callable | None = None
    dropout_rate: Any = 0.0


def _as_layer(layer: Layer | Cell) -> Layer:
    if isinstance(layer, Layer):
        return layer
    if isinstance(layer, Cell):
        return recurrent(layer)
    raise ValueError(f"expected an rnnlab Layer or Cell, got {type(layer).__name__}")


def recurrent(cell: Cell, *, reverse: bool = False) -> Layer:
    """A single-direction layer: :func:`rnnlab.unroll` of ``cell``."""
    if not isinstance(cell, Cell):
        raise ValueError(f"cell must be an rnnlab.cells.Cell, got {type(cell).__name__}")

    def apply(params, xs, *, carry=None, lengths=None, key=None, deterministic=False, **opts):
        del key, deterministic  # no randomness in a single recurrent layer
        return unroll(cell, params, xs, carry=carry, lengths=lengths, reverse=reverse, **opts)

    return Layer(
        name=f"{'reverse_' if reverse else ''}{cell.name}",
        kind="recurrent",
        output_size=cell.hidden_size,
        init=cell.init,
        initial_carry=cell.initial_carry,
        apply=apply,
        step=None if reverse else cell.step,
        cell=cell,
        reverse=reverse,
    )


class BidirectionalCarry(NamedTuple):
    forward: Any
    backward: Any


_MERGES: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "concat": lambda f, b: jnp.concatenate([f, b], axis=-1),
    "sum": lambda f, b: f + b,
    "mean": lambda f, b: 0.5 * (f + b),
}


def bidirectional(
    cell: Cell,
    backward_cell: Cell | None = None,
    *,
    merge: str | Callable[[jax.Array, jax.Array], jax.Array] = "concat",
    merged_size: int | None = None,
) -> Layer:
    """Forward and reverse unrolls of ``[..., T, F]`` inputs, merged per step.

    The reverse direction starts at each sequence's own last valid step, as
    ``torch.nn.LSTM(bidirectional=True)`` with packed sequences does.

    Args:
      cell: the forward cell.
      backward_cell: the reverse cell; default a cell built like ``cell`` (same
        factory, separate params).
      merge: ``"concat"`` (``[..., T, 2H]``, torch's layout), ``"sum"``, ``"mean"``,
        or a callable ``merge(y_forward, y_backward) -> y``.
      merged_size: the output size of a callable ``merge``.

    Params are ``{"forward": ..., "backward": ...}``; the carry is a
    :class:`BidirectionalCarry`.
    """
    backward_cell = cell if backward_cell is None else backward_cell
    return _bidirectional(
        recurrent(cell), recurrent(backward_cell, reverse=True), merge, merged_size
    )


def _bidirectional(forward: Layer, backward: Layer, merge, merged_size) -> Layer:
    if callable(merge):
        if merged_size is None:
            raise ValueError("merged_size is required when merge is a callable")
        merge_fn, output_size = merge, merged_size
    elif merge in _MERGES:
        merge_fn = _MERGES[merge]
        if merge != "concat" and forward.output_size != backward.output_size:
            raise ValueError(
                f"merge={merge!r} needs equal hidden sizes, got {forward.output_size} and "
                f"{backward.output_size}; use merge='concat'"
            )
        output_size = (
            forward.output_size + backward.output_size if merge == "concat" else forward.output_size
        )
    else:
        raise ValueError(f"merge={merge!r} is unknown; use one of {tuple(_MERGES)} or a callable")

    def init(key, input_size):
        k_forward, k_backward = jax.random.split(key)
        return {
            "forward": forward.init(k_forward, input_size),
            "backward": backward.init(k_backward, input_size),
        }

    def initial_carry(batch_shape=()):
        return BidirectionalCarry(
            forward.initial_carry(batch_shape), backward.initial_carry(batch_shape)
        )

    def apply(params, xs, *, carry=None, lengths=None, key=None, deterministic=False, **opts):
        carry = BidirectionalCarry(None, None) if carry is None else carry
        keys = (None, None) if key is None else tuple(jax.random.split(key))
        y_forward, c_forward = forward.apply(
            params["forward"], xs, carry=carry.forward, lengths=lengths, key=keys[0],
            deterministic=deterministic, **opts,
        )  # fmt: skip
        y_backward, c_backward = backward.apply(
            params["backward"], xs, carry=carry.backward, lengths=lengths, key=keys[1],
            deterministic=deterministic, **opts,
        )  # fmt: skip
        return merge_fn(y_forward, y_backward), BidirectionalCarry(c_forward, c_backward)

    return Layer(
        name=f"bidirectional_{forward.name}",
        kind="bidirectional",
        output_size=output_size,
        init=init,
        initial_carry=initial_carry,
        apply=apply,
        children=(forward, backward),
        merge=merge,
    )


def dropout(key: jax.Array, rate, ys: jax.Array) -> jax.Array:
    """Inverted dropout: zero each entry with probability ``rate``, scale by ``1/(1-rate)``."""
    keep = 1.0 - jnp.asarray(rate, ys.dtype)
    mask = jax.random.bernoulli(key, keep, ys.shape)
    return jnp.where(mask, ys / keep, jnp.zeros_like(ys))


def stacked(layers: Sequence[Layer | Cell], *, dropout_rate=0.0) -> Layer:
    """Deep RNN: each layer consumes the previous layer's outputs.

    Args:
      layers: layers or cells (a cell becomes ``recurrent(cell)``), bottom first.
      dropout_rate: inter-layer dropout, applied to the outputs of every layer but
        the last (torch.nn.LSTM's ``dropout``).  May be an array.  When it is
        non-zero, ``apply`` needs ``key=`` unless ``deterministic=True``.

    Params and carry are tuples with one entry per layer.
    """
    layers = tuple(_as_layer(layer) for layer in layers)
    if not layers:
        raise ValueError("layers must contain at least one Layer or Cell")
    if _is_concrete_number(dropout_rate) and not 0.0 <= float(dropout_rate) < 1.0:
        raise ValueError(f"dropout_rate must lie in [0, 1), got {dropout_rate}")
    uses_dropout = not (_is_concrete_number(dropout_rate) and float(dropout_rate) == 0.0)

    def init(key, input_size):
        input_size = check_input_size(input_size)
        params = []
        for layer, layer_key in zip(layers, jax.random.split(key, len(layers)), strict=True):
            params.append(layer.init(layer_key, input_size))
            input_size = layer.output_size
        return tuple(params)

    def initial_carry(batch_shape=()):
        return tuple(layer.initial_carry(batch_shape) for layer in layers)

    def apply(params, xs, *, carry=None, lengths=None, key=None, deterministic=False, **opts):
        apply_dropout = uses_dropout and not deterministic and len(layers) > 1
        if apply_dropout and key is None:
            raise ValueError(
                "this stacked layer has dropout_rate > 0: pass key=jax.random.key(...) "
                "for training, or deterministic=True for evaluation"
            )
        carry = (None,) * len(layers) if carry is None else tuple(carry)
        if len(carry) != len(layers):
            raise ValueError(f"carry has {len(carry)} entries but the stack has {len(layers)}")
        # Separate keys for each layer's own randomness and for the dropout after it.
        keys = jax.random.split(key, (len(layers), 2)) if key is not None else None
        finals = []
        for index, layer in enumerate(layers):
            xs, final = layer.apply(
                params[index],
                xs,
                carry=carry[index],
                lengths=lengths,
                key=None if keys is None else keys[index, 0],
                deterministic=deterministic,
                **opts,
            )
            finals.append(final)
            if apply_dropout and index < len(layers) - 1:
                xs = dropout(keys[index, 1], dropout_rate, xs)
        return xs, tuple(finals)

    step = None
    if all(layer.step is not None for layer in layers):

        def step(params, carry, x):
            new_carry = []
            for layer, layer_params, layer_carry in zip(layers, params, carry, strict=True):
                layer_carry, x = layer.step(layer_params, layer_carry, x)
                new_carry.append(layer_carry)
            return tuple(new_carry), x

    return Layer(
        name="stacked_" + "_".join(layer.name for layer in layers),
        kind="stacked",
        output_size=layers[-1].output_size,
        init=init,
        initial_carry=initial_carry,
        apply=apply,
        step=step,
        children=layers,
        dropout_rate=dropout_rate,
    )


def _is_concrete_number(value) -> bool:
    return not isinstance(value, jax.core.Tracer) and jnp.ndim(value) == 0


def units(layer: Layer | Cell) -> list[Layer]:
    """The ``"recurrent"`` layers inside ``layer``, in params order (bottom, forward first)."""
    layer = _as_layer(layer)
    if layer.kind == "recurrent":
        return [layer]
    if not layer.children:
        raise ValueError(f"layer {layer.name!r} of kind {layer.kind!r} records no children")
    return [unit for child in layer.children for unit in units(child)]


def map_units(layer: Layer | Cell, fn: Callable[[Layer], Layer]) -> Layer:
    """The same composite with every ``"recurrent"`` layer ``u`` replaced by ``fn(u)``.

    ``fn`` must keep each unit's params, carry and output size.  Used by the
    diagnostics to perturb every cell of a stacked or bidirectional network.
    """
    layer = _as_layer(layer)
    if layer.kind == "recurrent":
        return fn(layer)
    if layer.kind == "bidirectional":
        forward, backward = (map_units(child, fn) for child in layer.children)
        return _bidirectional(
            forward, backward, layer.merge, layer.output_size if callable(layer.merge) else None
        )
    if layer.kind == "stacked":
        return stacked([map_units(child, fn) for child in layer.children],
                       dropout_rate=layer.dropout_rate)  # fmt: skip
    raise ValueError(f"cannot map over layer {layer.name!r} of unknown kind {layer.kind!r}")
