"""The blog's conf as written (VLAN 100), end to end, on a kernel with bridge VLAN filtering.

Runs inside the kernel-tier guest only (see tests/kernel/README.md): the installed
loxi-cni is executed exactly as in tests/integration, then the bridge's VLAN
table is read back with `bridge -j vlan show`.
"""

from __future__ import annotations

import json

from tests.conftest import make_conf


def vlan_table(node) -> dict[str, list[str]]:
    """{port: ["100 pvid untagged", ...]} as the kernel reports it."""
    out = node.ns.exec("bridge", "-j", "vlan", "show", check=True).stdout
    table = {}
    for entry in json.loads(out or "[]"):
        vids = []
        for vlan in entry["vlans"]:
            flags = " ".join(vlan.get("flags", [])).lower()  # e.g. ["PVID", "Egress Untagged"]
            vids.append(" ".join([str(vlan["vlan"]), *(f for f in ("pvid", "untagged") if f in flags)]))
        table[entry["ifname"]] = sorted(vids)
    return table


def seed_conf(node, **overrides):
    return make_conf(node.data_dir, cniVersion="0.2.0", vlanID=100, **overrides)


def test_seed_conf_with_vlan_100_pods_reach_each_other_and_the_gateway(node):
    conf = seed_conf(node)
    pod_a, pod_b = node.pod(), node.pod()
    a = node.cni("ADD", conf, container_id="pod-a", netns=pod_a.path)
    b = node.cni("ADD", conf, container_id="pod-b", netns=pod_b.path)
    assert a.rc == 0 and b.rc == 0, (a, b)
    assert a.json["ip4"]["ip"] == "10.244.1.2/24" and b.json["ip4"]["ip"] == "10.244.1.3/24"
    bridge = node.ns.link("hsvlan100")
    assert bridge["linkinfo"]["info_data"]["vlan_filtering"] == 1
    table = vlan_table(node)
    ports = [name for name in table if name.startswith("loxi")]
    assert len(ports) == 2
    for port in ports:
        assert table[port] == ["100 pvid untagged"], "access port: VLAN 100 only, no VLAN 1"
    assert "100 pvid untagged" in table["hsvlan100"], "the gateway lives on the bridge's own VLAN 100 entry"
    for pod, target in ((pod_a, "10.244.1.3"), (pod_b, "10.244.1.2"), (pod_a, "10.244.1.1")):
        ping = pod.exec("ping", "-c", "1", "-W", "3", target)
        assert ping.returncode == 0, ping.stdout + ping.stderr


def test_a_pod_in_vlan_200_on_the_same_bridge_cannot_reach_vlan_100(node):
    conf = seed_conf(node)
    pod_a = node.pod()
    assert node.cni("ADD", conf, container_id="pod-a", netns=pod_a.path).rc == 0
    other = make_conf(node.data_dir, name="vlan200", vlanID=200, isGateway=False)
    other["ipam"]["rangeStart"], other["ipam"]["rangeEnd"] = "10.244.1.100", "10.244.1.120"
    pod_c = node.pod()
    c = node.cni("ADD", other, container_id="pod-c", netns=pod_c.path)
    assert c.rc == 0, c
    assert c.json["ips"][0]["address"] == "10.244.1.100/24"
    ping = pod_c.exec("ping", "-c", "1", "-W", "2", "10.244.1.2")
    assert ping.returncode != 0, "VLAN 200 must not reach VLAN 100"
    assert vlan_table(node)[c.json["interfaces"][1]["name"]] == ["200 pvid untagged"]


def test_check_fails_when_a_port_loses_its_vlan_or_gains_vlan_1_and_del_cleans_up(node):
    conf = make_conf(node.data_dir, vlanID=100)  # 1.0.0: CHECK needs 0.4.0+
    pod = node.pod()
    add = node.cni("ADD", conf, container_id="pod-a", netns=pod.path)
    assert add.rc == 0, add
    port = add.json["interfaces"][1]["name"]
    check_conf = {**conf, "prevResult": add.json}
    assert node.cni("CHECK", check_conf, container_id="pod-a", netns=pod.path).rc == 0
    node.ns.exec("bridge", "vlan", "add", "dev", port, "vid", "1", check=True)
    call = node.cni("CHECK", check_conf, container_id="pod-a", netns=pod.path)
    assert call.rc == 1 and call.json["code"] == 104
    assert f"{port}: vlans is [1, 100 pvid untagged], want [100 pvid untagged]" in call.json["msg"]
    node.ns.exec("bridge", "vlan", "del", "dev", port, "vid", "100", check=True)
    node.ns.exec("bridge", "vlan", "del", "dev", port, "vid", "1", check=True)
    call = node.cni("CHECK", check_conf, container_id="pod-a", netns=pod.path)
    assert f"{port}: vlans is [], want [100 pvid untagged]" in call.json["msg"]
    assert node.cni("ADD", conf, container_id="pod-a", netns=pod.path).rc == 0, "re-ADD repairs the port"
    assert vlan_table(node)[port] == ["100 pvid untagged"]
    assert node.cni("DEL", conf, container_id="pod-a", netns=pod.path).rc == 0
    assert node.ns.loxi_links() == []
    assert "hsvlan100" in node.ns.links()


def test_existing_bridge_without_filtering_gets_it_switched_on(node):
    node.ns.ip_run("link", "add", "hsvlan100", "type", "bridge")
    pod = node.pod()
    call = node.cni("ADD", seed_conf(node), container_id="pod-a", netns=pod.path)
    assert call.rc == 0, call
    assert node.ns.link("hsvlan100")["linkinfo"]["info_data"]["vlan_filtering"] == 1


def test_loxi_plan_dry_run_shows_vlan_membership_and_filtering_switched_on(node, tmp_path):
    from tests.integration.test_loxi_plan import CID, VETH, dry_run, write_conf

    node.ns.ip_run("link", "add", "hsvlan100", "type", "bridge")  # an existing bridge, no filtering
    conf = write_conf(node, vlanID=100)
    pod = node.pod()
    plan = dry_run(node, conf, pod)
    assert plan.rc == 2, plan
    assert "~ vlan_filtering: off → on" in plan.out
    assert f"+ port_vlans {VETH} (vlans [100 pvid untagged])" in plan.out
    assert "port_vlans hsvlan100" in plan.out, "the gateway's VLAN on the bridge's own entry"
    add = node.cni("ADD", make_conf(node.data_dir, vlanID=100), container_id=CID, netns=pod.path)
    assert add.rc == 0, add
    again = dry_run(node, conf, pod)
    assert again.rc == 0, again
    node.ns.exec("bridge", "vlan", "add", "dev", VETH, "vid", "1", check=True)
    drift = dry_run(node, conf, pod)
    assert drift.rc == 2 and "~ vlans: [1, 100 pvid untagged] → [100 pvid untagged]" in drift.out, drift
