"""The address driver: an IP address on a link, read from the link's address dump.

The observer dumps each link's addresses once (kernel-filtered by index), so
the bridge's IPv4 facts and every address on it cost one request together.
"""

from __future__ import annotations

import errno
import ipaddress
from typing import TYPE_CHECKING, Any

from applier.drivers.base import Applying, Driver, register, sets
from applier.netlink import NetlinkError
from compiler.model import Address, Observed
from compiler.model.attrs import INDEX, PREFIXLEN
from compiler.plan import AttrChange

if TYPE_CHECKING:
    from applier.observer import Observer

IFA_F_NODAD = 0x02


@register
class AddressDriver(Driver):
    kinds = (Address,)

    def observe(self, observer: Observer, obj: Address) -> Observed | None:
        link = observer.link(obj.ns, obj.link)
        if link is None:
            return None
        family = 2 if obj.interface.version == 4 else 10
        for msg in observer.addresses(obj.ns, link["index"]):
            if msg["family"] == family and ipaddress.ip_address(msg.get("IFA_ADDRESS")) == obj.interface.ip:
                return Observed({PREFIXLEN: msg["prefixlen"]}, {INDEX: link["index"]})
        return None

    def create(self, ctx: Applying, obj: Address) -> None:
        ipr, index = ctx.ipr(obj.ns), ctx.index(obj.ns, obj.link)
        ip, prefix = str(obj.interface.ip), obj.interface.network.prefixlen
        extra: dict[str, Any] = {}
        if obj.interface.version == 6 and not ctx.enable_dad:
            extra["flags"] = IFA_F_NODAD
        try:
            ipr.addr("add", index=index, address=ip, prefixlen=prefix, **extra)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:  # a concurrent ADD put the gateway there first
                raise
            return
        ctx.push(
            f"add address {obj.interface}", lambda: ipr.addr("del", index=index, address=ip, prefixlen=prefix), obj
        )

    def delete(self, ctx: Applying, obj: Address) -> None:
        ipr, index = ctx.ipr(obj.ns), ctx.index(obj.ns, obj.link)
        ip, prefix = str(obj.interface.ip), obj.interface.network.prefixlen
        ipr.addr("del", index=index, address=ip, prefixlen=prefix)
        ctx.push(
            f"delete address {obj.interface}",
            lambda: ipr.addr("add", index=index, address=ip, prefixlen=prefix),
            obj,
        )

    @sets(PREFIXLEN)
    def _prefixlen(self, ctx: Applying, obj: Address, change: AttrChange) -> None:
        """The same address with another prefix: the old one removed, the new one added."""
        index = ctx.index(obj.ns, obj.link)
        ctx.ipr(obj.ns).addr("del", index=index, address=str(obj.interface.ip), prefixlen=change.before)
        self.create(ctx, obj)
