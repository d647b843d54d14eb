"""When has a run diverged?  Non-finite values, or a loss that exploded while staying finite.

The engine freezes a run at its first non-finite loss or gradient norm
(``TrainState.diverged_step``).  A run can also blow up without ever producing a NaN:
with a learning rate of 1e6 and no clipping the adding problem's loss climbs to 1e12
against a baseline of 0.167.  The *explosion criterion* catches that, from the per-chunk
records alone, so the runner applies it at chunk boundaries and a sweep applies the
same rule to finished histories:

    a run has exploded at the end of chunk ``i`` when the chunk-mean training loss
    exceeded ``factor * baseline`` in chunks ``i - patience + 1, ..., i``,

where ``baseline`` is the task's trivial-predictor loss (``Task.baseline_loss``:
the variance of the target for a regression, the entropy of the label prior for a
classification).  A model worse than ``factor`` (default 1000) times the trivial
predictor has left the region where training makes progress.  Non-finite losses count
as above the bound.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["DEFAULT_FACTOR", "DEFAULT_PATIENCE", "explosion_step", "loss_bound"]

#: Defaults of ``TrainConfig.divergence_loss_factor`` and ``divergence_patience``.  At
#: initialization our tasks' losses lie within 13x their baselines (copying: 12.6x,
#: adding: 6.7x, the classifications about 1x), far below 1000x.
DEFAULT_FACTOR = 1000.0
DEFAULT_PATIENCE = 1


def loss_bound(baseline: float | None, factor: float | None) -> float | None:
    """``factor * baseline``, or ``None`` when the criterion is off or has no baseline."""
    if factor is None or baseline is None:
        return None
    baseline = float(baseline)
    if not math.isfinite(baseline) or baseline <= 0:
        return None
    return float(factor) * baseline


def explosion_step(
    steps: Sequence[int],
    losses: Sequence[float],
    baseline: float | None,
    factor: float | None,
    patience: int = 1,
) -> int | None:
    """The step at which the explosion criterion first holds, or ``None``.

    Args:
      steps: ``[E]`` the step at the end of each chunk.
      losses: ``[E]`` the chunk-mean training loss.
      baseline: the task's baseline loss; ``None`` or a non-positive value disables
        the criterion.
      factor: the multiple of ``baseline`` that counts as exploded; ``None`` disables it.
      patience: how many consecutive chunks must exceed the bound.

    Returns:
      ``steps[i]`` for the first ``i`` that ends a run of ``patience`` chunks above
      ``factor * baseline``.
    """
    bound = loss_bound(baseline, factor)
    if bound is None:
        return None
    losses = np.asarray(losses, np.float64)
    above = ~(losses <= bound)  # NaN counts as above
    run = 0
    for index, flag in enumerate(above):
        run = run + 1 if flag else 0
        if run >= patience:
            return int(np.asarray(steps)[index])
    return None
