"""The typed objects of a desired-state graph.

Each object names one thing in one network namespace (`node` is the namespace
the plugin runs in, `pod` is CNI_NETNS) and the attributes loxi-cni manages on
it. Attributes not listed are never read or written, so a pod's later changes by
other plugins (a chained portmap, a service mesh) are not drift.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, ClassVar

NODE_NS = "node"
POD_NS = "pod"
# Routes loxi-cni installs carry this protocol number, so they are told apart
# from routes the kernel or another agent made (`ip route` shows "proto 76").
LOXI_ROUTE_PROTO = 76

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, order=True)
class ObjectKey:
    """Identity of an object: namespace, kind and a name unique within both."""

    ns: str
    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.ns}/{self.kind}/{self.name}"


@dataclass(frozen=True)
class NetObject:
    """Base of every graph node.

    `shared` objects serve every pod on the bridge: teardown never removes them
    and a rollback removes them only when no other pod has come to use them.
    `create_only` attributes are applied when the object is created and are not
    enforced on an object that already exists (the reference plugin leaves an
    existing bridge's MTU alone, and so do we).
    """

    kind: ClassVar[str] = "object"
    rank: ClassVar[int] = 0  # tie-breaker for the topological order
    shared: ClassVar[bool] = False
    creatable: ClassVar[bool] = True  # False: must already exist (the node's uplink)
    create_only: ClassVar[frozenset[str]] = frozenset()

    @property
    def ns(self) -> str:
        return NODE_NS

    @property
    def name(self) -> str:
        raise NotImplementedError

    @property
    def key(self) -> ObjectKey:
        return ObjectKey(self.ns, self.kind, self.name)

    def desired(self) -> dict[str, Any]:
        """The managed attributes and their wanted values."""
        return {}

    def describe(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass(frozen=True)
class Bridge(NetObject):
    kind: ClassVar[str] = "bridge"
    rank: ClassVar[int] = 0
    shared: ClassVar[bool] = True
    create_only: ClassVar[frozenset[str]] = frozenset({"mtu"})

    bridge: str
    mtu: int = 0
    promisc: bool = False
    vlan_filtering: bool = False

    @property
    def name(self) -> str:
        return self.bridge

    def desired(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {"kind": "bridge", "up": True, "promisc": self.promisc}
        if self.mtu:
            attrs["mtu"] = self.mtu
        if self.vlan_filtering:
            attrs["vlan_filtering"] = True
        return attrs


@dataclass(frozen=True)
class Sysctl(NetObject):
    """A /proc/sys/net value; written only when it differs, never reverted by DEL."""

    kind: ClassVar[str] = "sysctl"
    rank: ClassVar[int] = 3

    path: str  # below /proc/sys, e.g. net/ipv4/ip_forward
    value: str
    namespace: str = NODE_NS

    @property
    def ns(self) -> str:
        return self.namespace

    @property
    def shared(self) -> bool:  # type: ignore[override]
        return self.namespace == NODE_NS

    def describe(self) -> str:
        return f"sysctl {self.path} = {self.value}"

    @property
    def name(self) -> str:
        return self.path

    def desired(self) -> dict[str, Any]:
        return {"value": self.value}


@dataclass(frozen=True)
class HostVeth(NetObject):
    """The node end of the pod's veth pair, a port of the bridge.

    Creating it creates the pair, with the peer placed straight into the pod's
    namespace under CNI_IFNAME, so the pod name never collides with a node link.
    """

    kind: ClassVar[str] = "veth"
    rank: ClassVar[int] = 4

    host_name: str
    peer_name: str
    bridge: str
    mtu: int = 0
    hairpin: bool = False
    isolated: bool = False
    peer_mac: str = ""
    # Written to the link's alias: who the port belongs to, for GC and `loxi-plan show`.
    owner: str = ""

    @property
    def name(self) -> str:
        return self.host_name

    def desired(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            "kind": "veth",
            "peer": self.peer_name,
            "master": self.bridge,
            "up": True,
            "hairpin": self.hairpin,
            "isolated": self.isolated,
        }
        if self.mtu:
            attrs["mtu"] = self.mtu
        return attrs


@dataclass(frozen=True)
class PortVlans(NetObject):
    """VLAN membership of one bridge port (or of the bridge itself, `self_entry`).

    `vids` holds (VLAN id, pvid, untagged). `exact` ports must carry these VLANs
    and no others (a pod's port: VLAN 1 appearing is drift); the others must
    carry at least these (a shared uplink trunk serves several networks).
    """

    kind: ClassVar[str] = "port_vlans"
    rank: ClassVar[int] = 5

    port: str
    vids: tuple[tuple[int, bool, bool], ...]
    self_entry: bool = False
    exact: bool = True
    bridge: str = ""

    @property
    def name(self) -> str:
        return self.port

    @property
    def shared(self) -> bool:  # type: ignore[override]
        return not self.exact

    def desired(self) -> dict[str, Any]:
        return {"vlans": format_vlans(self.vids)}


@dataclass(frozen=True)
class VlanDevice(NetObject):
    """An 802.1Q device `<uplink>.<vid>` on the node's uplink, a port of the bridge:
    it carries the network's VLAN off the node, tagged, while the bridge sees it
    untagged on this port. Shared by every pod of the network."""

    kind: ClassVar[str] = "vlan"
    rank: ClassVar[int] = 1
    shared: ClassVar[bool] = True

    device: str
    parent: str
    vlan_id: int
    bridge: str

    @property
    def name(self) -> str:
        return self.device

    def desired(self) -> dict[str, Any]:
        return {"kind": "vlan", "vlan_id": self.vlan_id, "parent": self.parent, "master": self.bridge, "up": True}


@dataclass(frozen=True)
class Uplink(NetObject):
    """The node's NIC named by `uplink`. loxi-cni never creates it: it must exist.
    With `uplinkMode: trunk` it is itself a tagged port of the bridge."""

    kind: ClassVar[str] = "uplink"
    rank: ClassVar[int] = 1
    shared: ClassVar[bool] = True
    creatable: ClassVar[bool] = False

    ifname: str
    bridge: str = ""

    @property
    def name(self) -> str:
        return self.ifname

    def desired(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {"up": True}
        if self.bridge:
            attrs["master"] = self.bridge
        return attrs


@dataclass(frozen=True)
class Masquerade(NetObject):
    """The pod's masquerade rules (ipMasq): traffic from its addresses leaving its
    subnet is NATed. `tag` (the rules' comment) ties them to the attachment, so
    DEL can remove them without knowing the addresses."""

    kind: ClassVar[str] = "masquerade"
    rank: ClassVar[int] = 9

    tag: str
    backend: str = "nftables"
    rules: tuple[str, ...] = ()  # "address ! subnet"

    @property
    def name(self) -> str:
        return self.tag

    def desired(self) -> dict[str, Any]:
        return {"rules": sorted(self.rules)}


@dataclass(frozen=True)
class SpoofCheck(NetObject):
    """macspoofchk: frames entering the bridge from the pod's port must carry the
    pod's MAC. An nftables bridge-family rule tagged with the attachment."""

    kind: ClassVar[str] = "macspoofchk"
    rank: ClassVar[int] = 7

    tag: str
    port: str = ""
    mac: str = ""

    @property
    def name(self) -> str:
        return self.tag

    def desired(self) -> dict[str, Any]:
        return {"rule": f"{self.port} {self.mac}"}


@dataclass(frozen=True)
class PodLink(NetObject):
    """CNI_IFNAME inside the pod, the peer of the host veth."""

    kind: ClassVar[str] = "link"
    rank: ClassVar[int] = 6

    ifname: str
    peer_name: str
    mtu: int = 0
    mac: str = ""
    up: bool = True  # disableContainerInterface leaves it down

    @property
    def ns(self) -> str:
        return POD_NS

    @property
    def name(self) -> str:
        return self.ifname

    def desired(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {"kind": "veth", "peer": self.peer_name, "up": self.up}
        if self.mtu:
            attrs["mtu"] = self.mtu
        if self.mac:
            attrs["mac"] = self.mac
        return attrs


@dataclass(frozen=True)
class Address(NetObject):
    """An IP address on a link; `exclusive_ipv4` replaces other IPv4 addresses (forceAddress)."""

    kind: ClassVar[str] = "address"
    rank: ClassVar[int] = 2

    link: str
    interface: IPInterface
    namespace: str = NODE_NS
    exclusive_ipv4: bool = False

    @property
    def ns(self) -> str:
        return self.namespace

    @property
    def name(self) -> str:
        return f"{self.interface.ip} dev {self.link}"

    @property
    def shared(self) -> bool:  # type: ignore[override]
        return self.namespace == NODE_NS

    def desired(self) -> dict[str, Any]:
        return {"prefixlen": self.interface.network.prefixlen}

    def describe(self) -> str:
        return f"address {self.interface} on {self.link}"


@dataclass(frozen=True)
class Route(NetObject):
    """A route in the pod via the attachment's link. Two routes to one destination
    (two defaults via two gateways) are two objects, both installed: the compiler
    marks them `via_in_name`, so the gateway is part of their names (and keys); a
    lone route keeps the short name `<dst> dev <link>`. Only a route of ours (LOXI_ROUTE_PROTO, on `dev`,
    via `gateway`) is this object: the kernel's connected route to the same subnet,
    another attachment's default route, someone else's route are never read as it,
    replaced by it, or removed with it."""

    kind: ClassVar[str] = "route"
    rank: ClassVar[int] = 8

    dst: IPNetwork
    dev: str
    gateway: IPAddress | None = None
    namespace: str = POD_NS
    via_in_name: bool = False  # another route of the graph has the same dst and dev

    @property
    def ns(self) -> str:
        return self.namespace

    @property
    def name(self) -> str:
        via = f" via {self.gateway}" if self.gateway and self.via_in_name else ""
        return f"{self.dst}{via} dev {self.dev}"

    def desired(self) -> dict[str, Any]:
        return {"gateway": str(self.gateway) if self.gateway else None}

    def describe(self) -> str:
        via = f" via {self.gateway}" if self.gateway else ""
        return f"route {self.dst}{via} dev {self.dev}"


def format_vlans(vids: tuple[tuple[int, bool, bool], ...] | list[tuple[int, bool, bool]]) -> list[str]:
    """Stable, readable VLAN membership, runs of plain tagged VLANs compressed:
    ['100 pvid untagged', '200-299']."""
    out: list[str] = []
    run: list[int] = []

    def flush() -> None:
        if run:
            out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
            run.clear()

    for vid, pvid, untagged in sorted(set(vids)):
        if pvid or untagged:
            flush()
            out.append(f"{vid}{' pvid' if pvid else ''}{' untagged' if untagged else ''}")
        elif run and vid == run[-1] + 1:
            run.append(vid)
        else:
            flush()
            run.append(vid)
    flush()
    return out


def parse_vlans(texts: list[str] | None) -> dict[int, tuple[bool, bool]]:
    """The inverse of format_vlans: {vid: (pvid, untagged)}."""
    vids: dict[int, tuple[bool, bool]] = {}
    for text in texts or []:
        parts = text.split()
        first, _, last = parts[0].partition("-")
        for vid in range(int(first), int(last or first) + 1):
            vids[vid] = ("pvid" in parts, "untagged" in parts)
    return vids


@dataclass(frozen=True)
class AddressLease:
    """An address handed out by IPAM, as the compiler needs it."""

    interface: IPInterface
    gateway: IPAddress | None = None


@dataclass(frozen=True)
class RouteIntent:
    """A route requested by IPAM (`ipam.routes`); gateway None means the family's gateway."""

    dst: IPNetwork
    gateway: IPAddress | None = None


@dataclass(frozen=True)
class Attachment:
    """Who the pod is: the identity that names the host veth and the IPAM files."""

    network: str
    container_id: str
    ifname: str
    netns: str


@dataclass
class Observed:
    """What the kernel has for one object: the managed attributes plus facts the
    diff needs (the link's other IPv4 addresses, its MAC). Pure data."""

    attrs: dict[str, Any]
    facts: dict[str, Any] = field(default_factory=dict)


Snapshot = dict[ObjectKey, Observed | None]
