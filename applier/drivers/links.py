"""Link drivers: the bridge, the two ends of the pod's veth pair, the node's uplink.

Links are read by name (one RTM_GETLINK each, cached by the observer) and
changed by index; every creation's inverse is a deletion, every flag's inverse
puts the old value back.
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING, Any

from applier.drivers.base import FEATURE_VLAN_FILTERING, Applying, Driver, register, sets
from applier.netlink import NetlinkError
from compiler.model import NODE_NS, POD_NS, Bridge, HostVeth, Observed, PodLink, Uplink
from compiler.model.attrs import (
    HAIRPIN,
    INDEX,
    IPV4,
    ISOLATED,
    KIND,
    MAC,
    MASTER,
    MTU,
    PEER,
    PROMISC,
    UP,
    VLAN_FILTERING,
)
from compiler.plan import AttrChange

if TYPE_CHECKING:
    from applier.observer import Observer

IFF_UP = 0x1
IFF_PROMISC = 0x100


def random_mac() -> str:
    """A locally administered unicast MAC. Setting the bridge's MAC explicitly pins
    it: otherwise it follows the lowest port MAC and changes as pods come and go."""
    octets = bytearray(os.urandom(6))
    octets[0] = (octets[0] & 0xFC) | 0x02
    return ":".join(f"{b:02x}" for b in octets)


def read_link(observer: Observer, ns: str, name: str) -> tuple[Any, dict[str, Any]] | None:
    """The link's message and the attributes every link kind shares (kind, up, mtu); None if absent."""
    msg = observer.link(ns, name)
    if msg is None:
        return None
    info = msg.get("IFLA_LINKINFO")
    return msg, {
        KIND: info.get("IFLA_INFO_KIND") if info else None,
        UP: bool(msg["flags"] & IFF_UP),
        MTU: msg.get("IFLA_MTU"),
    }


def info_data(msg: Any, which: str = "IFLA_INFO_DATA") -> Any:
    """The kind's own attributes (IFLA_INFO_DATA) or, for a port, its master's (IFLA_INFO_SLAVE_DATA)."""
    return (msg.get("IFLA_LINKINFO") or {}).get(which)


def master_of(observer: Observer, ns: str, msg: Any) -> str | None:
    master = msg.get("IFLA_MASTER")
    return observer.link_name(ns, master) if master else None


class _LinkDriver(Driver):
    """A link loxi-cni creates: deleted by name, its MTU set by index."""

    def delete(self, ctx: Applying, obj: Any) -> None:
        ctx.delete_link(obj.ns, obj.name)

    @sets(MTU)
    def _mtu(self, ctx: Applying, obj: Any, change: AttrChange) -> None:
        ctx.ipr(obj.ns).link("set", index=ctx.index(obj.ns, obj.name), mtu=change.after)


