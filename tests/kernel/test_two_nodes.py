"""Two nodes, two kernels: VLANs across a real (virtual) wire between two guests.

Two guests boot at once, joined by one virtual Ethernet link (QEMU ``-netdev dgram``
over two unix datagram sockets on the host; no port, no host interface). Each runs
``tests/kernel/twonode.py`` as its node: node ``a`` in-process with ``uplinkMode: vlan``
(802.1Q devices ``eth0.100``, ``eth0.200`` as bridge ports), node ``b`` through
loxi-agent with ``uplinkMode: trunk`` (``eth0`` itself a tagged bridge port). The
guests write what they saw; the assertions are here.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from .qemu import REPO, GuestError, KernelCache, Wire, default_guest_env, start_guest

pytestmark = pytest.mark.guest


def _boot_two_nodes(workdir: Path) -> tuple[dict[str, Any], dict[str, Any], str]:
    sockets = {role: str(workdir / f"{role}.sock") for role in "ab"}
    macs = {"a": "52:54:00:4c:00:0a", "b": "52:54:00:4c:00:0b"}
    rendezvous = workdir / "rendezvous"
    rendezvous.mkdir()
    guests = {}
    for role, peer in (("a", "b"), ("b", "a")):
        argv = [sys.executable, "-m", "tests.kernel.twonode", role, str(rendezvous)]
        guests[role] = start_guest(
            argv,
            cwd=str(REPO),
            env=default_guest_env(),
            timeout=600,
            name=f"node-{role}",
            wire=Wire(local=sockets[role], remote=sockets[peer], mac=macs[role]),
        )
    runs = {}
    errors = []
    for role, guest in guests.items():
        try:
            runs[role] = guest.wait()
        except GuestError as exc:
            errors.append(f"node {role}: {exc}")
    facts = {}
    for role in "ab":
        path = rendezvous / f"{role}.facts.json"
        facts[role] = json.loads(path.read_text()) if path.exists() else {"error": "no facts written"}
    output = "\n".join(
        f"--- node {r} ({run.engine}, {run.seconds:.0f}s, rc {run.returncode}) ---\n{run.output}"
        for r, run in runs.items()
    )
    if errors:
        pytest.fail("\n".join(errors) + "\n" + output, pytrace=False)
    return facts["a"], facts["b"], output


@pytest.fixture(scope="module")
def two_nodes(guest_kernel: KernelCache) -> tuple[dict[str, Any], dict[str, Any]]:
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="loxi-two-nodes-", dir="/var/tmp") as workdir:
        a, b, output = _boot_two_nodes(Path(workdir))
    print(f"\n--- two nodes: {time.monotonic() - start:.0f}s ---\n{output}")
    for role, facts in (("a", a), ("b", b)):
        assert "error" not in facts, f"node {role} stopped: {facts['error']}\n{json.dumps(facts, indent=1)[-6000:]}"
    return a, b


def _failed_calls(facts: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in facts["calls"] if c["rc"] != 0 and c["command"] != "CHECK"]


def test_both_nodes_made_every_pod_and_node_b_served_every_call_through_loxi_agent(two_nodes):
    a, b = two_nodes
    for facts in (a, b):
        assert _failed_calls(facts) == [], facts["calls"]
    assert all(call["agent_cpu_ticks"] == 0 for call in a["calls"]), "node a runs in-process"
    assert {c["command"] for c in b["calls"]} == {"ADD", "CHECK", "DEL"}
    assert all(call["agent_cpu_ticks"] > 0 for call in b["calls"]), [
        (c["command"], c["pod"], c["agent_cpu_ticks"]) for c in b["calls"]
    ]
    assert set(a["addresses"].values()) == {"10.244.0.2", "10.244.0.50", "10.244.0.200"}
    assert set(b["addresses"].values()) == {"10.244.0.100", "10.244.0.101", "10.244.0.150", "10.244.0.220"}


def test_node_a_carries_each_vlan_on_an_8021q_device_of_the_link(two_nodes):
    a, _ = two_nodes
    for vid in (100, 200):
        device = a["links"][f"eth0.{vid}"]
        assert device["linkinfo"]["info_kind"] == "vlan"
        assert device["linkinfo"]["info_data"]["id"] == vid
        assert device["linkinfo"]["info_data"]["protocol"] == "802.1Q"
        assert device["link"] == "eth0" and device["master"] == "br-pods"
        assert a["vlans"][f"eth0.{vid}"] == [f"{vid} pvid untagged"]
    assert "master" not in a["links"]["eth0"], "in vlan mode the link itself is no bridge port"


def test_node_b_makes_the_link_a_tagged_trunk_port(two_nodes):
    _, b = two_nodes
    assert b["links"]["eth0"]["master"] == "br-pods"
    assert b["vlans"]["eth0"] == ["100", "200"], "tagged, no PVID, no VLAN 1"
    assert not any(name.startswith("eth0.") for name in b["links"])


def test_bridges_filter_vlans_and_give_no_port_vlan_1(two_nodes):
    for facts in two_nodes:
        info = facts["links"]["br-pods"]["linkinfo"]["info_data"]
        assert info["vlan_filtering"] == 1 and info["vlan_default_pvid"] == 0
        ports = facts["ports"]
        assert facts["vlans"][ports["p100"]] == ["100 pvid untagged"]
        assert facts["vlans"][ports["p200"]] == ["200 pvid untagged"]
        assert facts["vlans"][ports["p0"]] == [], "a pod without a VLAN is a member of none"


def test_vlan_100_and_200_each_reach_across_the_link_and_nothing_else_does(two_nodes):
    for facts in two_nodes:
        pings = facts["pings"]
        assert pings["v100 to peer v100"] == 0 and pings["v200 to peer v200"] == 0, pings
        # 1: no answer (same subnet, a route exists: only the VLANs keep them apart); 2 would be a routing error
        for name in ("v200 to peer v100", "untagged to peer v100", "untagged to peer v200", "untagged to own v100"):
            assert pings[name] == 1, (name, pings)


def test_the_frames_on_the_wire_carry_the_pods_vlan_tag(two_nodes):
    a, b = two_nodes
    for facts in two_nodes:
        wire = facts["wire"]
        assert wire.get(f"100 {a['addresses']['p100']}>{b['addresses']['p100']}", 0) >= 2, wire
        assert wire.get(f"100 {b['addresses']['p100']}>{a['addresses']['p100']}", 0) >= 2, wire
        assert wire.get(f"200 {a['addresses']['p200']}>{b['addresses']['p200']}", 0) >= 2, wire
        assert not [key for key in wire if not key.startswith(("100 ", "200 "))], f"untagged or other tags: {wire}"
        v200 = {a["addresses"]["p200"], b["addresses"]["p200"]}
        assert not [k for k in wire if k.startswith("100 ") and set(k[4:].split(">")) & v200], wire


def test_check_on_each_node_sees_a_vlan_removed_from_a_port_and_a_re_add_repairs_it(two_nodes):
    for facts in two_nodes:
        assert set(facts["check"].values()) == {0}, facts["check"]
        assert facts["vlans_after_removal"] == []
        port = facts["ports"]["p100"]
        assert facts["check_drift"]["rc"] == 1
        assert facts["check_drift"]["json"]["code"] == 104
        assert f"{port}: vlans is [], want [100 pvid untagged]" in facts["check_drift"]["json"]["msg"]
        assert facts["readd_rc"] == 0 and facts["vlans_after_readd"] == ["100 pvid untagged"]
        assert facts["check_after_readd"] == 0


def test_del_on_node_a_leaves_node_b_working_and_each_del_leaves_only_the_shared_devices(two_nodes):
    a, b = two_nodes
    after = b["after_peer_del"]
    assert set(after["check"].values()) == {0}, after
    assert after["v100 to own v100"] == 0, "node b's VLAN 100 pods still reach each other"
    assert after["v100 to deleted peer v100"] == 1
    for facts in (a, b):
        assert set(facts["del"].values()) == {0} and facts["del_again"] == 0
        assert facts["after_del"]["leases"] == []
        assert not [n for n in facts["after_del"]["links"] if n.startswith("loxi")]
        assert "br-pods" in facts["after_del"]["links"] and "eth0" in facts["after_del"]["links"]
    assert {"eth0.100", "eth0.200"} <= set(a["after_del"]["links"]), "the VLAN devices stay for the network"
