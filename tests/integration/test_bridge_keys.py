"""The reference bridge plugin's remaining keys: ipMasq, macspoofchk, disableContainerInterface."""

from __future__ import annotations

import json

import pytest

from tests.conftest import make_conf

CID = "keys-pod"


def outside_host(node, netns):
    """A host beyond the node (10.99.0.2) with no route back to the pods' subnet:
    it answers a pod only if the node masquerades the pod's traffic."""
    ext = netns("ext")
    node.ns.ip_run("link", "add", "uplink0", "type", "veth", "peer", "name", "eth0", "netns", ext.name)
    node.ns.ip_run("addr", "add", "10.99.0.1/24", "dev", "uplink0")
    node.ns.ip_run("link", "set", "uplink0", "up")
    ext.ip_run("addr", "add", "10.99.0.2/24", "dev", "eth0")
    ext.ip_run("link", "set", "eth0", "up")
    return ext


def nft_rules(node) -> list[dict]:
    out = node.ns.exec("nft", "-j", "list", "ruleset", check=True).stdout
    return [item["rule"] for item in json.loads(out)["nftables"] if "rule" in item]


@pytest.mark.parametrize("backend", ["nftables", "iptables"])
def test_ip_masq_reaches_the_outside_and_del_removes_exactly_its_rules(node, netns, backend):
    outside_host(node, netns)
    conf = make_conf(node.data_dir, isDefaultGateway=True, ipMasq=True, ipMasqBackend=backend)
    pod, other = node.pod(), node.pod()
    add = node.cni("ADD", conf, container_id=CID, netns=pod.path)
    assert add.rc == 0, add
    assert node.cni("ADD", conf, container_id="other", netns=other.path).rc == 0
    ping = pod.exec("ping", "-c", "1", "-W", "2", "10.99.0.2")
    assert ping.returncode == 0, ping.stdout + ping.stderr
    if backend == "nftables":
        masq = [r for r in nft_rules(node) if r["table"] == "loxi_cni_masquerade"]
        assert len(masq) == 2 and all(r["comment"].startswith("loxi-cni ") for r in masq)
    else:
        rules = node.ns.exec("iptables", "-t", "nat", "-S", "POSTROUTING", check=True).stdout
        assert "-s 10.244.1.2/32 ! -d 10.244.1.0/24" in rules and rules.count("MASQUERADE") == 2
    check = node.cni("CHECK", {**conf, "prevResult": add.json}, container_id=CID, netns=pod.path)
    assert check.rc == 0, check
    # DEL with an empty CNI_NETNS (containerd after the task exited) still removes the rule
    assert node.cni("DEL", conf, container_id=CID, netns="").rc == 0
    if backend == "nftables":
        left = [r for r in nft_rules(node) if r["table"] == "loxi_cni_masquerade"]
        assert len(left) == 1 and "10.244.1.3" in json.dumps(left[0]), "only the other pod's rule stays"
    else:
        rules = node.ns.exec("iptables", "-t", "nat", "-S", "POSTROUTING", check=True).stdout
        assert "10.244.1.2/32" not in rules and "10.244.1.3/32" in rules
    assert node.store_files("loxilight_cni") == ["10.244.1.3"]


def test_ip_masq_drift_is_reported_by_check(node):
    conf = make_conf(node.data_dir, ipMasq=True)
    pod = node.pod()
    add = node.cni("ADD", conf, container_id=CID, netns=pod.path)
    assert add.rc == 0, add
    node.ns.exec("nft", "delete", "table", "inet", "loxi_cni_masquerade", check=True)
    call = node.cni("CHECK", {**conf, "prevResult": add.json}, container_id=CID, netns=pod.path)
    assert call.rc == 1 and call.json["code"] == 104
    assert "masquerade missing" in call.json["msg"]


def test_macspoofchk_drops_frames_with_another_source_mac(node):
    conf = make_conf(node.data_dir, macspoofchk=True)
    pod = node.pod()
    add = node.cni("ADD", conf, container_id=CID, netns=pod.path)
    assert add.rc == 0, add
    mac = add.json["interfaces"][2]["mac"]
    assert pod.link("eth0")["address"] == mac
    rules = [r for r in nft_rules(node) if r["table"] == "loxi_cni_macspoof"]
    assert len(rules) == 1 and mac in json.dumps(rules[0])
    assert pod.exec("ping", "-c", "1", "-W", "2", "10.244.1.1").returncode == 0
    pod.ip_run("link", "set", "eth0", "address", "02:00:00:00:00:99")
    pod.ip_run("neigh", "flush", "all")
    assert pod.exec("ping", "-c", "1", "-W", "2", "10.244.1.1").returncode != 0, "spoofed source MAC dropped"
    assert node.cni("DEL", conf, container_id=CID, netns=pod.path).rc == 0
    assert [r for r in nft_rules(node) if r["table"] == "loxi_cni_macspoof"] == []


def test_disable_container_interface_leaves_the_pod_link_down(node):
    conf = make_conf(node.data_dir, ipam=None, isGateway=False, disableContainerInterface=True)
    pod = node.pod()
    add = node.cni("ADD", conf, container_id=CID, netns=pod.path)
    assert add.rc == 0, add
    assert "UP" not in pod.link("eth0")["flags"]
    check = node.cni("CHECK", {**conf, "prevResult": add.json}, container_id=CID, netns=pod.path)
    assert check.rc == 0, check
    with_ipam = make_conf(node.data_dir, disableContainerInterface=True)
    call = node.cni("ADD", with_ipam, container_id="other", netns=node.pod().path)
    assert call.rc == 1 and call.json["code"] == 7
    assert "disableContainerInterface cannot be used with ipam" in call.json["msg"]


def test_port_isolation_keeps_pods_apart_but_not_from_the_gateway(node):
    conf = make_conf(node.data_dir, portIsolation=True)
    pod_a, pod_b = node.pod(), node.pod()
    a = node.cni("ADD", conf, container_id="iso-a", netns=pod_a.path)
    b = node.cni("ADD", conf, container_id="iso-b", netns=pod_b.path)
    assert a.rc == 0 and b.rc == 0, (a, b)
    port = node.ns.link(a.json["interfaces"][1]["name"])
    assert port["linkinfo"]["info_slave_data"]["isolated"] is True
    assert pod_a.exec("ping", "-c", "1", "-W", "2", "10.244.1.1").returncode == 0
    assert pod_a.exec("ping", "-c", "1", "-W", "2", "10.244.1.3").returncode != 0, "isolated ports do not talk"


def test_conf_dns_overrides_ipam_dns(node, tmp_path):
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 10.96.0.10\nsearch cluster.local\n")
    conf = make_conf(node.data_dir)
    conf["ipam"]["resolvConf"] = str(resolv)
    add = node.cni("ADD", conf, container_id="dns-a", netns=node.pod().path)
    assert add.rc == 0, add
    assert add.json["dns"] == {"nameservers": ["10.96.0.10"], "search": ["cluster.local"]}
    conf = make_conf(node.data_dir, dns={"nameservers": ["10.0.0.53"], "domain": "example"})
    conf["ipam"]["resolvConf"] = str(resolv)
    add = node.cni("ADD", conf, container_id="dns-b", netns=node.pod().path)
    assert add.json["dns"] == {"domain": "example", "nameservers": ["10.0.0.53"]}
