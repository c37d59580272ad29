"""Link kinds: the bridge, the two ends of the pod's veth pair, and the node's uplink."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from compiler.model.attrs import HAIRPIN, ISOLATED, KIND, MAC, MASTER, MTU, PEER, PROMISC, UP, VLAN_FILTERING
from compiler.model.base import POD_NS, NetObject


@dataclass(frozen=True)
class Bridge(NetObject):
    kind: ClassVar[str] = "bridge"
    rank: ClassVar[int] = 0
    shared: ClassVar[bool] = True
    attributes: ClassVar[tuple[str, ...]] = (KIND, UP, PROMISC, MTU, VLAN_FILTERING)
    create_only: ClassVar[frozenset[str]] = frozenset({MTU})

    bridge: str
    mtu: int = 0
    promisc: bool = False
    vlan_filtering: bool = False

    @property
    def name(self) -> str:
        return self.bridge

    @property
    def guard_bridge(self) -> str:
        return self.bridge

    def desired(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {KIND: "bridge", UP: True, PROMISC: self.promisc}
        if self.mtu:
            attrs[MTU] = self.mtu
        if self.vlan_filtering:
            attrs[VLAN_FILTERING] = True
        return attrs


@dataclass(frozen=True)
class HostVeth(NetObject):
    """The node end of the pod's veth pair, a port of the bridge.

    Creating it creates the pair, with the peer placed straight into the pod's
    namespace under CNI_IFNAME, so the pod name never collides with a node link.
    """

    kind: ClassVar[str] = "veth"
    rank: ClassVar[int] = 4
    attributes: ClassVar[tuple[str, ...]] = (KIND, PEER, MASTER, UP, HAIRPIN, ISOLATED, MTU)
    replaceable: ClassVar[bool] = True

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

    @property
    def guard_bridge(self) -> str:
        return self.bridge

    def desired(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            KIND: "veth",
            PEER: self.peer_name,
            MASTER: self.bridge,
            UP: True,
            HAIRPIN: self.hairpin,
            ISOLATED: self.isolated,
        }
        if self.mtu:
            attrs[MTU] = self.mtu
        return attrs


@dataclass(frozen=True)
class PodLink(NetObject):
    """CNI_IFNAME inside the pod, the peer of the host veth."""

    kind: ClassVar[str] = "link"
    rank: ClassVar[int] = 6
    attributes: ClassVar[tuple[str, ...]] = (KIND, PEER, UP, MTU, MAC)

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
        attrs: dict[str, Any] = {KIND: "veth", PEER: self.peer_name, UP: self.up}
        if self.mtu:
            attrs[MTU] = self.mtu
        if self.mac:
            attrs[MAC] = self.mac
        return attrs


@dataclass(frozen=True)
class Uplink(NetObject):
    """The node's NIC named by `uplink`. loxi-cni never creates it: it must exist.
    With `uplinkMode: trunk` it is itself a tagged port of the bridge."""

    kind: ClassVar[str] = "uplink"
    rank: ClassVar[int] = 1
    shared: ClassVar[bool] = True
    creatable: ClassVar[bool] = False
    attributes: ClassVar[tuple[str, ...]] = (UP, MASTER)

    ifname: str
    bridge: str = ""

    @property
    def name(self) -> str:
        return self.ifname

    @property
    def guard_bridge(self) -> str:
        return self.bridge

    def desired(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {UP: True}
        if self.bridge:
            attrs[MASTER] = self.bridge
        return attrs
