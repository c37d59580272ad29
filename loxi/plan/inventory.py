"""`show`: what loxi-cni manages on a node, from the confs its runtime reads, the IPAM stores and the kernel.

The confs (`loxi.plan.confdir`: the runtime's conf directory, or `--conf`) say
which loxi-cni networks exist, with their bridges, stores and pools. The kernel
says which loxi host veths exist, whose they are (their alias) and where their
peers are, so every attachment is listed with its pod namespace and addresses
whether or not its store was found. The stores say which attachments hold
addresses. What is live, leaked or unaccounted is `loxi.node.liveness.classify`'s
call, the same one the agent's reconciler makes. Gathering (`loxi.plan.gather.take_inventory`)
is split from laying out (`build_inventory`, here: pure, tested on plain data).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from intent.ipam_config import RangeSet
from loxi.node.facts import LinkInfo, PodEnd, loxi_veths
from loxi.node.liveness import (
    ATTACHED,
    BUSY,
    LEAKED,
    UNACCOUNTED,
    AllocationTrace,
    Evidence,
    Owner,
    Verdict,
    VethTrace,
    classify,
)
from loxi.plan.confdir import ConfProblem, NetworkConf

__all__ = ["Facts", "Inventory", "LinkInfo", "StoreContent", "build_inventory"]


@dataclass(frozen=True)
class StoreContent:
    data_dir: str
    network: str
    allocations: tuple[AllocationTrace, ...] | None  # None: no store of the network in data_dir

    @property
    def store_dir(self) -> str:
        return os.path.join(self.data_dir, self.network)


@dataclass(frozen=True)
class Facts:
    """Everything `build_inventory` joins, as read from the node."""

    links: tuple[LinkInfo, ...]
    veths: tuple[VethTrace, ...]
    stores: tuple[StoreContent, ...]
    networks: tuple[NetworkConf, ...] = ()
    evidence: Evidence = field(default_factory=Evidence)
    pod_ends: Mapping[str, PodEnd] = field(default_factory=dict)  # host veth → its peer, read in the pod
    node_netns: str = ""
    conf_files: tuple[str, ...] = ()
    conf_problems: tuple[ConfProblem, ...] = ()


@dataclass(frozen=True)
class AttachmentRow:
    state: str  # loxi.node.liveness: attached, unaccounted, leaked, busy
    kind: str
    network: str | None
    container_id: str | None
    ifname: str | None
    host_veth: str | None
    veth_exists: bool
    bridge: str | None
    netns: str | None  # the pod's namespace, found through the veth's peer
    pod_ifname: str | None
    addresses: tuple[str, ...]  # on the pod's interface, as the kernel has them
    lease: tuple[str, ...]  # what the store holds for the attachment
    store_dir: str | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "kind": self.kind,
            "network": self.network,
            "container_id": self.container_id,
            "ifname": self.ifname or None,
            "host_veth": self.host_veth,
            "veth_exists": self.veth_exists,
            "bridge": self.bridge,
            "netns": self.netns,
            "pod_ifname": self.pod_ifname,
            "addresses": list(self.addresses),
            "lease": list(self.lease),
            "store_dir": self.store_dir,
            "detail": self.detail,
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
    source: str | None  # the conf file that defines it; None for a store found without a conf
    bridge: str | None
    ipam: str | None  # the IPAM type; None when unknown (no conf) or absent
    store_dir: str | None
    store_found: bool
    allocations: int
    pools: tuple[PoolUsage, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "bridge": self.bridge,
            "ipam": self.ipam,
            "store_dir": self.store_dir,
            "store_found": self.store_found,
            "allocations": self.allocations,
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
class Finding:
    kind: str
    name: str  # the veth, or the addresses of the allocation
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "detail": self.detail}


@dataclass(frozen=True)
class Inventory:
    node_netns: str
    conf_source: str
    conf_files: tuple[str, ...]
    conf_problems: tuple[ConfProblem, ...]
    data_dirs: tuple[str, ...]
    bridges: tuple[BridgeRow, ...]
    networks: tuple[NetworkRow, ...]
    attachments: tuple[AttachmentRow, ...]

    def _findings(self, state: str) -> tuple[Finding, ...]:
        return tuple(
            Finding(a.kind, a.host_veth if a.veth_exists else ", ".join(a.lease) or str(a.host_veth), a.detail)
            for a in self.attachments
            if a.state == state
        )

    @property
    def leaks(self) -> tuple[Finding, ...]:
        return self._findings(LEAKED)

    @property
    def unaccounted(self) -> tuple[Finding, ...]:
        return self._findings(UNACCOUNTED)

    @property
    def busy(self) -> tuple[Finding, ...]:
        return self._findings(BUSY)

    def count(self, state: str) -> int:
        return sum(1 for a in self.attachments if a.state == state)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": 2,
            "node_netns": self.node_netns or None,
            "confs": {
                "source": self.conf_source,
                "files": list(self.conf_files),
                "problems": [p.to_dict() for p in self.conf_problems],
            },
            "data_dirs": list(self.data_dirs),
            "bridges": [b.to_dict() for b in self.bridges],
            "networks": [n.to_dict() for n in self.networks],
            "attachments": [a.to_dict() for a in self.attachments],
            "summary": {state: self.count(state) for state in (ATTACHED, UNACCOUNTED, LEAKED, BUSY)},
            "leaks": [f.to_dict() for f in self.leaks],
            "unaccounted": [f.to_dict() for f in self.unaccounted],
        }


# -- joining --------------------------------------------------------------------


def _pool_usage(range_sets: Sequence[RangeSet], allocations: Iterable[AllocationTrace]) -> tuple[PoolUsage, ...]:
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


def _row(verdict: Verdict, pod_ends: Mapping[str, PodEnd]) -> AttachmentRow:
    veth = verdict.veth
    owner: Owner | tuple[None, None, None] = verdict.owner or (None, None, None)
    end = pod_ends.get(veth.name) if veth else None
    stores = dict.fromkeys(a.store_dir for a in verdict.allocations)
    return AttachmentRow(
        state=verdict.state,
        kind=verdict.kind,
        network=owner[0],
        container_id=owner[1],
        ifname=owner[2],
        host_veth=verdict.expected_veth,
        veth_exists=veth is not None,
        bridge=veth.bridge if veth else None,
        netns=veth.peer_netns if veth else None,
        pod_ifname=end.ifname if end else None,
        addresses=end.addresses if end else (),
        lease=tuple(str(a.ip) for a in verdict.allocations),
        store_dir=", ".join(stores) or None,
        detail=verdict.detail,
    )


def _network_rows(facts: Facts) -> tuple[NetworkRow, ...]:
    found = {(s.data_dir, s.network): s for s in facts.stores}
    rows = []
    defined = set()
    for net in facts.networks:
        defined.add(net.name)
        store = found.get((net.host_local.data_dir, net.name)) if net.host_local else None
        allocations = store.allocations if store and store.allocations is not None else ()
        pools = _pool_usage(net.host_local.range_sets, allocations) if net.host_local else ()
        rows.append(
            NetworkRow(
                net.name,
                net.source,
                net.bridge,
                net.ipam_type,
                net.store_dir,
                bool(store and store.allocations is not None),
                len(allocations),
                pools,
            )
        )
    for store in facts.stores:
        if store.network in defined or store.allocations is None:
            continue
        rows.append(NetworkRow(store.network, None, None, None, store.store_dir, True, len(store.allocations)))
    return tuple(rows)


def _bridges(links: Sequence[LinkInfo]) -> tuple[BridgeRow, ...]:
    loxi = {link.index for link in loxi_veths(links)}
    bridges = []
    for link in links:
        if link.kind != "bridge":
            continue
        ports = [port for port in links if port.master == link.index]
        loxi_ports = tuple(sorted(p.name for p in ports if p.index in loxi))
        if loxi_ports:
            bridges.append(BridgeRow(link.name, link.up, loxi_ports, len(ports)))
    return tuple(bridges)


def build_inventory(facts: Facts, conf_source: str = "") -> Inventory:
    """Classify and lay out the facts."""
    allocations = [a for store in facts.stores for a in store.allocations or ()]
    verdicts = classify(facts.veths, allocations, facts.evidence)
    data_dirs = tuple(dict.fromkeys(s.data_dir for s in facts.stores))
    return Inventory(
        facts.node_netns,
        conf_source or facts.evidence.conf_source,
        facts.conf_files,
        facts.conf_problems,
        data_dirs,
        _bridges(facts.links),
        _network_rows(facts),
        tuple(_row(v, facts.pod_ends) for v in verdicts),
    )
