"""Hyperparameter sweeps: search spaces, vmapped sharded execution, results and analysis.

- :mod:`rnnlab.sweep.space`: dimensions (``choice``, ``loguniform``, ``uniform``,
  ``loggrid``, ``seeds``), ``product`` / union spaces, stable ids, CLI specs.
- :mod:`rnnlab.sweep.execute`: grouping by static shape, ``jit(vmap(train))`` on a
  ``NamedSharding`` mesh, loop and process-per-core strategies.
- :mod:`rnnlab.sweep.run`: :func:`run_sweep` (automatic strategy, chunks, resume)
  and :func:`compare_strategies` (interleaved vmap / loop / processes timing).
- :mod:`rnnlab.sweep.engine`: :class:`TrainerBuilder`, the builder of :mod:`rnnlab.train`.
- :mod:`rnnlab.sweep.results`: result rows, CSV/JSONL/summary files.
- :mod:`rnnlab.sweep.analysis`: marginals, heatmap tables, main-effect importance.
"""

from rnnlab.sweep.analysis import heatmap_table, importance, marginal, metric_values
from rnnlab.sweep.engine import TrainerBuilder
from rnnlab.sweep.execute import (
    STRATEGIES,
    Builder,
    Group,
    GroupExecutor,
    ProcessPool,
    Trainable,
    config_mesh,
    group_configs,
)
from rnnlab.sweep.results import load_rows, make_row, steps_to_threshold
from rnnlab.sweep.run import SweepResult, compare_strategies, run_sweep
from rnnlab.sweep.space import (
    Dimension,
    Space,
    choice,
    config_id,
    configurations,
    loggrid,
    loguniform,
    parse_seeds,
    parse_spec,
    product,
    seeds,
    uniform,
)

__all__ = [
    "STRATEGIES",
    "Builder",
    "Dimension",
    "Group",
    "GroupExecutor",
    "ProcessPool",
    "Space",
    "SweepResult",
    "Trainable",
    "TrainerBuilder",
    "choice",
    "compare_strategies",
    "config_id",
    "config_mesh",
    "configurations",
    "group_configs",
    "heatmap_table",
    "importance",
    "load_rows",
    "loggrid",
    "loguniform",
    "make_row",
    "marginal",
    "metric_values",
    "parse_seeds",
    "parse_spec",
    "product",
    "run_sweep",
    "seeds",
    "steps_to_threshold",
    "uniform",
]
