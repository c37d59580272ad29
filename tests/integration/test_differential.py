"""Differential tests: the same conf through the reference `bridge` + `host-local` and through loxi-cni.

Each plugin runs in its own node namespace with its own pod namespace and IPAM
directory, so neither can see the other's state. What must match is what a
runtime reads: the result's structure, the error code families and DEL's
idempotence. Where loxi-cni differs on purpose, the test says so in a comment.
"""

from __future__ import annotations

import re

import pytest

from tests.conftest import REFERENCE_CNI_DIR, Node, make_conf
from tests.result_schemas import validate_error, validate_result

REF_BRIDGE = REFERENCE_CNI_DIR / "bridge"
REF_HOST_LOCAL = REFERENCE_CNI_DIR / "host-local"

pytestmark = pytest.mark.skipif(
    not (REF_BRIDGE.exists() and REF_HOST_LOCAL.exists()),
    reason=f"reference plugins not installed ({REF_BRIDGE}, {REF_HOST_LOCAL}): "
    "apt-get install containernetworking-plugins",
)

CID = "0123456789abcdef"
VERSIONS = ["0.3.1", "0.4.0", "1.0.0", "0.2.0"]
REF_VETH = re.compile(r"^veth[0-9a-f]{8}$")
LOXI_VETH = re.compile(r"^loxi[0-9a-z]+$")


class Side:
    """One plugin (loxi-cni or the reference) on its own node."""

    def __init__(self, node: Node, reference: bool) -> None:
        self.node = node
        self.reference = reference

    def conf(self, **overrides) -> dict:
        conf = make_conf(self.node.data_dir, **overrides)
        if self.reference:
            conf["type"] = "bridge"
        return conf

    def cni(self, command: str, conf, **kw):
        return self.node.cni(command, conf, plugin=REF_BRIDGE if self.reference else None, **kw)


@pytest.fixture
def sides(node, netns, tmp_path) -> tuple[Side, Side]:
    reference = Node(netns("refnode"), tmp_path / "ipam-ref", netns)
    return Side(node, reference=False), Side(reference, reference=True)


def run_add(side: Side, version: str, **overrides):
    pod = side.node.pod()
    conf = side.conf(cniVersion=version, isDefaultGateway=True, **overrides)
    call = side.cni("ADD", conf, container_id=CID, netns=pod.path)
    assert call.rc == 0, (side.reference, call)
    validate_result(call.json, version)
    return conf, pod, call.json


def default_routes(doc: dict) -> list[dict]:
    if "ip4" in doc:
        return [r for r in doc["ip4"].get("routes", []) if r["dst"] == "0.0.0.0/0"]
    return [r for r in doc.get("routes", []) if r["dst"] in ("0.0.0.0/0", "::/0")]


@pytest.mark.parametrize("version", VERSIONS)
def test_add_result_structure_matches_the_reference(sides, version):
    loxi, ref = sides
    _, loxi_pod, mine = run_add(loxi, version)
    _, ref_pod, theirs = run_add(ref, version)
    their_keys = list(theirs)
    if version.startswith("1.") and theirs.get("dns") == {}:
        # Known version skew: Debian's bridge vendors Go cni lib 1.0.x, whose types100 struct prints
        # an empty `"dns": {}`; lib >= 1.1 (what runtimes ship now, cni-protocol.md §2) re-marshals
        # 1.x results through a map and omits it. loxi-cni follows the current library.
        their_keys.remove("dns")
        assert "dns" not in mine
    else:
        assert mine.get("dns") == theirs.get("dns")
    assert list(mine) == their_keys, "same top-level keys in the same order"
    assert mine["cniVersion"] == theirs["cniVersion"] == version
    if version == "0.2.0":
        assert list(mine["ip4"]) == list(theirs["ip4"])
        assert mine["ip4"]["ip"] == theirs["ip4"]["ip"] and mine["ip4"]["gateway"] == theirs["ip4"]["gateway"]
        assert default_routes(mine) == default_routes(theirs)
        # IPAM's routes as written (no gw where the conf gives none), the default route with its gw
        assert mine["ip4"]["routes"] == theirs["ip4"]["routes"]
        return
    # 0.x: both print Go struct order. 1.x: lib 1.0.x (Debian's reference) prints struct order,
    # lib >= 1.1 and loxi-cni alphabetical order (see above), so only the key sets are compared.
    order = list if version.startswith("0.") else sorted
    assert len(mine["interfaces"]) == len(theirs["interfaces"]) == 3
    for a, b in zip(mine["interfaces"], theirs["interfaces"], strict=True):
        assert order(a) == order(b), "same keys per interface (sandbox only on the pod's)"
    assert mine["interfaces"][0]["name"] == theirs["interfaces"][0]["name"] == "hsvlan100"
    assert mine["interfaces"][2]["name"] == theirs["interfaces"][2]["name"] == "eth0"
    assert mine["interfaces"][2]["sandbox"] == loxi_pod.path and theirs["interfaces"][2]["sandbox"] == ref_pod.path
    # Deliberate difference: loxi-cni names host veths `loxi…` (stable, owner-derived), the
    # reference `veth` + 8 random hex digits.
    assert REF_VETH.match(theirs["interfaces"][1]["name"])
    assert LOXI_VETH.match(mine["interfaces"][1]["name"])
    assert mine["ips"] == theirs["ips"], "same address, gateway, interface index (and version key in 0.x)"
    for a, b in zip(mine["ips"], theirs["ips"], strict=True):
        assert order(a) == order(b), "same key order in ips entries"
    assert default_routes(mine) == default_routes(theirs)
    # IPAM's routes as written: the conf's route without gw is printed without gw, as the reference does
    assert mine["routes"] == theirs["routes"]
    assert {"dst": "10.96.0.0/12"} in mine["routes"]


