"""Guest-only tests: skipped (with a reason) unless running inside a UML guest.

A proper guest is one booted by ``tests/kernel/uml.py`` (``LOXI_IN_UML=1``) whose kernel
has 802.1Q support. On the host, ``tests/kernel/conftest.py`` does not even collect this
directory; ``tests/kernel/test_uml_tier.py`` runs it inside UML instead.
"""

from __future__ import annotations

import pytest

from ..uml import guest_skip_reason


@pytest.fixture(autouse=True)
def _only_in_uml_guest() -> None:
    reason = guest_skip_reason()
    if reason is not None:
        pytest.skip(reason)
