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

Every submodule and top-level name loads on first use.
"""

import importlib

#: Everything loads on first use, so ``import rnnlab`` (and ``from rnnlab import cli`` in a
#: script's ``--help``) imports no JAX; ``rnnlab.unroll`` or ``rnnlab.cells`` then load
#: what they need (flax, optax, orbax, matplotlib and torch only where used).
_LAZY = (
    "bench",
    "cells",
    "diagnostics",
    "dynamics",
    "fused",
    "gradients",
    "initializers",
    "interop",
    "io",
    "layers",
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
    "unrolling",
)

#: Top-level names and the module that defines each.
_ATTRIBUTES = {
    "Cell": "rnnlab.cells",
    "LSTMCarry": "rnnlab.cells",
    "gru": "rnnlab.cells._gru",
    "lstm": "rnnlab.cells._lstm",
    "rnn": "rnnlab.cells._rnn",
    "Layer": "rnnlab.layers",
    "bidirectional": "rnnlab.layers",
    "recurrent": "rnnlab.layers",
    "stacked": "rnnlab.layers",
    "unroll": "rnnlab.unrolling",
}


def __getattr__(name: str):
    if name in _ATTRIBUTES:
        value = getattr(importlib.import_module(_ATTRIBUTES[name]), name)
    elif name in _LAZY:
        value = importlib.import_module(f"rnnlab.{name}")
    else:
        raise AttributeError(f"module 'rnnlab' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *_LAZY, *_ATTRIBUTES})


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
