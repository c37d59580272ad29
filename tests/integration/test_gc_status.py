"""GC and STATUS (CNI 1.1), which the reference bridge and host-local plugins do not implement."""

from __future__ import annotations

from tests.conftest import make_conf


def conf11(node, **overrides):
    return make_conf(node.data_dir, cniVersion="1.1.0", **overrides)


def test_gc_releases_everything_not_listed(node):
    conf = conf11(node)
    pods = {}
    for i in range(5):
        pod = node.pod()
        call = node.cni("ADD", conf, container_id=f"pod-{i}", netns=pod.path)
        assert call.rc == 0, call
        pods[f"pod-{i}"] = call.json
    assert len(node.store_files("loxilight_cni")) == 5
    assert len(node.ns.loxi_links()) == 5
    keep = ["pod-1", "pod-3"]
    gc_conf = {**conf, "cni.dev/valid-attachments": [{"containerID": cid, "ifname": "eth0"} for cid in keep]}
    call = node.cni("GC", gc_conf)
    assert call.rc == 0 and call.stdout == "", call
    kept_addresses = sorted(pods[cid]["ips"][0]["address"].split("/")[0] for cid in keep)
    assert node.store_files("loxilight_cni") == kept_addresses
    assert node.ns.loxi_links() == sorted(pods[cid]["interfaces"][1]["name"] for cid in keep)
    # the kept pods still pass CHECK; GC again changes nothing
    for cid in keep:
        pod_path = pods[cid]["interfaces"][2]["sandbox"]
        check = node.cni("CHECK", {**conf, "prevResult": pods[cid]}, container_id=cid, netns=pod_path)
        assert check.rc == 0, check
    assert node.cni("GC", gc_conf).rc == 0
    assert node.store_files("loxilight_cni") == kept_addresses


def test_gc_accepts_the_attachments_spelling_and_spares_other_networks(node):
    conf = conf11(node)
    other = conf11(node, name="othernet")
    other["ipam"]["subnet"] = "10.244.1.0/24"
    other["ipam"]["rangeStart"] = "10.244.1.200"
    a = node.cni("ADD", conf, container_id="mine", netns=node.pod().path)
    b = node.cni("ADD", other, container_id="theirs", netns=node.pod().path)
    assert a.rc == 0 and b.rc == 0, (a, b)
    call = node.cni("GC", {**conf, "cni.dev/attachments": []})
    assert call.rc == 0, call
    assert node.store_files("loxilight_cni") == []
    assert node.store_files("othernet") == ["10.244.1.200"], "another network's allocation is not touched"
    assert node.ns.loxi_links() == [b.json["interfaces"][1]["name"]], "nor its port on the shared bridge"


def test_gc_and_status_need_version_1_1(node):
    for command in ("GC", "STATUS"):
        call = node.cni(command, make_conf(node.data_dir, cniVersion="1.0.0"))
        assert call.rc == 1 and call.json == {"code": 1, "msg": f"config version does not allow {command}"}


def test_status_ready_then_pool_exhausted_then_bridge_down(node):
    conf = conf11(node)
    conf["ipam"]["subnet"] = "10.244.9.0/30"
    call = node.cni("STATUS", conf)
    assert call.rc == 0 and call.stdout == "", call
    assert node.cni("ADD", conf, container_id="only", netns=node.pod().path).rc == 0
    call = node.cni("STATUS", conf)
    assert call.rc == 1
    assert call.json == {"code": 50, "msg": "no free address in range set 0: 10.244.9.1-10.244.9.2"}
    node.ns.ip_run("link", "set", "hsvlan100", "down")
    call = node.cni("STATUS", conf)
    assert call.json["code"] == 51 and "hsvlan100 is down" in call.json["msg"]
