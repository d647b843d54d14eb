"""Training: typed config, the compiled engine (``make_train``) and the resumable runner."""

from rnnlab.train.config import TrainConfig
from rnnlab.train.engine import (
    HPARAM_NAMES,
    Model,
    Trainer,
    TrainState,
    make_model,
    make_train,
)
from rnnlab.train.runner import RunResult, restore_state, run, train_seeds

__all__ = [
    "HPARAM_NAMES",
    "Model",
    "RunResult",
    "TrainConfig",
    "TrainState",
    "Trainer",
    "make_model",
    "make_train",
    "restore_state",
    "run",
    "train_seeds",
]