@register
class BridgeDriver(_LinkDriver):
    kinds = (Bridge,)
    feature = FEATURE_VLAN_FILTERING

    def observe(self, observer: Observer, obj: Bridge) -> Observed | None:
        found = read_link(observer, obj.ns, obj.name)
        if found is None:
            return None
        msg, attrs = found
        attrs[PROMISC] = bool(msg["flags"] & IFF_PROMISC)
        data = info_data(msg)
        if attrs[KIND] == "bridge":
            attrs[VLAN_FILTERING] = bool(data.get("IFLA_BR_VLAN_FILTERING")) if data else False
        addrs = observer.addresses(obj.ns, msg["index"]) if attrs[KIND] == "bridge" else []
        facts = {
            INDEX: msg["index"],
            MAC: msg.get("IFLA_ADDRESS"),
            IPV4: [f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}" for a in addrs if a["family"] == 2],
        }
        return Observed(attrs, facts)

    def create(self, ctx: Applying, obj: Bridge) -> None:
        ipr = ctx.ipr(NODE_NS)
        spec: dict[str, Any] = {"ifname": obj.name, "kind": "bridge", "address": random_mac()}
        if obj.mtu:
            spec["mtu"] = obj.mtu
        if obj.vlan_filtering:
            spec["br_vlan_filtering"] = 1
            spec["br_vlan_default_pvid"] = 0
        try:
            ipr.link("add", **spec)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise
        else:
            ctx.created_bridge()
            ctx.push(f"create bridge {obj.name}", lambda: ctx.delete_link(NODE_NS, obj.name), obj)
        index = ctx.index(NODE_NS, obj.name)
        if obj.promisc:
            ipr.link("set", index=index, flags=IFF_PROMISC, change=IFF_PROMISC)
        ipr.link("set", index=index, state="up")

    def ordered(self, changes: Any) -> list[AttrChange]:
        """VLAN filtering first: the change a kernel may refuse (EOPNOTSUPP)."""
        return sorted(changes, key=lambda c: c.name != VLAN_FILTERING)

    @sets(UP)
    def _up(self, ctx: Applying, obj: Bridge, change: AttrChange) -> None:
        ipr, index = ctx.ipr(NODE_NS), ctx.index(NODE_NS, obj.name)
        ipr.link("set", index=index, state="up" if change.after else "down")
        ctx.push("bridge up", lambda: ipr.link("set", index=index, state="down"), obj)

    @sets(PROMISC)
    def _promisc(self, ctx: Applying, obj: Bridge, change: AttrChange) -> None:
        ipr, index = ctx.ipr(NODE_NS), ctx.index(NODE_NS, obj.name)
        ipr.link("set", index=index, flags=IFF_PROMISC if change.after else 0, change=IFF_PROMISC)
        before = IFF_PROMISC if change.before else 0
        ctx.push("bridge promisc", lambda: ipr.link("set", index=index, flags=before, change=IFF_PROMISC), obj)

    @sets(VLAN_FILTERING)
    def _vlan_filtering(self, ctx: Applying, obj: Bridge, change: AttrChange) -> None:
        ipr, index = ctx.ipr(NODE_NS), ctx.index(NODE_NS, obj.name)
        ipr.link("set", index=index, kind="bridge", br_vlan_filtering=int(bool(change.after)))
        ctx.push("bridge vlan_filtering", lambda: ipr.link("set", index=index, kind="bridge", br_vlan_filtering=0), obj)


@register
class HostVethDriver(_LinkDriver):
    kinds = (HostVeth,)

    def observe(self, observer: Observer, obj: HostVeth) -> Observed | None:
        found = read_link(observer, obj.ns, obj.name)
        if found is None:
            return None
        msg, attrs = found
        attrs[MASTER] = master_of(observer, obj.ns, msg)
        slave = info_data(msg, "IFLA_INFO_SLAVE_DATA")
        attrs[HAIRPIN] = bool(slave.get("IFLA_BRPORT_MODE")) if slave else False
        attrs[ISOLATED] = bool(slave.get("IFLA_BRPORT_ISOLATED")) if slave else False
        attrs[PEER] = self._peer_of(observer, msg, obj.peer_name)
        return Observed(attrs, {INDEX: msg["index"], MAC: msg.get("IFLA_ADDRESS")})

    @staticmethod
    def _peer_of(observer: Observer, host_msg: Any, pod_ifname: str) -> str | None:
        """The pod link's name if the two ends point at each other, else None."""
        pod = observer.link(POD_NS, pod_ifname)
        if pod is None:
            return None
        if host_msg.get("IFLA_LINK") == pod["index"] and pod.get("IFLA_LINK") == host_msg["index"]:
            return pod_ifname
        return None

    def create(self, ctx: Applying, obj: HostVeth) -> None:
        # One message makes the pair, with the peer in the pod's namespace, the
        # node end enslaved and up, and both MACs chosen here: the kernel's
        # random MACs would have to be read back, and udev's
        # MACAddressPolicy may rewrite a random MAC after the result is out.
        ipr = ctx.ipr(NODE_NS)
        host_mac, peer_mac = random_mac(), obj.peer_mac or random_mac()
        peer: dict[str, Any] = {"ifname": obj.peer_name, "net_ns_fd": ctx.ns.fd(POD_NS), "address": peer_mac}
        spec: dict[str, Any] = {
            "ifname": obj.name,
            "kind": "veth",
            "peer": peer,
            "address": host_mac,
            "master": ctx.index(NODE_NS, obj.bridge),
            "state": "up",
        }
        if obj.mtu:
            spec["mtu"] = peer["mtu"] = obj.mtu
        ipr.link("add", **spec)
        ctx.push(f"create veth {obj.name}", lambda: ctx.delete_link(NODE_NS, obj.name))
        ctx.created_link(NODE_NS, obj.name, host_mac, obj.mtu)
        ctx.created_link(POD_NS, obj.peer_name, peer_mac, obj.mtu)
        if obj.owner:  # the kernel takes no alias at creation; by name, no index lookup
            ipr.link("set", ifname=obj.name, ifalias=obj.owner)
        if obj.hairpin or obj.isolated:
            index = ctx.index(NODE_NS, obj.name)
            ipr.brport("set", index=index, mode=int(obj.hairpin), isolated=int(obj.isolated))

    @sets(MASTER)
    def _master(self, ctx: Applying, obj: HostVeth, change: AttrChange) -> None:
        ctx.ipr(NODE_NS).link("set", index=ctx.index(NODE_NS, obj.name), master=ctx.index(NODE_NS, obj.bridge))

    @sets(UP)
    def _up(self, ctx: Applying, obj: HostVeth, change: AttrChange) -> None:
        ctx.ipr(NODE_NS).link("set", index=ctx.index(NODE_NS, obj.name), state="up")

    @sets(HAIRPIN)
    def _hairpin(self, ctx: Applying, obj: HostVeth, change: AttrChange) -> None:
        ctx.ipr(NODE_NS).brport("set", index=ctx.index(NODE_NS, obj.name), mode=int(change.after))

    @sets(ISOLATED)
    def _isolated(self, ctx: Applying, obj: HostVeth, change: AttrChange) -> None:
        ctx.ipr(NODE_NS).brport("set", index=ctx.index(NODE_NS, obj.name), isolated=int(change.after))


