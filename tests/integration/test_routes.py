"""Routes are added, never replaced: an attachment takes no route it did not make.

* A second attachment of the same pod with isDefaultGateway keeps the first
  one's default route (both defaults exist, the first stays in front), and its DEL
  leaves the first attachment whole: CHECK passes before and after.
* A route to the pod's own subnet leaves the kernel's connected route in place,
  and the connected route stays the one the kernel uses.
* Two default routes with different gateways are both installed.
* CHECK and DEL see only the routes the attachment owns (proto 76 on its link):
  another route to the same destination neither passes nor fails a CHECK.

Run in both modes (in-process, and through loxi-agent with LOXI_TEST_MODE=agent).
"""

from __future__ import annotations

import copy

from tests.conftest import Node, make_conf

LOXI_PROTO = "76"


def second_network(node: Node, **overrides) -> dict:
    conf = make_conf(node.data_dir, name="second_net", bridge="hsvlan200", **overrides)
    conf["ipam"]["subnet"] = "10.245.1.0/24"
    conf["ipam"]["routes"] = []
    return conf


def defaults(pod) -> list[tuple[str, str]]:
    return [(r.get("dev"), r.get("gateway")) for r in pod.routes() if r["dst"] == "default"]


def test_a_second_attachment_with_a_default_gateway_keeps_the_first_ones(node):
    first = make_conf(node.data_dir, isDefaultGateway=True)
    second = second_network(node, isDefaultGateway=True)
    pod = node.pod()
    a = node.cni("ADD", first, container_id="pod", netns=pod.path, ifname="eth0")
    assert a.rc == 0, a
    b = node.cni("ADD", second, container_id="pod", netns=pod.path, ifname="eth1")
    assert b.rc == 0, b
    assert defaults(pod) == [("eth0", "10.244.1.1"), ("eth1", "10.245.1.1")], pod.routes()
    for conf, ifname, result in ((first, "eth0", a), (second, "eth1", b)):
        doc = {**conf, "prevResult": result.json}
        check = node.cni("CHECK", doc, container_id="pod", netns=pod.path, ifname=ifname)
        assert check.rc == 0, (ifname, check)
    assert node.cni("DEL", second, container_id="pod", netns=pod.path, ifname="eth1").rc == 0
    assert defaults(pod) == [("eth0", "10.244.1.1")], pod.routes()
    check = node.cni("CHECK", {**first, "prevResult": a.json}, container_id="pod", netns=pod.path, ifname="eth0")
    assert check.rc == 0, check


def test_a_route_to_the_pods_own_subnet_keeps_the_connected_route(node):
    conf = make_conf(node.data_dir)
    conf["ipam"]["routes"] = [{"dst": "10.244.1.0/24"}]
    pod = node.pod()
    add = node.cni("ADD", conf, container_id="pod", netns=pod.path)
    assert add.rc == 0, add
    subnet = [r for r in pod.routes() if r["dst"] == "10.244.1.0/24"]
    assert subnet[0].get("protocol") == "kernel" and subnet[0].get("prefsrc") == "10.244.1.2", subnet
    assert [r.get("gateway") for r in subnet if r.get("protocol") == LOXI_PROTO] == ["10.244.1.1"], subnet
    used = pod.exec("ip", "-j", "route", "get", "10.244.1.9", check=True).stdout
    assert '"gateway"' not in used, f"the kernel must still reach the subnet directly: {used}"
    check = node.cni("CHECK", {**conf, "prevResult": add.json}, container_id="pod", netns=pod.path)
    assert check.rc == 0, check


def test_two_default_routes_with_different_gateways_are_both_installed(node):
    conf = make_conf(node.data_dir)
    conf["ipam"]["routes"] = [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}, {"dst": "0.0.0.0/0", "gw": "10.244.1.254"}]
    pod = node.pod()
    add = node.cni("ADD", conf, container_id="pod", netns=pod.path)
    assert add.rc == 0, add
    assert sorted(defaults(pod)) == [("eth0", "10.244.1.1"), ("eth0", "10.244.1.254")], pod.routes()
    assert sorted(r["gw"] for r in add.json["routes"] if r["dst"] == "0.0.0.0/0") == ["10.244.1.1", "10.244.1.254"]
    check = node.cni("CHECK", {**conf, "prevResult": add.json}, container_id="pod", netns=pod.path)
    assert check.rc == 0, check
    pod.ip_run("route", "del", "default", "via", "10.244.1.254", "dev", "eth0")
    check = node.cni("CHECK", {**conf, "prevResult": add.json}, container_id="pod", netns=pod.path)
    assert check.rc == 1 and check.json["code"] == 104 and "0.0.0.0/0" in check.json["msg"], check


def test_check_sees_only_the_routes_the_attachment_owns(node):
    """Someone else's route to the same destination on the same link does not stand in for ours."""
    conf = make_conf(node.data_dir)
    pod = node.pod()
    add = node.cni("ADD", conf, container_id="pod", netns=pod.path)
    assert add.rc == 0, add
    pod.ip_run("route", "del", "10.96.0.0/12", "dev", "eth0")
    pod.ip_run("route", "add", "10.96.0.0/12", "via", "10.244.1.1", "dev", "eth0", "proto", "static")
    check = node.cni("CHECK", {**conf, "prevResult": add.json}, container_id="pod", netns=pod.path)
    assert check.rc == 1 and check.json["code"] == 104 and "10.96.0.0/12" in check.json["msg"], check
    again = node.cni("ADD", conf, container_id="pod", netns=pod.path)
    assert again.rc == 0, again
    owned = [r for r in pod.routes() if r["dst"] == "10.96.0.0/12"]
    assert sorted(r.get("protocol") for r in owned) == [LOXI_PROTO, "static"], owned
    assert node.cni("CHECK", {**conf, "prevResult": add.json}, container_id="pod", netns=pod.path).rc == 0
    assert node.cni("DEL", conf, container_id="pod", netns=pod.path).rc == 0


def test_a_retried_add_does_not_duplicate_routes(node):
    conf = make_conf(node.data_dir, isDefaultGateway=True)
    pod = node.pod()
    assert node.cni("ADD", conf, container_id="pod", netns=pod.path).rc == 0
    before = copy.deepcopy(pod.routes())
    assert node.cni("ADD", conf, container_id="pod", netns=pod.path).rc == 0
    assert pod.routes() == before
