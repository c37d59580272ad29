"""networkx, loaded lean: the directed graph and its topological order, nothing else.

`import networkx` loads every algorithm, generator, reader and drawing backend
and scans the installed distributions for backends: ~220 ms of every cold
loxi-cni call, for one class and one function (`python -X importtime`, this
project's machine: ~95 ms lean, ~460 ms through `import networkx`). The package
(and its `algorithms` subpackage) is registered without running its `__init__`
(`intent.lean_import`); the seed sets the few package-level names that the
classes and DAG modules look up. Any other `networkx.<name>` runs the real
`__init__` then, so other code in the process keeps working.

The seed copies what networkx's own `__init__` sets before it imports
`networkx.classes`, and those are private names (`_dispatchable`,
`_clear_cache`, `utils.backends._set_configs_from_environment`): they are
checked against NETWORKX_TESTED, the range pyproject.toml pins networkx to
(tests/unit/test_networkx_pin.py fails outside it). Should a networkx release
still break the lean load, the public API (`import networkx`) is used instead:
slower, never broken.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from intent.lean_import import register_lean_package

# The networkx versions the seed below was tested on: >= the first, < the second (pyproject.toml's pin).
NETWORKX_TESTED = ("3.6", "3.7")


def _seed(package: ModuleType) -> None:
    from networkx import exception, utils

    for name in exception.__all__:
        setattr(package, name, getattr(exception, name))
    package._dispatchable = utils._dispatchable
    package._clear_cache = utils._clear_cache
    package.config = utils.config = utils.configs.config = utils.backends._set_configs_from_environment()


def _load(seed: Callable[[ModuleType], None]) -> tuple[Any, Any]:
    """(DiGraph, lexicographical_topological_sort): lean when the seed works, else from the public API."""
    try:
        register_lean_package("networkx", seed)
        register_lean_package("networkx.algorithms")
        from networkx.algorithms.dag import lexicographical_topological_sort
        from networkx.classes.digraph import DiGraph
    except Exception:  # a networkx whose __init__ sets other names first: the public API, at its full cost
        for loaded in [m for m in sys.modules if m == "networkx" or m.startswith("networkx.")]:
            del sys.modules[loaded]
        import networkx

        return networkx.DiGraph, networkx.lexicographical_topological_sort
    return DiGraph, lexicographical_topological_sort


DiGraph, lexicographical_topological_sort = _load(_seed)

__all__ = ["NETWORKX_TESTED", "DiGraph", "lexicographical_topological_sort"]
