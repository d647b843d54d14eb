"""Typed, validated training configuration: shapes and structure, not swept values.

Values that sweeps vary (learning rate, clip threshold, weight decay, momentum, and
every sweepable hyperparameter of the cell, such as a forget bias or an LRU's
``r_max``) have their *defaults* here; at run time they travel as arrays in
``hparams`` (see :meth:`rnnlab.train.Trainer.default_hparams`), so a sweep vmaps
over them without recompiling.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from rnnlab import _checks
from rnnlab.train.divergence import DEFAULT_FACTOR, DEFAULT_PATIENCE

__all__ = [
    "MODELS",
    "OPTIMIZERS",
    "SEQUENCE_READOUTS",
    "SCHEDULES",
    "TrainConfig",
    "add_config_arguments",
    "config_from_arguments",
]

#: Config fields that became cell hyperparameters (``cell_options``).
MOVED_TO_CELL_OPTIONS = ("activation", "recurrent_init", "forget_bias", "recurrent_scale")
OPTIMIZERS = ("sgd", "adam", "rmsprop", "adamw")
#: The largest seed: seeds travel as int32 arrays in vmapped runs and sweeps.
MAX_SEED = 2**31 - 1
SCHEDULES = ("constant", "cosine", "linear")
#: Model families (:data:`rnnlab.train.engine.MODELS`): a recurrent layer and a linear
#: readout, or an encoder-decoder (:mod:`rnnlab.seq2seq`) for sequence-to-sequence tasks.
MODELS = ("recurrent", "encoder_decoder")
#: How a one-prediction-per-sequence readout sees the recurrent outputs.
SEQUENCE_READOUTS = ("last", "flatten")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that fixes the compiled program, plus the defaults of ``hparams``.

    Attributes:
      task: a name in :data:`rnnlab.tasks.TASKS`.
      length: the task's sequence length ``T``; ``None`` for the task's default.
      task_options: other keyword arguments of the task factory, e.g.
        ``{"variant": "hochreiter"}`` for the adding problem.
      cell: a name in :func:`rnnlab.cells.available` (``"lstm"``, ``"gru"``, ``"rnn"``,
        ``"lru"``, ... or a user's registered cell).
      cell_options: the cell factory's keyword hyperparameters, e.g.
        ``{"forget_bias": 2.0}`` or ``{"activation": "relu"}``.  Those the registry
        marks sweepable (float defaults) become traced ``hparams``; the rest fix the
        program.
      hidden_size: ``H``.
      num_layers: recurrent layers stacked with :func:`rnnlab.layers.stacked`.
      bidirectional: every layer is :func:`rnnlab.layers.bidirectional` (forward and
        backward cells of ``hidden_size`` each, concatenated).  Only for tasks with
        readout ``"last"``: a per-step prediction would see its own future.
      model: ``"recurrent"`` (the layer(s) and a linear readout) or
        ``"encoder_decoder"`` (:func:`rnnlab.seq2seq.encoder_decoder` with ``cell`` in
        both encoder directions and the decoder, for tasks that declare
        ``extras["bos"]``, e.g. ``"translation"``).
      attention: the encoder-decoder's additive attention (Bahdanau et al. 2015);
        ``False`` gives it a fixed context.  Only for ``model="encoder_decoder"``.
      sequence_readout: for tasks with readout ``"last"``: ``"last"`` reads the last
        valid step (a bidirectional layer's backward half at step 0), ``"flatten"``
        every step's outputs concatenated (``[T * H]``, padded steps zero), as the
        MNIST-1D README's GRU does.
      patience: early stopping: freeze the params (as after a divergence) once the
        validation loss has not improved for this many evaluations; ``None`` trains
        all ``steps``.  The best-validation params are kept either way.  Needs a task
        with a validation split.
      optimizer: ``"sgd"`` (with momentum), ``"adam"``, ``"rmsprop"`` or ``"adamw"``.
      schedule: learning-rate decay over ``steps``: ``"constant"``, ``"cosine"`` or
        ``"linear"`` (to zero), after ``warmup_steps`` of linear warm-up.
      batch_size, steps: minibatch size and number of optimizer steps.
      chunk_steps: steps per compiled ``lax.scan`` chunk; also the evaluation,
        logging and checkpoint interval.  Must divide ``steps``.
      eval_batch_size: fresh sequences per evaluation of a synthetic task (data
        sets evaluate on their held-out split).
      learning_rate, clip_norm, weight_decay, momentum: defaults of the optimizer's
        swept ``hparams``.  ``clip_norm=None`` turns
        clipping off (``inf`` in ``hparams``); ``momentum=None`` means 0.9 for SGD
        and 0 otherwise.  ``weight_decay`` is decoupled for AdamW and an L2 term
        for the others.
      seed: the run's PRNG seed, in ``[0, 2**31 - 1]``.
      divergence_loss_factor, divergence_patience: the explosion criterion of
        :func:`rnnlab.train.divergence.explosion_step`: a run has diverged once its
        chunk-mean training loss exceeds ``divergence_loss_factor`` times the task's
        baseline loss for ``divergence_patience`` consecutive chunks (``None`` turns the
        criterion off; non-finite losses always count as divergence).
      inject_nan_at_step: test hook: the loss (and so every gradient) becomes NaN
        at this step, to exercise divergence handling.  ``None`` in real runs.
      gradient: how the gradient is computed (:func:`rnnlab.gradients.parse_estimator`):
        ``"bptt"`` (default: BPTT through :func:`rnnlab.unroll`), ``"tbptt:K"`` or
        ``"tbptt:K1:K2"`` (truncated BPTT, Williams & Peng 1990), ``"rtrl"``,
        ``"uoro"``, ``"snap1"`` or ``"diagonal_rtrl"`` (cells that declare a
        ``LinearRecurrence`` with ``units``).  Estimators other than BPTT need
        ``num_layers=1``; ``rtrl`` refuses models whose sensitivity is too large.
      stateful: carry the recurrent state across consecutive chunks of the task's long
        streams (:attr:`rnnlab.tasks.Task.stream`, e.g. ``char_lm``): each step reads the
        next ``length`` characters of ``batch_size`` streams, the carry resets only at
        document boundaries, and the gradient is truncated at chunk boundaries
        (``gradient`` within a chunk, e.g. ``"tbptt:50"``).
      pascanu_alpha: strength alpha of Pascanu et al. 2013's regularizer Omega, added as
        ``alpha grad Omega`` to the gradient before clipping (the authors' constant-error
        form; their temporal-order runs used alpha = 2).  ``0`` (default) leaves it out;
        ``> 0`` compiles it in, with alpha a traced ``hparams`` entry.
    """

    task: str = "adding"
    length: int | None = None
    task_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    cell: str = "lstm"
    cell_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    hidden_size: int = 64
    num_layers: int = 1
    bidirectional: bool = False
    model: str = "recurrent"
    attention: bool = True
    sequence_readout: str = "last"
    patience: int | None = None
    optimizer: str = "adam"
    schedule: str = "constant"
    warmup_steps: int = 0
    batch_size: int = 50
    steps: int = 3000
    chunk_steps: int = 100
    eval_batch_size: int = 1000
    learning_rate: float = 3e-3
    clip_norm: float | None = 1.0
    weight_decay: float = 0.0
    momentum: float | None = None
    seed: int = 0
    divergence_loss_factor: float | None = DEFAULT_FACTOR
    divergence_patience: int = DEFAULT_PATIENCE
    inject_nan_at_step: int | None = None
    gradient: str = "bptt"
    stateful: bool = False
    pascanu_alpha: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "task_options", dict(self.task_options))
        object.__setattr__(self, "cell_options", dict(self.cell_options))
        _checks.choice("task", self.task, _task_names())
        _checks.choice("optimizer", self.optimizer, OPTIMIZERS)
        _checks.choice("schedule", self.schedule, SCHEDULES)
        for name in ("hidden_size", "num_layers", "batch_size", "steps", "chunk_steps"):
            _checks.positive_int(name, getattr(self, name))
        _checks.positive_int("eval_batch_size", self.eval_batch_size)
        if self.length is not None:
            _checks.positive_int("length", self.length)
        _checks.integer("warmup_steps", self.warmup_steps, minimum=0)
        # jax.random.key takes any int64, but seeds travel as int32 arrays (train_seeds,
        # sweeps), where larger ones would wrap around and collide.
        _checks.integer("seed", self.seed, minimum=0, maximum=MAX_SEED)
        if self.steps % self.chunk_steps:
            divisor = max(d for d in range(1, self.chunk_steps + 1) if self.steps % d == 0)
            raise _checks.ArgumentError(
                "chunk_steps",
                f"chunk_steps={self.chunk_steps} must divide steps={self.steps}; "
                f"e.g. chunk_steps={divisor}",
            )
        if self.warmup_steps > self.steps:
            raise _checks.ArgumentError(
                "warmup_steps",
                f"warmup_steps={self.warmup_steps} exceeds steps={self.steps}; "
                "lower warmup_steps or raise steps",
            )
        _checks.number("learning_rate", self.learning_rate, minimum=0, strict_minimum=True)
        if self.clip_norm is not None:
            _checks.number("clip_norm", self.clip_norm, minimum=0, strict_minimum=True)
        _checks.number("weight_decay", self.weight_decay, minimum=0)
        if self.momentum is not None:
            _checks.number("momentum", self.momentum, minimum=0, maximum=1, strict_maximum=True)
        if self.divergence_loss_factor is not None:
            _checks.number(
                "divergence_loss_factor",
                self.divergence_loss_factor,
                minimum=1,
                strict_minimum=True,
            )
        _checks.positive_int("divergence_patience", self.divergence_patience)
        if self.inject_nan_at_step is not None:
            _checks.integer("inject_nan_at_step", self.inject_nan_at_step, minimum=0)
        self._check_cell()
        self._check_model()
        self._check_gradient()

    def _check_model(self) -> None:
        """The model family and its options fit together (task-dependent checks are in
        :func:`rnnlab.train.engine.make_train`)."""
        _checks.choice("model", self.model, MODELS)
        _checks.choice("sequence_readout", self.sequence_readout, SEQUENCE_READOUTS)
        for name in ("bidirectional", "attention"):
            if not isinstance(getattr(self, name), bool):
                raise _checks.ArgumentError(
                    name, f"{name} must be True or False, got {getattr(self, name)!r}"
                )
        if self.patience is not None:
            _checks.positive_int("patience", self.patience)
        if self.model == "encoder_decoder":
            fixed = {"num_layers": 1, "bidirectional": False, "sequence_readout": "last"}
            for name, value in fixed.items():
                if getattr(self, name) != value:
                    raise _checks.ArgumentError(
                        name,
                        f"model='encoder_decoder' has a bidirectional one-layer encoder and a "
                        f"one-layer decoder; {name}={getattr(self, name)!r} must be {value!r}",
                    )
        elif not self.attention:
            raise _checks.ArgumentError(
                "attention", "attention=False applies to model='encoder_decoder' only"
            )

    def _check_gradient(self) -> None:
        """The estimator's name, the options it needs, and that it applies to the cell;
        what depends on the task (its T, the model's size) is checked by ``make_train``."""
        from rnnlab import gradients

        try:
            spec = gradients.parse_estimator(self.gradient, length=self.length)
        except ValueError as error:
            raise _checks.ArgumentError(
                "gradient", f"gradient={self.gradient!r}: {error}"
            ) from None
        if not isinstance(self.stateful, bool):
            raise _checks.ArgumentError(
                "stateful", f"stateful must be True or False, got {self.stateful!r}"
            )
        _checks.number("pascanu_alpha", self.pascanu_alpha, minimum=0)
        needs_one_cell = [
            name
            for name, used in (
                (f"gradient={self.gradient!r}", spec.name != "bptt"),
                ("stateful=True", self.stateful),
                (f"pascanu_alpha={self.pascanu_alpha}", self.pascanu_alpha > 0),
            )
            if used
        ]
        if needs_one_cell and self.num_layers != 1:
            raise _checks.ArgumentError(
                "num_layers",
                f"{' and '.join(needs_one_cell)} need(s) num_layers=1 (one recurrent cell), "
                f"got num_layers={self.num_layers}",
            )
        if spec.name != "bptt":
            cell = self.cell_spec.make(self.hidden_size, **self.cell_options)
            try:
                gradients.make_estimator(spec, cell, lambda params, y, data: 0.0)
            except ValueError as error:
                raise _checks.ArgumentError(
                    "gradient", f"gradient={self.gradient!r}: {error}"
                ) from None

    def _check_cell(self) -> None:
        """The cell exists, takes these options, and builds (bad values fail here)."""
        from rnnlab import cells

        try:
            spec = cells.spec(self.cell)
        except ValueError as error:
            raise _checks.ArgumentError("cell", str(error)) from None
        if "hidden_size" in self.cell_options:
            raise _checks.ArgumentError(
                "cell_options['hidden_size']",
                "cell_options must not hold hidden_size; set TrainConfig.hidden_size",
            )
        try:
            spec.check_hyperparameters(self.cell_options)
        except ValueError as error:
            raise _checks.ArgumentError("cell_options", str(error)) from None
        for name in spec.sweepable:
            if name in self.cell_options:
                _checks.number(f"cell_options[{name!r}]", self.cell_options[name])
        try:
            spec.make(self.hidden_size, **self.cell_options)
        except ValueError as error:
            named = [k for k in self.cell_options if str(error).startswith(k)]
            if named:
                raise _checks.ArgumentError(
                    f"cell_options[{named[0]!r}]", f"{error} (cell {self.cell!r})"
                ) from None
            raise _checks.ArgumentError(
                "cell_options", f"cell {self.cell!r} with cell_options={self.cell_options}: {error}"
            ) from None

    @property
    def cell_spec(self):
        """The registry entry (:class:`rnnlab.cells.CellSpec`) of ``cell``."""
        from rnnlab import cells

        return cells.spec(self.cell)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Builds a config from a dict (e.g. ``config.json``); unknown names are errors.

        Raises:
          ValueError: naming the unknown field and the closest known one.
        """
        known = [field.name for field in dataclasses.fields(cls)]
        for name in values:
            if name in MOVED_TO_CELL_OPTIONS:
                raise _checks.ArgumentError(
                    name,
                    f"config field {name!r} moved into cell_options: use "
                    f"cell_options={{{name!r}: {values[name]!r}}} (--cell-option "
                    f"{name}={values[name]})",
                )
            if name not in known:
                raise _checks.ArgumentError(
                    name, f"unknown config field {name!r}{_checks.did_you_mean(name, known)}"
                )
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> TrainConfig:
        """A copy with ``changes`` applied (validated, unknown names rejected)."""
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    @property
    def num_chunks(self) -> int:
        return self.steps // self.chunk_steps

    @property
    def resolved_momentum(self) -> float:
        if self.momentum is not None:
            return self.momentum
        return 0.9 if self.optimizer == "sgd" else 0.0


def _task_names() -> tuple[str, ...]:
    from rnnlab.tasks import TASKS

    return tuple(TASKS)


def task_name(text: str) -> str:
    """``--task``'s type: a known task, or a parser error with the closest name."""
    names = _task_names()
    if text not in names:
        raise argparse.ArgumentTypeError(
            f"unknown task {text!r}{_checks.did_you_mean(text, names)}; "
            f"use one of {', '.join(names)}"
        )
    return text


