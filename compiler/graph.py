"""Compile a pod's intent into a desired-state graph.

Nodes are the typed objects of `compiler.model`; an edge A → B means B needs A
(a port needs its bridge, an address its link, a route its address). The
graph's topological order is the order of creation; teardown runs it backwards.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from compiler.model import (
    NODE_NS,
    POD_NS,
    Address,
    AddressLease,
    Attachment,
    Bridge,
    HostVeth,
    IPAddress,
    IPInterface,
    Masquerade,
    NetObject,
    ObjectKey,
    PodLink,
    PortVlans,
    Route,
    RouteIntent,
    SpoofCheck,
    Sysctl,
    Uplink,
    VlanDevice,
    attachment_digest,
)
from compiler.networkx_lean import DiGraph, lexicographical_topological_sort
from intent.config import NetConf

HOST_VETH_PREFIX = "loxi"


def host_veth_name(attachment: Attachment) -> str:
    """`loxi` + 11 hex digits, stable for (network, container id, ifname).

    ADD retries, CHECK and DEL find the host end by name alone: no scan of the
    node's links, so their cost does not grow with the number of pods.
    """
    return HOST_VETH_PREFIX + attachment_digest(attachment.network, attachment.container_id, attachment.ifname)[:11]


OWNER_PREFIX = "loxi-cni"


def attachment_tag(attachment: Attachment) -> str:
    """`loxi-cni <24 hex>`: the comment on the attachment's netfilter rules (short
    enough for nftables' 128-byte comments, stable for retries and DEL)."""
    digest = attachment_digest(attachment.network, attachment.container_id, attachment.ifname)
    return f"{OWNER_PREFIX} {digest[:24]}"


def spoofcheck_mac(attachment: Attachment) -> str:
    """A stable, locally administered MAC for a pod whose MAC the spoof check must
    know before the pod exists (macspoofchk without a requested MAC)."""
    digest = attachment_digest(attachment.network, attachment.container_id, attachment.ifname, purpose="mac")
    return "02:" + ":".join(digest[i : i + 2] for i in range(0, 10, 2))


# IFALIASZ is 256 with the NUL; the kernel's policy takes 255 bytes of attribute and
# pyroute2 sends the NUL with the text, so 254 bytes of alias is the most that is not ERANGE.
MAX_ALIAS_BYTES = 254
# The shortest piece of a container id an alias keeps before it gives up the network's name.
MIN_ALIAS_ID_BYTES = 12
TRUNCATED = "~"  # neither a network name nor a container id can contain it


def network_digest(network: str) -> str:
    """What an alias carries instead of a network name too long to fit beside the id."""
    return TRUNCATED + hashlib.sha256(network.encode()).hexdigest()[:16]


def owner_alias(attachment: Attachment) -> str:
    """`loxi-cni <network> <container id> <ifname>`: the host veth's alias, so GC can
    tell which attachment a port serves without a record file (all three are
    validated names without spaces).

    At most MAX_ALIAS_BYTES bytes. What GC needs from it is the network (the
    port's name already hashes the whole attachment, and DEL and CHECK find it
    by that name), so a long container id is cut first (ending in `~`), and only
    if the network alone leaves no room is it replaced by `network_digest`.
    """
    network, cid, ifname = attachment.network, attachment.container_id, attachment.ifname
    text = f"{OWNER_PREFIX} {network} {cid} {ifname}"
    if len(text.encode()) <= MAX_ALIAS_BYTES:
        return text
    fixed = len(f"{OWNER_PREFIX}   {ifname}{TRUNCATED}".encode())  # prefix, three spaces, ifname, the mark
    room = MAX_ALIAS_BYTES - fixed - len(network.encode())
    if room < MIN_ALIAS_ID_BYTES:
        network = network_digest(network)
        room = MAX_ALIAS_BYTES - fixed - len(network)
        text = f"{OWNER_PREFIX} {network} {cid} {ifname}"
        if len(text.encode()) <= MAX_ALIAS_BYTES:
            return text
    return f"{OWNER_PREFIX} {network} {cid.encode()[:room].decode('ascii', 'ignore')}{TRUNCATED} {ifname}"


def alias_names_network(field: str, network: str) -> bool:
    """Does an alias's network field (parse_owner_alias()[0]) stand for `network`?"""
    return field == network or (field.startswith(TRUNCATED) and field == network_digest(network))


def parse_owner_alias(alias: str | None) -> tuple[str, str, str] | None:
    parts = (alias or "").split(" ")
    if len(parts) != 4 or parts[0] != OWNER_PREFIX:
        return None
    return parts[1], parts[2], parts[3]


ORDERS_CACHE_SIZE = 256  # graph shapes: a node's confs make a handful
_orders: dict[tuple[tuple[int, ...], tuple[tuple[int, int], ...]], tuple[int, ...]] = {}