@pytest.mark.parametrize("version", ["0.4.0", "1.0.0"])
def test_kernel_state_matches_the_reference(sides, version):
    loxi, ref = sides
    run_add(loxi, version)
    _, ref_pod, _ = run_add(ref, version)
    loxi_pod = next(ns for ns in loxi.node.factory.made if ns.name.startswith("loxit-pod"))
    assert loxi_pod.addresses("eth0") == ref_pod.addresses("eth0") == ["10.244.1.2/24"]
    assert loxi.node.ns.addresses("hsvlan100") == ref.node.ns.addresses("hsvlan100") == ["10.244.1.1/24"]
    mine = {(r["dst"], r.get("gateway")) for r in loxi_pod.routes()}
    theirs = {(r["dst"], r.get("gateway")) for r in ref_pod.routes()}
    assert mine == theirs


@pytest.mark.parametrize("version", ["0.2.0", "0.4.0", "1.0.0"])  # Debian's reference has no 1.1.0
def test_routes_with_and_without_gw_print_as_the_reference_and_route_via_the_gateway(sides, version):
    """A route without gw in the conf is printed without gw (the pod's route still goes via the
    range's gateway); one with gw keeps it; isDefaultGateway's default route carries the gateway."""
    routes = [{"dst": "10.96.0.0/12"}, {"dst": "192.168.70.0/24", "gw": "10.244.1.254"}]
    docs, kernels = [], []
    for side in sides:
        conf = side.conf(cniVersion=version, isDefaultGateway=True)
        conf["ipam"]["routes"] = routes
        pod = side.node.pod()
        call = side.cni("ADD", conf, container_id=CID, netns=pod.path)
        assert call.rc == 0, (side.reference, call)
        docs.append(call.json)
        kernels.append(sorted((r["dst"], r.get("gateway")) for r in pod.routes() if r.get("gateway")))
    mine, theirs = docs
    key = ("ip4", "routes") if version == "0.2.0" else ("routes",)
    for k in key:
        mine, theirs = mine[k], theirs[k]
    assert mine == theirs
    assert {"dst": "10.96.0.0/12"} in mine and {"dst": "192.168.70.0/24", "gw": "10.244.1.254"} in mine
    assert {"dst": "0.0.0.0/0", "gw": "10.244.1.1"} in mine
    assert (
        kernels[0]
        == kernels[1]
        == [
            ("10.96.0.0/12", "10.244.1.1"),
            ("192.168.70.0/24", "10.244.1.254"),
            ("default", "10.244.1.1"),
        ]
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_del_twice_succeeds_for_both(sides, version):
    for side in sides:
        conf, pod, _ = run_add(side, version)
        for _ in range(2):
            call = side.cni("DEL", conf, container_id=CID, netns=pod.path)
            assert call.rc == 0 and call.stdout == "", (side.reference, call)
        assert side.node.store_files("loxilight_cni") == []
        assert list(pod.links()) == ["lo"]


@pytest.mark.parametrize("version", ["0.5.0", "2.0.0", "1.1.1"])
def test_unsupported_version_is_code_1_for_both(sides, version):
    for side in sides:
        pod = side.node.pod()
        call = side.cni("ADD", side.conf(cniVersion=version), container_id=CID, netns=pod.path)
        assert call.rc != 0, (side.reference, call)
        validate_error(call.json)
        assert call.json["code"] == 1 and call.json["msg"] == "incompatible CNI versions", (side.reference, call)
        # Deliberate difference: the supported list in details; loxi-cni also speaks 1.1.0.
        assert call.json["details"].startswith(f'config is "{version}", plugin supports ["0.1.0" "0.2.0"')
        assert list(pod.links()) == ["lo"]


@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK"])
@pytest.mark.parametrize("stdin", [b"{", b"not json", b'{"cniVersion": "1.0.0", "name": '])
def test_bad_json_is_code_6_for_both(sides, command, stdin):
    for side in sides:
        pod = side.node.pod()
        call = side.cni(command, stdin, container_id=CID, netns=pod.path)
        assert call.rc != 0, (side.reference, call)
        validate_error(call.json)
        assert call.json["code"] == 6, (side.reference, call)


@pytest.mark.parametrize(
    ("command", "unset"),
    [
        ("ADD", ["CNI_CONTAINERID", "CNI_NETNS"]),
        ("ADD", ["CNI_IFNAME"]),
        ("ADD", ["CNI_PATH"]),
        ("CHECK", ["CNI_NETNS"]),
        ("DEL", ["CNI_CONTAINERID"]),
        ("DEL", ["CNI_IFNAME"]),
    ],
)
def test_missing_env_is_code_4_for_both(sides, command, unset):
    messages = []
    for side in sides:
        pod = side.node.pod()
        conf = side.conf(cniVersion="1.0.0", prevResult={"cniVersion": "1.0.0"})
        call = side.cni(command, conf, container_id=CID, netns=pod.path, env=dict.fromkeys(unset))
        assert call.rc != 0, (side.reference, call)
        validate_error(call.json)
        assert call.json["code"] == 4, (side.reference, call)
        messages.append(call.json["msg"])
        assert list(pod.links()) == ["lo"]
    assert messages[0] == messages[1], "the skel's message, missing variables in the same order"


@pytest.mark.parametrize("cid", ["../../etc", "a/b"])
def test_bad_container_id_is_code_4_for_both(sides, cid):
    for side in sides:
        pod = side.node.pod()
        call = side.cni("ADD", side.conf(cniVersion="1.0.0"), container_id=cid, netns=pod.path)
        assert call.rc != 0 and call.json["code"] == 4, (side.reference, call)
        assert call.json["msg"] == "invalid characters in containerID"


def test_pool_exhaustion_is_999_for_both(sides):
    for side in sides:
        conf = side.conf(cniVersion="1.0.0")
        conf["ipam"]["subnet"] = "10.244.9.0/30"
        first = side.cni("ADD", conf, container_id="first", netns=side.node.pod().path)
        assert first.rc == 0, (side.reference, first)
        call = side.cni("ADD", conf, container_id="second", netns=side.node.pod().path)
        assert call.rc != 0, (side.reference, call)
        validate_error(call.json)
        # Same on purpose: host-local's plain Go error, wrapped as 999 by skel, and the same text.
        assert call.json == {
            "code": 999,
            "msg": "failed to allocate for range 0: no IP addresses available in range set: 10.244.9.1-10.244.9.2",
        }, (side.reference, call)


@pytest.mark.parametrize(
    ("args", "msg"),
    [
        ("FOO=bar", 'ARGS: unknown args ["FOO=bar"]'),
        ("K8S_POD_NAME=web", 'ARGS: unknown args ["K8S_POD_NAME=web"]'),  # known to neither reference struct
        ("B=2;A=1", 'ARGS: unknown args ["B=2" "A=1"]'),
        ("IgnoreUnknown=0;FOO=bar", 'ARGS: unknown args ["FOO=bar"]'),
        (
            "IgnoreUnknown=YES;FOO=1",
            'ARGS: error parsing value of pair "IgnoreUnknown=YES": boolean unmarshal error: invalid input yes',
        ),
        ("IgnoreUnknown=1;FOO", 'ARGS: invalid pair "FOO"'),
        ("IgnoreUnknown=1;X=a=b", 'ARGS: invalid pair "X=a=b"'),
    ],
)
def test_bad_cni_args_are_the_same_error_for_both(sides, args, msg):
    """Go's LoadArgs: keys the plugin does not know are an error unless IgnoreUnknown is 1 or true;
    the error is a plain Go error (999, as skel wraps it), raised before anything is made."""
    for side in sides:
        pod = side.node.pod()
        call = side.cni("ADD", side.conf(cniVersion="1.0.0"), container_id=CID, netns=pod.path, args=args)
        assert call.rc == 1, (side.reference, call)
        validate_error(call.json)
        assert call.json == {"code": 999, "msg": msg}, (side.reference, call)
        assert list(pod.links()) == ["lo"]
        assert side.node.store_files("loxilight_cni") == []


@pytest.mark.parametrize(
    "args", ["IgnoreUnknown=1;FOO=bar", "K8S_POD_NAME=web;IgnoreUnknown=true", "IgnoreUnknown=TRUE"]
)
def test_cni_args_with_ignore_unknown_are_accepted_by_both(sides, args):
    for side in sides:
        pod = side.node.pod()
        call = side.cni("ADD", side.conf(cniVersion="1.0.0"), container_id=CID, netns=pod.path, args=args)
        assert call.rc == 0, (side.reference, call)
        assert pod.addresses("eth0") == ["10.244.1.2/24"]
