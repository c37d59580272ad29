"""CNI protocol conformance of the installed loxi-cni, version by version.

Table-driven over the seven supported spec versions: every ADD result is
validated against `schemas/result-<version>.schema.json` and checked for what
that version requires, byte layout included; every error document against
`schemas/error.schema.json` with its exact code. Runtime inputs (environment,
CNI_ARGS, runtimeConfig), the plugin's-own-netns rule, L2-only confs and
dual stack are exercised on the real kernel inside fixture namespaces.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import make_conf
from tests.result_schemas import RESULT_VERSIONS, validate_error, validate_result

CID = "0123456789abcdef"
NET = "loxilight_cni"
V4_SUBNET, V4_GW = "10.244.1.0/24", "10.244.1.1"
V6_SUBNET, V6_GW = "fd00:10:244:1::/64", "fd00:10:244:1::1"
SUPPORTED = '["0.1.0" "0.2.0" "0.3.0" "0.3.1" "0.4.0" "1.0.0" "1.1.0"]'
LEGACY = ("0.1.0", "0.2.0")
WITH_VERSION_KEY = ("0.3.0", "0.3.1", "0.4.0")
MODERN = ("1.0.0", "1.1.0")
DUMMY_NETNS = "/var/run/netns/loxit-does-not-exist"


def add(node, pod, conf, cid=CID, **kw):
    return node.cni("ADD", conf, container_id=cid, netns=pod.path, **kw)


def ok_result(call, version: str) -> dict:
    """A successful ADD: exit 0, one valid result document in the Go layout."""
    assert call.rc == 0, call
    doc = call.json
    validate_result(doc, version)
    assert call.stdout == json.dumps(doc, indent=4), "4-space indent, no trailing newline"
    return doc


def error_of(call, code: int) -> dict:
    """A failure: exit 1, one valid error document with this code."""
    assert call.rc == 1, call
    doc = call.json
    validate_error(doc)
    assert doc["code"] == code, call
    return doc


def dual_stack_ipam(data_dir, v4: bool = True, v6: bool = True) -> dict:
    ranges = []
    if v4:
        ranges.append([{"subnet": V4_SUBNET}])
    if v6:
        ranges.append([{"subnet": V6_SUBNET}])
    return {"type": "host-local", "ranges": ranges, "dataDir": str(data_dir)}


def v6_addresses(ns, dev: str) -> list[dict]:
    info = ns.ip("-6", "addr", "show", "dev", dev)
    return [a for a in info[0]["addr_info"] if a.get("scope") == "global"] if info else []


# --- results, version by version ---------------------------------------------------------


@pytest.mark.parametrize("version", RESULT_VERSIONS)
def test_add_result_per_version(node, version):
    pod = node.pod()
    conf = make_conf(node.data_dir, cniVersion=version, isDefaultGateway=True)
    doc = ok_result(add(node, pod, conf), version)
    assert doc["cniVersion"] == version
    eth0 = pod.link("eth0")
    if version in LEGACY:
        assert list(doc) == ["cniVersion", "ip4", "dns"], "types020 struct order; no ip6 without an IPv6 address"
        assert doc["ip4"]["ip"] == "10.244.1.2/24" and doc["ip4"]["gateway"] == V4_GW
        assert list(doc["ip4"]) == ["ip", "gateway", "routes"]
        # loxi-cni deliberately prints the gateway of every route explicitly (the reference leaves it out)
        assert doc["ip4"]["routes"] == [{"dst": "10.96.0.0/12"}, {"dst": "0.0.0.0/0", "gw": V4_GW}]  # as written
        assert doc["dns"] == {}
        return
    interfaces = doc["interfaces"]
    assert len(interfaces) == 3
    assert interfaces[0]["name"] == "hsvlan100" and interfaces[2]["name"] == "eth0"
    assert interfaces[1]["name"].startswith("loxi")
    assert interfaces[2]["sandbox"] == pod.path and "sandbox" not in interfaces[0] and "sandbox" not in interfaces[1]
    assert interfaces[2]["mac"] == eth0["address"] and interfaces[2]["mac"] != "00:00:00:00:00:00"
    assert interfaces[0]["mac"] == node.ns.link("hsvlan100")["address"]
    assert interfaces[1]["mac"] == node.ns.link(interfaces[1]["name"])["address"]
    assert [ip["interface"] for ip in doc["ips"]] == [2]
    assert doc["ips"][0]["address"] == "10.244.1.2/24" and doc["ips"][0]["gateway"] == V4_GW
    assert {"dst": "0.0.0.0/0", "gw": V4_GW} in doc["routes"]
    if version in WITH_VERSION_KEY:
        assert list(doc) == ["cniVersion", "interfaces", "ips", "routes", "dns"], "types040 struct order"
        assert list(interfaces[2]) == ["name", "mac", "sandbox"]
        assert list(doc["ips"][0]) == ["version", "interface", "address", "gateway"]
        assert doc["ips"][0]["version"] == "4"
        assert doc["dns"] == {}, "0.x always prints dns"
    else:
        assert "version" not in doc["ips"][0]
        assert "dns" not in doc, "1.x omits an empty dns"
        assert list(doc) == sorted(doc) == ["cniVersion", "interfaces", "ips", "routes"]
        for entry in [*interfaces, *doc["ips"], *doc["routes"]]:
            assert list(entry) == sorted(entry), "1.x keys are alphabetical at every level"
        if version == "1.1.0":
            assert interfaces[2]["mtu"] == 1500, "1.1 carries the interface mtu"


@pytest.mark.parametrize("version", RESULT_VERSIONS)
def test_dns_is_printed_per_version(node, version):
    pod = node.pod()
    dns = {"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"]}
    doc = ok_result(add(node, pod, make_conf(node.data_dir, cniVersion=version, dns=dns)), version)
    assert doc["dns"] == dns
    if version not in MODERN:
        assert list(doc)[-1] == "dns"


# --- versions and commands ------------------------------------------------------------------


@pytest.mark.parametrize("version", ["", "0.1.0", "0.2.0", "0.3.0", "0.3.1"])
def test_check_below_0_4_0_is_code_1(node, version):
    conf = make_conf(node.data_dir, cniVersion=version, prevResult={"cniVersion": version or "0.1.0"})
    call = node.cni("CHECK", conf, container_id=CID, netns=DUMMY_NETNS)
    assert error_of(call, 1)["msg"] == "config version does not allow CHECK"


@pytest.mark.parametrize("command", ["GC", "STATUS"])
@pytest.mark.parametrize("version", ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"])
def test_gc_and_status_below_1_1_0_are_code_1(node, command, version):
    conf = make_conf(node.data_dir, cniVersion=version)
    if command == "GC":
        conf["cni.dev/valid-attachments"] = []
    call = node.cni(command, conf, ifname="")
    assert error_of(call, 1)["msg"] == f"config version does not allow {command}"
    assert node.ns.links().keys() == {"lo"}


@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK", "GC", "STATUS"])
@pytest.mark.parametrize("version", ["0.5.0", "2.0.0", "1.0", "1.1.1", "v1.0.0"])
def test_unsupported_version_is_code_1(node, command, version):
    conf = make_conf(node.data_dir, cniVersion=version)
    call = node.cni(command, conf, container_id=CID, netns=DUMMY_NETNS)
    assert error_of(call, 1) == {
        "code": 1,
        "msg": "incompatible CNI versions",
        "details": f'config is "{version}", plugin supports {SUPPORTED}',
    }


def test_version_command_ignores_stdin(node):
    call = node.cni("VERSION", b"not json", ifname="", env={"CNI_PATH": None})
    assert call.rc == 0
    assert call.stdout == (
        '{"cniVersion":"1.1.0","supportedVersions":["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}\n'
    )


# --- environment ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "unset", "missing"),
    [
        ("ADD", ["CNI_CONTAINERID", "CNI_NETNS"], "CNI_CONTAINERID,CNI_NETNS"),
        ("ADD", ["CNI_PATH", "CNI_IFNAME", "CNI_CONTAINERID"], "CNI_CONTAINERID,CNI_IFNAME,CNI_PATH"),
        ("ADD", ["CNI_ARGS"], None),
        ("CHECK", ["CNI_NETNS"], "CNI_NETNS"),
        ("CHECK", ["CNI_IFNAME", "CNI_PATH"], "CNI_IFNAME,CNI_PATH"),
        ("DEL", ["CNI_NETNS"], None),
        ("DEL", ["CNI_CONTAINERID"], "CNI_CONTAINERID"),
        ("DEL", ["CNI_IFNAME", "CNI_PATH"], "CNI_IFNAME,CNI_PATH"),
        ("GC", ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"], None),
        ("GC", ["CNI_PATH"], "CNI_PATH"),
        ("STATUS", ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"], None),
        ("STATUS", ["CNI_PATH"], "CNI_PATH"),
    ],
)
@pytest.mark.parametrize("how", ["unset", "empty"])
def test_required_env_variables_per_command(node, command, unset, missing, how):
    conf = make_conf(node.data_dir, cniVersion="1.1.0", prevResult={"cniVersion": "1.1.0"})
    conf["cni.dev/valid-attachments"] = []
    pod = node.pod()
    env = {var: (None if how == "unset" else "") for var in unset}
    call = node.cni(command, conf, container_id=CID, netns=pod.path, env=env)
    if missing is None:
        assert call.rc == 0 or call.json["code"] != 4, call
        return
    assert error_of(call, 4) == {"code": 4, "msg": f"required env variables [{missing}] missing"}
    assert list(pod.links()) == ["lo"] and node.ns.links().keys() == {"lo"}
    assert not node.data_dir.exists(), "nothing reaches the IPAM store"


def test_unknown_command_is_code_4(node):
    call = node.cni("FOO", make_conf(node.data_dir), container_id=CID, netns=DUMMY_NETNS)
    assert error_of(call, 4)["msg"] == "unknown CNI_COMMAND: FOO"


@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK"])
@pytest.mark.parametrize("cid", ["../../etc", "abc\n", "-abc", ".hidden", "a/b", "a b", "a;b", "ä", "x" * 1025])
def test_bad_container_id_is_code_4_and_touches_nothing(node, command, cid):
    pod = node.pod()
    conf = make_conf(node.data_dir, cniVersion="1.0.0", prevResult={"cniVersion": "1.0.0"})
    call = node.cni(command, conf, container_id=cid, netns=pod.path)
    doc = error_of(call, 4)
    assert doc["msg"] == "invalid characters in containerID"
    assert list(pod.links()) == ["lo"] and node.ns.links().keys() == {"lo"}
    assert not node.data_dir.exists()


@pytest.mark.parametrize("cid", ["a", "0", "A-b_c.d", "k8s_POD_default-x_0123"])
def test_good_container_ids(node, cid):
    pod = node.pod()
    assert add(node, pod, make_conf(node.data_dir), cid=cid).rc == 0
    assert node.cni("DEL", make_conf(node.data_dir), container_id=cid, netns=pod.path).rc == 0


@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK"])
@pytest.mark.parametrize("ifname", ["", "a" * 16, ".", "..", "eth/0", "eth:0", "eth 0", "eth\t0"])
def test_bad_ifname_is_code_4_and_touches_nothing(node, command, ifname):
    pod = node.pod()
    conf = make_conf(node.data_dir, cniVersion="1.0.0", prevResult={"cniVersion": "1.0.0"})
    call = node.cni(command, conf, container_id=CID, netns=pod.path, ifname=ifname)
    doc = error_of(call, 4)
    if not ifname:
        assert doc["msg"] == "required env variables [CNI_IFNAME] missing"
    assert list(pod.links()) == ["lo"] and node.ns.links().keys() == {"lo"}
    assert not node.data_dir.exists()


def test_ifname_of_15_bytes_is_accepted(node):
    pod = node.pod()
    call = add(node, pod, make_conf(node.data_dir), ifname="a" * 15)
    assert call.rc == 0, call
    assert "a" * 15 in pod.links()


# --- CNI_ARGS and runtime inputs --------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=x;K8S_POD_UID=u;FOO=1",
        "IgnoreUnknown=true;FOO=bar",
        "IgnoreUnknown=TRUE;FOO=bar",
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web",
        "",
    ],
)
def test_cni_args_accepted(node, args):
    call = add(node, node.pod(), make_conf(node.data_dir), args=args)
    ok_result(call, "1.0.0")


@pytest.mark.parametrize(
    ("args", "msg"),
    [
        # Go's LoadArgs: unknown pairs reported whole, in order, %q-quoted; keys are case-sensitive
        ("FOO=bar", 'ARGS: unknown args ["FOO=bar"]'),
        ("IgnoreUnknown=0;FOO=bar", 'ARGS: unknown args ["FOO=bar"]'),
        ("IgnoreUnknown=false;FOO=bar;B=2", 'ARGS: unknown args ["FOO=bar" "B=2"]'),
        ("ignoreunknown=1;FOO=bar", 'ARGS: unknown args ["ignoreunknown=1" "FOO=bar"]'),
        ("k8s_pod_name=x", 'ARGS: unknown args ["k8s_pod_name=x"]'),
        (
            "IgnoreUnknown=yes;FOO=bar",
            'ARGS: error parsing value of pair "IgnoreUnknown=yes": boolean unmarshal error: invalid input yes',
        ),
        (
            "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web",
            'ARGS: unknown args ["K8S_POD_NAMESPACE=default" "K8S_POD_NAME=web"]',
        ),
        ("IgnoreUnknown=1;FOO", 'ARGS: invalid pair "FOO"'),
        ("IgnoreUnknown=1;;FOO=1", 'ARGS: invalid pair ""'),
        ("IgnoreUnknown=1;X=a=b", 'ARGS: invalid pair "X=a=b"'),
    ],
)
def test_bad_cni_args_are_code_999(node, args, msg):
    """Go's LoadArgs returns plain errors, printed by skel as 999: the reference bridge's code."""
    pod = node.pod()
    call = add(node, pod, make_conf(node.data_dir), args=args)
    assert error_of(call, 999)["msg"] == msg
    assert list(pod.links()) == ["lo"] and not node.data_dir.exists()


def test_cni_args_ip_is_honoured(node):
    pod = node.pod()
    doc = ok_result(add(node, pod, make_conf(node.data_dir), args="IgnoreUnknown=1;IP=10.244.1.77"), "1.0.0")
    assert doc["ips"][0]["address"] == "10.244.1.77/24"
    assert pod.addresses("eth0") == ["10.244.1.77/24"]
    assert node.store_files(NET) == ["10.244.1.77"]


def test_cni_args_ip_taken_or_outside_fails_and_leaves_nothing(node):
    conf = make_conf(node.data_dir)
    ok_result(add(node, node.pod(), conf, cid="first", args="IP=10.244.1.77"), "1.0.0")
    pod = node.pod()
    call = add(node, pod, conf, cid="second", args="IP=10.244.1.77")
    assert call.rc == 1 and call.json["code"] != 0, call
    validate_error(call.json)
    call = add(node, pod, conf, cid="third", args="IP=10.9.9.9")
    assert call.rc == 1, call
    assert list(pod.links()) == ["lo"] and node.store_files(NET) == ["10.244.1.77"]


def test_cni_args_mac_is_honoured(node):
    pod = node.pod()
    doc = ok_result(add(node, pod, make_conf(node.data_dir), args="IgnoreUnknown=1;MAC=0a:58:0a:f4:01:99"), "1.0.0")
    assert pod.link("eth0")["address"] == "0a:58:0a:f4:01:99" == doc["interfaces"][2]["mac"]


def test_cni_args_bad_mac_is_code_4(node):
    pod = node.pod()
    call = add(node, pod, make_conf(node.data_dir), args="MAC=zz:58:0a:f4:01:99")
    error_of(call, 4)
    assert list(pod.links()) == ["lo"]


def test_runtime_config_ips_and_mac_win_over_cni_args(node):
    pod = node.pod()
    conf = make_conf(
        node.data_dir,
        capabilities={"ips": True, "mac": True},
        runtimeConfig={"ips": ["10.244.1.50/24"], "mac": "0a:58:0a:f4:01:50"},
        args={"cni": {"ips": ["10.244.1.60"], "mac": "0a:58:0a:f4:01:60"}},
    )
    call = add(node, pod, conf, args="IgnoreUnknown=1;IP=10.244.1.77;MAC=0a:58:0a:f4:01:77")
    doc = ok_result(call, "1.0.0")
    assert doc["ips"][0]["address"] == "10.244.1.50/24" and pod.addresses("eth0") == ["10.244.1.50/24"]
    assert pod.link("eth0")["address"] == "0a:58:0a:f4:01:50"


def test_args_cni_wins_over_cni_args(node):
    pod = node.pod()
    conf = make_conf(node.data_dir, args={"cni": {"ips": ["10.244.1.60"], "mac": "0a:58:0a:f4:01:60"}})
    doc = ok_result(add(node, pod, conf, args="IgnoreUnknown=1;IP=10.244.1.77;MAC=0a:58:0a:f4:01:77"), "1.0.0")
    assert doc["ips"][0]["address"] == "10.244.1.60/24"
    assert pod.link("eth0")["address"] == "0a:58:0a:f4:01:60"


# --- the plugin's own namespace -----------------------------------------------------------------


@pytest.mark.parametrize("override", [None, "0", "no"])
def test_add_into_the_plugins_own_netns_is_code_8(node, override):
    env = {"CNI_NETNS_OVERRIDE": override} if override is not None else None
    call = node.cni("ADD", make_conf(node.data_dir), container_id=CID, netns=node.ns.path, env=env)
    doc = error_of(call, 8)
    assert doc["msg"] == "plugin's netns and netns from CNI_NETNS should not be the same"
    assert node.ns.links().keys() == {"lo"}, "refused before anything was created"
    assert node.store_files(NET) == []
    # The ADD path with CNI_NETNS_OVERRIDE=1 is deliberately not run: the pod would be the node itself.


def test_del_with_the_plugins_own_netns_succeeds(node):
    # The Go skel (>= 1.2) reports code 8 *after* a DEL into its own netns; loxi-cni keeps DEL
    # idempotent and successful, which is what runtimes need to release the address.
    conf = make_conf(node.data_dir)
    pod = node.pod()
    ok_result(add(node, pod, conf), "1.0.0")
    call = node.cni("DEL", conf, container_id=CID, netns=node.ns.path)
    assert call.rc == 0 and call.stdout == "", call
    assert node.store_files(NET) == []


# --- L2-only ---------------------------------------------------------------------------------------


def l2_conf(data_dir, version: str) -> dict:
    return make_conf(data_dir, cniVersion=version, ipam=None, isGateway=False)


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_l2_only_add_and_check(node, version):
    pod = node.pod()
    conf = l2_conf(node.data_dir, version)
    doc = ok_result(add(node, pod, conf), version)
    assert "ips" not in doc and "routes" not in doc
    assert [i["name"] for i in doc["interfaces"]][::2] == ["hsvlan100", "eth0"]
    eth0 = pod.link("eth0")
    assert "UP" in eth0["flags"] and pod.addresses("eth0") == []
    assert node.ns.addresses("hsvlan100") == []
    if version != "0.3.1":
        call = node.cni("CHECK", {**conf, "prevResult": doc}, container_id=CID, netns=pod.path)
        assert call.rc == 0 and call.stdout == "", call
    call = node.cni("DEL", conf, container_id=CID, netns=pod.path)
    assert call.rc == 0, call
    assert node.ns.loxi_links() == [] and list(pod.links()) == ["lo"]


@pytest.mark.parametrize("version", LEGACY)
def test_l2_only_add_cannot_be_printed_at_0_2_and_leaves_nothing(node, version):
    pod = node.pod()
    call = add(node, pod, l2_conf(node.data_dir, version))
    assert error_of(call, 1)["msg"] == "cannot convert: no valid IP addresses"
    assert node.ns.loxi_links() == [], "the failed ADD left its host veth behind"
    assert list(pod.links()) == ["lo"], "the failed ADD left the pod interface behind"


# --- dual stack -----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", RESULT_VERSIONS)
def test_dual_stack(node, version):
    pod = node.pod()
    conf = make_conf(node.data_dir, cniVersion=version, isDefaultGateway=True, ipam=dual_stack_ipam(node.data_dir))
    doc = ok_result(add(node, pod, conf), version)
    assert sorted(pod.addresses("eth0")) == sorted(["10.244.1.2/24", "fd00:10:244:1::2/64"])
    assert sorted(node.ns.addresses("hsvlan100")) == sorted([f"{V4_GW}/24", f"{V6_GW}/64"])
    assert node.ns.sysctl("net/ipv4/ip_forward") == "1"
    assert node.ns.sysctl("net/ipv6/conf/all/forwarding") == "1"
    v4_default = [r for r in pod.routes("-4") if r["dst"] == "default"]
    v6_default = [r for r in pod.routes("-6") if r["dst"] == "default"]
    assert v4_default and v4_default[0]["gateway"] == V4_GW
    assert v6_default and v6_default[0]["gateway"] == V6_GW
    for addr in v6_addresses(pod, "eth0"):
        assert not addr.get("tentative"), "DAD is off by default: the address is usable at once"
    if version in LEGACY:
        assert list(doc) == ["cniVersion", "ip4", "ip6", "dns"]
        assert doc["ip4"]["ip"] == "10.244.1.2/24" and doc["ip4"]["gateway"] == V4_GW
        assert doc["ip6"]["ip"] == "fd00:10:244:1::2/64" and doc["ip6"]["gateway"] == V6_GW
        assert {"dst": "::/0", "gw": V6_GW} in doc["ip6"]["routes"]
        assert all(":" not in r["dst"] for r in doc["ip4"]["routes"])
        return
    by_address = {ip["address"]: ip for ip in doc["ips"]}
    assert set(by_address) == {"10.244.1.2/24", "fd00:10:244:1::2/64"}
    assert by_address["fd00:10:244:1::2/64"]["gateway"] == V6_GW
    assert all(ip["interface"] == 2 for ip in doc["ips"])
    assert {"dst": "0.0.0.0/0", "gw": V4_GW} in doc["routes"] and {"dst": "::/0", "gw": V6_GW} in doc["routes"]
    if version in WITH_VERSION_KEY:
        assert by_address["10.244.1.2/24"]["version"] == "4" and by_address["fd00:10:244:1::2/64"]["version"] == "6"


@pytest.mark.parametrize("version", ["0.2.0", "0.4.0", "1.0.0"])
def test_ipv6_only(node, version):
    pod = node.pod()
    ipam = dual_stack_ipam(node.data_dir, v4=False)
    conf = make_conf(node.data_dir, cniVersion=version, isDefaultGateway=True, ipam=ipam)
    doc = ok_result(add(node, pod, conf), version)
    assert pod.addresses("eth0") == ["fd00:10:244:1::2/64"]
    assert node.ns.addresses("hsvlan100") == [f"{V6_GW}/64"]
    assert node.ns.sysctl("net/ipv6/conf/all/forwarding") == "1"
    assert [r["gateway"] for r in pod.routes("-6") if r["dst"] == "default"] == [V6_GW]
    assert [a for a in v6_addresses(pod, "eth0") if a.get("tentative")] == []
    if version in LEGACY:
        assert list(doc) == ["cniVersion", "ip6", "dns"] and doc["ip6"]["ip"] == "fd00:10:244:1::2/64"
    else:
        assert [ip["address"] for ip in doc["ips"]] == ["fd00:10:244:1::2/64"]
    if version != "0.2.0":
        call = node.cni("CHECK", {**conf, "prevResult": doc}, container_id=CID, netns=pod.path)
        assert call.rc == 0, call


def test_ipv4_only_does_not_switch_on_ipv6_forwarding(node):
    before = node.ns.sysctl("net/ipv6/conf/all/forwarding")
    ok_result(add(node, node.pod(), make_conf(node.data_dir)), "1.0.0")
    assert node.ns.sysctl("net/ipv6/conf/all/forwarding") == before == "0"


def test_enabledad_keeps_dad(node):
    pod = node.pod()
    conf = make_conf(node.data_dir, enabledad=True, ipam=dual_stack_ipam(node.data_dir, v4=False))
    ok_result(add(node, pod, conf), "1.0.0")
    assert pod.sysctl("net/ipv6/conf/eth0/accept_dad") != "0"


def test_dual_stack_check_and_del(node):
    pod = node.pod()
    conf = make_conf(node.data_dir, cniVersion="1.1.0", isDefaultGateway=True, ipam=dual_stack_ipam(node.data_dir))
    doc = ok_result(add(node, pod, conf), "1.1.0")
    call = node.cni("CHECK", {**conf, "prevResult": doc}, container_id=CID, netns=pod.path)
    assert call.rc == 0, call
    for _ in range(2):
        call = node.cni("DEL", {**conf, "prevResult": doc}, container_id=CID, netns=pod.path)
        assert call.rc == 0, call
    assert node.store_files(NET) == [] and node.ns.loxi_links() == []


def test_empty_cni_version_means_0_1_0(node):
    pod = node.pod()
    conf = make_conf(node.data_dir, cniVersion="")
    doc = ok_result(add(node, pod, conf), "0.1.0")
    assert doc["cniVersion"] == "0.1.0" and doc["ip4"]["ip"] == "10.244.1.2/24"
    call = node.cni("DEL", {k: v for k, v in conf.items() if k != "cniVersion"}, container_id=CID, netns=pod.path)
    assert call.rc == 0, call
