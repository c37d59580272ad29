"""Netlink for loxi-cni: pyroute2's messages on a plain socket for the per-pod path, pyroute2's IPRoute for the rest.

A pod's ADD, CHECK and DEL are a dozen rtnetlink requests, and pyroute2's
IPRoute costs ~100 ms of imports and ~0.3 ms of Python for each of them. So
the package is split by what a request goes through, each module one step:

- `requests`: the requests' encoders (pyroute2's message classes, filled in
  from IPRoute's arguments) and the cache of their bytes;
- `socket`: `RtnlSocket`, the transport that sends them and reads the replies;
- `messages`: the reply classes, whose attributes are built only when read;
- `monitor`: `delete_link`'s helper thread, which returns at the kernel's
  RTM_DELLINK broadcast instead of its RCU wait;
- `fallbacks`: every other IPRoute call the code makes, by name;
- `dumps`: the kernel-filtered dumps (one link's addresses, one table's routes,
  one bridge's ports).

This module holds the two pyroute2 names every layer above uses: NetlinkError,
and IPRoute. pyroute2's package `__init__` imports and re-exports its ~60 APIs
(IPDB, NDB, conntrack, WireGuard, nl80211, ...): about 100 ms of every cold
loxi-cni call. Importing `applier` registers the package without running that
`__init__` (`applier/__init__.py`, `intent.lean_import`), so the modules here
load only the pyroute2 modules they name. IPRoute itself (asyncio and every
message family: ~100 ms more) loads only when `applier.netlink.IPRoute` is
first used, which a pod's ADD, CHECK and DEL never do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyroute2.netlink.exceptions import NetlinkError

if TYPE_CHECKING:
    from pyroute2.iproute.linux import IPRoute

__all__ = ["IPRoute", "NetlinkError"]


def __getattr__(name: str) -> Any:  # PEP 562: IPRoute on first use
    if name == "IPRoute":
        from pyroute2.iproute.linux import IPRoute

        return IPRoute
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
