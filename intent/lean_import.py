"""Load a package without running its `__init__` until someone needs it.

pyroute2's and networkx's package `__init__`s import and re-export everything
they have (IPDB, NDB, WireGuard...; every graph algorithm, generator, reader
and drawing backend): 100-200 ms each of a cold loxi-cni call that uses a
handful of names. `register_lean_package` puts the package module in
`sys.modules` with its `__init__` unexecuted, so `import pkg.sub` loads just
that submodule. `seed` may set the few package-level names the package's own
submodules look up at import time. The first lookup of any other package-level
name (`networkx.shortest_path`, as other code in the same process may write)
runs the real `__init__` on the same module object: nothing breaks, it only
costs what it always cost.

It lives in `intent`, the bottom layer, because `compiler` (networkx) and
`applier` (pyroute2) both use it. Call it before any other import of the
package in the process; if the package is already imported, it does nothing.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

# Dunder names that mean "the package's contents": a star import asks for
# `__all__`, and `__version__` is set by the `__init__`.
_COMPLETING_DUNDERS = frozenset({"__all__", "__version__"})


def register_lean_package(name: str, seed: Callable[[ModuleType], None] | None = None) -> None:
    """Register the package `name` unexecuted (see the module docstring).

    A subpackage (`networkx.algorithms`) is registered the same way once its
    parent is imported, lean or not; a star import of it completes it.
    """
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        return  # not a regular package: it is imported the usual way
    loader = spec.loader
    package = importlib.util.module_from_spec(spec)
    completed = False

    def is_submodule(attr: str) -> bool:
        return any(
            os.path.exists(os.path.join(where, attr + ".py")) or os.path.isdir(os.path.join(where, attr))
            for where in spec.submodule_search_locations or ()
        )

    def complete_on_demand(attr: str) -> Any:
        # `from pkg import sub` asks for the attribute first: a submodule is
        # left to the import system, which loads just that module.
        nonlocal completed
        wanted = attr in _COMPLETING_DUNDERS or not attr.startswith("__")
        if not completed and wanted and not is_submodule(attr):
            completed = True
            loader.exec_module(package)
            if attr in package.__dict__:
                return package.__dict__[attr]
        raise AttributeError(f"module {name!r} has no attribute {attr!r}")

    package.__getattr__ = complete_on_demand  # PEP 562
    sys.modules[name] = package
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, package)
    try:
        if seed is not None:
            seed(package)
    except BaseException:
        # Leave the normal import path as it was: the package and what seed loaded of it.
        for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[loaded]
        raise
