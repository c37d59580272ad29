"""compiler/networkx_lean.py seeds private networkx names: the installed networkx must be one it was tested on.

The tested range is one constant next to the seed (NETWORKX_TESTED); pyproject.toml pins networkx to it,
so a fresh `pip install -e .[test]` (CI) gets a tested version. A newer networkx is not an error of the
product (the loader then falls back to `import networkx`, at its full cost), but the cold path's budget is
only kept with the seed working, so an untested version fails here, saying what to check.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from compiler.networkx_lean import NETWORKX_TESTED

REPO = Path(__file__).resolve().parents[2]


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def test_the_installed_networkx_is_in_the_tested_range() -> None:
    installed = importlib.metadata.version("networkx")
    low, below = NETWORKX_TESTED
    assert _version(low) <= _version(installed) < _version(below), (
        f"networkx {installed} is outside the range compiler/networkx_lean.py was tested on "
        f"(>={low},<{below}). Check that its _seed still sets what networkx/__init__.py of {installed} sets "
        "before `from networkx import classes` (exception names, _dispatchable, _clear_cache, config from "
        "utils.backends._set_configs_from_environment), run tests/unit/test_lean_import.py and "
        "tests/unit/test_compiler.py on it, then widen NETWORKX_TESTED and pyproject.toml's networkx pin together."
    )


def test_pyproject_pins_networkx_to_the_tested_range() -> None:
    low, below = NETWORKX_TESTED
    text = (REPO / "pyproject.toml").read_text()
    assert f'"networkx>={low},<{below}"' in text, "pyproject.toml's networkx pin must be NETWORKX_TESTED"


def test_the_seed_works_on_the_installed_networkx() -> None:
    """The lean load took the seeded path (not the public fallback): the heavy subpackages stay unloaded."""
    code = textwrap.dedent(
        f"""
        import sys, json
        sys.path.insert(0, {str(REPO)!r})
        from compiler.networkx_lean import DiGraph
        print(json.dumps({{"module": DiGraph.__module__, "generators": "networkx.generators" in sys.modules}}))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(proc.stdout) == {"module": "networkx.classes.digraph", "generators": False}


def test_a_seed_that_breaks_falls_back_to_the_public_api() -> None:
    code = textwrap.dedent(
        f"""
        import sys, json
        sys.path.insert(0, {str(REPO)!r})
        import compiler.networkx_lean as lean
        for m in [m for m in sys.modules if m == "networkx" or m.startswith("networkx.")]:
            del sys.modules[m]

        def broken(package):
            raise AttributeError("module 'networkx.utils' has no attribute '_clear_cache'")

        DiGraph, order = lean._load(broken)
        import networkx
        g = DiGraph([("a", "b")])
        print(json.dumps({{"public": DiGraph is networkx.DiGraph, "order": list(order(g)),
                          "version": networkx.__version__}}))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    out = json.loads(proc.stdout)
    assert out["public"] and out["order"] == ["a", "b"] and out["version"]