@dataclass
class DesiredState:
    """The graph of what must exist, plus what must not (teardown)."""

    graph: DiGraph
    absent: list[NetObject] = field(default_factory=list)

    def objects(self) -> list[NetObject]:
        return [self.graph.nodes[key]["obj"] for key in self.graph.nodes]

    def get(self, key: ObjectKey) -> NetObject:
        return self.graph.nodes[key]["obj"]

    def order(self) -> list[NetObject]:
        """Creation order: dependencies first, node namespace before the pod's, then by kind.

        networkx's lexicographical sort consults nothing but the edges and how the nodes'
        (tie-break, insertion index) pairs compare, so its order, as insertion indices, is
        remembered under exactly that: the edges by index and the rank of each node's pair.
        Every pod's graph of a conf has the same shape; each new shape is sorted by networkx."""
        data = self.graph.nodes
        keys = list(data)
        objs = [data[key]["obj"] for key in keys]
        ties = [(0 if obj.ns == NODE_NS else 1, obj.rank, str(key)) for key, obj in zip(keys, objs, strict=True)]
        index = {key: i for i, key in enumerate(keys)}
        edges = tuple(sorted((index[u], index[v]) for u, v in self.graph.edges))
        shape = (tuple(sorted(range(len(keys)), key=lambda i: (ties[i], i))), edges)
        found = _orders.get(shape)
        if found is None:
            sort = lexicographical_topological_sort(self.graph, key=lambda key: ties[index[key]])
            found = tuple(index[key] for key in sort)
            if len(_orders) >= ORDERS_CACHE_SIZE:
                _orders.clear()
            _orders[shape] = found
        return [objs[i] for i in found]

    def by_kind(self, cls: type) -> list:
        return [obj for obj in self.objects() if isinstance(obj, cls)]


class _GraphBuilder:
    def __init__(self) -> None:
        self.graph = DiGraph()

    def add(self, obj: NetObject, needs: Iterable[NetObject] = ()) -> NetObject:
        self.graph.add_node(obj.key, obj=obj)
        for dep in needs:
            self.graph.add_edge(dep.key, obj.key, reason=f"{obj.kind} needs {dep.kind}")
        return obj


def _vlan_members(conf: NetConf) -> tuple[tuple[int, bool, bool], ...]:
    """The pod port's VLANs, as the reference bridge plugin sets them: the access
    VLAN as PVID untagged, trunk VLANs tagged, and VLAN 1 as PVID untagged for a
    trunk without an access VLAN; VLAN 1 kept untagged with preserveDefaultVlan."""
    access = conf.vlan or (1 if conf.vlan_trunk else 0)
    vids = {access: (access, True, True)}
    if conf.preserve_default_vlan and access != 1:
        vids[1] = (1, False, True)
    for vid in conf.vlan_trunk:
        vids.setdefault(vid, (vid, False, False))
    return tuple(sorted(vids.values()))


def vlan_device_name(uplink: str, vlan_id: int) -> str:
    """`<uplink>.<vid>`, clipped to 15 characters with a stable suffix when too long."""
    name = f"{uplink}.{vlan_id}"
    if len(name) <= 15:
        return name
    tail = f".{vlan_id}"
    digest = hashlib.sha256(uplink.encode()).hexdigest()[:4]
    return uplink[: 15 - len(tail) - len(digest)] + digest + tail


def _add_uplink(builder: _GraphBuilder, conf: NetConf, bridge: NetObject) -> None:
    """The VLAN node that carries the network's VLAN off the node."""
    if conf.uplink_mode == "trunk":
        uplink = builder.add(Uplink(ifname=conf.uplink, bridge=conf.bridge), needs=[bridge])
        vids = ((conf.vlan, False, False),)
        builder.add(PortVlans(port=conf.uplink, vids=vids, exact=False, bridge=conf.bridge), needs=[uplink])
        return
    uplink = builder.add(Uplink(ifname=conf.uplink))
    device = builder.add(
        VlanDevice(
            device=vlan_device_name(conf.uplink, conf.vlan), parent=conf.uplink, vlan_id=conf.vlan, bridge=conf.bridge
        ),
        needs=[bridge, uplink],
    )
    vids = ((conf.vlan, True, True),)
    builder.add(PortVlans(port=device.name, vids=vids, bridge=conf.bridge), needs=[device])


