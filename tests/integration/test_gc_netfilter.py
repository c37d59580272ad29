"""GC removes a collected pod's netfilter rules (masquerade, MAC spoof check), not only its veth and address.

A pod that vanished without a DEL (its netns and veth gone behind the runtime's
back) leaves its lease in the store and its rules in the node's tables; GC
tears it down with the same plan DEL uses, so the rules go with the lease.
"""

from __future__ import annotations

import json

from tests.conftest import make_conf

MASQ_TABLE = "loxi_cni_masquerade"
SPOOF_TABLE = "loxi_cni_macspoof"


def table_rules(node, family: str, table: str) -> list[dict]:
    """The rules of one table in the node's namespace (`nft -j list table`); none when it is absent."""
    out = node.ns.exec("nft", "-j", "list", "table", family, table)
    if out.returncode != 0:
        return []
    return [item["rule"] for item in json.loads(out.stdout)["nftables"] if "rule" in item]


def vanish(node, pod, add) -> None:
    """The pod's veth and netns deleted by hand: nothing calls DEL."""
    node.ns.ip_run("link", "del", add.json["interfaces"][1]["name"])
    node.factory.delete(pod)


def test_gc_removes_the_masquerade_rule_of_a_pod_that_vanished(node):
    conf = make_conf(node.data_dir, cniVersion="1.1.0", ipMasq=True)
    pod = node.pod()
    add = node.cni("ADD", conf, container_id="vanished", netns=pod.path)
    assert add.rc == 0, add
    address = add.json["ips"][0]["address"].split("/")[0]
    assert any(address in json.dumps(rule) for rule in table_rules(node, "inet", MASQ_TABLE))
    vanish(node, pod, add)
    call = node.cni("GC", {**conf, "cni.dev/valid-attachments": []})
    assert call.rc == 0 and call.stdout == "", call
    assert node.store_files("loxilight_cni") == []
    left = table_rules(node, "inet", MASQ_TABLE)
    assert not any(address in json.dumps(rule) for rule in left), f"GC left the pod's masquerade rule: {left}"


def test_gc_keeps_the_rules_of_a_listed_pod_and_removes_the_others(node):
    conf = make_conf(node.data_dir, cniVersion="1.1.0", ipMasq=True, macspoofchk=True)
    pod, kept_pod = node.pod(), node.pod()
    gone = node.cni("ADD", conf, container_id="vanished", netns=pod.path)
    kept = node.cni("ADD", conf, container_id="kept", netns=kept_pod.path)
    assert gone.rc == 0 and kept.rc == 0, (gone, kept)
    vanish(node, pod, gone)
    call = node.cni("GC", {**conf, "cni.dev/valid-attachments": [{"containerID": "kept", "ifname": "eth0"}]})
    assert call.rc == 0 and call.stdout == "", call
    kept_address = kept.json["ips"][0]["address"].split("/")[0]
    masq = table_rules(node, "inet", MASQ_TABLE)
    assert len(masq) == 1 and kept_address in json.dumps(masq[0]), masq
    spoof = table_rules(node, "bridge", SPOOF_TABLE)
    assert len(spoof) == 1 and kept.json["interfaces"][1]["name"] in json.dumps(spoof[0]), spoof
    assert node.store_files("loxilight_cni") == [kept_address]
    check = node.cni("CHECK", {**conf, "prevResult": kept.json}, container_id="kept", netns=kept_pod.path)
    assert check.rc == 0, check
