"""The installed loxi-cni, executed as a runtime executes it, on this machine's kernel.

Each test gets a fresh node namespace (where the plugin runs, as on a node) and
pod namespaces; assertions read the kernel with `ip -j`, the IPAM store from
disk, and stdout/exit status exactly as a runtime would.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import REFERENCE_CNI_DIR, make_conf

CID = "0123456789abcdef"
GATEWAY = "10.244.1.1/24"


def add(node, pod, conf, cid=CID, **kw):
    return node.cni("ADD", conf, container_id=cid, netns=pod.path, **kw)


def with_prev(conf: dict, result: dict) -> dict:
    return {**conf, "prevResult": result}


def pod_address(result: dict) -> str:
    return result["ips"][0]["address"]


def veth_of(result: dict) -> str:
    return result["interfaces"][1]["name"]


def test_seed_conf_end_to_end_pod_pings_its_gateway(node):
    pod = node.pod()
    conf = make_conf(node.data_dir)
    call = add(node, pod, conf)
    assert call.rc == 0, call
    result = call.json
    # the bridge: exists, up, gateway address, forwarding on
    bridge = node.ns.link("hsvlan100")
    assert bridge["linkinfo"]["info_kind"] == "bridge"
    assert "UP" in bridge["flags"] and bridge["mtu"] == 1500
    assert node.ns.addresses("hsvlan100") == [GATEWAY]
    assert node.ns.sysctl("net/ipv4/ip_forward") == "1"
    # the veth: host end on the bridge, pod end eth0 in the pod with the address
    host = node.ns.link(veth_of(result))
    assert host["master"] == "hsvlan100" and host["mtu"] == 1500 and "UP" in host["flags"]
    assert host["linkinfo"]["info_slave_data"]["hairpin"] is False
    eth0 = pod.link("eth0")
    assert eth0["mtu"] == 1500 and "UP" in eth0["flags"]
    assert pod.addresses("eth0") == ["10.244.1.2/24"]
    routes = {r["dst"]: r for r in pod.routes()}
    assert routes["10.96.0.0/12"]["gateway"] == "10.244.1.1"
    assert "default" not in routes, "isDefaultGateway is false in the seed conf"
    # the result: three interfaces, the pod's address on index 2, real MACs
    assert [i["name"] for i in result["interfaces"]] == ["hsvlan100", veth_of(result), "eth0"]
    assert result["interfaces"][2]["sandbox"] == pod.path
    assert result["interfaces"][2]["mac"] == eth0["address"]
    assert result["interfaces"][0]["mac"] == bridge["address"]
    assert result["ips"] == [{"address": "10.244.1.2/24", "gateway": "10.244.1.1", "interface": 2}]
    # the IPAM store, in the reference host-local format
    assert node.store_files("loxilight_cni") == ["10.244.1.2"]
    assert (node.data_dir / "loxilight_cni" / "10.244.1.2").read_bytes() == f"{CID}\r\neth0".encode()
    # and the pod reaches its gateway
    ping = pod.exec("ping", "-c", "1", "-W", "2", "10.244.1.1")
    assert ping.returncode == 0, ping.stdout + ping.stderr


def test_two_pods_reach_each_other_and_default_route(node):
    conf = make_conf(node.data_dir, isDefaultGateway=True)
    pod_a, pod_b = node.pod(), node.pod()
    a = add(node, pod_a, conf, cid="pod-a")
    b = add(node, pod_b, conf, cid="pod-b")
    assert a.rc == 0 and b.rc == 0, (a, b)
    assert pod_address(a.json) != pod_address(b.json)
    default = [r for r in pod_a.routes() if r["dst"] == "default"]
    assert default and default[0]["gateway"] == "10.244.1.1"
    target = pod_address(b.json).split("/")[0]
    ping = pod_a.exec("ping", "-c", "1", "-W", "2", target)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert node.ns.addresses("hsvlan100") == [GATEWAY], "one gateway address, however many pods"


@pytest.mark.parametrize("version", ["0.2.0", "0.3.1", "0.4.0", "1.0.0"])
def test_result_in_each_version(node, version):
    pod = node.pod()
    call = add(node, pod, make_conf(node.data_dir, cniVersion=version))
    assert call.rc == 0, call
    doc = call.json
    assert doc["cniVersion"] == version
    if version == "0.2.0":
        assert doc["ip4"] == {
            "ip": "10.244.1.2/24",
            "gateway": "10.244.1.1",
            "routes": [{"dst": "10.96.0.0/12"}],  # as the conf writes it, as the reference prints it
        }
        assert doc["dns"] == {} and "interfaces" not in doc
        assert list(doc) == ["cniVersion", "ip4", "dns"]
        return
    assert doc["ips"][0]["interface"] == 2
    assert doc["interfaces"][2]["mac"] and doc["interfaces"][2]["sandbox"] == pod.path
    if version.startswith("0."):
        assert doc["ips"][0]["version"] == "4"
        assert list(doc) == ["cniVersion", "interfaces", "ips", "routes", "dns"]
        assert list(doc["ips"][0]) == ["version", "interface", "address", "gateway"]
    else:
        assert "version" not in doc["ips"][0] and "dns" not in doc
        assert list(doc) == sorted(doc)
    assert call.stdout == json.dumps(doc, indent=4), "4-space indent, no trailing newline"


def test_check_passes_then_names_each_kind_of_drift(node):
    pod = node.pod()
    conf = make_conf(node.data_dir)
    result = add(node, pod, conf).json
    veth = veth_of(result)
    check_conf = with_prev(conf, result)

    def check():
        return node.cni("CHECK", check_conf, container_id=CID, netns=pod.path)

    assert check().rc == 0, check()
    drifts = [
        (lambda: pod.ip_run("addr", "del", "10.244.1.2/24", "dev", "eth0"), "address 10.244.1.2/24 missing"),
        (lambda: node.ns.ip_run("link", "set", veth, "mtu", "1400"), f"{veth}: mtu is 1400, want 1500"),
        (lambda: node.ns.ip_run("link", "set", veth, "nomaster"), f"{veth}: master is none, want hsvlan100"),
        (lambda: node.ns.ip_run("link", "set", "hsvlan100", "down"), "hsvlan100: up is off, want on"),
    ]
    for make_drift, message in drifts:
        make_drift()
        call = check()
        assert call.rc == 1
        assert call.json["code"] == 104
        assert message in call.json["msg"], call
        # repair by re-running ADD (idempotent): CHECK passes again
        again = add(node, pod, conf)
        assert again.rc == 0, again
        assert check().rc == 0, check()


def test_check_reports_a_removed_route(node):
    pod = node.pod()
    conf = make_conf(node.data_dir)
    result = add(node, pod, conf).json
    pod.ip_run("route", "del", "10.96.0.0/12")
    call = node.cni("CHECK", with_prev(conf, result), container_id=CID, netns=pod.path)
    assert call.rc == 1 and call.json["code"] == 104
    assert f"10.96.0.0/12 dev eth0 in {pod.path}: route missing" in call.json["msg"]


def test_readd_is_idempotent_and_keeps_the_address(node):
    pod = node.pod()
    conf = make_conf(node.data_dir)
    first = add(node, pod, conf)
    second = add(node, pod, conf)
    assert first.rc == 0 and second.rc == 0, second
    assert first.json == second.json
    assert node.store_files("loxilight_cni") == ["10.244.1.2"]


def test_del_removes_pod_interface_and_address_and_keeps_bridge(node):
    pod = node.pod()
    conf = make_conf(node.data_dir)
    result = add(node, pod, conf).json
    call = node.cni("DEL", conf, container_id=CID, netns=pod.path)
    assert call.rc == 0 and call.stdout == "", call
    assert "eth0" not in pod.links()
    assert node.ns.loxi_links() == []
    assert veth_of(result) not in node.ns.links()
    assert node.store_files("loxilight_cni") == []
    assert node.ns.addresses("hsvlan100") == [GATEWAY], "the bridge and gateway stay for other pods"
    again = node.cni("DEL", conf, container_id=CID, netns=pod.path)
    assert again.rc == 0 and again.stdout == "", again


def test_del_after_the_netns_is_gone_and_with_empty_netns(node, netns):
    pod = node.pod()
    conf = make_conf(node.data_dir)
    add(node, pod, conf)
    path = pod.path
    netns.delete(pod)
    call = node.cni("DEL", conf, container_id=CID, netns=path)
    assert call.rc == 0, call
    assert node.store_files("loxilight_cni") == []
    assert node.ns.loxi_links() == []
    pod2 = node.pod()
    add(node, pod2, conf, cid="other")
    call = node.cni("DEL", conf, container_id="other", netns="")
    assert call.rc == 0, call
    assert node.store_files("loxilight_cni") == [] and node.ns.loxi_links() == []


def test_del_for_a_container_never_seen(node):
    conf = make_conf(node.data_dir)
    call = node.cni("DEL", conf, container_id="never-seen", netns="/var/run/netns/does-not-exist")
    assert call.rc == 0 and call.stdout == "", call


def test_del_when_netns_is_not_a_namespace(node, tmp_path):
    pod = node.pod()
    conf = make_conf(node.data_dir)
    add(node, pod, conf)
    bogus = tmp_path / "not-a-netns"
    bogus.write_text("")
    call = node.cni("DEL", conf, container_id=CID, netns=str(bogus))
    assert call.rc == 0, call
    assert node.store_files("loxilight_cni") == [] and node.ns.loxi_links() == []


def test_add_with_pool_exhausted_leaves_nothing(node):
    conf = make_conf(node.data_dir)
    conf["ipam"]["subnet"] = "10.244.9.0/30"  # .1 is the gateway, .2 the only address
    first = add(node, node.pod(), conf, cid="first")
    assert first.rc == 0, first
    links_before = sorted(node.ns.links())
    pod = node.pod()
    call = add(node, pod, conf, cid="second")
    assert call.rc == 1
    assert call.json == {
        "code": 999,
        "msg": "failed to allocate for range 0: no IP addresses available in range set: 10.244.9.1-10.244.9.2",
    }
    assert sorted(node.ns.links()) == links_before
    assert list(pod.links()) == ["lo"]
    assert node.store_files("loxilight_cni") == ["10.244.9.2"]


def test_add_when_a_non_bridge_link_has_the_bridge_name(node):
    node.ns.ip_run("link", "add", "hsvlan100", "type", "veth", "peer", "name", "hsvlan100p")
    pod = node.pod()
    conf = make_conf(node.data_dir)
    call = add(node, pod, conf)
    assert call.rc == 1
    assert call.json["code"] == 101
    assert call.json["msg"] == '"hsvlan100" already exists but is not a bridge'
    assert sorted(node.ns.links()) == ["hsvlan100", "hsvlan100p", "lo"]
    assert node.ns.addresses("hsvlan100") == []
    assert list(pod.links()) == ["lo"]
    assert node.store_files("loxilight_cni") == []


def test_add_when_the_pod_already_has_the_interface(node):
    pod = node.pod()
    pod.ip_run("link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
    conf = make_conf(node.data_dir)
    call = add(node, pod, conf)
    assert call.rc == 1 and call.json["code"] == 101, call
    assert "eth0 already exists in the pod namespace" in call.json["msg"]
    assert node.ns.loxi_links() == []
    assert "hsvlan100" not in node.ns.links(), "the bridge this ADD would have made is not left behind"
    assert node.store_files("loxilight_cni") == []


def dual_stack_into_a_pod_without_ipv6(node, pod):
    """A conf the rules accept and the kernel refuses mid-plan: an IPv6 address in a pod whose
    namespace has IPv6 disabled (EACCES), after the bridge, the veth and the IPv4 lease exist."""
    pod.exec("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1", check=True)
    conf = make_conf(node.data_dir)
    conf["ipam"].pop("subnet")
    conf["ipam"]["ranges"] = [[{"subnet": "10.244.1.0/24"}], [{"subnet": "fd00:10:244:1::/64"}]]
    return conf


def test_failed_add_rolls_back_a_bridge_it_created(node):
    """A kernel refusal mid-plan (IPv6 off in the pod) undoes the whole run."""
    pod = node.pod()
    call = add(node, pod, dual_stack_into_a_pod_without_ipv6(node, pod))
    assert call.rc == 1, call
    assert call.json["code"] == 100
    assert "EACCES" in call.json["msg"] and "fd00:10:244:1::2/64" in call.json["msg"], call.json
    assert sorted(node.ns.links()) == ["lo"], "bridge and veth removed"
    assert list(pod.links()) == ["lo"]
    assert node.store_files("loxilight_cni") == []


def test_mac_hairpin_and_promisc(node):
    pod = node.pod()
    conf = make_conf(node.data_dir, hairpinMode=True)
    call = add(node, pod, conf, args="IgnoreUnknown=1;K8S_POD_NAME=x;MAC=0a:58:0a:f4:01:99")
    assert call.rc == 0, call
    assert pod.link("eth0")["address"] == "0a:58:0a:f4:01:99"
    assert call.json["interfaces"][2]["mac"] == "0a:58:0a:f4:01:99"
    assert node.ns.link(veth_of(call.json))["linkinfo"]["info_slave_data"]["hairpin"] is True
    node2_conf = make_conf(node.data_dir, bridge="promisc0", promiscMode=True, name="net2")
    call = add(node, node.pod(), node2_conf, cid="p2")
    assert call.rc == 0, call
    assert "PROMISC" in node.ns.link("promisc0")["flags"]


def test_plugin_runs_with_an_empty_environment(node):
    """`env -i` plus the CNI variables: no PATH, no PYTHONPATH, no HOME."""
    pod = node.pod()
    call = add(node, pod, make_conf(node.data_dir), env={"PATH": None})
    assert call.rc == 0, call
    assert True


@pytest.mark.parametrize(
    ("env", "stdin", "code", "msg"),
    [
        ({"CNI_COMMAND": "BOGUS"}, b"{}", 4, "unknown CNI_COMMAND: BOGUS"),
        ({"CNI_CONTAINERID": ""}, None, 4, "required env variables [CNI_CONTAINERID] missing"),
        ({"CNI_CONTAINERID": "../../etc"}, None, 4, "invalid characters in containerID"),
        ({"CNI_IFNAME": "a/b"}, None, 4, "interface name contains / or : or whitespace characters"),
        ({}, b"{not json", 6, None),
        ({}, b'{"cniVersion":"9.9.9","name":"n","type":"loxi-cni"}', 1, "incompatible CNI versions"),
        ({}, b'{"cniVersion":"1.0.0","type":"loxi-cni"}', 7, "missing network name"),
        ({}, b'{"cniVersion":"1.0.0","name":"n","type":"loxi-cni","mtu":"big"}', 7, None),
        ({}, b'{"cniVersion":"1.0.0","name":"n","type":"loxi-cni","hairpinMode":true,"promiscMode":true}', 7, None),
    ],
)
def test_bad_input_gets_the_right_code_and_changes_nothing(node, env, stdin, code, msg):
    pod = node.pod()
    call = node.cni(
        env.get("CNI_COMMAND", "ADD"),
        stdin if stdin is not None else make_conf(node.data_dir),
        container_id=env.get("CNI_CONTAINERID", CID),
        netns=pod.path,
        ifname=env.get("CNI_IFNAME", "eth0"),
    )
    assert call.rc == 1, call
    doc = call.json
    assert doc["code"] == code, call
    if msg:
        assert doc["msg"] == msg
    assert "Traceback" not in call.stdout + call.stderr
    assert sorted(node.ns.links()) == ["lo"] and list(pod.links()) == ["lo"]


def test_schema_error_names_the_key(node):
    call = add(node, node.pod(), make_conf(node.data_dir, mtu="big"))
    assert call.json["code"] == 7
    assert call.json["msg"] == "invalid network config: mtu: 'big' is not of type 'integer'"


def test_version_and_no_command(node):
    call = node.cni("VERSION", None)
    assert call.rc == 0
    assert call.stdout == (
        '{"cniVersion":"1.1.0","supportedVersions":["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}\n'
    )
    call = node.cni("", None)
    assert call.rc == 0 and call.stdout == "" and "CNI loxi-cni plugin" in call.stderr


def test_check_needs_prev_result_and_version(node):
    pod = node.pod()
    conf = make_conf(node.data_dir)
    add(node, pod, conf)
    call = node.cni("CHECK", conf, container_id=CID, netns=pod.path)
    assert call.json == {"code": 7, "msg": "Required prevResult missing"}
    call = node.cni("CHECK", make_conf(node.data_dir, cniVersion="0.3.1"), container_id=CID, netns=pod.path)
    assert call.json == {"code": 1, "msg": "config version does not allow CHECK"}


def test_add_into_the_plugins_own_namespace_is_refused(node):
    call = add(node, node.ns, make_conf(node.data_dir))
    assert call.rc == 1 and call.json["code"] == 8
    assert node.store_files("loxilight_cni") == []


@pytest.mark.skipif(not (REFERENCE_CNI_DIR / "host-local").exists(), reason="reference host-local not installed")
def test_allocations_are_shared_with_the_reference_host_local(node):
    """loxi-cni's allocation is released by the reference plugin, and the reverse."""
    conf = make_conf(node.data_dir)
    pod = node.pod()
    assert add(node, pod, conf).rc == 0
    assert node.store_files("loxilight_cni") == ["10.244.1.2"]
    ref_conf = {"cniVersion": "1.0.0", "name": "loxilight_cni", "ipam": conf["ipam"]}
    ref = node.cni("DEL", ref_conf, container_id=CID, netns=pod.path, plugin=REFERENCE_CNI_DIR / "host-local")
    assert ref.rc == 0, ref
    assert node.store_files("loxilight_cni") == []
    # the reference allocates next (round robin continues at .3); loxi-cni's DEL releases it
    ref = node.cni("ADD", ref_conf, container_id="ref-pod", netns=pod.path, plugin=REFERENCE_CNI_DIR / "host-local")
    assert ref.rc == 0, ref
    assert ref.json["ips"][0]["address"] == "10.244.1.3/24"
    # loxi-cni's ADD for that attachment finds the reference's lease (through loxi-agent: its watched index
    # learnt of a file another process wrote), and its DEL releases it
    other = node.pod()
    call = add(node, other, conf, cid="ref-pod")
    assert call.rc == 0, call
    assert pod_address(call.json) == "10.244.1.3/24" and other.addresses("eth0") == ["10.244.1.3/24"]
    assert node.store_files("loxilight_cni") == ["10.244.1.3"]
    call = node.cni("DEL", conf, container_id="ref-pod", netns=other.path)
    assert call.rc == 0, call
    assert node.store_files("loxilight_cni") == []
    assert add(node, other, conf, cid="ref-pod").json["ips"][0]["address"] == "10.244.1.4/24"  # round robin goes on
    assert node.store_files("loxilight_cni") == ["10.244.1.4"]