@register
class PodLinkDriver(_LinkDriver):
    """CNI_IFNAME is made with the host veth; DEL of it takes its peer, wherever it went."""

    kinds = (PodLink,)

    def observe(self, observer: Observer, obj: PodLink) -> Observed | None:
        found = read_link(observer, obj.ns, obj.name)
        if found is None:
            return None
        msg, attrs = found
        attrs[MAC] = msg.get("IFLA_ADDRESS")
        host = observer.link(NODE_NS, obj.peer_name)
        linked = host is not None and msg.get("IFLA_LINK") == host["index"] and host.get("IFLA_LINK") == msg["index"]
        attrs[PEER] = obj.peer_name if linked else None
        return Observed(attrs, {INDEX: msg["index"], MAC: msg.get("IFLA_ADDRESS")})

    def create(self, ctx: Applying, obj: PodLink) -> None:
        index = ctx.index(POD_NS, obj.name)  # made with the host veth: it must be there
        if obj.up:
            ctx.ipr(POD_NS).link("set", index=index, state="up")

    @sets(MAC)
    def _mac(self, ctx: Applying, obj: PodLink, change: AttrChange) -> None:
        ctx.ipr(POD_NS).link("set", index=ctx.index(POD_NS, obj.name), address=change.after)

    @sets(UP)
    def _up(self, ctx: Applying, obj: PodLink, change: AttrChange) -> None:
        ctx.ipr(POD_NS).link("set", index=ctx.index(POD_NS, obj.name), state="up" if change.after else "down")


@register
class UplinkDriver(Driver):
    """The node's NIC: never created or deleted, only enslaved (trunk mode) and set up."""

    kinds = (Uplink,)

    def observe(self, observer: Observer, obj: Uplink) -> Observed | None:
        msg = observer.link(obj.ns, obj.name)
        if msg is None:
            return None
        attrs = {UP: bool(msg["flags"] & IFF_UP), MASTER: master_of(observer, obj.ns, msg)}
        return Observed(attrs, {INDEX: msg["index"]})

    @sets(MASTER)
    def _master(self, ctx: Applying, obj: Uplink, change: AttrChange) -> None:
        ipr, index = ctx.ipr(NODE_NS), ctx.index(NODE_NS, obj.name)
        ipr.link("set", index=index, master=ctx.index(NODE_NS, obj.bridge))
        ctx.push(f"enslave uplink {obj.name}", lambda: ipr.link("set", index=index, master=0), obj)

    @sets(UP)
    def _up(self, ctx: Applying, obj: Uplink, change: AttrChange) -> None:
        ctx.ipr(NODE_NS).link("set", index=ctx.index(NODE_NS, obj.name), state="up")
