"""`loxi-plan show`: the classification of loxi's traces (`loxi.node.liveness`), the conf directory, and the report."""

from __future__ import annotations

import ipaddress
import json

from compiler.graph import host_veth_name
from compiler.model import Attachment
from loxi.node.facts import LinkInfo, peer_alive
from loxi.node.liveness import (
    ADDRESS_IN_USE,
    ALLOCATION_WITHOUT_VETH,
    ATTACHED,
    BUSY,
    DELEGATED_IPAM,
    LEAKED,
    LIVE,
    UNACCOUNTED,
    VETH_WITHOUT_ALLOCATION,
    VETH_WITHOUT_OWNER,
    VETH_WITHOUT_PEER,
    AllocationTrace,
    Evidence,
    VethTrace,
    classify,
    unclaimed,
)
from loxi.plan.confdir import conf_files, read_conf_dir
from loxi.plan.inventory import Facts, StoreContent, build_inventory
from loxi.plan.render import inventory_text

NET = "loxilight_cni"
DATA = "/var/lib/cni/networks"
STORE = f"{DATA}/{NET}"


def veth(cid: str, ifname: str = "eth0") -> str:
    return host_veth_name(Attachment(NET, cid, ifname, ""))


def alloc(ip: str, cid: str, ifname: str = "eth0") -> AllocationTrace:
    return AllocationTrace(NET, STORE, ipaddress.ip_address(ip), cid, ifname)


def live(cid: str, alias: bool = True, **kw) -> VethTrace:
    defaults = {"peer_alive": True, "peer_index": 2, "peer_nsid": 0, "peer_netns": f"/run/netns/{cid}"}
    return VethTrace(veth(cid), (NET, cid, "eth0") if alias else None, bridge="hsvlan100", **{**defaults, **kw})


def states(verdicts) -> list[tuple[str, str, str | None]]:
    return [(v.state, v.kind, v.expected_veth) for v in verdicts]


# -- loxi.node.liveness ----------------------------------------------------------------------


def test_a_live_veth_is_attached_when_an_allocation_names_it_and_unaccounted_when_none_does():
    verdicts = classify([live("pod-a"), live("pod-b")], [alloc("10.244.1.2", "pod-a")])
    assert states(verdicts) == [
        (ATTACHED, LIVE, veth("pod-a")),
        (UNACCOUNTED, VETH_WITHOUT_ALLOCATION, veth("pod-b")),
    ]
    assert verdicts[0].allocations == (alloc("10.244.1.2", "pod-a"),)
    hint = verdicts[1].detail
    assert "its peer is in /run/netns/pod-b" in hint and "try --conf or --data-dir" in hint
    assert "leak" not in hint


def test_the_hint_says_which_store_was_looked_in_and_whether_a_conf_defines_the_network():
    looked = Evidence(stores_read={NET: ("/var/lib/cni/networks/loxilight_cni",)}, conf_source="/etc/cni/net.d")
    (verdict,) = classify([live("pod-b")], [], looked)
    assert "no conf in /etc/cni/net.d defines network loxilight_cni" in verdict.detail
    assert "no allocation in /var/lib/cni/networks/loxilight_cni names it" in verdict.detail
    (verdict,) = classify([live("pod-b")], [], Evidence(stores_read={NET: ("/x/loxilight_cni",)}, defined={NET}))
    assert "no conf" not in verdict.detail and "no allocation in /x/loxilight_cni names it" in verdict.detail


def test_a_veth_without_alias_is_matched_by_its_name_and_one_matching_nothing_is_unaccounted():
    stray = VethTrace("loxi00000000000", None, peer_alive=True, peer_index=9, peer_nsid=None)
    verdicts = classify([live("pod-a", alias=False), stray], [alloc("10.244.1.2", "pod-a")])
    by_name = {v.expected_veth: v for v in verdicts}
    assert (by_name[veth("pod-a")].state, by_name[veth("pod-a")].owner) == (ATTACHED, (NET, "pod-a", "eth0"))
    assert (by_name["loxi00000000000"].state, by_name["loxi00000000000"].kind) == (UNACCOUNTED, VETH_WITHOUT_OWNER)
    assert "its peer is in the node's own namespace" in by_name["loxi00000000000"].detail