def test_vlan_on_a_kernel_without_vlan_filtering_fails_cleanly(node):
    """This machine's kernel has no bridge VLAN filtering: a clear error, nothing left."""
    if os.path.exists("/proc/net/vlan"):
        pytest.skip("this kernel has VLAN support; the UML tier covers the positive case")
    pod = node.pod()
    conf = make_conf(node.data_dir, vlanID=100)
    call = add(node, pod, conf)
    assert call.rc == 1, call
    assert call.json["code"] == 102
    assert "bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING)" in call.json["msg"]
    assert sorted(node.ns.links()) == ["lo"]
    assert list(pod.links()) == ["lo"]
    assert node.store_files("loxilight_cni") == []


@pytest.mark.skipif(not (REFERENCE_CNI_DIR / "static").exists(), reason="reference static IPAM not installed")
def test_other_ipam_types_are_delegated_through_cni_path(node):
    pod = node.pod()
    conf = make_conf(node.data_dir)
    conf["ipam"] = {
        "type": "static",
        "addresses": [{"address": "10.244.1.77/24", "gateway": "10.244.1.1"}],
        "routes": [{"dst": "10.96.0.0/12"}],
    }
    call = add(node, pod, conf)
    assert call.rc == 0, call
    assert pod.addresses("eth0") == ["10.244.1.77/24"]
    assert call.json["ips"] == [{"address": "10.244.1.77/24", "gateway": "10.244.1.1", "interface": 2}]
    assert node.cni("DEL", conf, container_id=CID, netns=pod.path).rc == 0
    assert node.ns.loxi_links() == []


