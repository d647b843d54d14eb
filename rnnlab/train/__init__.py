"""Training: typed config, the compiled engine (``make_train``) and the resumable runner."""

from rnnlab.train.config import TrainConfig
from rnnlab.train.engine import (
    OPTIMIZER_HPARAMS,
    Model,
    Trainer,
    TrainState,
    make_model,
    make_train,
)
from rnnlab.train.runner import RunResult, restore_state, run, train_seeds

__all__ = [
    "OPTIMIZER_HPARAMS",
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
