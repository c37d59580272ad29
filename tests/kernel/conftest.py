"""Kernel test tier: tests that need a complete kernel run inside a second kernel under QEMU.

* ``guest/`` holds guest-only tests. They are not collected on the host (``collect_ignore``
  below); inside a guest (``LOXI_IN_GUEST=1``) they are.
* When no second kernel can run, every test here **fails** with the reason: the tier never
  passes by skipping. ``LOXI_SKIP_KERNEL_TIER=1`` skips it on purpose.
"""

from __future__ import annotations

import os

import pytest

from .qemu import (
    GUEST_ENV_FLAG,
    KernelCache,
    probe,
    skip_reason,
)

collect_ignore = [] if os.environ.get(GUEST_ENV_FLAG) == "1" else ["guest"]


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


def pytest_terminal_summary(terminalreporter) -> None:
    """Say which engine the tier used (or why it could not run), in every run that used it."""
    from . import qemu

    if qemu._probe_result is None:
        return
    cache, accel, reason = qemu.probe()
    line = f"kernel tier: {cache.package} under qemu/{accel}" if cache else f"kernel tier: no guest: {reason}"
    terminalreporter.write_line(line)
