"""Training: typed config, the compiled engine (``make_train``) and the resumable runner.

:mod:`rnnlab.train.compare` trains and compares models on one task (the application
studies); :mod:`rnnlab.train.sizing` counts parameters and matches them across cells.
"""

from rnnlab.train.config import TrainConfig
from rnnlab.train.engine import (
    OPTIMIZER_HPARAMS,
    Model,
    Trainer,
    TrainState,
    make_model,
    make_train,
)
from rnnlab.train.runner import RunResult, restore_state, run, train_grid, train_seeds
from rnnlab.train.sizing import matched_hidden_size, parameter_count

__all__ = [
    "OPTIMIZER_HPARAMS",
    "Model",
    "RunResult",
    "TrainConfig",
    "TrainState",
    "Trainer",
    "make_model",
    "make_train",
    "matched_hidden_size",
    "parameter_count",
    "restore_state",
    "run",
    "train_grid",
    "train_seeds",
]
