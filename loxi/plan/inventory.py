"""`show`: what loxi-cni manages on a node, from the two places it leaves traces.

The IPAM store says which attachments hold addresses; the kernel says which
loxi veths exist and on which bridge. Host veth names are a pure function of
(network, container id, ifname), so the two can be joined without any record
file, and whatever is on one side only is reported as leaked. Reading is split
from joining: `build_inventory` is pure, so it is tested on plain data.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from applier.ipam import Allocation, HostLocalStore
from compiler.graph import HOST_VETH_PREFIX, host_veth_name
from compiler.model import NODE_NS, Attachment
from intent.ipam_config import DEFAULT_DATA_DIR, NETWORK_NAME_RE, HostLocalConfig, RangeSet

IFF_UP = 0x1
ALLOCATION_WITHOUT_VETH = "allocation-without-veth"
VETH_WITHOUT_ALLOCATION = "veth-without-allocation"


@dataclass(frozen=True)
class LinkInfo:
    name: str
    index: int
    kind: str | None
    master: int | None
    up: bool


@dataclass(frozen=True)
class StoreContent:
    data_dir: str
    network: str
    allocations: tuple[Allocation, ...]


@dataclass(frozen=True)
class AttachmentRow:
    ip: str
    container_id: str
    ifname: str  # "" for a legacy lease file that names only the container
    host_veth: str | None  # None when the ifname is unknown
    veth_exists: bool
    bridge: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ip": self.ip,
            "container_id": self.container_id,
            "ifname": self.ifname or None,
            "host_veth": self.host_veth,
            "veth_exists": self.veth_exists,
            "bridge": self.bridge,
        }


@dataclass(frozen=True)
class PoolUsage:
    range_set: int
    ranges: str
    size: int
    used: int

    def to_dict(self) -> dict[str, Any]:
        return {"range_set": self.range_set, "ranges": self.ranges, "size": self.size, "used": self.used}


@dataclass(frozen=True)
class NetworkRow:
    name: str
    store_dir: str
    attachments: tuple[AttachmentRow, ...]
    pools: tuple[PoolUsage, ...] = ()  # known only when the network's conf was given

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "store_dir": self.store_dir,
            "allocations": len(self.attachments),
            "attachments": [a.to_dict() for a in self.attachments],
            "pools": [p.to_dict() for p in self.pools] or None,
        }


@dataclass(frozen=True)
class BridgeRow:
    name: str
    up: bool
    loxi_ports: tuple[str, ...]
    ports: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "up": self.up, "loxi_ports": list(self.loxi_ports), "ports": self.ports}


@dataclass(frozen=True)
class Leak:
    kind: str
    name: str  # the veth, or the address of the allocation
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "detail": self.detail}


@dataclass(frozen=True)
class Inventory:
    node_netns: str
    data_dirs: tuple[str, ...]
    bridges: tuple[BridgeRow, ...]
    networks: tuple[NetworkRow, ...]
    leaks: tuple[Leak, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": 1,
            "node_netns": self.node_netns or None,
            "data_dirs": list(self.data_dirs),
            "bridges": [b.to_dict() for b in self.bridges],
            "networks": [n.to_dict() for n in self.networks],
            "leaks": [leak.to_dict() for leak in self.leaks],
        }


# -- reading ------------------------------------------------------------------


def read_links(ipr: Any) -> list[LinkInfo]:
    """One dump of the node's links."""
    links = []
    for msg in ipr.get_links():
        info = msg.get("IFLA_LINKINFO")
        links.append(
            LinkInfo(
                name=msg.get("IFLA_IFNAME"),
                index=msg["index"],
                kind=info.get("IFLA_INFO_KIND") if info else None,
                master=msg.get("IFLA_MASTER") or None,
                up=bool(msg["flags"] & IFF_UP),
            )
        )
    return links


def read_stores(data_dir: str) -> list[StoreContent]:
    """Every network store under `data_dir` (a missing directory holds none)."""
    try:
        entries = sorted(os.scandir(data_dir), key=lambda e: e.name)
    except FileNotFoundError:
        return []
    out = []
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False) or not NETWORK_NAME_RE.fullmatch(entry.name):
            continue
        store = HostLocalStore(HostLocalConfig(network_name=entry.name, data_dir=data_dir, range_sets=()))
        out.append(StoreContent(data_dir, entry.name, tuple(store.allocations())))
    return out


