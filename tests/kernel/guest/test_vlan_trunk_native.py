"""`vlan` together with `vlanTrunk` (reference bridge v1.8+): the access VLAN is the trunk port's
native VLAN (PVID, untagged), the trunk's VLANs ride tagged, and VLAN 1 is not kept
(`preserveDefaultVlan` defaults to false, as in v1.8+).

Runs inside the kernel-tier guest only (see tests/kernel/README.md), in the style of
test_seed_vlan.py: the installed loxi-cni executed as in tests/integration, the bridge's VLAN
table read back with `bridge -j vlan show`, and traffic on both kinds of VLAN.
"""

from __future__ import annotations

from tests.conftest import make_conf
from tests.kernel.guest.test_seed_vlan import vlan_table


def test_access_vlan_is_the_native_vlan_of_a_trunk_port(node):
    trunk = make_conf(node.data_dir, vlan=100, vlanTrunk=[{"id": 200}, {"minID": 300, "maxID": 301}])
    pod_t = node.pod()
    t = node.cni("ADD", trunk, container_id="pod-t", netns=pod_t.path)
    assert t.rc == 0, t
    assert t.json["ips"][0]["address"] == "10.244.1.2/24"
    port = t.json["interfaces"][1]["name"]
    assert vlan_table(node)[port] == ["100 pvid untagged", "200", "300", "301"], "no VLAN 1 by default"
    assert "100 pvid untagged" in vlan_table(node)["hsvlan100"], "the gateway on the bridge's VLAN 100 entry"

    # untagged traffic is VLAN 100: an access pod of VLAN 100 and the gateway answer the trunk pod
    access = make_conf(node.data_dir, vlan=100)
    pod_a = node.pod()
    a = node.cni("ADD", access, container_id="pod-a", netns=pod_a.path)
    assert a.rc == 0, a
    assert a.json["ips"][0]["address"] == "10.244.1.3/24"
    for pod, target in ((pod_t, "10.244.1.3"), (pod_a, "10.244.1.2"), (pod_t, "10.244.1.1")):
        ping = pod.exec("ping", "-c", "1", "-W", "3", target)
        assert ping.returncode == 0, ping.stdout + ping.stderr

    # tagged traffic: VLAN 200 through an 802.1Q device in the trunk pod reaches a VLAN 200 access pod
    v200 = make_conf(node.data_dir, name="vlan200", vlan=200, isGateway=False)
    v200["ipam"]["subnet"] = "10.244.2.0/24"
    pod_c = node.pod()
    c = node.cni("ADD", v200, container_id="pod-c", netns=pod_c.path)
    assert c.rc == 0, c
    assert c.json["ips"][0]["address"] == "10.244.2.2/24"
    pod_t.ip_run("link", "add", "link", "eth0", "name", "eth0.200", "type", "vlan", "id", "200")
    pod_t.ip_run("addr", "add", "10.244.2.250/24", "dev", "eth0.200")
    pod_t.ip_run("link", "set", "eth0.200", "up")
    ping = pod_t.exec("ping", "-c", "1", "-W", "3", "10.244.2.2")
    assert ping.returncode == 0, ping.stdout + ping.stderr
    # the VLAN 100 access pod does not see VLAN 200
    assert pod_a.exec("ping", "-c", "1", "-W", "2", "10.244.2.2").returncode != 0

    check = node.cni("CHECK", {**trunk, "prevResult": t.json}, container_id="pod-t", netns=pod_t.path)
    assert check.rc == 0, check
    assert node.cni("DEL", trunk, container_id="pod-t", netns=pod_t.path).rc == 0
    assert port not in vlan_table(node)
    assert node.store_files("loxilight_cni") == ["10.244.1.3"]
