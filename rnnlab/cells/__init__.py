"""Recurrent cells: factories returning a :class:`Cell` of pure functions.

A new cell is one file here that builds a :class:`Cell`; unrolling,
bidirectionality, stacking, diagnostics and sweeps then work unchanged.
"""

from rnnlab.cells._base import Cell
from rnnlab.cells.gru import gru
from rnnlab.cells.lstm import LSTMCarry, lstm
from rnnlab.cells.rnn import rnn

__all__ = ["Cell", "LSTMCarry", "gru", "lstm", "rnn"]
