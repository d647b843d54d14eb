"""The cell registry: every place that picks a cell by name reads it here.

A registration records a factory ``factory(hidden_size, *, **hyperparameters) ->
Cell`` under a name, which hyperparameters a sweep may vary (traced arrays), and
optional preset defaults (``"irnn"`` is ``rnn`` with ReLU and identity init).
Factories may be given as ``"module:attribute"`` strings, imported on first use, so
the built-in table costs nothing at import time.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import pickle
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from rnnlab import _checks
from rnnlab.cells._cell import Cell

__all__ = ["CellSpec", "available", "make", "register", "spec"]


@dataclasses.dataclass(frozen=True)
class CellSpec:
    """One registry entry.

    Attributes:
      name: the registry name.
      factory: ``factory(hidden_size, *, **hyperparameters) -> Cell``.
      defaults: every keyword hyperparameter and its default, presets applied.
      sweepable: the hyperparameters that travel as traced arrays in training and
        sweeps (default: those whose default is a float).
      presets: the registration's default overrides, passed to every ``factory`` call.
      accepts_any: the factory takes ``**kwargs``, so unknown names are not errors here.
    """

    name: str
    factory: Callable[..., Cell]
    defaults: Mapping[str, Any]
    sweepable: tuple[str, ...]
    presets: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    accepts_any: bool = False

    @property
    def description(self) -> str:
        doc = inspect.getdoc(self.factory) or ""
        return doc.splitlines()[0] if doc else ""

    def check_hyperparameters(self, hyperparameters: Mapping[str, Any]) -> None:
        """Raises ``ValueError`` naming the cell and what it accepts, for unknown names."""
        if self.accepts_any:
            return
        unknown = [name for name in hyperparameters if name not in self.defaults]
        if unknown:
            hint = _checks.did_you_mean(unknown[0], self.defaults)
            raise ValueError(
                f"cell {self.name!r} takes no hyperparameter {unknown[0]!r}{hint}; it accepts "
                f"{sorted(self.defaults)}"
            )

    def make(self, hidden_size: int, **hyperparameters) -> Cell:
        self.check_hyperparameters(hyperparameters)
        cell = self.factory(hidden_size, **{**self.presets, **hyperparameters})
        if not isinstance(cell, Cell):
            raise ValueError(
                f"the factory registered as {self.name!r} returned "
                f"{type(cell).__name__}, not an rnnlab.cells.Cell"
            )
        return cell


@dataclasses.dataclass
class _Entry:
    factory: Callable[..., Cell] | str
    presets: dict[str, Any]
    sweepable: tuple[str, ...] | None
    also_sweepable: tuple[str, ...]


_REGISTRY: dict[str, _Entry] = {}


def _resolve(factory: Callable[..., Cell] | str) -> Callable[..., Cell]:
    if callable(factory):
        return factory
    module, _, attribute = factory.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _signature_defaults(name: str, factory: Callable) -> tuple[dict[str, Any], bool]:
    """The factory's keyword hyperparameters with their defaults, checking its shape."""
    parameters = list(inspect.signature(factory).parameters.values())
    if not parameters or parameters[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        raise ValueError(
            f"the factory of cell {name!r} must take hidden_size as its first positional "
            "argument: def factory(hidden_size, *, ...)"
        )
    defaults, accepts_any = {}, False
    for parameter in parameters[1:]:
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            accepts_any = True
        elif parameter.kind is not inspect.Parameter.KEYWORD_ONLY:
            raise ValueError(
                f"the factory of cell {name!r} takes {parameter.name!r} positionally; every "
                "hyperparameter after hidden_size must be keyword-only: "
                "def factory(hidden_size, *, ...)"
            )
        elif parameter.default is inspect.Parameter.empty:
            raise ValueError(
                f"the factory of cell {name!r} has no default for {parameter.name!r}; every "
                "hyperparameter needs one, so make(name, hidden_size) builds a cell"
            )
        else:
            defaults[parameter.name] = parameter.default
    return defaults, accepts_any


def _is_float(value) -> bool:
    return isinstance(value, float) and not isinstance(value, bool)


@functools.cache
def _spec(name: str) -> CellSpec:
    entry = _REGISTRY[name]
    factory = _resolve(entry.factory)
    defaults, accepts_any = _signature_defaults(name, factory)
    for key in entry.presets:
        if key not in defaults and not accepts_any:
            raise ValueError(f"preset {key!r} of cell {name!r} is not a factory hyperparameter")
    defaults.update(entry.presets)
    if entry.sweepable is None:
        sweepable = [key for key, value in defaults.items() if _is_float(value)]
    else:
        sweepable = list(entry.sweepable)
    sweepable += [key for key in entry.also_sweepable if key not in sweepable]
    for key in sweepable:
        if key not in defaults:
            raise ValueError(
                f"sweepable hyperparameter {key!r} of cell {name!r} is not a keyword of its "
                f"factory; it accepts {sorted(defaults)}"
            )
    return CellSpec(name, factory, defaults, tuple(sweepable), dict(entry.presets), accepts_any)


def register(
    name: str,
    factory: Callable[..., Cell] | str | None = None,
    *,
    replace: bool = False,
    sweepable: Iterable[str] | None = None,
    also_sweepable: Iterable[str] = (),
    presets: Mapping[str, Any] | None = None,
):
    """Registers a cell factory under ``name``; works as a call or as a decorator.

    Args:
      name: the name used by :func:`make`, ``TrainConfig(cell=...)`` and ``--cell``.
      factory: ``factory(hidden_size, *, **hyperparameters) -> Cell``: ``hidden_size``
        first, every hyperparameter keyword-only with a default; or a
        ``"module:attribute"`` string imported on first use.  Omit it to use
        ``register`` as a decorator.
      replace: allow replacing an existing registration.
      sweepable: the hyperparameters that training and sweeps pass as traced arrays;
        default: those whose default is a float (e.g. ``forget_bias``, ``r_max``).
      also_sweepable: names added to the default set.
      presets: default overrides, e.g. ``register("irnn", rnn, presets=dict(
        activation="relu", recurrent_init="identity"))``.

    Returns:
      The factory (so the decorator leaves the function unchanged).

    Example::

        @rnnlab.cells.register("mine")
        def mine(hidden_size, *, leak=0.5):
            ...
            return rnnlab.cells.Cell(name="mine", hidden_size=hidden_size, init=init,
                                     initial_carry=initial_carry, step=step)

    Raises:
      ValueError: if ``name`` is taken and ``replace`` is false, or the factory does not
        have the shape above.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name must be an identifier-like str such as 'my_cell', got {name!r}")

    def decorate(fn):
        if name in _REGISTRY and not replace:
            raise ValueError(
                f"a cell named {name!r} is already registered; pass replace=True to replace it "
                "or pick another name"
            )
        if not (callable(fn) or (isinstance(fn, str) and ":" in fn)):
            raise ValueError(f"factory must be callable or 'module:attribute', got {fn!r}")
        previous = _REGISTRY.get(name)
        _REGISTRY[name] = _Entry(
            fn,
            dict(presets or {}),
            None if sweepable is None else tuple(sweepable),
            tuple(also_sweepable),
        )
        _spec.cache_clear()
        if callable(fn):
            try:
                _spec(name)  # fail now, at registration, for a factory of the wrong shape
            except Exception:
                if previous is None:
                    del _REGISTRY[name]
                else:
                    _REGISTRY[name] = previous
                _spec.cache_clear()
                raise
        return fn

    return decorate if factory is None else decorate(factory)


def available() -> tuple[str, ...]:
    """The registered cell names, sorted."""
    return tuple(sorted(_REGISTRY))


def spec(name: str) -> CellSpec:
    """The :class:`CellSpec` of ``name``.

    Raises:
      ValueError: for an unknown name, listing the registered ones and the closest match.
    """
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown cell {name!r}{_checks.did_you_mean(name, _REGISTRY)}; registered cells "
            f"are {available()}; add one with rnnlab.cells.register"
        )
    return _spec(name)


def make(name: str, hidden_size: int, **hyperparameters) -> Cell:
    """Builds the registered cell ``name`` with ``hidden_size`` and keyword hyperparameters.

    Example::

        cell = rnnlab.cells.make("lstm", 64, forget_bias=2.0)

    Raises:
      ValueError: for an unknown name (listing the registered ones) or a hyperparameter
        the cell does not take (listing those it accepts).
    """
    return spec(name).make(hidden_size, **hyperparameters)


def user_registrations() -> tuple:
    """The registrations made with a factory object (not a ``"module:attribute"`` string).

    A picklable snapshot that worker processes pass to :func:`ensure_registered`, so a
    user's cell registered in the parent exists in spawned sweep workers too (the
    factory pickles by reference to its module).
    """
    return tuple(
        (
            name,
            _sendable(name, entry.factory),
            tuple(entry.presets.items()),
            entry.sweepable,
            entry.also_sweepable,
        )
        for name, entry in _REGISTRY.items()
        if callable(entry.factory)
    )


def _sendable(name: str, factory):
    """``factory`` if it pickles; else a stand-in that explains, if a worker uses it.

    A factory defined in ``__main__`` of an interactive session (or ``exec``'d code)
    does not pickle by reference; one such registration must not break sweeps of
    the other cells.
    """
    try:
        pickle.dumps(factory)
    except Exception as error:  # PicklingError, AttributeError, TypeError, ...
        return _Unsendable(name, f"{type(error).__name__}: {error}")
    return factory


@dataclasses.dataclass(frozen=True)
class _Unsendable:
    """Registered in worker processes in place of a factory that did not pickle."""

    name: str
    reason: str

    def __call__(self, hidden_size, **hyperparameters):
        raise ValueError(
            f"cell {self.name!r} was registered in the parent process with a factory that "
            f"cannot be sent to worker processes ({self.reason}); define it in an importable "
            "module (and pass --import MODULE), or run the sweep with strategy='vmap'"
        )


def ensure_registered(registrations: tuple) -> None:
    """Registers each entry of :func:`user_registrations` that this process lacks."""
    for name, factory, presets, sweepable, also_sweepable in registrations:
        if name not in _REGISTRY:
            register(
                name,
                factory,
                presets=dict(presets),
                sweepable=sweepable,
                also_sweepable=also_sweepable,
            )
