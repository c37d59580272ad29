"""One observation pass's cache of the kernel's answers, shared by every driver that reads.

Each link is read once by name (its index remembered for the plan), each
link's addresses and each namespace's routing table dumped once, whichever
kinds ask. Drivers read through it (`applier.drivers`), and the engine keeps
one across a call's steps that read the same links, so no link is asked for
twice. It knows nothing about object kinds: that is the drivers' business,
which keeps this module below them and free of any import of theirs.
"""

from __future__ import annotations

import errno
from typing import Any

from applier.netlink import NetlinkError
from applier.netlink.dumps import addresses_of, routes_of_table
from applier.netns import Namespaces


class Observer:
    """One observation pass; caches links so each is read once."""

    def __init__(self, namespaces: Namespaces) -> None:
        self.ns = namespaces
        self._links: dict[tuple[str, str], Any] = {}
        self._addrs: dict[tuple[str, int], list[Any]] = {}
        self._routes: dict[tuple[str, int, int], list[Any]] = {}

    def link(self, ns: str, name: str) -> Any | None:
        key = (ns, name)
        if key not in self._links:
            if not self.ns.has(ns):
                self._links[key] = None
            else:
                try:
                    msg = self._links[key] = self.ns.ipr(ns).link("get", ifname=name)[0]
                except NetlinkError as exc:
                    if exc.code != errno.ENODEV:
                        raise
                    self._links[key] = None
                else:
                    self.ns.remember_index(ns, name, msg["index"])
        return self._links[key]

    def link_name(self, ns: str, index: int) -> str | None:
        for (link_ns, name), msg in self._links.items():
            if link_ns == ns and msg is not None and msg["index"] == index:
                return name
        try:
            return self.ns.ipr(ns).link("get", index=index)[0].get("IFLA_IFNAME")
        except NetlinkError:
            return None

    def addresses(self, ns: str, index: int) -> list[Any]:
        key = (ns, index)
        if key not in self._addrs:
            self._addrs[key] = addresses_of(self.ns.ipr(ns), index)
        return self._addrs[key]

    def routes(self, ns: str, family: int, table: int) -> list[Any]:
        """One routing table of a namespace, dumped once (a pod's table is a handful of routes)."""
        key = (ns, family, table)
        if key not in self._routes:
            self._routes[key] = routes_of_table(self.ns.ipr(ns), family, table)
        return self._routes[key]
