"""pyroute2, loaded lean, and the netlink dumps the kernel filters.

pyroute2's package `__init__` imports and re-exports its ~60 APIs (IPDB, NDB,
conntrack, WireGuard, nl80211, ...): about 100 ms of every cold loxi-cni call,
for the two names loxi-cni uses. The package is registered without running
that `__init__` (`intent.lean_import`), so `pyroute2.iproute.linux` and
`pyroute2.netlink.exceptions` load on their own. Import pyroute2's names
from here, before any other pyroute2 import of the process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from intent.lean_import import register_lean_package

register_lean_package("pyroute2")

# The light part of pyroute2: its exceptions, message classes and marshal (~40 ms
# cold). IPRoute (asyncio, every message family: ~100 ms more) loads on first
# use of `applier.netlink.IPRoute`.
from pyroute2.netlink import (  # noqa: E402
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
)
from pyroute2.netlink.exceptions import NetlinkError  # noqa: E402
from pyroute2.netlink.marshal import Marshal  # noqa: E402
from pyroute2.netlink.rtnl import (  # noqa: E402
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_DELROUTE,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_GETROUTE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
)
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg  # noqa: E402
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg  # noqa: E402
from pyroute2.netlink.rtnl.rtmsg import rtmsg  # noqa: E402

if TYPE_CHECKING:
    from pyroute2.iproute.linux import IPRoute

__all__ = [
    "NLMSG_DONE",
    "NLMSG_ERROR",
    "NLM_F_ACK",
    "NLM_F_CREATE",
    "NLM_F_DUMP",
    "NLM_F_EXCL",
    "NLM_F_REPLACE",
    "NLM_F_REQUEST",
    "RTM_DELADDR",
    "RTM_DELLINK",
    "RTM_DELROUTE",
    "RTM_GETADDR",
    "RTM_GETLINK",
    "RTM_GETROUTE",
    "RTM_NEWADDR",
    "RTM_NEWLINK",
    "RTM_NEWROUTE",
    "IPRoute",
    "Marshal",
    "NetlinkError",
    "addresses_of",
    "ifaddrmsg",
    "ifinfmsg",
    "ports_of",
    "routes_of_table",
    "rtmsg",
]


def __getattr__(name: str) -> Any:  # PEP 562: IPRoute on first use
    if name == "IPRoute":
        from pyroute2.iproute.linux import IPRoute

        return IPRoute
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# pyroute2's get_addr(index=...), get_routes(table=...) and get_links(master=...)
# dump every object of the namespace and filter in Python: with 200 pods on the
# node that is 12 ms per address lookup and 160 ms per port listing. The kernel
# filters a dump itself when the request names the index, table or master and
# the socket has strict checking (IPRoute(strict_check=True), Linux >= 4.20):
# 0.6 ms. The Python filter after it keeps older kernels, which ignore the
# request's fields, correct.


def addresses_of(ipr: Any, index: int) -> list[Any]:
    """Every address (all families) of the link `index`."""
    return [msg for msg in ipr.addr("dump", index=index, dump_filter={}) if msg["index"] == index]


def routes_of_table(ipr: Any, family: int, table: int) -> list[Any]:
    """The routes of one family in one routing table."""
    return [
        msg
        for msg in ipr.route("dump", family=family, table=table, dump_filter={})
        if msg["family"] == family and (msg.get("RTA_TABLE") or msg["table"]) == table
    ]


def ports_of(ipr: Any, master: int) -> list[Any]:
    """The links enslaved to the link `master` (a bridge's ports)."""
    return [msg for msg in ipr.link("dump", master=master, dump_filter={}) if msg.get("IFLA_MASTER") == master]
