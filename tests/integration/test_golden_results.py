"""Issue #18: the restructured code prints byte for byte what the code before it (622ad9e) printed.

Every case of tests/golden/make_results.py (ADD/CHECK/DEL results for the blog post's conf and its
variants, VERSION, STATUS, GC, error objects, loxi-plan dry-run/check text and JSON) runs here
against the current checkout, executed as the other integration tests execute loxi-cni (the
`node` fixture of tests/conftest.py: nsenter, only the CNI variables, conf on stdin; through
loxi-agent or the shim with LOXI_TEST_MODE=agent/shim), and loxi-plan as installed in this venv.
The transcript, normalized by make_results.normalize (MACs, namespace names/paths, temp dirs,
timestamps only), must equal tests/golden/results/<case>.txt exactly.

The golden files were generated from a 622ad9e worktree (see make_results.py's docstring); they
are never regenerated from this tree: a difference is a change of behaviour.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import sys
from pathlib import Path

import pytest

from tests.conftest import needs_root

_MAKE = Path(__file__).resolve().parent.parent / "golden" / "make_results.py"
_spec = importlib.util.spec_from_file_location("golden_make_results", _MAKE)
assert _spec is not None and _spec.loader is not None
make_results = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = make_results  # dataclasses resolve their module through sys.modules
_spec.loader.exec_module(make_results)

# LOXI_PLAN_BIN (like conftest's LOXI_CNI_BIN) runs another loxi-plan, e.g. a launcher bound to a
# 622ad9e worktree, to check this harness against the code the goldens came from.
LOXI_PLAN = Path(os.environ.get("LOXI_PLAN_BIN") or Path(sys.prefix) / "bin" / "loxi-plan")

pytestmark = needs_root


def test_every_case_has_a_golden_file():
    files = sorted(p.stem for p in make_results.RESULTS.glob("*.txt"))
    assert files == sorted(make_results.CASES), "tests/golden/results/ and make_results.CASES disagree"


@pytest.mark.parametrize("case", list(make_results.CASES))
def test_golden_result(case, node):
    golden = make_results.golden_path(case).read_text()
    header, _, expected = golden.partition("\n")
    assert header.startswith("# golden results: ") and make_results.BASE_COMMIT in header, header

    given = [node]

    def new_node():
        assert given, "one node per case"
        return given.pop()

    backend = make_results.Backend(new_node=new_node, plan_argv=[str(LOXI_PLAN)])
    got = make_results.run_case(case, backend)
    if got != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                got.splitlines(keepends=True),
                fromfile=f"tests/golden/results/{case}.txt ({make_results.BASE_COMMIT})",
                tofile=f"{case}: current checkout",
            )
        )
        pytest.fail(f"{case} differs from its golden result (a change of behaviour, issue #18):\n{diff}", False)
