"""Weight interop with torch.nn.{RNN, LSTM, GRU} and flax's linen and nnx cells.

All converters are exact re-layouts of the same numbers (no retraining, no
approximation) except where a bias is folded: flax keeps one bias per gate, so
``b_ih + b_hh`` is summed in float and may differ from the two-bias original by
one rounding step.

Layouts (``F`` input size, ``H`` hidden size, ``G`` gates):

- rnnlab: ``weight_ih [F, G*H]``, ``weight_hh [H, G*H]``, ``bias_ih [G*H]``,
  ``bias_hh [G*H]`` with torch's gate order (LSTM ``i, f, g, o``; GRU ``r, z, n``)
  and ``x @ W``.
- torch: the transposes, ``weight_ih_l{k}[_reverse] [G*H, F]`` etc., same gate
  order and the same two biases, so the mapping is a transpose.
- flax.linen ``LSTMCell`` / ``OptimizedLSTMCell``: one ``Dense`` per gate, named
  ``ii, if, ig, io`` (input, no bias) and ``hi, hf, hg, ho`` (hidden, with the
  gate's single bias).  Its carry is ``(c, h)``, ours :class:`LSTMCarry` ``(h, c)``.
- flax.linen ``GRUCell``: ``ir, iz, in`` (input, with bias), ``hr, hz`` (hidden,
  no bias) and ``hn`` (hidden, with bias).  It computes
  ``n = tanh(x W_in + b_in + r * (h W_hn + b_hn))``: the reset gate multiplies
  ``b_hn`` as in torch, so every rnnlab/torch GRU maps to it exactly, with
  ``b_ir + b_hr`` and ``b_iz + b_hz`` folded into the input biases.
- flax.linen ``SimpleCell``: ``i`` (with bias) and ``h`` (no bias).
- flax.nnx ``LSTMCell``: linen's names with ``if_`` for ``if``;
  ``OptimizedLSTMCell``: fused ``dense_i [F, 4H]`` and ``dense_h [H, 4H]`` (with
  bias) in the order ``i, f, g, o``; ``SimpleCell``: ``dense_i`` (with bias),
  ``dense_h``; ``GRUCell``: fused ``dense_i [F, 3H]`` (with bias) and ``dense_h``
  *without any bias*.  It computes ``n = tanh(x W_in + b_in + r * (h W_hn))``, so
  it equals our GRU exactly when ``b_hn = bias_hh[2H:] = 0``; :func:`to_nnx`
  raises otherwise.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import cells
from rnnlab.cells import Cell, LSTMCarry
from rnnlab.cells._rnn import ACTIVATIONS
from rnnlab.layers import Layer, bidirectional, recurrent, stacked

__all__ = [
    "from_linen",
    "from_nnx",
    "from_torch",
    "from_torch_carry",
    "to_linen",
    "to_nnx",
    "to_torch",
    "to_torch_carry",
]

# The external architectures rnnlab can exchange weights with, by kind.  A cell says
# which one it computes exactly in its own file (``Cell.exports``); these tables hold
# only facts about torch and flax, and the registered cell that imports each kind.
_GATES = {"rnn": 1, "gru": 3, "lstm": 4}
_TORCH_CLASS = {"rnn": "RNN", "gru": "GRU", "lstm": "LSTM"}
_FLAX_CLASS = {"rnn": "SimpleCell", "gru": "GRUCell", "lstm": "LSTMCell"}
#: The registered cell that computes each kind, with the options that make it exact.
_IMPORTED_CELL = {"rnn": ("rnn", {}), "gru": ("gru", {}), "lstm": ("lstm", {"forget_bias": 0.0})}


def _imported_cell(kind: str, hidden_size: int, **options) -> Cell:
    name, fixed = _IMPORTED_CELL[kind]
    return cells.make(name, hidden_size, **fixed, **options)


def _export_kind(cell: Cell, framework: str, table: dict) -> str:
    """The kind whose ``framework`` class ``cell`` declares it computes, or ValueError."""
    declared = cell.exports.get(framework) if isinstance(cell, Cell) else None
    kind = next((kind for kind, name in table.items() if name == declared), None)
    if kind is None:
        raise ValueError(
            f"cell {getattr(cell, 'name', cell)!r} declares no {framework} equivalent "
            f"(its exports are {getattr(cell, 'exports', {})}); {framework} has "
            f"{sorted(table.values())}, computed by rnnlab's "
            f"{sorted(name for name, _ in _IMPORTED_CELL.values())} cells"
        )
    return kind


_PARAM_KEYS = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"}
#: Which Dense of a linen per-gate cell holds the gate's single bias.
_LINEN_BIAS_SIDE = {"lstm": "h", "gru": "i"}
_LINEN_GATE_NAMES = {"lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}


# ----------------------------------------------------------------------------- torch


def from_torch(module) -> tuple[Cell | Layer, Any]:
    """Converts a ``torch.nn.RNN``, ``LSTM`` or ``GRU`` to rnnlab, with its weights.

    Args:
      module: the torch module.  ``nonlinearity`` (``"tanh"``/``"relu"``) becomes
        the cell's ``activation``; ``bias=False`` gives zero biases; ``dropout``
        becomes ``stacked(..., dropout_rate=dropout)``.  ``batch_first`` changes
        nothing: rnnlab always takes ``[..., T, F]``, i.e. batch first, so feed
        a ``batch_first=False`` module's ``[T, B, F]`` inputs as
        ``jnp.swapaxes(xs, 0, 1)``.

    Returns:
      ``(cell, params)`` for a single-layer unidirectional module (run it with
      :func:`rnnlab.unroll`); ``(bidirectional(cell), params)`` for a single-layer
      bidirectional one; otherwise ``(stacked([...] * num_layers), params)`` whose
      entries are the cell or ``bidirectional(cell)``.  Run layers with
      ``layer.apply(params, xs)``.  Outputs equal torch's, and with ``lengths``
      they equal ``pad_packed_sequence(module(pack_padded_sequence(...)))``.
      Convert the final carry with :func:`to_torch_carry`.

    Raises:
      ValueError: for another module type, or ``proj_size > 0`` (an LSTM with a
        projected hidden state, which rnnlab's cells do not have).

    Example::

        >>> import torch, jax.numpy as jnp, rnnlab
        >>> from rnnlab.interop import from_torch
        >>> cell, params = from_torch(torch.nn.LSTM(3, 8, batch_first=True))
        >>> ys, final = rnnlab.unroll(cell, params, jnp.ones((2, 5, 3)))
        >>> ys.shape
        (2, 5, 8)
    """
    import torch

    kind = {torch.nn.RNN: "rnn", torch.nn.LSTM: "lstm", torch.nn.GRU: "gru"}.get(type(module))
    if kind is None:
        raise ValueError(f"module must be a torch.nn.RNN, LSTM or GRU, got {type(module).__name__}")
    if getattr(module, "proj_size", 0) > 0:
        raise ValueError(
            f"proj_size={module.proj_size} (an LSTM with a projected hidden state) has no "
            "rnnlab equivalent; convert a module built with proj_size=0"
        )
    bias_init = "uniform" if module.bias else "zeros"
    dtype = _jax_array(module.weight_ih_l0).dtype
    options = dict(recurrent_init="uniform", bias_init=bias_init, param_dtype=dtype)
    hidden_size = module.hidden_size
    if kind == "rnn":
        options["activation"] = module.nonlinearity
    cell = _imported_cell(kind, hidden_size, **options)

    def params_of(suffix):
        weight_ih = _jax_array(getattr(module, f"weight_ih{suffix}")).T
        weight_hh = _jax_array(getattr(module, f"weight_hh{suffix}")).T
        if module.bias:
            bias_ih = _jax_array(getattr(module, f"bias_ih{suffix}"))
            bias_hh = _jax_array(getattr(module, f"bias_hh{suffix}"))
        else:
            bias_ih = bias_hh = jnp.zeros(weight_hh.shape[-1], dtype)
        return dict(weight_ih=weight_ih, weight_hh=weight_hh, bias_ih=bias_ih, bias_hh=bias_hh)

    if module.bidirectional:
        unit = bidirectional(cell)

        def unit_params(k):
            return {"forward": params_of(f"_l{k}"), "backward": params_of(f"_l{k}_reverse")}
    else:
        unit = cell

        def unit_params(k):
            return params_of(f"_l{k}")

    if module.num_layers == 1:
        return unit, unit_params(0)
    layer = stacked([unit] * module.num_layers, dropout_rate=module.dropout)
    return layer, tuple(unit_params(k) for k in range(module.num_layers))


def to_torch(
    cell_or_layer: Cell | Layer,
    params,
    *,
    bias: bool = True,
    batch_first: bool = True,
):
    """Builds the ``torch.nn.RNN``/``LSTM``/``GRU`` computing the same function.

    The inverse of :func:`from_torch`: ``to_torch(*from_torch(m), bias=m.bias,
    batch_first=m.batch_first)`` rebuilds ``m`` with a bit-identical ``state_dict``.
    The structure comes from the layer itself: ``stacked`` gives ``num_layers`` and
    ``dropout``, ``bidirectional`` gives ``bidirectional=True``, and each cell says
    which torch module it computes (``cell.exports["torch"]``) and its activation.

    Args:
      cell_or_layer: a cell that declares a torch equivalent (``rnn`` with tanh or
        relu, ``lstm``, ``gru``), ``bidirectional(cell)`` with ``merge="concat"``, or
        ``stacked`` of either, all of one kind.
      params: its params.
      bias: ``False`` builds a ``bias=False`` module; all biases must then be zero.
      batch_first: the torch module's input layout.  ``True`` (default) takes
        ``[B, T, F]`` like rnnlab; torch's own default is ``False``.

    Returns:
      A float module with the dtype of ``params``.

    Raises:
      ValueError: for a cell with no torch equivalent (a custom cell with four gates
        is not an LSTM), a reverse-only or non-concatenating layer, mixed cells, or
        non-zero biases with ``bias=False``.
    """
    import torch

    units, kind, activation, dropout = _torch_units(cell_or_layer, params)
    if kind == "rnn" and activation not in ("tanh", "relu"):
        raise ValueError(
            f"torch.nn.RNN supports nonlinearity 'tanh' or 'relu', but the cell uses {activation!r}"
        )
    first = units[0][0]
    input_size, hidden_size = first["weight_ih"].shape[0], first["weight_hh"].shape[0]
    directions = len(units[0])
    options = {"nonlinearity": activation} if kind == "rnn" else {}
    module = getattr(torch.nn, _TORCH_CLASS[kind])(
        input_size,
        hidden_size,
        num_layers=len(units),
        bias=bias,
        batch_first=batch_first,
        dropout=dropout,
        bidirectional=directions == 2,
        dtype=getattr(torch, np.dtype(first["weight_ih"].dtype).name),
        **options,
    )
    state = {}
    for k, unit in enumerate(units):
        for direction, p in zip(("", "_reverse"), unit, strict=False):
            suffix = f"_l{k}{direction}"
            state[f"weight_ih{suffix}"] = p["weight_ih"].T
            state[f"weight_hh{suffix}"] = p["weight_hh"].T
            if bias:
                state[f"bias_ih{suffix}"] = p["bias_ih"]
                state[f"bias_hh{suffix}"] = p["bias_hh"]
            elif np.any(np.asarray(p["bias_ih"])) or np.any(np.asarray(p["bias_hh"])):
                raise ValueError(f"bias=False needs zero biases, but layer {k} has non-zero ones")
    module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    return module


def _torch_units(cell_or_layer, params):
    """Walks the layer: ``(units, kind, activation, dropout)``, ``units[layer][direction]``."""
    if isinstance(cell_or_layer, Cell):
        cell_or_layer = recurrent(cell_or_layer)
    if not isinstance(cell_or_layer, Layer):
        raise ValueError(
            f"cell_or_layer must be an rnnlab Cell or Layer, got {type(cell_or_layer).__name__}"
        )
    if cell_or_layer.kind == "stacked":
        rows, row_params = cell_or_layer.children, tuple(params)
        dropout = cell_or_layer.dropout_rate
        if isinstance(dropout, jax.Array) or not isinstance(dropout, (int, float)):
            dropout = float(np.asarray(dropout))
    else:
        rows, row_params, dropout = (cell_or_layer,), (params,), 0.0
    units, row_cells = [], []
    for k, (row, p) in enumerate(zip(rows, row_params, strict=True)):
        if row.kind == "recurrent":
            if row.reverse:
                raise ValueError(
                    "torch has no reverse-only layer; use bidirectional(cell) or reverse xs"
                )
            units.append([p])
            row_cells.append([row.cell])
        elif row.kind == "bidirectional":
            if row.merge != "concat":
                raise ValueError(
                    f"torch concatenates directions, but layer {k} merges with {row.merge!r}: "
                    "build bidirectional(..., merge='concat')"
                )
            units.append([p["forward"], p["backward"]])
            row_cells.append([child.cell for child in row.children])
        else:
            raise ValueError(f"layer {k} is a {row.kind!r} layer, which torch cannot express")
    kinds = {_export_kind(cell, "torch", _TORCH_CLASS) for row in row_cells for cell in row}
    activations = {cell.hyperparameters.get("activation") for row in row_cells for cell in row}
    if len(kinds) != 1 or len(activations) != 1 or len({len(unit) for unit in units}) != 1:
        raise ValueError(
            "torch needs every layer to be the same cell kind, activation and direction count"
        )
    hidden_sizes = {cell.hidden_size for row in row_cells for cell in row}
    if len(hidden_sizes) != 1:
        raise ValueError(f"torch needs one hidden size for every layer, got {sorted(hidden_sizes)}")
    return units, kinds.pop(), activations.pop(), dropout


def _carry_units(carry):
    """Per (layer, direction) carries, in torch's layer-major, forward-first order."""
    return jax.tree.leaves(carry, is_leaf=lambda node: isinstance(node, LSTMCarry))


def to_torch_carry(carry):
    """rnnlab final carry -> torch's ``h_n`` or ``(h_n, c_n)``, ``[L*D, ..., H]``.

    Works for the carry of a cell, ``bidirectional`` or ``stacked``: index
    ``layer * D + direction`` (forward first), as torch's ``h_n``.  Returns jax
    arrays; ``(h_n, c_n)`` for an LSTM.
    """
    units = _carry_units(carry)
    if isinstance(units[0], LSTMCarry):
        return jnp.stack([u.h for u in units]), jnp.stack([u.c for u in units])
    return jnp.stack(units)


def from_torch_carry(cell_or_layer: Cell | Layer, h_0, c_0=None):
    """torch's ``h_0`` (and ``c_0`` for an LSTM), ``[L*D, ..., H]`` -> rnnlab carry.

    The inverse of :func:`to_torch_carry`; pass the result as ``carry=``.
    Accepts torch tensors, numpy or jax arrays.
    """
    h_0 = _jax_array(h_0)
    template = jax.eval_shape(lambda: cell_or_layer.initial_carry(h_0.shape[1:-1]))
    units, treedef = jax.tree.flatten(template, is_leaf=lambda node: isinstance(node, LSTMCarry))
    if len(units) != h_0.shape[0]:
        raise ValueError(
            f"h_0 has {h_0.shape[0]} entries on axis 0 but this layer has {len(units)} "
            "(num_layers * num_directions)"
        )
    if isinstance(units[0], LSTMCarry):
        if c_0 is None:
            raise ValueError("an LSTM needs c_0 as well as h_0")
        c_0 = _jax_array(c_0)
        return jax.tree.unflatten(treedef, [LSTMCarry(h, c) for h, c in zip(h_0, c_0, strict=True)])
    return jax.tree.unflatten(treedef, list(h_0))


def _jax_array(value) -> jax.Array:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    return jnp.asarray(value)


# ----------------------------------------------------------------------------- flax


def _cell_kind(cell: Cell) -> str:
    return _export_kind(cell, "flax", _FLAX_CLASS)


def _fold_biases(kind: str, params):
    """rnnlab params -> flax's per-gate form ``(w_in, w_hidden, bias, b_hn)``.

    ``w_in[g]: [F, H]``, ``w_hidden[g]: [H, H]``, ``bias[g]: [H]`` is the one bias
    of gate ``g`` (``b_ih + b_hh``, except the GRU's ``n`` gate, whose ``b_hn``
    sits inside the reset product and is returned apart).
    """
    gates = _GATES[kind]
    w_in = jnp.split(params["weight_ih"], gates, axis=-1)
    w_hidden = jnp.split(params["weight_hh"], gates, axis=-1)
    bias = jnp.split(params["bias_ih"] + params["bias_hh"], gates, axis=-1)
    b_hn = None
    if kind == "gru":
        b_hn = jnp.split(params["bias_hh"], gates, axis=-1)[2]
        bias[2] = jnp.split(params["bias_ih"], gates, axis=-1)[2]
    return w_in, w_hidden, bias, b_hn


def _unfold_biases(kind: str, w_in, w_hidden, bias, b_hn=None) -> dict:
    """The inverse of :func:`_fold_biases`: the folded bias goes to ``bias_ih``."""
    bias_ih = jnp.concatenate(bias, axis=-1)
    bias_hh = jnp.zeros_like(bias_ih)
    if kind == "gru" and b_hn is not None:
        bias_hh = bias_hh.at[2 * b_hn.shape[-1] :].set(b_hn)
    return {
        "weight_ih": jnp.concatenate(w_in, axis=-1),
        "weight_hh": jnp.concatenate(w_hidden, axis=-1),
        "bias_ih": bias_ih,
        "bias_hh": bias_hh,
    }


def _flax_cell(kind: str, hidden_size: int, activation_fn, dtype) -> Cell:
    """The rnnlab cell with flax's defaults (lecun-normal inputs, orthogonal, zero bias)."""
    options = dict(recurrent_init="orthogonal", input_init="lecun_normal", param_dtype=dtype)
    if kind == "rnn":
        names = [name for name, fn in ACTIVATIONS.items() if fn is activation_fn]
        if not names:
            raise ValueError(
                f"activation_fn={activation_fn!r} has no rnnlab equivalent; use one of "
                f"{tuple(ACTIVATIONS)} (jnp.tanh, jax.nn.relu, jax.nn.sigmoid)"
            )
        options["activation"] = names[0]
    return _imported_cell(kind, hidden_size, **options)


def _flax_kind(module, classes: dict) -> str:
    kind = next((k for cls, k in classes.items() if isinstance(module, cls)), None)
    if kind is None:
        raise ValueError(
            f"module must be one of {[cls.__name__ for cls in classes]}, "
            f"got {type(module).__name__}"
        )
    if kind == "rnn":
        if module.residual:
            raise ValueError("SimpleCell(residual=True) has no rnnlab equivalent")
    elif module.gate_fn is not jax.nn.sigmoid or module.activation_fn is not jnp.tanh:
        raise ValueError(
            f"{type(module).__name__} must use gate_fn=sigmoid and activation_fn=tanh "
            "to match rnnlab's equations"
        )
    return kind


def _linen_classes():
    import flax.linen as nn

    return {
        nn.LSTMCell: "lstm",
        nn.OptimizedLSTMCell: "lstm",
        nn.GRUCell: "gru",
        nn.SimpleCell: "rnn",
    }


def _linen_tree(kind: str, params) -> dict:
    """rnnlab params -> the param dict of linen's per-gate cell (see the module doc)."""
    w_in, w_hidden, bias, b_hn = _fold_biases(kind, params)
    if kind == "rnn":
        return {"i": {"kernel": w_in[0], "bias": bias[0]}, "h": {"kernel": w_hidden[0]}}
    tree = {}
    for g, name in enumerate(_LINEN_GATE_NAMES[kind]):
        tree[f"i{name}"] = {"kernel": w_in[g]}
        tree[f"h{name}"] = {"kernel": w_hidden[g]}
        tree[f"{_LINEN_BIAS_SIDE[kind]}{name}"]["bias"] = bias[g]
    if kind == "gru":
        tree["hn"]["bias"] = b_hn
    return tree


def _from_linen_tree(kind: str, tree) -> dict:
    """The inverse of :func:`_linen_tree`."""
    if kind == "rnn":
        return _unfold_biases(
            kind, [tree["i"]["kernel"]], [tree["h"]["kernel"]], [tree["i"]["bias"]]
        )
    names = _LINEN_GATE_NAMES[kind]
    return _unfold_biases(
        kind,
        [tree[f"i{name}"]["kernel"] for name in names],
        [tree[f"h{name}"]["kernel"] for name in names],
        [tree[f"{_LINEN_BIAS_SIDE[kind]}{name}"]["bias"] for name in names],
        tree["hn"]["bias"] if kind == "gru" else None,
    )


def to_linen(cell: Cell, params):
    """rnnlab cell params -> ``(module, variables)`` of the equivalent flax.linen cell.

    ``lstm`` -> ``nn.LSTMCell``, ``gru`` -> ``nn.GRUCell`` (exact, ``b_hn``
    included), ``rnn`` -> ``nn.SimpleCell`` with the same activation.  Run it with
    ``module.apply(variables, carry, x)``; linen's LSTM carry is ``(c, h)``.

    Example::

        >>> import jax, rnnlab
        >>> from rnnlab.interop import to_linen
        >>> cell = rnnlab.gru(8)
        >>> module, variables = to_linen(cell, cell.init(jax.random.key(0), 3))
        >>> sorted(variables["params"])
        ['hn', 'hr', 'hz', 'in', 'ir', 'iz']
    """
    import flax.linen as nn

    kind = _cell_kind(cell)
    dtype = params["weight_ih"].dtype
    if kind == "rnn":
        activation_fn = ACTIVATIONS[cell.hyperparameters["activation"]]
        module = nn.SimpleCell(cell.hidden_size, activation_fn=activation_fn, param_dtype=dtype)
    else:
        module = (nn.LSTMCell if kind == "lstm" else nn.GRUCell)(
            cell.hidden_size, param_dtype=dtype
        )
    return module, {"params": _linen_tree(kind, params)}


def from_linen(module, variables) -> tuple[Cell, dict]:
    """A flax.linen ``LSTMCell``, ``OptimizedLSTMCell``, ``GRUCell`` or ``SimpleCell``
    and its variables -> ``(cell, params)``.

    The inverse of :func:`to_linen` up to where the folded bias sits (all in
    ``bias_ih``; ``bias_hh`` holds only the GRU's ``b_hn``).

    Args:
      module: the linen cell, for its activations: ``gate_fn=sigmoid`` and
        ``activation_fn=tanh`` (LSTM, GRU), or an ``activation_fn`` in
        :data:`rnnlab.cells._rnn.ACTIVATIONS` and ``residual=False`` (SimpleCell).
      variables: ``{"params": {...}}`` as returned by ``module.init``, or the inner dict.

    Raises:
      ValueError: for another module or activations rnnlab's cells lack.
    """
    kind = _flax_kind(module, _linen_classes())
    params = _from_linen_tree(kind, variables.get("params", variables))
    cell = _flax_cell(
        kind, module.features, getattr(module, "activation_fn", None), params["weight_ih"].dtype
    )
    return cell, params


def _nnx_classes():
    from flax import nnx

    return {
        nnx.LSTMCell: "lstm",
        nnx.OptimizedLSTMCell: "lstm",
        nnx.GRUCell: "gru",
        nnx.SimpleCell: "rnn",
    }


#: nnx.LSTMCell names linen's ``if`` Dense ``if_`` (``if`` is a Python keyword).
_NNX_RENAME = {"if": "if_"}


def to_nnx(cell: Cell, params):
    """rnnlab cell params -> the equivalent flax.nnx cell module.

    ``lstm`` -> ``nnx.LSTMCell``, ``gru`` -> ``nnx.GRUCell``, ``rnn`` ->
    ``nnx.SimpleCell``.  ``nnx.GRUCell`` has no ``b_hn``, so the GRU's
    ``bias_hh[2H:]`` must be zero (use :func:`to_linen` otherwise).  The module
    keeps no RNG state.

    Raises:
      ValueError: for a GRU with non-zero ``b_hn``.

    Example::

        >>> import jax, rnnlab
        >>> from flax import nnx
        >>> from rnnlab.interop import to_nnx
        >>> cell = rnnlab.lstm(8)
        >>> module = to_nnx(cell, cell.init(jax.random.key(0), 3))
        >>> nnx.RNN(module)(jax.numpy.ones((2, 5, 3))).shape
        (2, 5, 8)
    """
    from flax import nnx

    kind = _cell_kind(cell)
    if kind == "gru" and np.any(np.asarray(params["bias_hh"][2 * cell.hidden_size :])):
        raise ValueError(
            "nnx.GRUCell has no b_hn (bias_hh[2H:]) but these params have a non-zero one; "
            "use to_linen (linen's GRUCell has b_hn) or zero bias_hh[2H:]"
        )
    features = (params["weight_ih"].shape[0], cell.hidden_size)
    options = dict(param_dtype=params["weight_ih"].dtype, rngs=nnx.Rngs(0))  # values replaced
    if kind == "lstm":
        module = nnx.LSTMCell(*features, **options)
        tree = {_NNX_RENAME.get(k, k): v for k, v in _linen_tree(kind, params).items()}
    else:
        if kind == "gru":
            module = nnx.GRUCell(*features, **options)
        else:
            activation_fn = ACTIVATIONS[cell.hyperparameters["activation"]]
            module = nnx.SimpleCell(*features, activation_fn=activation_fn, **options)
        bias = _fold_biases(kind, params)[2]
        tree = {
            "dense_i": {"kernel": params["weight_ih"], "bias": jnp.concatenate(bias, axis=-1)},
            "dense_h": {"kernel": params["weight_hh"]},
        }
    state = nnx.state(module, nnx.Param)
    nnx.replace_by_pure_dict(state, tree)
    nnx.update(module, state)
    return module


def from_nnx(module) -> tuple[Cell, dict]:
    """A flax.nnx ``LSTMCell``, ``OptimizedLSTMCell``, ``GRUCell`` or ``SimpleCell``
    -> ``(cell, params)``.

    An ``nnx.GRUCell`` becomes a GRU with ``b_hn = 0``, which is what it computes.
    The module's activations must match rnnlab's, as for :func:`from_linen`.
    """
    from flax import nnx

    kind = _flax_kind(module, _nnx_classes())
    tree = nnx.to_pure_dict(nnx.state(module, nnx.Param))
    if isinstance(module, nnx.LSTMCell):
        renamed = {value: key for key, value in _NNX_RENAME.items()}
        params = _from_linen_tree(kind, {renamed.get(k, k): v for k, v in tree.items()})
    else:
        # fused layouts: dense_i [F, G*H] and dense_h [H, G*H], one bias on either side
        bias = tree["dense_i"].get("bias", tree["dense_h"].get("bias"))
        params = _unfold_biases(
            kind, [tree["dense_i"]["kernel"]], [tree["dense_h"]["kernel"]], [bias]
        )
    cell = _flax_cell(
        kind,
        module.hidden_features,
        getattr(module, "activation_fn", None),
        params["weight_ih"].dtype,
    )
    return cell, params
