"""Many pods at once on one node: the locks keep shared objects consistent."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import AGENT_MODE, make_conf

PODS = 50
# Five rounds through loxi-agent (about 0.1 s a call); in-process each call costs
# ~0.7 s of CPU on two cores, so that pass runs one round.
ROUNDS = 5 if AGENT_MODE else 1


@pytest.mark.parametrize("round_number", range(1, ROUNDS + 1))
def test_concurrent_adds_on_a_node_without_a_bridge_then_concurrent_dels(node, round_number):
    conf = make_conf(node.data_dir, isDefaultGateway=True)
    pods = [node.pod() for _ in range(PODS)]

    def add(i: int):
        return node.cni("ADD", conf, container_id=f"burst-{i}", netns=pods[i].path)

    with ThreadPoolExecutor(max_workers=PODS) as pool:
        calls = list(pool.map(add, range(PODS)))
    failures = [str(c) for c in calls if c.rc != 0]
    assert not failures, failures[:3]
    addresses = {c.json["ips"][0]["address"] for c in calls}
    assert len(addresses) == PODS, "50 distinct addresses"
    bridges = [name for name, link in node.ns.links().items() if link.get("linkinfo", {}).get("info_kind") == "bridge"]
    assert bridges == ["hsvlan100"]
    assert node.ns.addresses("hsvlan100") == ["10.244.1.1/24"]
    macs = {c.json["interfaces"][0]["mac"] for c in calls}
    assert macs == {node.ns.link("hsvlan100")["address"]}, "the bridge MAC is pinned: every result saw the same"
    assert len(node.store_files("loxilight_cni")) == PODS
    assert len(node.ns.loxi_links()) == PODS

    def delete(i: int):
        return node.cni("DEL", conf, container_id=f"burst-{i}", netns=pods[i].path)

    with ThreadPoolExecutor(max_workers=PODS) as pool:
        calls = list(pool.map(delete, range(PODS)))
    assert all(c.rc == 0 for c in calls), [str(c) for c in calls if c.rc][:3]
    assert node.ns.loxi_links() == []
    assert node.store_files("loxilight_cni") == []
