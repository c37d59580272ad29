"""The result converters, without a kernel: every version's document, its layout, and the schemas."""

from __future__ import annotations

import json

import pytest

from intent.errors import CniError
from intent.result import (
    Result,
    ResultInterface,
    ResultIP,
    ResultRoute,
    canonical_cidr,
    format_result,
    parse_prev_result,
    require_convertible,
    result_to_dict,
)
from tests.result_schemas import RESULT_VERSIONS, validate_error, validate_result

IFACES = (
    ResultInterface("cni0", "aa:bb:cc:00:00:01", mtu=1500),
    ResultInterface("loxi0123", "aa:bb:cc:00:00:02", mtu=1500),
    ResultInterface("eth0", "0a:58:0a:f4:01:02", "/var/run/netns/p", mtu=1500),
)
DUAL = Result(
    interfaces=IFACES,
    ips=(
        ResultIP("10.244.1.2/24", "10.244.1.1", 2),
        ResultIP("fd00::2/64", "fd00::1", 2),
        ResultIP("10.244.2.2/24", "10.244.2.1", 2),
    ),
    routes=(
        ResultRoute("10.96.0.0/12", "10.244.1.1"),
        ResultRoute("0.0.0.0/0", "10.244.1.1", {"priority": 100, "table": 0}),
        ResultRoute("::/0", "fd00::1", {"mtu": 1400, "advmss": 1360, "scope": 0}),
    ),
)
L2 = Result(interfaces=IFACES)
DNS = {"nameservers": ["10.96.0.10"], "domain": "cluster.local", "search": ["svc"], "options": ["ndots:5"]}


@pytest.mark.parametrize("version", RESULT_VERSIONS)
def test_every_version_validates(version):
    doc = result_to_dict(DUAL, version)
    validate_result(doc, version)
    assert doc["cniVersion"] == version
    assert format_result(DUAL, version) == json.dumps(doc, indent=4)
    assert not format_result(DUAL, version).endswith("\n")


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0"])
def test_legacy_keeps_first_of_each_family_and_splits_routes(version):
    doc = result_to_dict(DUAL, version)
    assert list(doc) == ["cniVersion", "ip4", "ip6", "dns"]
    assert doc["ip4"] == {
        "ip": "10.244.1.2/24",
        "gateway": "10.244.1.1",
        "routes": [{"dst": "10.96.0.0/12", "gw": "10.244.1.1"}, {"dst": "0.0.0.0/0", "gw": "10.244.1.1"}],
    }
    assert doc["ip6"] == {"ip": "fd00::2/64", "gateway": "fd00::1", "routes": [{"dst": "::/0", "gw": "fd00::1"}]}
    assert doc["dns"] == {}


def test_legacy_without_gateway_or_routes():
    doc = result_to_dict(Result(ips=(ResultIP("10.0.0.5/16"),)), "0.2.0")
    assert doc == {"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.5/16"}, "dns": {}}
    validate_result(doc, "0.2.0")


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0"])
def test_l2_only_cannot_be_printed_before_0_3(version):
    with pytest.raises(CniError) as info:
        result_to_dict(L2, version)
    assert (info.value.code, info.value.msg) == (1, "cannot convert: no valid IP addresses")
    validate_error(info.value.to_dict())


@pytest.mark.parametrize(
    ("version", "has_addresses", "fails"),
    [("", False, True), ("0.1.0", False, True), ("0.2.0", False, True), ("0.2.0", True, False)]
    + [(v, False, False) for v in RESULT_VERSIONS[2:]],
)
def test_require_convertible(version, has_addresses, fails):
    if fails:
        with pytest.raises(CniError, match="cannot convert"):
            require_convertible(version, has_addresses)
    else:
        require_convertible(version, has_addresses)


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0"])
def test_0_3_and_0_4_struct_order_and_version_key(version):
    doc = result_to_dict(DUAL, version)
    assert list(doc) == ["cniVersion", "interfaces", "ips", "routes", "dns"]
    assert [list(i) for i in doc["interfaces"]] == [["name", "mac"], ["name", "mac"], ["name", "mac", "sandbox"]]
    assert [ip["version"] for ip in doc["ips"]] == ["4", "6", "4"]
    assert all(list(ip) == ["version", "interface", "address", "gateway"] for ip in doc["ips"])
    assert all(set(r) <= {"dst", "gw"} for r in doc["routes"]), "1.1 route keys are dropped"
    assert doc["dns"] == {}


@pytest.mark.parametrize("version", ["1.0.0", "1.1.0"])
def test_1_x_alphabetical_no_version_empty_dns_omitted(version):
    doc = result_to_dict(DUAL, version)
    text = format_result(DUAL, version)
    assert list(doc) == ["cniVersion", "interfaces", "ips", "routes"]

    def walk(value):
        if isinstance(value, dict):
            assert list(value) == sorted(value)
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(json.loads(text))
    assert all("version" not in ip for ip in doc["ips"])


