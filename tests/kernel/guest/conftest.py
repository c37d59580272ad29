"""Guest-only tests: skipped (with a reason) unless running inside a kernel-tier guest.

A proper guest is one booted by ``tests/kernel/qemu.py`` (``LOXI_IN_GUEST=1``) whose kernel
has 802.1Q support. On the host, ``tests/kernel/conftest.py`` does not even collect this
directory; ``tests/kernel/test_guest_tier.py`` runs it inside a guest instead.
"""

from __future__ import annotations

import pytest

from ..qemu import guest_skip_reason


@pytest.fixture(autouse=True)
def _only_in_a_guest() -> None:
    reason = guest_skip_reason()
    if reason is not None:
        pytest.skip(reason)
