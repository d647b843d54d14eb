"""Recurrent cells: factories returning a :class:`Cell` of pure functions, and their registry.

A new cell is one file here, with its factory ``name(hidden_size, *, ...)`` returning
a :class:`Cell`, and one line in the table below.  Unrolling (sequential, fused or
parallel), layers, NNX modules, diagnostics, training, sweeps and the CLIs then take
it by name.  A user's own cell, defined anywhere, joins with one call::

    rnnlab.cells.register("mine", my_factory)
    cell = rnnlab.cells.make("mine", 64, leak=0.3)

Registered names: see :func:`available`.
"""

from rnnlab.cells._cell import Cell, DenseRecurrence, LinearRecurrence
from rnnlab.cells._registry import CellSpec, available, make, register, spec
from rnnlab.cells.lstm import LSTMCarry

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

# The registry: one line per cell, imported on first use.
register("rnn", "rnnlab.cells.rnn:rnn")
register("irnn", "rnnlab.cells.rnn:rnn", presets=dict(activation="relu", recurrent_init="identity"))
register("lstm", "rnnlab.cells.lstm:lstm")
register("gru", "rnnlab.cells.gru:gru")
register("lru", "rnnlab.cells.lru:lru")
register("mingru", "rnnlab.cells.mingru:mingru")
register("minlstm", "rnnlab.cells.minlstm:minlstm")
register("rglru", "rnnlab.cells.rglru:rglru")
register("indrnn", "rnnlab.cells.indrnn:indrnn")
register("cornn", "rnnlab.cells.cornn:cornn")
register("lem", "rnnlab.cells.lem:lem")
register("antisymmetric", "rnnlab.cells.antisymmetric:antisymmetric")
register("mgu", "rnnlab.cells.mgu:mgu")
register("orthogonal", "rnnlab.cells.orthogonal:orthogonal")