def test_1_1_carries_interface_mtu_and_route_extras_1_0_does_not():
    doc10, doc11 = result_to_dict(DUAL, "1.0.0"), result_to_dict(DUAL, "1.1.0")
    assert all("mtu" not in i for i in doc10["interfaces"])
    assert [i["mtu"] for i in doc11["interfaces"]] == [1500, 1500, 1500]
    assert doc10["routes"][1] == {"dst": "0.0.0.0/0", "gw": "10.244.1.1"}
    assert doc11["routes"][1] == {"dst": "0.0.0.0/0", "gw": "10.244.1.1", "priority": 100}, "zero values omitted"
    assert doc11["routes"][2] == {"advmss": 1360, "dst": "::/0", "gw": "fd00::1", "mtu": 1400}


@pytest.mark.parametrize("version", RESULT_VERSIONS)
def test_dns_printed_in_struct_order(version):
    doc = result_to_dict(Result(interfaces=IFACES, ips=DUAL.ips, dns=DNS), version)
    validate_result(doc, version)
    assert doc["dns"] == DNS
    if version < "1.0.0":
        assert list(doc["dns"]) == ["nameservers", "domain", "search", "options"]
        assert list(doc)[-1] == "dns"


def test_empty_lists_are_omitted():
    doc = result_to_dict(Result(ips=(ResultIP("10.0.0.2/24"),)), "0.4.0")
    assert list(doc) == ["cniVersion", "ips", "dns"]
    assert doc["ips"] == [{"version": "4", "address": "10.0.0.2/24"}], "IPAM-style: no interface index"
    validate_result(doc, "0.4.0")


@pytest.mark.parametrize("version", RESULT_VERSIONS)
def test_round_trip_through_prev_result(version):
    doc = result_to_dict(DUAL, version)
    again = result_to_dict(parse_prev_result(json.loads(json.dumps(doc))), version)
    assert again == doc


def test_parse_prev_result_legacy():
    prev = parse_prev_result(
        {
            "cniVersion": "0.2.0",
            "ip4": {"ip": "10.1.0.5/16", "gateway": "10.1.0.1", "routes": [{"dst": "0.0.0.0/0"}]},
            "ip6": {"ip": "fd00::5/64"},
            "dns": {},
        }
    )
    assert prev.ips == (ResultIP("10.1.0.5/16", "10.1.0.1"), ResultIP("fd00::5/64"))
    assert prev.routes == (ResultRoute("0.0.0.0/0"),)
    assert prev.interfaces == ()


@pytest.mark.parametrize(
    "bad",
    [
        {"cniVersion": "1.0.0", "ips": [{"version": "4", "address": "10.0.0.2/24"}]},  # version key at 1.x
        {"cniVersion": "0.4.0", "ips": [{"address": "10.0.0.2/24"}], "dns": {}},  # version missing at 0.4
        {"cniVersion": "0.4.0", "ips": [{"version": "6", "address": "10.0.0.2/24"}], "dns": {}},  # wrong family
        {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "mac": ""}]},  # empty MAC: podman rejects
        {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "mtu": 1500}]},  # mtu is 1.1 only
        {"cniVersion": "1.0.0", "routes": [{"dst": "0.0.0.0/0", "priority": 1}]},  # so is priority
        {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2"}]},  # not CIDR
        {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24", "interface": -1}]},
        {"cniVersion": "1.0.0", "ip4": {"ip": "10.0.0.2/24"}},  # legacy shape at 1.x
        {"cniVersion": "0.2.0", "dns": {}},  # neither ip4 nor ip6
        {"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.2/24"}},  # dns is always printed in 0.x
        {"cniVersion": "0.3.1", "interfaces": [{"name": "eth0"}], "dns": {}, "extra": 1},
        {"cniVersion": "0.3.1", "dns": {"servers": []}},  # dns has fixed keys
    ],
)
def test_schemas_reject(bad):
    import jsonschema

    with pytest.raises(jsonschema.ValidationError):
        validate_result(bad, bad["cniVersion"])


def test_schema_checks_cni_version_const():
    import jsonschema

    with pytest.raises(jsonschema.ValidationError):
        validate_result(result_to_dict(DUAL, "1.0.0"), "1.1.0")


@pytest.mark.parametrize(
    ("doc", "ok"),
    [
        ({"code": 1, "msg": "incompatible CNI versions", "details": "x"}, True),
        ({"code": 999, "msg": "boom"}, True),
        ({"code": 4, "msg": "x", "cniVersion": "1.0.0"}, False),  # the Go lib prints no cniVersion
        ({"code": 4, "msg": "x", "details": ""}, False),  # empty details are omitted, not printed
        ({"msg": "x"}, False),
        ({"code": "4", "msg": "x"}, False),
    ],
)
def test_error_schema(doc, ok):
    import jsonschema

    if ok:
        validate_error(doc)
    else:
        with pytest.raises(jsonschema.ValidationError):
            validate_error(doc)


def test_cni_error_document_layout():
    err = CniError(7, "missing network name")
    assert err.to_json() == '{\n    "code": 7,\n    "msg": "missing network name"\n}'
    validate_error(json.loads(CniError(1, "a", "b").to_json()))


def test_canonical_cidr():
    assert canonical_cidr("fd00:0::0002/64") == "fd00::2/64"
    assert canonical_cidr("10.1.0.5/16") == "10.1.0.5/16"
