"""Trunk ports, the uplink VLAN node, and VLAN 100 across two nodes, on a kernel with 802.1Q.

Runs inside the kernel-tier guest only. Two node namespaces stand for two nodes; the two
ends of one veth pair are their uplinks (the "wire" between the nodes).
"""

from __future__ import annotations

from tests.conftest import Node, make_conf
from tests.kernel.guest.test_seed_vlan import vlan_table


def node_conf(node, first: str, last: str, **overrides):
    conf = make_conf(node.data_dir, **{"isGateway": False, "vlanID": 100, **overrides})
    conf["ipam"].update(subnet="10.244.0.0/24", rangeStart=first, rangeEnd=last)
    return conf


def two_nodes(node, netns, tmp_path):
    other = Node(netns("node"), tmp_path / "ipam-b", netns)
    node.ns.ip_run("link", "add", "wire", "type", "veth", "peer", "name", "wire", "netns", other.ns.name)
    node.ns.ip_run("link", "set", "wire", "up")
    other.ns.ip_run("link", "set", "wire", "up")
    return other


def test_vlan_100_spans_two_nodes_over_their_uplinks_and_vlan_200_does_not_reach_it(node, netns, tmp_path):
    node_b = two_nodes(node, netns, tmp_path)
    conf_a = node_conf(node, "10.244.0.2", "10.244.0.127", uplink="wire")
    conf_b = node_conf(node_b, "10.244.0.128", "10.244.0.199", uplink="wire")
    pod_a, pod_b = node.pod(), node_b.pod()
    a = node.cni("ADD", conf_a, container_id="pod-a", netns=pod_a.path)
    b = node_b.cni("ADD", conf_b, container_id="pod-b", netns=pod_b.path)
    assert a.rc == 0 and b.rc == 0, (a, b)
    for n in (node, node_b):
        vlan_dev = n.ns.link("wire.100")
        assert vlan_dev["linkinfo"]["info_kind"] == "vlan"
        assert vlan_dev["linkinfo"]["info_data"]["id"] == 100
        assert vlan_dev["master"] == "hsvlan100"
        assert vlan_table(n)["wire.100"] == ["100 pvid untagged"]
    ping = pod_a.exec("ping", "-c", "1", "-W", "3", "10.244.0.128")
    assert ping.returncode == 0, ping.stdout + ping.stderr

    conf_200 = node_conf(node_b, "10.244.0.200", "10.244.0.210", name="vlan200", vlanID=200, uplink="wire")
    pod_c = node_b.pod()
    c = node_b.cni("ADD", conf_200, container_id="pod-c", netns=pod_c.path)
    assert c.rc == 0, c
    assert pod_c.exec("ping", "-c", "1", "-W", "2", "10.244.0.2").returncode != 0
    assert pod_c.exec("ping", "-c", "1", "-W", "2", "10.244.0.128").returncode != 0

    # DEL removes the pod's port; the VLAN node stays while pods use the network
    assert node.cni("DEL", conf_a, container_id="pod-a", netns=pod_a.path).rc == 0
    assert node.ns.loxi_links() == []
    assert "wire.100" in node.ns.links() and "hsvlan100" in node.ns.links()
    status = node.cni("STATUS", {**conf_a, "cniVersion": "1.1.0"})
    assert status.rc == 0, status


def test_uplink_trunk_mode_carries_the_vlan_tagged_on_the_nic_itself(node, netns, tmp_path):
    node_b = two_nodes(node, netns, tmp_path)
    conf_a = node_conf(node, "10.244.0.2", "10.244.0.127", uplink="wire", uplinkMode="trunk")
    conf_b = node_conf(node_b, "10.244.0.128", "10.244.0.199", uplink="wire")
    pod_a, pod_b = node.pod(), node_b.pod()
    a = node.cni("ADD", conf_a, container_id="pod-a", netns=pod_a.path)
    b = node_b.cni("ADD", conf_b, container_id="pod-b", netns=pod_b.path)
    assert a.rc == 0 and b.rc == 0, (a, b)
    assert node.ns.link("wire")["master"] == "hsvlan100"
    assert "100" in vlan_table(node)["wire"], "tagged VLAN 100 on the uplink port"
    ping = pod_a.exec("ping", "-c", "1", "-W", "3", "10.244.0.128")
    assert ping.returncode == 0, ping.stdout + ping.stderr


def test_a_trunk_pod_sees_tagged_frames_of_the_listed_vlans(node):
    access = make_conf(node.data_dir, vlanID=100, isGateway=False)
    pod_a = node.pod()
    a = node.cni("ADD", access, container_id="pod-a", netns=pod_a.path)
    assert a.rc == 0, a
    trunk = make_conf(node.data_dir, name="trunknet", ipam=None, isGateway=False, vlanTrunk=[{"id": 100}])
    pod_t = node.pod()
    t = node.cni("ADD", trunk, container_id="pod-t", netns=pod_t.path)
    assert t.rc == 0, t
    port = t.json["interfaces"][1]["name"]
    assert vlan_table(node)[port] == ["1 pvid untagged", "100"]
    pod_t.ip_run("link", "add", "link", "eth0", "name", "eth0.100", "type", "vlan", "id", "100")
    pod_t.ip_run("addr", "add", "10.244.1.250/24", "dev", "eth0.100")
    pod_t.ip_run("link", "set", "eth0.100", "up")
    ping = pod_t.exec("ping", "-c", "1", "-W", "3", "10.244.1.2")
    assert ping.returncode == 0, ping.stdout + ping.stderr
    check = node.cni("CHECK", {**trunk, "prevResult": t.json}, container_id="pod-t", netns=pod_t.path)
    assert check.rc == 0, check
