"""intent.lean_import: packages registered without their __init__, completed on demand.

Each case runs in a fresh interpreter: what matters is which modules a process
ends up with, and this one has imported everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_fresh(code: str, *extra_path: Path) -> dict:
    """Run `code` in a new interpreter with the repo (and extra_path) importable; it prints one JSON line."""
    paths = [str(p) for p in (*extra_path, REPO)]
    prelude = f"import sys, json\nsys.path[:0] = {paths!r}\n"
    proc = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def make_package(root: Path) -> None:
    pkg = root / "leanpkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        "import sys\nsys.leanpkg_init_ran = getattr(sys, 'leanpkg_init_ran', 0) + 1\n"
        "from leanpkg.part import helper\nEXPORTED = 'exported'\n__version__ = '9.9'\n"
    )
    (pkg / "part.py").write_text("def helper():\n    return 'helper'\n")
    (pkg / "sub" / "__init__.py").write_text("SUB_INIT = True\n")
    (pkg / "broken_seed.py").write_text("raise RuntimeError('seed failed')\n")


def test_a_submodule_loads_without_the_package_init(tmp_path: Path) -> None:
    make_package(tmp_path)
    out = run_fresh(
        """
        from intent.lean_import import register_lean_package
        register_lean_package("leanpkg")
        from leanpkg.part import helper
        import leanpkg.sub
        print(json.dumps({"init_ran": getattr(sys, "leanpkg_init_ran", 0), "helper": helper(),
                          "sub": leanpkg.sub.SUB_INIT}))
        """,
        tmp_path,
    )
    assert out == {"init_ran": 0, "helper": "helper", "sub": True}


def test_any_other_package_name_runs_the_real_init_once(tmp_path: Path) -> None:
    make_package(tmp_path)
    out = run_fresh(
        """
        from intent.lean_import import register_lean_package
        register_lean_package("leanpkg")
        import leanpkg
        first = leanpkg.EXPORTED
        version = leanpkg.__version__
        try:
            leanpkg.no_such_name
            missing = "found"
        except AttributeError as exc:
            missing = str(exc)
        print(json.dumps({"init_ran": sys.leanpkg_init_ran, "first": first, "version": version,
                          "missing": missing}))
        """,
        tmp_path,
    )
    assert out["init_ran"] == 1
    assert out["first"] == "exported"
    assert out["version"] == "9.9"
    assert "no_such_name" in out["missing"]


def test_a_star_import_completes_the_package(tmp_path: Path) -> None:
    make_package(tmp_path)
    out = run_fresh(
        """
        from intent.lean_import import register_lean_package
        register_lean_package("leanpkg")
        from leanpkg import *
        print(json.dumps({"init_ran": sys.leanpkg_init_ran, "exported": EXPORTED}))
        """,
        tmp_path,
    )
    assert out == {"init_ran": 1, "exported": "exported"}


def test_a_failing_seed_leaves_the_normal_import_path(tmp_path: Path) -> None:
    make_package(tmp_path)
    out = run_fresh(
        """
        from intent.lean_import import register_lean_package
        def seed(package):
            import leanpkg.part
            import leanpkg.broken_seed
        try:
            register_lean_package("leanpkg", seed)
            raised = False
        except RuntimeError:
            raised = True
        left = sorted(m for m in sys.modules if m.startswith("leanpkg"))
        import leanpkg
        print(json.dumps({"raised": raised, "left": left, "init_ran": sys.leanpkg_init_ran,
                          "exported": leanpkg.EXPORTED}))
        """,
        tmp_path,
    )
    assert out == {"raised": True, "left": [], "init_ran": 1, "exported": "exported"}


def test_an_already_imported_package_is_left_alone(tmp_path: Path) -> None:
    make_package(tmp_path)
    out = run_fresh(
        """
        import leanpkg
        from intent.lean_import import register_lean_package
        register_lean_package("leanpkg")
        print(json.dumps({"same": sys.modules["leanpkg"] is leanpkg, "init_ran": sys.leanpkg_init_ran}))
        """,
        tmp_path,
    )
    assert out == {"same": True, "init_ran": 1}


def test_compiling_a_pod_loads_two_networkx_modules_not_the_package() -> None:
    """The cold path's budget: a pod compiled and ordered without networkx's algorithms, readers, drawing."""
    out = run_fresh(
        """
        import ipaddress
        from compiler.graph import compile_desired
        from compiler.model import AddressLease, Attachment
        from intent.config import load_netconf
        from intent.env import CniRequest
        doc = {"cniVersion": "1.0.0", "name": "n", "type": "loxi-cni", "bridge": "br0", "isGateway": True,
               "ipam": {"type": "host-local", "subnet": "10.244.1.0/24"}}
        conf = load_netconf(json.dumps(doc).encode(), CniRequest(command="ADD"))
        lease = AddressLease(ipaddress.ip_interface("10.244.1.5/24"), ipaddress.ip_address("10.244.1.1"))
        desired = compile_desired(conf, Attachment("n", "c0ffee", "eth0", "/run/netns/p"), [lease], [])
        order = [obj.kind for obj in desired.order()]
        loaded = sorted(m for m in sys.modules if m.startswith("networkx"))
        print(json.dumps({"order": order, "loaded": loaded}))
        """
    )
    assert out["order"][0] == "bridge"
    assert "address" in out["order"]
    loaded = set(out["loaded"])
    assert {"networkx.classes.digraph", "networkx.algorithms.dag"} <= loaded
    for heavy in ("networkx.algorithms.shortest_paths", "networkx.generators", "networkx.drawing"):
        assert heavy not in loaded


def test_the_lean_networkx_completes_for_other_code_in_the_process() -> None:
    out = run_fresh(
        """
        import compiler.graph
        import networkx as nx
        g = nx.path_graph(4)
        print(json.dumps({"path": nx.shortest_path(g, 0, 3), "version": nx.__version__,
                          "digraph_is_same": nx.DiGraph is compiler.graph.DiGraph}))
        """
    )
    assert out["path"] == [0, 1, 2, 3]
    assert out["version"].count(".") >= 1
    assert out["digraph_is_same"] is True


def test_pyroute2_is_loaded_without_its_package_init() -> None:
    out = run_fresh(
        """
        from applier.netlink import IPRoute, NetlinkError
        loaded = sorted(m for m in sys.modules if m.startswith("pyroute2."))
        print(json.dumps({"loaded": loaded}))
        """
    )
    loaded = set(out["loaded"])
    assert "pyroute2.iproute.linux" in loaded
    for heavy in ("pyroute2.ndb", "pyroute2.ipdb", "pyroute2.ethtool"):
        assert not any(name == heavy or name.startswith(heavy + ".") for name in loaded), heavy
