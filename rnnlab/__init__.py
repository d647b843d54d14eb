"""rnnlab: pure-functional recurrent networks in JAX, for studying how RNNs learn.

Map of the package:

- :mod:`rnnlab.cells`: ``rnn``, ``lstm``, ``gru`` factories returning a ``Cell``.
- :func:`rnnlab.unroll`: ``lax.scan`` over time with lengths, reverse, resets, remat.
- :mod:`rnnlab.layers`: ``recurrent``, ``bidirectional`` and ``stacked`` layers.
- :mod:`rnnlab.initializers`: named weight initializers.
"""

from rnnlab import cells, initializers, layers
from rnnlab.cells import Cell, LSTMCarry, gru, lstm, rnn
from rnnlab.layers import Layer, bidirectional, recurrent, stacked
from rnnlab.unroll import unroll

__version__ = "0.1.0"

__all__ = [
    "Cell",
    "LSTMCarry",
    "Layer",
    "bidirectional",
    "cells",
    "gru",
    "initializers",
    "layers",
    "lstm",
    "recurrent",
    "rnn",
    "stacked",
    "unroll",
]
