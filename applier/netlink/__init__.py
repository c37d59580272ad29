"""pyroute2's IPRoute on first use, its NetlinkError, and the netlink dumps the kernel filters.

pyroute2's package `__init__` imports and re-exports its ~60 APIs (IPDB, NDB,
conntrack, WireGuard, nl80211, ...): about 100 ms of every cold loxi-cni call.
Importing `applier` registers the package without running that `__init__`
(`applier/__init__.py`, `intent.lean_import`), so the modules named here and
in `applier.rtnl` load on their own. IPRoute itself (asyncio and every message
family: ~100 ms more) loads only when `applier.netlink.IPRoute` is first used,
which a pod's ADD, CHECK and DEL never do (they go through `applier.rtnl`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyroute2.netlink.exceptions import NetlinkError

if TYPE_CHECKING:
    from pyroute2.iproute.linux import IPRoute

__all__ = ["IPRoute", "NetlinkError", "addresses_of", "ports_of", "routes_of_table"]


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