# -- joining --------------------------------------------------------------------


def _pool_usage(range_sets: Sequence[RangeSet], allocations: Iterable[Allocation]) -> tuple[PoolUsage, ...]:
    ips = [a.ip for a in allocations]
    pools = []
    for index, rset in enumerate(range_sets):
        size = 0
        for rng in rset.ranges:
            size += int(rng.range_end) - int(rng.range_start) + 1
            if rng.gateway is not None and rng.contains(rng.gateway):
                size -= 1
        used = sum(1 for ip in ips if rset.contains(ip))
        pools.append(PoolUsage(index, rset.text, size, used))
    return tuple(pools)


def build_inventory(
    links: Sequence[LinkInfo],
    stores: Sequence[StoreContent],
    configs: Mapping[tuple[str, str], HostLocalConfig] | None = None,
    node_netns: str = "",
) -> Inventory:
    """Join the store and the kernel. `configs` ((data dir, network) → config) adds pool usage."""
    configs = configs or {}
    by_name = {link.name: link for link in links}
    by_index = {link.index: link for link in links}
    expected: set[str] = set()
    networks, leaks = [], []
    for store in stores:
        rows = []
        for allocation in store.allocations:
            veth = None
            if allocation.ifname:
                veth = host_veth_name(Attachment(store.network, allocation.container_id, allocation.ifname, ""))
                expected.add(veth)
            link = by_name.get(veth) if veth else None
            master = by_index.get(link.master) if link and link.master else None
            rows.append(
                AttachmentRow(
                    str(allocation.ip),
                    allocation.container_id,
                    allocation.ifname,
                    veth,
                    link is not None,
                    master.name if master else None,
                )
            )
            if veth and link is None:
                owner = f"{allocation.container_id}/{allocation.ifname}"
                detail = f"{store.network}: {owner} holds {allocation.ip}, but its host veth {veth} does not exist"
                leaks.append(Leak(ALLOCATION_WITHOUT_VETH, str(allocation.ip), detail))
        config = configs.get((store.data_dir, store.network))
        pools = _pool_usage(config.range_sets, store.allocations) if config else ()
        networks.append(NetworkRow(store.network, os.path.join(store.data_dir, store.network), tuple(rows), pools))

    loxi_links = [link for link in links if link.name.startswith(HOST_VETH_PREFIX) and link.kind == "veth"]
    for link in loxi_links:
        if link.name not in expected:
            master = by_index.get(link.master) if link.master else None
            where = f" on {master.name}" if master else ""
            detail = (
                f"veth {link.name}{where}: no allocation in the IPAM store names it (or its IPAM is not host-local)"
            )
            leaks.append(Leak(VETH_WITHOUT_ALLOCATION, link.name, detail))

    bridges = []
    for link in links:
        if link.kind != "bridge":
            continue
        ports = [port for port in links if port.master == link.index]
        loxi_ports = tuple(sorted(p.name for p in ports if p in loxi_links))
        if loxi_ports:
            bridges.append(BridgeRow(link.name, link.up, loxi_ports, len(ports)))
    data_dirs = tuple(dict.fromkeys(store.data_dir for store in stores))
    return Inventory(node_netns, data_dirs, tuple(bridges), tuple(networks), tuple(leaks))


def take_inventory(
    data_dirs: Sequence[str] = (DEFAULT_DATA_DIR,),
    configs: Mapping[tuple[str, str], HostLocalConfig] | None = None,
    node_netns: str = "",
) -> Inventory:
    """Read the stores and one link dump of this thread's namespace, then join them."""
    from applier.netns import Namespaces

    stores = [store for data_dir in dict.fromkeys(data_dirs) for store in read_stores(data_dir)]
    with Namespaces() as namespaces:
        links = read_links(namespaces.ipr(NODE_NS))
    inventory = build_inventory(links, stores, configs, node_netns)
    return Inventory(
        node_netns, tuple(dict.fromkeys(data_dirs)), inventory.bridges, inventory.networks, inventory.leaks
    )
