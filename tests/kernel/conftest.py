"""Kernel test tier: tests that need a complete kernel run inside User-Mode Linux.

* ``guest/`` holds guest-only tests. They are not collected on the host (``collect_ignore``
  below); inside the guest (``LOXI_IN_UML=1``) they are.
* ``uml_pytest`` runs pytest on given paths inside ONE UML boot and returns ``(rc, output)``;
  it skips the calling test when no UML kernel is installed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import pytest

from .uml import GUEST_ENV_FLAG, UmlKernel, UmlPytest, probe_uml, run_pytest_in_uml

collect_ignore = [] if os.environ.get(GUEST_ENV_FLAG) == "1" else ["guest"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "uml: runs inside a User-Mode Linux guest")


@pytest.fixture(scope="session")
def uml_kernel() -> UmlKernel:
    """The UML kernel; skips the test (with the reason) when there is none."""
    kernel, reason = probe_uml()
    if kernel is None:
        pytest.skip(f"User-Mode Linux unavailable: {reason}")
    return kernel


@pytest.fixture
def uml_pytest(uml_kernel: UmlKernel, request: pytest.FixtureRequest) -> UmlPytest:
    """``uml_pytest(test_paths, extra_args=(), timeout=300) -> (rc, output)``: pytest in one UML boot.

    Runs ``<this interpreter> -m pytest -q -p no:cacheprovider --color=no -rfEs
    --rootdir=<rootdir> [-c <inifile>] *extra_args *test_paths`` in the guest, with the
    host's rootdir as working directory and the host environment (see
    ``uml.default_guest_env``).
    """
    config = request.config
    base = [f"--rootdir={config.rootpath}"]
    if config.inipath is not None:
        base += ["-c", str(config.inipath)]

    def run(test_paths: list[str], extra_args: Sequence[str] = (), timeout: float = 300) -> tuple[int, str]:
        result = run_pytest_in_uml(
            [str(p) for p in test_paths], [*base, *extra_args], cwd=str(config.rootpath), timeout=timeout
        )
        return result.returncode, result.output

    return run
