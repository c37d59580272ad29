"""pyroute2, loaded lean: the package without its `__init__` until someone asks for it.

pyroute2's package `__init__` imports and re-exports its ~60 APIs (IPDB, NDB,
conntrack, WireGuard, nl80211, ...): about 100 ms of every cold loxi-cni call,
for the two names loxi-cni uses. Here the package module is registered without
running that `__init__`, so `pyroute2.iproute.linux` and
`pyroute2.netlink.exceptions` load on their own. The first lookup of any other
top-level name (`pyroute2.IPRoute`, as other code in the same process may
write) runs the real `__init__` then: nothing breaks, it only costs what it
always cost. Import IPRoute and NetlinkError from here, before any other
pyroute2 import of the process.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any


def _register_lean_package() -> None:
    if "pyroute2" in sys.modules:
        return
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        return  # not a regular package: import it the usual way
    package = importlib.util.module_from_spec(spec)
    completed = False

    def is_submodule(name: str) -> bool:
        return any(
            os.path.exists(os.path.join(where, name + ".py")) or os.path.isdir(os.path.join(where, name))
            for where in spec.submodule_search_locations or ()
        )

    def complete_on_demand(name: str) -> Any:
        # `from pyroute2 import config` asks for the attribute first: a submodule
        # is left to the import system, which loads just that module.
        nonlocal completed
        if not completed and not name.startswith("__") and not is_submodule(name):
            completed = True
            spec.loader.exec_module(package)
            if name in package.__dict__:
                return package.__dict__[name]
        raise AttributeError(f"module 'pyroute2' has no attribute {name!r}")

    package.__getattr__ = complete_on_demand  # PEP 562
    sys.modules["pyroute2"] = package


_register_lean_package()

from pyroute2.iproute.linux import IPRoute  # noqa: E402
from pyroute2.netlink.exceptions import NetlinkError  # noqa: E402

__all__ = ["IPRoute", "NetlinkError", "addresses_of", "ports_of", "routes_of_table"]

# pyroute2's get_addr(index=...), get_routes(table=...) and get_links(master=...)
# dump every object of the namespace and filter in Python: with 200 pods on the
# node that is 12 ms per address lookup and 160 ms per port listing. The kernel
# filters a dump itself when the request names the index, table or master and
# the socket has strict checking (IPRoute(strict_check=True), Linux >= 4.20):
# 0.6 ms. The Python filter after it keeps older kernels, which ignore the
# request's fields, correct.


def addresses_of(ipr: IPRoute, index: int) -> list[Any]:
    """Every address (all families) of the link `index`."""
    return [msg for msg in ipr.addr("dump", index=index, dump_filter={}) if msg["index"] == index]


def routes_of_table(ipr: IPRoute, family: int, table: int) -> list[Any]:
    """The routes of one family in one routing table."""
    return [
        msg
        for msg in ipr.route("dump", family=family, table=table, dump_filter={})
        if msg["family"] == family and (msg.get("RTA_TABLE") or msg["table"]) == table
    ]


def ports_of(ipr: IPRoute, master: int) -> list[Any]:
    """The links enslaved to the link `master` (a bridge's ports)."""
    return [msg for msg in ipr.link("dump", master=master, dump_filter={}) if msg.get("IFLA_MASTER") == master]
