"""VLAN drivers: a bridge port's VLAN membership, and the uplink's 802.1Q device.

A port's VLANs are read with one RTM_GETLINK (AF_BRIDGE, the VLAN filter) and
reconciled against the port as it is when the step runs, not as it was
observed: a port created earlier in the plan may have been given the bridge's
default VLAN 1 by the kernel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from applier.drivers.base import FEATURE_8021Q, FEATURE_VLAN_FILTERING, Applying, Driver, register, sets
from applier.drivers.links import info_data, master_of, read_link
from compiler.model import NODE_NS, Observed, PortVlans, VlanDevice, format_vlans
from compiler.model.attrs import INDEX, MASTER, PARENT, UP, VLAN_ID, VLANS
from compiler.plan import AttrChange

if TYPE_CHECKING:
    from applier.observer import Observer

BRIDGE_VLAN_INFO_PVID = 0x2
BRIDGE_VLAN_INFO_UNTAGGED = 0x4
BRIDGE_FLAGS_SELF = 2


def read_port_vlans(ipr: Any, index: int) -> dict[int, tuple[bool, bool]]:
    """{vid: (pvid, untagged)} of one bridge port (or of the bridge's own entry),
    walking every IFLA_BRIDGE_VLAN_INFO (pyroute2's get_nested returns the first)."""
    vids: dict[int, tuple[bool, bool]] = {}
    for entry in ipr.get_vlans(index=index):
        if entry["index"] != index or not entry.get("IFLA_AF_SPEC"):
            continue
        for name, value in entry.get("IFLA_AF_SPEC")["attrs"]:
            if name == "IFLA_BRIDGE_VLAN_INFO":
                flags = value["flags"]
                vids[value["vid"]] = (bool(flags & BRIDGE_VLAN_INFO_PVID), bool(flags & BRIDGE_VLAN_INFO_UNTAGGED))
    return vids


@register
class PortVlansDriver(Driver):
    kinds = (PortVlans,)
    feature = FEATURE_VLAN_FILTERING

    def observe(self, observer: Observer, obj: PortVlans) -> Observed | None:
        msg = observer.link(obj.ns, obj.port)
        if msg is None:
            return None
        vids = read_port_vlans(observer.ns.ipr(obj.ns), msg["index"])
        return Observed({VLANS: format_vlans([(vid, *flags) for vid, flags in vids.items()])})

    def create(self, ctx: Applying, obj: PortVlans) -> None:
        """Make the port carry `vids` (and, `exact`, no other VLAN); each VLAN added is undone."""
        ipr, index = ctx.ipr(obj.ns), ctx.index(obj.ns, obj.port)
        want = {vid: (pvid, untagged) for vid, pvid, untagged in obj.vids}
        have = read_port_vlans(ipr, index)
        self_flag = {"vlan_flags": BRIDGE_FLAGS_SELF} if obj.self_entry else {}
        if obj.exact:
            for vid in have:
                if vid not in want:
                    ipr.vlan_filter("del", index=index, vlan_info={"vid": vid}, **self_flag)
        for vid, (pvid, untagged) in want.items():
            if have.get(vid) == (pvid, untagged):
                continue
            flags = (["pvid"] if pvid else []) + (["untagged"] if untagged else [])
            ipr.vlan_filter("add", index=index, vlan_info={"vid": vid, "flags": flags}, **self_flag)
            if vid not in have:
                ctx.push(
                    f"vlan {vid} on {obj.port}",
                    lambda vid=vid: ipr.vlan_filter("del", index=index, vlan_info={"vid": vid}, **self_flag),
                    obj,
                )

    @sets(VLANS)
    def _vlans(self, ctx: Applying, obj: PortVlans, change: AttrChange) -> None:
        self.create(ctx, obj)


@register
class VlanDeviceDriver(Driver):
    kinds = (VlanDevice,)
    feature = FEATURE_8021Q

    def observe(self, observer: Observer, obj: VlanDevice) -> Observed | None:
        found = read_link(observer, obj.ns, obj.name)
        if found is None:
            return None
        msg, attrs = found
        data = info_data(msg)
        attrs[VLAN_ID] = data.get("IFLA_VLAN_ID") if data else None
        parent = msg.get("IFLA_LINK")
        attrs[PARENT] = observer.link_name(obj.ns, parent) if parent else None
        attrs[MASTER] = master_of(observer, obj.ns, msg)
        return Observed(attrs, {INDEX: msg["index"]})

    def create(self, ctx: Applying, obj: VlanDevice) -> None:
        ipr = ctx.ipr(NODE_NS)
        ipr.link("add", ifname=obj.name, kind="vlan", link=ctx.index(NODE_NS, obj.parent), vlan_id=obj.vlan_id)
        ctx.push(f"create vlan device {obj.name}", lambda: ctx.delete_link(NODE_NS, obj.name), obj)
        index = ctx.index(NODE_NS, obj.name)
        ipr.link("set", index=index, master=ctx.index(NODE_NS, obj.bridge))
        ipr.link("set", index=index, state="up")

    def delete(self, ctx: Applying, obj: VlanDevice) -> None:
        ctx.delete_link(NODE_NS, obj.name)

    @sets(MASTER)
    def _master(self, ctx: Applying, obj: VlanDevice, change: AttrChange) -> None:
        ctx.ipr(NODE_NS).link("set", index=ctx.index(NODE_NS, obj.name), master=ctx.index(NODE_NS, obj.bridge))

    @sets(UP)
    def _up(self, ctx: Applying, obj: VlanDevice, change: AttrChange) -> None:
        ctx.ipr(NODE_NS).link("set", index=ctx.index(NODE_NS, obj.name), state="up")