def _parse_optional(kind):
    def parse(text: str):
        return None if text.lower() in ("none", "off") else kind(text)

    parse.__name__ = f"{kind.__name__} or none"
    return parse


def parse_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as JSON when possible (``8``, ``true``), else a string."""
    if "=" not in text or not text.split("=", 1)[0]:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


class _Moved(argparse.Action):
    """A removed flag: fail with the spelling that replaces it."""

    def __init__(self, option_strings, dest, replacement, **kwargs):
        self.replacement = replacement
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string}: was replaced; use {self.replacement.format(values)}")


_ARGUMENT_TYPES = {
    "int": int,
    "float": float,
    "str": str,
    "int | None": _parse_optional(int),
    "float | None": _parse_optional(float),
    "str | None": _parse_optional(str),
}


def add_config_arguments(parser: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> None:
    """Adds one ``--flag`` per :class:`TrainConfig` field (defaults from the dataclass).

    ``task_options`` and ``cell_options`` become repeatable ``--task-option KEY=VALUE``
    and ``--cell-option KEY=VALUE``; ``--cell`` takes any registered cell name.
    """
    options = {
        "task_options": ("--task-option", "task factory option, e.g. variant=hochreiter"),
        "cell_options": ("--cell-option", "cell hyperparameter, e.g. forget_bias=2"),
    }
    for field in dataclasses.fields(TrainConfig):
        if field.name in exclude:
            continue
        if field.name in options:
            flag, example = options[field.name]
            parser.add_argument(
                flag,
                dest=field.name,
                type=parse_option,
                action="append",
                default=[],
                metavar="KEY=VALUE",
                help=f"{example} (repeatable)",
            )
            continue
        flag = "--" + field.name.replace("_", "-")
        if field.type == "bool":
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=field.default,
                help=f"default {field.default}",
            )  # fmt: skip
            continue
        kind = task_name if field.name == "task" else _ARGUMENT_TYPES[field.type]
        choices = {
            "optimizer": OPTIMIZERS, "schedule": SCHEDULES, "model": MODELS,
            "sequence_readout": SEQUENCE_READOUTS,
        }.get(field.name)  # fmt: skip
        help_text = f"default {field.default}"
        if field.name == "cell":
            help_text = (
                "a registered cell: " + ", ".join(_cell_names()) + f" (default {field.default})"
            )
        elif field.name == "task":
            help_text = ", ".join(_task_names()) + f" (default {field.default})"
        elif field.name == "divergence_loss_factor":
            help_text = (
                "stop as diverged when the chunk-mean training loss exceeds this times the "
                f"task's baseline loss ('none': only NaN/inf; default {field.default})"
            )
        elif field.name == "divergence_patience":
            help_text = f"... for this many consecutive chunks (default {field.default})"
        parser.add_argument(flag, type=kind, default=field.default, choices=choices, help=help_text)
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a Python module first, e.g. one that registers your own cell (repeatable)",
    )
    if "cell_options" not in exclude:
        for name in MOVED_TO_CELL_OPTIONS:
            parser.add_argument(
                "--" + name.replace("_", "-"),
                action=_Moved,
                replacement=f"--cell-option {name}={{}}",
            )


def import_modules(names) -> None:
    """Imports each module name (the working directory on the path), for ``--import``.

    Raises:
      ValueError: naming ``--import`` and the module that failed to import.
    """
    import importlib
    import os
    import sys

    if names and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise ValueError(f"--import {name}: {error}") from None


def _cell_names() -> tuple[str, ...]:
    from rnnlab import cells

    return cells.available()


def config_from_arguments(arguments: argparse.Namespace, **overrides) -> TrainConfig:
    """The :class:`TrainConfig` of parsed :func:`add_config_arguments` flags.

    Imports the ``--import`` modules first (from the working directory too), so a cell
    they register is known by name.
    """
    import_modules(getattr(arguments, "imports", ()))
    values = {
        field.name: getattr(arguments, field.name)
        for field in dataclasses.fields(TrainConfig)
        if hasattr(arguments, field.name)
    }
    values["task_options"] = dict(values.get("task_options") or [])
    values["cell_options"] = dict(values.get("cell_options") or [])
    values.update(overrides)
    return TrainConfig.from_dict(values)
