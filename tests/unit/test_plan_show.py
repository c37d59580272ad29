"""`loxi-plan show`: joining the IPAM store and the kernel's links, on plain data."""

from __future__ import annotations

import ipaddress

from applier.ipam import Allocation
from compiler.graph import host_veth_name
from compiler.model import Attachment
from intent.ipam_config import load_host_local
from loxi.plan.inventory import (
    ALLOCATION_WITHOUT_VETH,
    VETH_WITHOUT_ALLOCATION,
    LinkInfo,
    StoreContent,
    build_inventory,
)
from loxi.plan.render import inventory_text

NET = "loxilight_cni"
DATA = "/var/lib/cni/networks"


def veth(cid: str, ifname: str = "eth0") -> str:
    return host_veth_name(Attachment(NET, cid, ifname, ""))


def alloc(ip: str, cid: str, ifname: str = "eth0") -> Allocation:
    return Allocation(ipaddress.ip_address(ip), cid, ifname, -1)


LINKS = [
    LinkInfo("lo", 1, None, None, True),
    LinkInfo("hsvlan100", 2, "bridge", None, True),
    LinkInfo(veth("pod-a"), 3, "veth", 2, True),
    LinkInfo("loxi00000000000", 4, "veth", 2, True),  # nobody's: leaked
    LinkInfo("eth1", 5, "veth", 2, True),  # not ours, on the bridge
    LinkInfo("docker0", 6, "bridge", None, False),  # no loxi port: not shown
]
STORE = StoreContent(
    DATA, NET, (alloc("10.244.1.2", "pod-a"), alloc("10.244.1.3", "pod-b"), alloc("10.244.1.4", "legacy", ""))
)


def test_attachments_bridges_and_leaks():
    inv = build_inventory(LINKS, [STORE])
    assert [(b.name, b.loxi_ports, b.ports) for b in inv.bridges] == [
        ("hsvlan100", tuple(sorted([veth("pod-a"), "loxi00000000000"])), 3)
    ]
    net = inv.networks[0]
    assert net.store_dir == f"{DATA}/{NET}"
    rows = [(r.ip, r.container_id, r.host_veth, r.veth_exists, r.bridge) for r in net.attachments]
    assert rows == [
        ("10.244.1.2", "pod-a", veth("pod-a"), True, "hsvlan100"),
        ("10.244.1.3", "pod-b", veth("pod-b"), False, None),
        ("10.244.1.4", "legacy", None, False, None),
    ]
    assert [(leak.kind, leak.name) for leak in inv.leaks] == [
        (ALLOCATION_WITHOUT_VETH, "10.244.1.3"),
        (VETH_WITHOUT_ALLOCATION, "loxi00000000000"),
    ]
    assert net.pools == ()


def test_pool_usage_when_the_conf_is_known():
    conf = {"name": NET, "ipam": {"type": "host-local", "subnet": "10.244.1.0/24", "dataDir": DATA}}
    config = load_host_local(conf, {})
    inv = build_inventory(LINKS, [STORE], {(DATA, NET): config})
    assert [(p.ranges, p.size, p.used) for p in inv.networks[0].pools] == [("10.244.1.1-10.244.1.254", 253, 3)]


def test_text_and_json():
    conf = {"name": NET, "ipam": {"type": "host-local", "subnet": "10.244.1.0/24", "dataDir": DATA}}
    inv = build_inventory(LINKS, [STORE], {(DATA, NET): load_host_local(conf, {})}, node_netns="/run/netns/n")
    text = inventory_text(inv)
    assert "  hsvlan100 (up): 2 loxi ports, 3 ports in all" in text
    assert f"  10.244.1.2  container pod-a  eth0  {veth('pod-a')} on hsvlan100" in text
    assert f"  10.244.1.3  container pod-b  eth0  {veth('pod-b')} MISSING" in text
    assert "  10.244.1.4  container legacy  (no ifname)  veth unknown (legacy lease file)" in text
    assert "  pool 0 (10.244.1.1-10.244.1.254): 3 of 253 used, 250 free" in text
    assert "leaked (2):" in text and "loxi00000000000" in text
    doc = inv.to_dict()
    assert doc["node_netns"] == "/run/netns/n"
    assert doc["networks"][0]["allocations"] == 3 and doc["leaks"][1]["kind"] == VETH_WITHOUT_ALLOCATION


def test_an_empty_node():
    inv = build_inventory([LinkInfo("lo", 1, None, None, True)], [])
    text = inventory_text(inv)
    assert "none with a loxi port" in text and "no network stores" in text and "Nothing looks leaked." in text