def test_only_a_veth_whose_peer_is_gone_is_leaked_and_its_allocation_goes_with_it():
    dead = live("pod-a", peer_alive=False, peer_nsid=None, peer_netns=None)
    (verdict,) = classify([dead], [alloc("10.244.1.2", "pod-a")])
    assert (verdict.state, verdict.kind) == (LEAKED, VETH_WITHOUT_PEER)
    assert verdict.allocations == (alloc("10.244.1.2", "pod-a"),)
    assert "its peer is gone" in verdict.detail and "holds 10.244.1.2" in verdict.detail


def test_an_allocation_without_veth_is_leaked_unless_its_address_is_in_use_or_an_add_is_in_flight():
    allocations = [alloc("10.244.1.3", "gone"), alloc("10.244.1.4", "moving"), alloc("10.244.1.5", "adding")]
    evidence = Evidence(
        busy=frozenset({(NET, "adding", "eth0")}),
        addresses_in_use={ipaddress.ip_address("10.244.1.4"): "eth0 in /run/netns/x"},
    )
    assert unclaimed([], allocations) == allocations
    verdicts = classify([], allocations, evidence)
    assert states(verdicts) == [
        (LEAKED, ALLOCATION_WITHOUT_VETH, veth("gone")),
        (UNACCOUNTED, ADDRESS_IN_USE, veth("moving")),
        (BUSY, "in-flight", veth("adding")),
    ]
    assert verdicts[0].detail == (
        f"{NET}: gone/eth0 holds 10.244.1.3 in {STORE}, but its host veth {veth('gone')} does not exist"
        " and no network namespace on the node holds the address"
    )
    assert "10.244.1.4 is on eth0 in /run/netns/x" in verdicts[1].detail


def test_dual_stack_allocations_are_one_attachment_and_a_legacy_lease_joins_its_containers_veth():
    allocations = [alloc("10.244.1.2", "pod-a"), alloc("fd00::2", "pod-a"), alloc("10.244.1.9", "pod-a", "")]
    (verdict,) = classify([live("pod-a")], allocations)
    assert verdict.state == ATTACHED and len(verdict.allocations) == 3
    (verdict,) = classify([], [alloc("10.244.1.2", "old"), alloc("fd00::2", "old")])
    assert verdict.state == LEAKED and "holds 10.244.1.2, fd00::2" in verdict.detail


def test_a_network_with_delegated_ipam_has_no_store_to_find():
    (verdict,) = classify([live("pod-a")], [], Evidence(delegated={NET: "static"}))
    assert (verdict.state, verdict.kind) == (ATTACHED, DELEGATED_IPAM)


def test_peer_alive():
    indexes = {1, 2, 3}
    assert peer_alive(LinkInfo("loxiA", 3, "veth", None, True, peer_index=2, peer_nsid=None), indexes)
    assert not peer_alive(LinkInfo("loxiA", 3, "veth", None, True, peer_index=7, peer_nsid=None), indexes)
    assert peer_alive(LinkInfo("loxiA", 3, "veth", None, True, peer_index=2, peer_nsid=4), indexes)
    assert not peer_alive(LinkInfo("loxiA", 3, "veth", None, True, peer_index=2, peer_nsid=-1), indexes)
    assert not peer_alive(LinkInfo("loxiA", 3, "veth", None, True, peer_index=None), indexes)


# -- loxi.plan.confdir ------------------------------------------------------------------


def _loxi(name: str, data_dir: str = "/srv/ipam", **extra) -> dict:
    ipam = {"type": "host-local", "subnet": "10.244.1.0/24", "dataDir": data_dir}
    return {"cniVersion": "1.0.0", "name": name, "type": "loxi-cni", "bridge": "br-" + name, "ipam": ipam, **extra}


def test_conf_files_are_chosen_as_libcni_chooses_them(tmp_path):
    for name in ("20-b.conflist", "10-a.conf", "30-c.json", "05-old.conf.bak", "README", "99-z.yaml"):
        (tmp_path / name).write_text("{}")
    (tmp_path / "15-dir.conf").mkdir()
    assert [p.rsplit("/", 1)[1] for p in conf_files(str(tmp_path))] == ["10-a.conf", "20-b.conflist", "30-c.json"]
    assert conf_files(str(tmp_path / "missing")) == []


