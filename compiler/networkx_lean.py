"""networkx, loaded lean: the directed graph and its topological order, nothing else.

`import networkx` loads every algorithm, generator, reader and drawing backend
and scans the installed distributions for backends: ~220 ms of every cold
loxi-cni call, for one class and one function. The package (and its
`algorithms` subpackage) is registered without running its `__init__`
(`intent.lean_import`); the seed sets the few package-level names that the
classes and DAG modules look up. Any other `networkx.<name>` runs the real
`__init__` then, so other code in the process keeps working.
"""

from __future__ import annotations

from types import ModuleType

from intent.lean_import import register_lean_package


def _seed(package: ModuleType) -> None:
    from networkx import exception, utils

    for name in exception.__all__:
        setattr(package, name, getattr(exception, name))
    package._dispatchable = utils._dispatchable
    package._clear_cache = utils._clear_cache
    package.config = utils.config = utils.configs.config = utils.backends._set_configs_from_environment()


register_lean_package("networkx", _seed)
register_lean_package("networkx.algorithms")

from networkx.algorithms.dag import lexicographical_topological_sort  # noqa: E402
from networkx.classes.digraph import DiGraph  # noqa: E402

__all__ = ["DiGraph", "lexicographical_topological_sort"]