def _gateway_for(lease: AddressLease) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The lease's gateway, or the subnet's first address as the reference defaults it."""
    return lease.gateway or next(lease.interface.network.hosts())


@functools.lru_cache(maxsize=256)  # a conf's gateways: the same few for every pod
def _gateway_interface(gateway: IPAddress, prefixlen: int) -> IPInterface:
    return ipaddress.ip_interface(f"{gateway}/{prefixlen}")


def compile_desired(
    conf: NetConf,
    attachment: Attachment,
    leases: Sequence[AddressLease] = (),
    routes: Sequence[RouteIntent] = (),
) -> DesiredState:
    """The graph an ADD must realise for this pod. Pure: no I/O."""
    builder = _GraphBuilder()
    uses_vlans = bool(conf.vlan or conf.vlan_trunk)
    bridge = builder.add(Bridge(bridge=conf.bridge, mtu=conf.mtu, promisc=conf.promisc_mode, vlan_filtering=uses_vlans))
    if conf.uplink:
        _add_uplink(builder, conf, bridge)
    host_name = host_veth_name(attachment)
    pod_mac = conf.mac or (spoofcheck_mac(attachment) if conf.mac_spoof_check else "")
    veth = builder.add(
        HostVeth(
            host_name=host_name,
            peer_name=attachment.ifname,
            bridge=conf.bridge,
            mtu=conf.mtu,
            hairpin=conf.hairpin_mode,
            isolated=conf.port_isolation,
            peer_mac=pod_mac,
            owner=owner_alias(attachment),
        ),
        needs=[bridge],
    )
    if uses_vlans:
        builder.add(PortVlans(port=host_name, vids=_vlan_members(conf), bridge=conf.bridge), needs=[veth])
    link = builder.add(
        PodLink(
            ifname=attachment.ifname,
            peer_name=host_name,
            mtu=conf.mtu,
            mac=pod_mac,
            up=not conf.disable_container_interface,
        ),
        needs=[veth],
    )
    if conf.mac_spoof_check:
        builder.add(SpoofCheck(tag=attachment_tag(attachment), port=host_name, mac=pod_mac), needs=[veth])

    gateway_objects: list[NetObject] = []
    pod_addresses: dict[int, list[NetObject]] = {4: [], 6: []}
    for lease in leases:
        pod_addresses[lease.interface.version].append(
            builder.add(Address(link=attachment.ifname, interface=lease.interface, namespace=POD_NS), needs=[link])
        )
        if conf.is_gateway:
            gw = _gateway_for(lease)
            gw_iface = _gateway_interface(gw, lease.interface.network.prefixlen)
            gateway_objects.append(
                builder.add(
                    Address(link=conf.bridge, interface=gw_iface, exclusive_ipv4=conf.force_address), needs=[bridge]
                )
            )
    if conf.is_gateway and conf.vlan:
        self_vids = ((conf.vlan, True, True),)
        builder.add(
            PortVlans(port=conf.bridge, vids=self_vids, self_entry=True, exact=False, bridge=conf.bridge),
            needs=[bridge],
        )
    if conf.is_gateway:
        families = {lease.interface.version for lease in leases}
        if 4 in families:
            builder.add(Sysctl(path="net/ipv4/ip_forward", value="1"), needs=gateway_objects)
        if 6 in families:
            builder.add(Sysctl(path="net/ipv6/conf/all/forwarding", value="1"), needs=gateway_objects)

    gateways = {}
    for lease in leases:
        gateways.setdefault(
            lease.interface.version, lease.gateway or (_gateway_for(lease) if conf.is_gateway else None)
        )
    wanted_routes = list(routes)
    if conf.is_default_gateway:
        for version, gw in gateways.items():
            has_default = any(r.dst.prefixlen == 0 and r.dst.version == version for r in wanted_routes)
            if gw is not None and not has_default:
                wanted_routes.append(RouteIntent(dst=ipaddress.ip_network("0.0.0.0/0" if version == 4 else "::/0")))
    resolved = [(intent.dst, intent.gateway or gateways.get(intent.dst.version)) for intent in wanted_routes]
    # Two routes to one dst (two defaults via two gateways) must stay two nodes, both installed.
    per_dst = Counter(dst for dst, _ in dict.fromkeys(resolved))
    for dst, gw in resolved:
        builder.add(
            Route(dst=dst, dev=attachment.ifname, gateway=gw, via_in_name=per_dst[dst] > 1),
            needs=pod_addresses[dst.version] or [link],
        )
    if conf.ip_masq and leases:
        rules = tuple(f"{lease.interface.ip} ! {lease.interface.network}" for lease in leases)
        builder.add(
            Masquerade(tag=attachment_tag(attachment), backend=conf.ip_masq_backend, rules=rules),
            needs=[obj for objs in pod_addresses.values() for obj in objs],
        )
    return DesiredState(builder.graph)


def compile_teardown(conf: NetConf, attachment: Attachment, pod: bool = False) -> DesiredState:
    """What DEL removes: the host veth, and with it the pod end and all on it.

    Deleting by the host end works whatever state the pod is in: with CNI_NETNS
    empty, gone, or not a namespace at all, the node side is still reachable.
    With `pod` (the pod's namespace is open) CNI_IFNAME goes too, if it is a
    veth: the host end may have been renamed, moved or detached, and the pod
    would stay attached. Shared objects (bridge, gateway address, sysctls) stay
    for the other pods.
    """
    veth = HostVeth(host_name=host_veth_name(attachment), peer_name=attachment.ifname, bridge=conf.bridge)
    absent: list[NetObject] = [veth]
    if pod:
        absent.insert(0, PodLink(ifname=attachment.ifname, peer_name=veth.host_name))
    tag = attachment_tag(attachment)
    if conf.ip_masq:
        absent.append(Masquerade(tag=tag, backend=conf.ip_masq_backend))
    if conf.mac_spoof_check:
        absent.append(SpoofCheck(tag=tag))
    return DesiredState(DiGraph(), absent=absent)
