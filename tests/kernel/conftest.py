"""Kernel test tier: tests that need a complete kernel run inside a second kernel under QEMU.

* ``guest/`` holds guest-only tests. They are not collected on the host (``collect_ignore``
  below); inside a guest (``LOXI_IN_GUEST=1``) they are.
* ``guest_pytest`` runs pytest on given paths inside ONE boot and returns the :class:`GuestRun`.
* When no second kernel can run, every test here **fails** with the reason: the tier never
  passes by skipping. ``LOXI_SKIP_KERNEL_TIER=1`` skips it on purpose.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import pytest

from .qemu import (
    GUEST_ENV_FLAG,
    GuestRun,
    KernelCache,
    default_guest_env,
    guest_pytest_argv,
    probe,
    run_in_guest,
    skip_reason,
)

collect_ignore = [] if os.environ.get(GUEST_ENV_FLAG) == "1" else ["guest"]

GuestPytest = Callable[..., GuestRun]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "guest: boots a second kernel under QEMU")


@pytest.fixture(scope="session")
def guest_kernel() -> KernelCache:
    """The cached Debian kernel; fails the test with the reason when no guest can boot here."""
    if (reason := skip_reason()) is not None:
        pytest.skip(reason)
    cache, accel, reason = probe()
    if cache is None:
        pytest.fail(f"no second kernel can run on this machine: {reason}", pytrace=False)
    print(f"\nkernel tier: {cache.package} under qemu/{accel}")
    return cache


@pytest.fixture
def guest_pytest(guest_kernel: KernelCache, request: pytest.FixtureRequest) -> GuestPytest:
    """``guest_pytest(test_paths, extra_args=(), timeout=300, env=None) -> GuestRun``: pytest in one boot.

    Runs ``<this interpreter> -m pytest -q -p no:cacheprovider --color=no -rfEs
    --rootdir=<rootdir> [-c <inifile>] *extra_args *test_paths`` in the guest, with the
    host's rootdir as working directory and the host environment (``qemu.default_guest_env``).
    """
    config = request.config
    base = [f"--rootdir={config.rootpath}"]
    if config.inipath is not None:
        base += ["-c", str(config.inipath)]

    def run(
        test_paths: Sequence[str], extra_args: Sequence[str] = (), timeout: float = 300, env: dict | None = None
    ) -> GuestRun:
        argv = guest_pytest_argv([str(p) for p in test_paths], [*base, *extra_args])
        return run_in_guest(argv, cwd=str(config.rootpath), env=default_guest_env(env), timeout=timeout)

    return run
