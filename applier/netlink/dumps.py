"""The netlink dumps loxi-cni reads, filtered by the kernel: a link's addresses, a table's routes, a bridge's ports.

It exists because pyroute2's get_addr(index=...), get_routes(table=...) and
get_links(master=...) dump every object of the namespace and filter in Python:
with 200 pods on the node that is 12 ms per address lookup and 160 ms per port
listing. The kernel filters a dump itself when the request names the index,
table or master and the socket has strict checking (RtnlSocket, or
IPRoute(strict_check=True), Linux >= 4.20): 0.6 ms. The Python filter after it
keeps older kernels, which ignore the request's fields, correct. `ipr` is an
RtnlSocket (applier.netlink.socket) or an IPRoute: both take these calls.
"""

from __future__ import annotations

from typing import Any


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
