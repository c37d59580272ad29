"""Read the live state of exactly the objects a desired state names.

Links are read by name, addresses and routes by link index and destination, so
the cost of an observation does not grow with the number of pods on the node.
The snapshot is plain data (`compiler.model.Observed`), the diff's only input.
"""

from __future__ import annotations

import errno
import ipaddress
from typing import Any

from applier import nftables
from applier.netlink import NetlinkError
from applier.netlink.dumps import addresses_of, routes_of_table
from applier.netns import Namespaces
from applier.sysctl import read_sysctl
from compiler.graph import DesiredState
from compiler.model import (
    LOXI_ROUTE_PROTO,
    Address,
    Bridge,
    HostVeth,
    Masquerade,
    NetObject,
    Observed,
    PodLink,
    PortVlans,
    Route,
    Snapshot,
    SpoofCheck,
    Sysctl,
    Uplink,
    VlanDevice,
    format_vlans,
)

IFF_UP = 0x1
IFF_PROMISC = 0x100
BRIDGE_VLAN_INFO_PVID = 0x2
BRIDGE_VLAN_INFO_UNTAGGED = 0x4
MAIN_TABLE = 254


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


class Observer:
    """One observation pass; caches links so each is read once."""

    def __init__(self, namespaces: Namespaces) -> None:
        self.ns = namespaces
        self._links: dict[tuple[str, str], Any] = {}
        self._addrs: dict[tuple[str, int], list[Any]] = {}
        self._routes: dict[tuple[str, int], list[Any]] = {}

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

    # -- one reader per kind ------------------------------------------------

    def _link_basics(self, msg: Any) -> dict[str, Any]:
        info = msg.get("IFLA_LINKINFO")
        return {
            "kind": info.get("IFLA_INFO_KIND") if info else None,
            "up": bool(msg["flags"] & IFF_UP),
            "mtu": msg.get("IFLA_MTU"),
        }

    def bridge(self, obj: Bridge) -> Observed | None:
        msg = self.link(obj.ns, obj.name)
        if msg is None:
            return None
        attrs = self._link_basics(msg)
        attrs["promisc"] = bool(msg["flags"] & IFF_PROMISC)
        data = (msg.get("IFLA_LINKINFO") or {}).get("IFLA_INFO_DATA")
        if attrs["kind"] == "bridge":
            attrs["vlan_filtering"] = bool(data.get("IFLA_BR_VLAN_FILTERING")) if data else False
        addrs = self.addresses(obj.ns, msg["index"]) if attrs["kind"] == "bridge" else []
        facts = {
            "index": msg["index"],
            "mac": msg.get("IFLA_ADDRESS"),
            "ipv4": [f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}" for a in addrs if a["family"] == 2],
        }
        return Observed(attrs, facts)

    def host_veth(self, obj: HostVeth) -> Observed | None:
        msg = self.link(obj.ns, obj.name)
        if msg is None:
            return None
        attrs = self._link_basics(msg)
        attrs["master"] = self._master(obj.ns, msg)
        slave = (msg.get("IFLA_LINKINFO") or {}).get("IFLA_INFO_SLAVE_DATA")
        attrs["hairpin"] = bool(slave.get("IFLA_BRPORT_MODE")) if slave else False
        attrs["isolated"] = bool(slave.get("IFLA_BRPORT_ISOLATED")) if slave else False
        attrs["peer"] = self._peer_of(msg, obj.peer_name)
        return Observed(attrs, {"index": msg["index"], "mac": msg.get("IFLA_ADDRESS")})

    def _master(self, ns: str, msg: Any) -> str | None:
        master = msg.get("IFLA_MASTER")
        return self.link_name(ns, master) if master else None

    def vlan_device(self, obj: VlanDevice) -> Observed | None:
        msg = self.link(obj.ns, obj.name)
        if msg is None:
            return None
        attrs = self._link_basics(msg)
        data = (msg.get("IFLA_LINKINFO") or {}).get("IFLA_INFO_DATA")
        attrs["vlan_id"] = data.get("IFLA_VLAN_ID") if data else None
        parent = msg.get("IFLA_LINK")
        attrs["parent"] = self.link_name(obj.ns, parent) if parent else None
        attrs["master"] = self._master(obj.ns, msg)
        return Observed(attrs, {"index": msg["index"]})

    def uplink(self, obj: Uplink) -> Observed | None:
        msg = self.link(obj.ns, obj.name)
        if msg is None:
            return None
        attrs = {"up": bool(msg["flags"] & IFF_UP), "master": self._master(obj.ns, msg)}
        return Observed(attrs, {"index": msg["index"]})

    def masquerade(self, obj: Masquerade) -> Observed | None:
        """Rules with the attachment's tag; a teardown looks in both backends."""
        if obj.rules:
            rules = nftables.masquerade_rules(obj.backend, obj.tag)
        else:
            rules = nftables.masquerade_rules("nftables", obj.tag) + nftables.masquerade_rules("iptables", obj.tag)
        return Observed({"rules": sorted(rules)}) if rules else None

    def spoof_check(self, obj: SpoofCheck) -> Observed | None:
        rules = nftables.spoof_rules(obj.tag)
        return Observed({"rule": rules[0] if len(rules) == 1 else rules}) if rules else None

    def _peer_of(self, host_msg: Any, pod_ifname: str) -> str | None:
        """The pod link's name if the two ends point at each other, else None."""
        pod = self.link("pod", pod_ifname)
        if pod is None:
            return None
        if host_msg.get("IFLA_LINK") == pod["index"] and pod.get("IFLA_LINK") == host_msg["index"]:
            return pod_ifname
        return None

    def pod_link(self, obj: PodLink) -> Observed | None:
        msg = self.link(obj.ns, obj.name)
        if msg is None:
            return None
        attrs = self._link_basics(msg)
        attrs["mac"] = msg.get("IFLA_ADDRESS")
        host = self.link("node", obj.peer_name)
        linked = host is not None and msg.get("IFLA_LINK") == host["index"] and host.get("IFLA_LINK") == msg["index"]
        attrs["peer"] = obj.peer_name if linked else None
        return Observed(attrs, {"index": msg["index"], "mac": msg.get("IFLA_ADDRESS")})

    def address(self, obj: Address) -> Observed | None:
        link_kind_name = self.link(obj.ns, obj.link)
        if link_kind_name is None:
            return None
        family = 2 if obj.interface.version == 4 else 10
        for msg in self.addresses(obj.ns, link_kind_name["index"]):
            if msg["family"] == family and ipaddress.ip_address(msg.get("IFA_ADDRESS")) == obj.interface.ip:
                return Observed({"prefixlen": msg["prefixlen"]}, {"index": link_kind_name["index"]})
        return None

    def routes(self, ns: str, family: int) -> list[Any]:
        """The main table of a namespace, dumped once (a pod's table is a handful of routes)."""
        key = (ns, family)
        if key not in self._routes:
            self._routes[key] = routes_of_table(self.ns.ipr(ns), family, MAIN_TABLE)
        return self._routes[key]

    def route(self, obj: Route) -> Observed | None:
        """Our route only: proto 76, on the attachment's link, to dst, via the gateway.
        The kernel's connected route, another attachment's default, a route someone
        else added to the same dst: none of them is ours, none passes a CHECK."""
        link = self.link(obj.ns, obj.dev)
        if link is None:
            return None
        family = 2 if obj.dst.version == 4 else 10
        gateway = obj.gateway
        for msg in self.routes(obj.ns, family):
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
            return Observed({"gateway": have}, {"proto": msg["proto"]})
        return None

    def sysctl(self, obj: Sysctl) -> Observed | None:
        if not self.ns.has(obj.ns):
            return None
        with self.ns.inside(obj.ns):
            value = read_sysctl(obj.path)
        return None if value is None else Observed({"value": value})

    def port_vlans(self, obj: PortVlans) -> Observed | None:
        msg = self.link(obj.ns, obj.port)
        if msg is None:
            return None
        vids = read_port_vlans(self.ns.ipr(obj.ns), msg["index"])
        return Observed({"vlans": format_vlans([(vid, *flags) for vid, flags in vids.items()])})

    def observe(self, obj: NetObject) -> Observed | None:
        reader = {
            Bridge: self.bridge,
            HostVeth: self.host_veth,
            PodLink: self.pod_link,
            Address: self.address,
            Route: self.route,
            Sysctl: self.sysctl,
            PortVlans: self.port_vlans,
            VlanDevice: self.vlan_device,
            Uplink: self.uplink,
            Masquerade: self.masquerade,
            SpoofCheck: self.spoof_check,
        }[type(obj)]
        return reader(obj)


def observe(namespaces: Namespaces, desired: DesiredState, observer: Observer | None = None) -> Snapshot:
    """Snapshot of every object the desired state names, present or absent.
    Pass an `observer` to read its cached links afterwards (nothing changed since)."""
    observer = observer or Observer(namespaces)
    snapshot: Snapshot = {}
    for obj in desired.objects() + list(desired.absent):
        snapshot[obj.key] = observer.observe(obj)
    return snapshot
