"""rnnlab: pure-functional recurrent networks in JAX, for studying how RNNs learn.

Map of the package:

- :mod:`rnnlab.cells`: the cell registry (``register``, ``make``, ``available``) and one
  file per cell; ``rnn``, ``lstm``, ``gru`` are also here at the top level.
- :func:`rnnlab.unroll` (:mod:`rnnlab.unrolling`): a cell over time with lengths,
  reverse, resets, remat, on a sequential, fused or parallel path.
- :mod:`rnnlab.fused`: the cuDNN-style fused backward (``path="fused"``).
- :mod:`rnnlab.parallel`: associative scans of linear recurrences (``path="parallel"``).
- :mod:`rnnlab.runtime`: ``tune_allocator()``, glibc settings that stop XLA's page faults.
- :mod:`rnnlab.layers`: ``recurrent``, ``bidirectional`` and ``stacked`` layers.
- :mod:`rnnlab.initializers`: named weight initializers.
- :mod:`rnnlab.diagnostics`: per-step gradient norms, Jacobian norms, spectra, Pascanu bounds.
- :mod:`rnnlab.dynamics`: Lyapunov spectra (QR method), the max exponent, gradient flossing,
  loss-Hessian top eigenvalues (Lanczos).
- :mod:`rnnlab.gradients`: gradient estimators (BPTT, truncated BPTT with carried state,
  RTRL, UORO, SnAp-1, diagonal RTRL), Pascanu's regularizer, comparisons against BPTT.
- :mod:`rnnlab.tasks`: long-range synthetic tasks and real data shipped in packages.
- :mod:`rnnlab.train`: ``make_train(config)`` (one compiled loop) and the resumable runner.
- :mod:`rnnlab.sweep`: search spaces, vmapped/sharded sweeps, results and importance analysis.
- :mod:`rnnlab.nn`: Flax NNX modules over the pure cells and layers.
- :mod:`rnnlab.seq2seq`: an encoder-decoder with additive attention (Bahdanau et al. 2015).
- :mod:`rnnlab.interop`: weights to and from ``torch.nn`` and ``flax`` cells.
- :mod:`rnnlab.runs`: load a run, evaluate or sample its checkpoint, compare runs.

Submodules other than ``cells``, ``layers`` and ``unrolling`` load on first use.
"""

import importlib

from rnnlab import cells, layers, unrolling
from rnnlab.cells import Cell, LSTMCarry
from rnnlab.cells._gru import gru
from rnnlab.cells._lstm import lstm
from rnnlab.cells._rnn import rnn
from rnnlab.layers import Layer, bidirectional, recurrent, stacked
from rnnlab.unrolling import unroll

#: Submodules imported on first attribute access, so ``import rnnlab`` costs little more
#: than ``import jax`` (flax, optax, orbax, matplotlib and torch load only when used).
_LAZY = (
    "bench",
    "diagnostics",
    "dynamics",
    "fused",
    "gradients",
    "initializers",
    "interop",
    "io",
    "nn",
    "parallel",
    "plots",
    "progress",
    "runs",
    "runtime",
    "seq2seq",
    "sweep",
    "tasks",
    "train",
)


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f"rnnlab.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'rnnlab' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *_LAZY})


__version__ = "0.1.0"

__all__ = [
    "Cell",
    "LSTMCarry",
    "Layer",
    "bidirectional",
    "cells",
    "diagnostics",
    "dynamics",
    "fused",
    "gradients",
    "gru",
    "initializers",
    "interop",
    "io",
    "layers",
    "lstm",
    "nn",
    "parallel",
    "plots",
    "progress",
    "recurrent",
    "rnn",
    "runs",
    "runtime",
    "seq2seq",
    "stacked",
    "sweep",
    "tasks",
    "train",
    "unroll",
    "unrolling",
]
