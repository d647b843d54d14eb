"""Recurrent cells: factories returning a :class:`Cell` of pure functions, and their registry.

A new cell is one file here, with its factory ``name(hidden_size, *, ...)`` returning
a :class:`Cell`, and one line in the table below.  Unrolling (sequential, fused or
parallel), layers, NNX modules, diagnostics, training, sweeps and the CLIs then take
it by name.  A user's own cell, defined anywhere, joins with one call::

    rnnlab.cells.register("mine", my_factory)
    cell = rnnlab.cells.make("mine", 64, leak=0.3)

Registered names: see :func:`available`.
"""

import importlib

from rnnlab.cells._cell import Cell, DenseRecurrence, LinearRecurrence
from rnnlab.cells._lstm import LSTMCarry
from rnnlab.cells._registry import CellSpec, available, make, register, spec

__all__ = [
    "Cell",
    "CellSpec",
    "DenseRecurrence",
    "LSTMCarry",
    "LinearRecurrence",
    "available",
    "make",
    "register",
    "spec",
]

# The registry: one line per cell, imported on first use.  The modules are private
# (``rnnlab.cells._lstm``), so ``rnnlab.cells.lstm`` is the factory, never a module.
register("rnn", "rnnlab.cells._rnn:rnn")
register(
    "irnn", "rnnlab.cells._rnn:rnn", presets={"activation": "relu", "recurrent_init": "identity"}
)
register("lstm", "rnnlab.cells._lstm:lstm")
register("gru", "rnnlab.cells._gru:gru")
register("lru", "rnnlab.cells._lru:lru")
register("mingru", "rnnlab.cells._mingru:mingru")
register("minlstm", "rnnlab.cells._minlstm:minlstm")
register("rglru", "rnnlab.cells._rglru:rglru")
register("indrnn", "rnnlab.cells._indrnn:indrnn")
register("cornn", "rnnlab.cells._cornn:cornn")
register("lem", "rnnlab.cells._lem:lem")
register("antisymmetric", "rnnlab.cells._antisymmetric:antisymmetric")
register("mgu", "rnnlab.cells._mgu:mgu")
register("orthogonal", "rnnlab.cells._orthogonal:orthogonal")

#: The built-in factories, reachable as ``rnnlab.cells.<name>`` (imported on first access).
_FACTORIES = ("rnn", "lstm", "gru", "lru", "mingru", "minlstm", "rglru", "indrnn", "cornn",
              "lem", "antisymmetric", "mgu", "orthogonal")  # fmt: skip


def __getattr__(name: str):
    if name in _FACTORIES:
        factory = importlib.import_module(f"rnnlab.cells._{name}").__dict__[name]
        globals()[name] = factory
        return factory
    raise AttributeError(f"module 'rnnlab.cells' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_FACTORIES])