def test_the_conf_dir_gives_every_loxi_network_with_its_store(tmp_path):
    (tmp_path / "10-a.conf").write_text(json.dumps(_loxi("a", "/srv/a")))
    conflist = {"cniVersion": "1.0.0", "name": "b", "plugins": [{**_loxi("x"), "name": None}, {"type": "portmap"}]}
    (tmp_path / "20-b.conflist").write_text(json.dumps(conflist))
    (tmp_path / "30-static.conf").write_text(json.dumps({**_loxi("s"), "ipam": {"type": "static"}}))
    (tmp_path / "40-podman.conflist").write_text(json.dumps({"name": "podman", "plugins": [{"type": "bridge"}]}))
    (tmp_path / "50-again.conf").write_text(json.dumps(_loxi("a", "/elsewhere")))
    (tmp_path / "60-broken.conf").write_text('{"type": "loxi-cni", "name": ')
    files, networks, problems = read_conf_dir(str(tmp_path))
    assert len(files) == 6
    assert [(n.name, n.bridge, n.ipam_type, n.store_dir) for n in networks] == [
        ("a", "br-a", "host-local", "/srv/a/a"),
        ("b", "br-x", "host-local", "/srv/ipam/b"),
        ("s", "br-s", "static", None),
    ]
    assert [p.source.rsplit("/", 1)[1] for p in problems] == ["50-again.conf", "60-broken.conf"]
    assert "already defined by" in problems[0].message


# -- the report ---------------------------------------------------------------------------


def test_text_and_json_carry_the_same_classification(tmp_path):
    (tmp_path / "10-loxi.conf").write_text(json.dumps(_loxi(NET, DATA)))
    _, networks, _ = read_conf_dir(str(tmp_path))
    links = (
        LinkInfo("lo", 1, None, None, True),
        LinkInfo("hsvlan100", 2, "bridge", None, True),
        LinkInfo(veth("pod-a"), 3, "veth", 2, True, peer_index=2, peer_nsid=0),
        LinkInfo(veth("pod-b"), 4, "veth", 2, True, peer_index=2, peer_nsid=1),
        LinkInfo("docker0", 6, "bridge", None, False),
    )
    store = StoreContent(DATA, NET, (alloc("10.244.1.2", "pod-a"), alloc("10.244.1.3", "gone")))
    facts = Facts(
        links,
        (live("pod-a"), live("pod-b")),
        (store,),
        tuple(networks),
        Evidence(stores_read={NET: (STORE,)}, defined={NET}, conf_source=str(tmp_path)),
        node_netns="/run/netns/n",
        conf_files=(str(tmp_path / "10-loxi.conf"),),
    )
    inv = build_inventory(facts)
    text = inventory_text(inv)
    assert "  hsvlan100 (up): 2 loxi ports, 2 ports in all" in text
    assert f"  {NET} (from {tmp_path}/10-loxi.conf): bridge br-{NET}, host-local store {STORE} (2 allocations)" in text
    assert "    pool 0 (10.244.1.1-10.244.1.254): 2 of 253 used, 251 free" in text
    assert (
        f"  [attached] {NET} pod-a/eth0  {veth('pod-a')} on hsvlan100  netns /run/netns/pod-a  lease 10.244.1.2" in text
    )
    assert f"  [unaccounted] {NET} pod-b/eth0  {veth('pod-b')} on hsvlan100" in text
    assert f"  [leaked] {NET} gone/eth0  {veth('gone')} MISSING  lease 10.244.1.3" in text
    assert "leaked (1):" in text and "unaccounted, not leaked (1):" in text and "Nothing looks leaked" not in text
    doc = inv.to_dict()
    assert doc["format_version"] == 2 and doc["node_netns"] == "/run/netns/n"
    assert [(a["state"], a["host_veth"]) for a in doc["attachments"]] == [
        (ATTACHED, veth("pod-a")),
        (UNACCOUNTED, veth("pod-b")),
        (LEAKED, veth("gone")),
    ]
    assert doc["summary"] == {"attached": 1, "unaccounted": 1, "leaked": 1, "busy": 0}
    assert [(f["kind"], f["name"]) for f in doc["leaks"]] == [(ALLOCATION_WITHOUT_VETH, "10.244.1.3")]
    assert [(f["kind"], f["name"]) for f in doc["unaccounted"]] == [(VETH_WITHOUT_ALLOCATION, veth("pod-b"))]
    assert doc["networks"][0]["pools"] == [
        {"range_set": 0, "ranges": "10.244.1.1-10.244.1.254", "size": 253, "used": 2}
    ]


def test_an_empty_node():
    inv = build_inventory(Facts((LinkInfo("lo", 1, None, None, True),), (), ()), conf_source="/etc/cni/net.d")
    text = inventory_text(inv)
    assert "none with a loxi port" in text and "no loxi-cni network in /etc/cni/net.d" in text
    assert "attachments:\n  none\n" in text and "Nothing looks leaked." in text
