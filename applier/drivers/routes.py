"""The route driver: our routes (proto 76) in a namespace's main table.

The observer dumps the main table once per namespace and family; a route is
ours only with our protocol, on the attachment's link, to its destination, via
its gateway (compiler.model.routes).
"""

from __future__ import annotations

import errno
import ipaddress
from typing import TYPE_CHECKING, Any

from applier.drivers.base import Applying, Driver, register, sets
from applier.netlink import NetlinkError
from compiler.model import LOXI_ROUTE_PROTO, Observed, Route
from compiler.model.attrs import GATEWAY, PROTO
from compiler.plan import AttrChange

if TYPE_CHECKING:
    from applier.observer import Observer

MAIN_TABLE = 254


@register
class RouteDriver(Driver):
    kinds = (Route,)

    def observe(self, observer: Observer, obj: Route) -> Observed | None:
        """Our route only: proto 76, on the attachment's link, to dst, via the gateway.
        The kernel's connected route, another attachment's default, a route someone
        else added to the same dst: none of them is ours, none passes a CHECK."""
        link = observer.link(obj.ns, obj.dev)
        if link is None:
            return None
        family = 2 if obj.dst.version == 4 else 10
        gateway = obj.gateway
        for msg in observer.routes(obj.ns, family, MAIN_TABLE):
            if msg["dst_len"] != obj.dst.prefixlen or msg.get("RTA_OIF") != link["index"]:
                continue
            if msg["proto"] != LOXI_ROUTE_PROTO:
                continue
            dst = msg.get("RTA_DST")
            if obj.dst.prefixlen and (dst is None or ipaddress.ip_address(dst) != obj.dst.network_address):
                continue
            have = msg.get("RTA_GATEWAY")
            if (have is None) != (gateway is None) or (have is not None and ipaddress.ip_address(have) != gateway):
                continue
            return Observed({GATEWAY: have}, {PROTO: msg["proto"]})
        return None

    @staticmethod
    def _spec(ctx: Applying, obj: Route) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "dst": str(obj.dst),
            "oif": ctx.index(obj.ns, obj.dev),
            "proto": LOXI_ROUTE_PROTO,
            "table": MAIN_TABLE,
        }
        if obj.gateway:
            spec["gateway"] = str(obj.gateway)
        return spec

    def create(self, ctx: Applying, obj: Route) -> None:
        # Added beside whatever else leads to dst, never in its place: a replace
        # took the first attachment's default route when a second one had
        # isDefaultGateway, and the kernel's connected route for a route to the
        # pod's own subnet. Appended, so an earlier route to dst stays the one used.
        ipr, spec = ctx.ipr(obj.ns), self._spec(ctx, obj)
        try:
            ipr.route("append", **spec)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:  # exactly this route is there already (a retried ADD)
                raise
            return
        ctx.push(f"add route {obj.describe()}", lambda: ipr.route("del", **spec))

    def delete(self, ctx: Applying, obj: Route) -> None:
        ctx.ipr(obj.ns).route("del", **self._spec(ctx, obj))

    @sets(GATEWAY)
    def _gateway(self, ctx: Applying, obj: Route, change: AttrChange) -> None:
        """A route's gateway is part of which route it is: the wanted one is added beside."""
        self.create(ctx, obj)