def test_a_failed_retry_of_add_keeps_the_working_pods_address(node):
    """ADD retried for a pod that already works, and failing in the kernel, must not release its addresses."""
    pod = node.pod()
    conf = dual_stack_into_a_pod_without_ipv6(node, pod)
    pod.exec("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0", "net.ipv6.conf.default.disable_ipv6=0", check=True)
    assert add(node, pod, conf).rc == 0
    pod.exec("sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=1", check=True)  # the kernel drops the v6 address
    call = add(node, pod, conf)
    assert call.rc == 1 and call.json["code"] == 100, call
    assert node.store_files("loxilight_cni") == ["10.244.1.2", "fd00:10:244:1::2"]
    assert pod.addresses("eth0") == ["10.244.1.2/24"]


def test_status_reports_missing_vlan_kernel_features(node):
    if os.path.exists("/proc/net/vlan"):
        pytest.skip("this kernel has VLAN support")
    conf = make_conf(node.data_dir, cniVersion="1.1.0", vlanID=100)
    call = node.cni("STATUS", conf)
    assert call.rc == 1 and call.json["code"] == 50, call
    assert "bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING)" in call.json["msg"]
    assert sorted(node.ns.links()) == ["lo"], "the probe bridge is gone"
    trunk = node.cni("ADD", make_conf(node.data_dir, vlanTrunk=[{"id": 200}]), container_id=CID, netns=node.pod().path)
    assert trunk.rc == 1 and trunk.json["code"] == 102, trunk
    assert sorted(node.ns.links()) == ["lo"] and node.store_files("loxilight_cni") == []


def test_a_missing_uplink_fails_before_anything_changes(node):
    pod = node.pod()
    call = add(node, pod, make_conf(node.data_dir, vlanID=100, uplink="nosuchnic"))
    assert call.rc == 1, call
    assert call.json == {"code": 105, "msg": "uplink nosuchnic does not exist in the node namespace"}
    assert sorted(node.ns.links()) == ["lo"] and list(pod.links()) == ["lo"]
    assert node.store_files("loxilight_cni") == []


def test_del_removes_the_attachment_lock_file(node):
    from applier.locks import attachment_lock_name, lock_dir

    pod = node.pod()
    conf = make_conf(node.data_dir)
    lock = os.path.join(lock_dir(), attachment_lock_name("loxilight_cni", "lock-owner", "eth0") + ".lock")
    assert add(node, pod, conf, cid="lock-owner").rc == 0
    assert os.path.exists(lock)
    assert node.cni("DEL", conf, container_id="lock-owner", netns=pod.path).rc == 0
    assert not os.path.exists(lock), "a node must not keep one lock file per pod it ever ran"
