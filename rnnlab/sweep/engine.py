"""The :class:`~rnnlab.sweep.execute.Builder` of rnnlab's training engine (:mod:`rnnlab.train`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from rnnlab.sweep.execute import RESERVED, Trainable
from rnnlab.train import OPTIMIZER_HPARAMS, TrainConfig, make_train

__all__ = ["TrainerBuilder"]

_FIELDS = frozenset(field.name for field in dataclasses.fields(TrainConfig))


def _user_registrations() -> tuple:
    from rnnlab.cells._registry import user_registrations

    return user_registrations()


@dataclasses.dataclass(frozen=True)
class TrainerBuilder:
    """Builds ``make_train(TrainConfig(**base, **static))`` for a sweep group.

    A configuration's keys are read against its cell (``config["cell"]`` or
    ``base["cell"]``): the optimizer's :data:`rnnlab.train.OPTIMIZER_HPARAMS` and the
    cell's sweepable hyperparameters (its registry entry's ``sweepable``, e.g.
    ``forget_bias``, ``recurrent_scale``, ``r_max``) are traced and vmapped; ``seed``
    becomes the run's PRNG key; :class:`~rnnlab.train.TrainConfig` fields and the
    cell's other hyperparameters (merged into ``cell_options``, e.g. ``activation``)
    select the compiled program.  Any other key is an error naming the cell.

    Attributes:
      base: fixed :class:`~rnnlab.train.TrainConfig` fields shared by the sweep
        (a swept key overrides it).
    """

    base: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: The user's cell registrations at construction, re-made in sweep worker processes.
    registrations: tuple = dataclasses.field(default_factory=_user_registrations)

    def __post_init__(self):
        from rnnlab.cells._registry import ensure_registered

        ensure_registered(self.registrations)

    def __setstate__(self, state):
        from rnnlab.cells._registry import ensure_registered

        self.__dict__.update(state)
        ensure_registered(self.registrations)

    def static_part(self, config: Mapping[str, Any]) -> dict:
        """The keys of ``config`` that fix the program, with cell options merged.

        Raises:
          ValueError: for a key that is neither a config field nor a hyperparameter of
            the configuration's cell, naming what the cell accepts.
        """
        from rnnlab import cells

        cell = config.get("cell", self.base.get("cell", TrainConfig.cell))
        spec = cells.spec(cell)
        traced = set(OPTIMIZER_HPARAMS) | set(spec.sweepable)
        static, cell_options = {}, {}
        for key, value in config.items():
            if key in RESERVED or key in traced:
                continue
            if key in _FIELDS:
                static[key] = value
            elif key in spec.defaults or spec.accepts_any:
                cell_options[key] = value
            else:
                raise ValueError(
                    f"sweep key {key!r} is neither a TrainConfig field nor a hyperparameter of "
                    f"cell {cell!r}{_hint(key, spec)}; the cell accepts {sorted(spec.defaults)}"
                )
        if cell_options:
            merged = {**self.base.get("cell_options", {}), **static.get("cell_options", {})}
            static["cell_options"] = {**merged, **cell_options}
        return static

    def validate(self, config: Mapping[str, Any]) -> TrainConfig:
        """The full :class:`~rnnlab.train.TrainConfig` of one configuration, traced values
        and seed included, so a sweep rejects what ``train.py`` rejects (a learning rate
        <= 0, a clip norm of 0, a NaN forget bias, a negative seed, ...).

        Raises:
          ArgumentError: naming the field (``cell_options['forget_bias']`` for a cell's).
        """
        static = self.static_part(config)
        values = {**self.base, **static}
        spec = TrainConfig.from_dict(values).cell_spec
        options = dict(values.get("cell_options", {}))
        for key, value in config.items():
            if key == "clip_norm" and value == float("inf"):
                values[key] = None  # no clipping, as in TrainConfig
            elif key in OPTIMIZER_HPARAMS or key == "seed":
                values[key] = value
            elif key in spec.sweepable:
                options[key] = value
        return TrainConfig.from_dict({**values, "cell_options": options})

    def config(self, static: Mapping[str, Any]) -> TrainConfig:
        """The validated config of a group (unknown names raise ``ValueError``)."""
        return TrainConfig.from_dict({**self.base, **static})

    def __call__(self, static: Mapping[str, Any]) -> Trainable:
        trainer = make_train(self.config(static))
        return Trainable(trainer.train, trainer.default_hparams(), trainer.config.steps)

    def baseline_loss(self, config: Mapping[str, Any]) -> float:
        """The task's trivial-predictor loss for ``config`` (for steps-to-threshold)."""
        return float(make_train(self.config(self.static_part(config))).task.baseline_loss)


def _hint(key: str, spec) -> str:
    from rnnlab import _checks

    return _checks.did_you_mean(key, [*spec.defaults, *_FIELDS])
