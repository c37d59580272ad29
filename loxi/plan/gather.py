"""`show`'s gathering: read the confs, the node's links and namespaces and the IPAM stores, then join them.

Kept apart from `loxi.plan.inventory`, which lays the facts out and is pure
(tested on plain data); this module is the only part of `show` that reads a
node, and it reads only (the node's namespace as the calling thread sees it).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from compiler.model import NODE_NS
from intent.ipam_config import DEFAULT_DATA_DIR
from loxi.node.facts import LinkInfo, PodEnd, loxi_veths
from loxi.node.liveness import Evidence, VethTrace, unclaimed
from loxi.plan.confdir import NetworkConf
from loxi.plan.inventory import Facts, Inventory, StoreContent, build_inventory


def _read_stores(
    networks: Sequence[NetworkConf], named: Iterable[str], data_dirs: Sequence[str]
) -> tuple[list[StoreContent], dict[str, tuple[str, ...]]]:
    """The stores of the confs' networks, every store in `data_dirs`, and, for networks no conf defines but
    a veth names, their stores in the default data dir and `data_dirs`. Also where each network was looked for."""
    from loxi.node.facts import read_store, store_networks

    read: dict[tuple[str, str], StoreContent] = {}
    looked: dict[str, list[str]] = {}

    def look(data_dir: str, network: str) -> None:
        key = (os.path.normpath(data_dir), network)
        looked.setdefault(network, [])
        store_dir = os.path.join(*key)
        if store_dir not in looked[network]:
            looked[network].append(store_dir)
        if key not in read:
            read[key] = StoreContent(key[0], network, read_store(*key))

    for net in networks:
        if net.host_local:
            look(net.host_local.data_dir, net.name)
    for data_dir in data_dirs:
        for network in store_networks(data_dir):
            look(data_dir, network)
    defined = {net.name for net in networks}
    for network in named:
        if network not in defined:
            for data_dir in (DEFAULT_DATA_DIR, *data_dirs):
                look(data_dir, network)
    return list(read.values()), {network: tuple(dirs) for network, dirs in looked.items()}


def _pod_ends(spaces: Any, veths: Sequence[VethTrace], links: Sequence[LinkInfo]) -> dict[str, PodEnd]:
    from applier.netlink.dumps import addresses_of
    from loxi.node.facts import pod_end

    by_index = {link.index: link for link in links}
    ends = {}
    for veth in veths:
        if not veth.peer_alive or not veth.peer_index:
            continue
        if veth.peer_netns:
            ends[veth.name] = pod_end(veth.peer_netns, veth.peer_index)
        elif veth.peer_nsid is None and veth.peer_index in by_index:  # a peer left in the node's namespace
            msgs = addresses_of(spaces.ipr(NODE_NS), veth.peer_index)
            shown = tuple(f"{m.get_attr('IFA_LOCAL') or m.get_attr('IFA_ADDRESS')}/{m['prefixlen']}" for m in msgs)
            ends[veth.name] = PodEnd(by_index[veth.peer_index].name, shown)
    return ends


def take_inventory(
    conf_dir: str,
    conf_paths: Sequence[str] = (),
    data_dirs: Sequence[str] = (),
    node_netns: str = "",
) -> Inventory:
    """Read the confs (`conf_paths`, else `conf_dir`), the node's links and namespaces, the stores, then join."""
    from applier.netns import Namespaces
    from loxi.node.facts import addresses_in_use, attachment_busy, namespaces, read_links, veth_traces
    from loxi.plan.confdir import read_conf_dir, read_confs

    if conf_paths:
        networks, files, problems, source = read_confs(conf_paths), tuple(conf_paths), [], "--conf"
    else:
        found_files, networks, problems = read_conf_dir(conf_dir)
        files, source = tuple(found_files), conf_dir
    delegated = {n.name: n.ipam_type or "none" for n in networks if n.host_local is None}
    with Namespaces() as spaces:
        ipr = spaces.ipr(NODE_NS)
        links = read_links(ipr)
        loxi = loxi_veths(links)
        refs = namespaces(ipr) if any(link.peer_nsid is not None for link in loxi) else None
        veths = veth_traces(links, refs or ())
        named = [v.owner[0] for v in veths if v.owner]
        stores, looked = _read_stores(networks, named, [os.path.normpath(d) for d in data_dirs])
        allocations = [a for store in stores for a in store.allocations or ()]
        orphans = unclaimed(veths, allocations)
        busy = frozenset(a.owner for a in orphans if attachment_busy(a.owner))
        wanted = {a.ip for a in orphans if a.owner not in busy}
        if wanted and refs is None:
            refs = namespaces(ipr, want_nsids=False)
        in_use = addresses_in_use(refs or (), wanted)
        ends = _pod_ends(spaces, veths, links)
    evidence = Evidence(
        stores_read=looked,
        delegated=delegated,
        busy=busy,
        addresses_in_use=in_use,
        defined=frozenset(n.name for n in networks),
        conf_source=source,
    )
    facts = Facts(
        tuple(links), tuple(veths), tuple(stores), tuple(networks), evidence, ends, node_netns, files, tuple(problems)
    )
    return build_inventory(facts)
