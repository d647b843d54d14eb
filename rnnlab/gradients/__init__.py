r"""Gradient estimators for recurrent networks, beyond backpropagation through time.

Every estimator works for any :class:`rnnlab.cells.Cell`, is a pair of pure functions
(``init``, ``update``) usable inside ``jit``, ``vmap`` and ``scan``, and carries the
recurrent state across consecutive chunks of a long stream, with resets at document
boundaries::

    estimator = gradients.make_estimator("tbptt:50", cell, step_loss)
    state = estimator.init(params, batch_shape=(B,))
    for chunk in stream:                       # Chunk(inputs [B, T, F], data, resets)
        loss, grads, state = estimator.update(params, state, chunk)

``params`` is ``{"cell": ..., "readout": ...}`` and ``step_loss(params, y_t, data_t)``
the loss of one example at one step (see :mod:`rnnlab.gradients._base`).

- :func:`bptt`: the reference, exact within each chunk.
- :func:`tbptt`: TBPTT(k1, k2) of Williams & Peng 1990.
- :func:`rtrl`: exact forward sensitivities (O(S P) memory), equal to BPTT.
- :func:`uoro`: Tallec & Ollivier 2017's unbiased rank-one estimate.
- :func:`snap1`: Menick et al. 2020's one-step sparse sensitivities.
- :func:`diagonal_rtrl`: exact RTRL for element-wise linear recurrences (Zucchet et al.
  2023): the cells that declare ``linear=rnnlab.cells.LinearRecurrence(..., units=...)``
  (LRU, minGRU, minLSTM, RG-LRU).
- :func:`make_estimator` / :func:`parse_estimator`: estimators by name (``"tbptt:50"``).
- :func:`pascanu_regularizer`: Pascanu et al. 2013's Omega, for any cell.
- :func:`compare_gradients`, :func:`gradient_similarity`, :func:`estimator_costs`: an
  estimator's gradient against BPTT's, and its time and memory per step.
"""

from rnnlab.gradients._base import Chunk, Estimator, EstimatorState
from rnnlab.gradients._uoro import uoro
from rnnlab.gradients.compare import compare_gradients, estimator_costs, gradient_similarity
from rnnlab.gradients.diagonal import diagonal_rtrl
from rnnlab.gradients.forward import RTRL_MAX_SENSITIVITY_SIZE, rtrl
from rnnlab.gradients.regularizer import PASCANU_BOUND, pascanu_regularizer
from rnnlab.gradients.snap import dense_units, snap1
from rnnlab.gradients.spec import ESTIMATORS, EstimatorSpec, make_estimator, parse_estimator
from rnnlab.gradients.truncated import bptt, tbptt

__all__ = [
    "ESTIMATORS",
    "PASCANU_BOUND",
    "RTRL_MAX_SENSITIVITY_SIZE",
    "Chunk",
    "Estimator",
    "EstimatorSpec",
    "EstimatorState",
    "bptt",
    "compare_gradients",
    "dense_units",
    "diagonal_rtrl",
    "estimator_costs",
    "gradient_similarity",
    "make_estimator",
    "parse_estimator",
    "pascanu_regularizer",
    "rtrl",
    "snap1",
    "tbptt",
    "uoro",
]
