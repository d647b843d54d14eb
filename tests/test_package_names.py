"""No function shadows a module (issue 14): ``rnnlab.cells.lstm`` is the factory and
``rnnlab.cells._lstm`` its module, each reachable with a plain import."""

from __future__ import annotations

import importlib
import pkgutil
import types

import rnnlab


def _shadowed(root: types.ModuleType) -> list[str]:
    """``package.name`` for every submodule ``name`` whose package attribute (set, or served
    by the package's ``__getattr__``) is something other than a module."""
    packages = [root] + [
        importlib.import_module(info.name)
        for info in pkgutil.walk_packages(root.__path__, root.__name__ + ".")
        if info.ispkg
    ]
    found = []
    for package in packages:
        lazy = vars(package).get("__getattr__")
        for info in pkgutil.iter_modules(package.__path__):
            if info.name in vars(package):
                value = vars(package)[info.name]
            elif callable(lazy):
                try:
                    value = lazy(info.name)
                except AttributeError:
                    continue
            else:
                continue
            if not isinstance(value, types.ModuleType):
                found.append(f"{package.__name__}.{info.name}")
    return found


def test_no_package_attribute_shadows_a_submodule():
    """Oracle: the package tree on disk (pkgutil) against each package's attributes.  On the
    tree before issue 14 this lists rnnlab.tasks.adding, ... and rnnlab.gradients.uoro."""
    assert _shadowed(rnnlab) == []


def test_factories_and_their_modules_are_both_reachable():
    """Oracle: the names themselves — the factory by its name, the module by ``_name``."""
    from rnnlab.cells import _lstm, lstm
    from rnnlab.gradients import _uoro, uoro
    from rnnlab.tasks import _adding, adding

    assert lstm is _lstm.lstm is rnnlab.lstm and isinstance(_lstm, types.ModuleType)
    assert adding is _adding.adding and uoro is _uoro.uoro
    assert {"lstm", "lru", "orthogonal"} <= set(dir(rnnlab.cells))
