"""Run loxi-plan as if it were the plugin running in another node namespace.

The plugin treats the namespace it runs in as "the node". loxi-plan gets the
same view by moving its one thread into `--node-netns` before anything opens a
netlink socket or reads /proc/sys/net, and stays there: it is a one-shot,
single-threaded CLI, so no other code can be surprised by the move. Nothing is
exec'd (no `ip netns exec`, no `nsenter`).
"""

from __future__ import annotations

import os

from applier.netns import open_netns, setns
from intent.errors import INVALID_NETNS, CniError


def enter_node_netns(path: str) -> None:
    """setns(2) this thread into the network namespace at `path`; raise CniError if it is not one."""
    try:
        fd = open_netns(path)
    except FileNotFoundError:
        raise CniError(INVALID_NETNS, f"--node-netns {path}: no such namespace") from None
    except CniError:
        raise CniError(INVALID_NETNS, f"--node-netns {path}: not an absolute path to a network namespace") from None
    try:
        setns(fd)
    except OSError as exc:
        raise CniError(INVALID_NETNS, f"--node-netns {path}: setns failed: {exc.strerror}") from None
    finally:
        os.close(fd)
