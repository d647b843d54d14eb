"""The :class:`~rnnlab.sweep.execute.Builder` of rnnlab's training engine (:mod:`rnnlab.train`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from rnnlab.sweep.execute import Trainable
from rnnlab.train import HPARAM_NAMES, TrainConfig, make_train

__all__ = ["TrainerBuilder"]


@dataclasses.dataclass(frozen=True)
class TrainerBuilder:
    """Builds ``make_train(TrainConfig(**base, **static))`` for a sweep group.

    Configuration keys in :data:`rnnlab.train.HPARAM_NAMES` (learning rate, clip
    norm, recurrent scale, forget bias, weight decay, momentum) are traced and
    vmapped; ``seed`` becomes the run's PRNG key; every other key must be a
    :class:`~rnnlab.train.TrainConfig` field and selects the compiled program.

    Attributes:
      base: fixed :class:`~rnnlab.train.TrainConfig` fields shared by the sweep
        (a swept key overrides it).
    """

    base: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    dynamic_names: tuple[str, ...] = HPARAM_NAMES

    def config(self, static: Mapping[str, Any]) -> TrainConfig:
        """The validated config of a group (unknown names raise ``ValueError``)."""
        return TrainConfig.from_dict({**self.base, **static})

    def __call__(self, static: Mapping[str, Any]) -> Trainable:
        trainer = make_train(self.config(static))
        return Trainable(trainer.train, trainer.default_hparams(), trainer.config.steps)

    def baseline_loss(self, config: Mapping[str, Any]) -> float:
        """The task's trivial-predictor loss for ``config`` (for steps-to-threshold)."""
        static = {k: v for k, v in config.items() if k not in (*self.dynamic_names, "id", "seed")}
        return float(make_train(self.config(static)).task.baseline_loss)
