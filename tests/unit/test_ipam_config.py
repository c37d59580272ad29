"""host-local config parsing: the reference's defaults and rules, our path-safety rules."""

from __future__ import annotations

import copy
from ipaddress import ip_address, ip_network
from typing import Any

import pytest

from intent.errors import INVALID_NETWORK_CONFIG, CniError
from intent.ipam_config import (
    DEFAULT_DATA_DIR,
    IpamRoute,
    load_host_local,
    parse_dns,
)


def conf(ipam: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "name": "net1",
        "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.1.0.0/16"}]]} if ipam is None else ipam,
    }
    doc.update(top)
    return doc


def fails(doc: dict[str, Any], *parts: str, cni_args: dict[str, str] | None = None) -> str:
    with pytest.raises(CniError) as info:
        load_host_local(doc, cni_args or {})
    assert info.value.code == INVALID_NETWORK_CONFIG
    for part in parts:
        assert part in info.value.msg
    return info.value.msg


# -- defaults -------------------------------------------------------------


def test_v4_defaults() -> None:
    cfg = load_host_local(conf(), {})
    (rng,) = cfg.range_sets[0].ranges
    assert rng.subnet == ip_network("10.1.0.0/16")
    assert rng.range_start == ip_address("10.1.0.1")
    assert rng.range_end == ip_address("10.1.255.254")
    assert rng.gateway == ip_address("10.1.0.1")
    assert cfg.data_dir == DEFAULT_DATA_DIR
    assert cfg.store_dir == "/var/lib/cni/networks/net1"
    assert cfg.range_sets[0].text == "10.1.0.1-10.1.255.254"
    assert cfg.range_sets[0].family == 4
    assert cfg.requested_ips == () and cfg.routes == () and cfg.resolv_conf is None and cfg.dns == {}


def test_v6_defaults_use_the_last_address() -> None:
    cfg = load_host_local(conf({"ranges": [[{"subnet": "fd00:1::/64"}]]}), {})
    (rng,) = cfg.range_sets[0].ranges
    assert rng.range_start == ip_address("fd00:1::1")
    assert rng.range_end == ip_address("fd00:1::ffff:ffff:ffff:ffff")
    assert rng.gateway == ip_address("fd00:1::1")


def test_explicit_range_and_gateway_outside_the_range() -> None:
    ipam = {
        "ranges": [
            [{"subnet": "10.2.0.0/24", "rangeStart": "10.2.0.10", "rangeEnd": "10.2.0.20", "gateway": "10.2.0.254"}]
        ]
    }
    (rng,) = load_host_local(conf(ipam), {}).range_sets[0].ranges
    assert (str(rng.range_start), str(rng.range_end), str(rng.gateway)) == ("10.2.0.10", "10.2.0.20", "10.2.0.254")
    assert rng.contains(ip_address("10.2.0.10")) and rng.contains(ip_address("10.2.0.20"))
    assert not rng.contains(ip_address("10.2.0.9")) and not rng.contains(ip_address("fd00::1"))


def test_legacy_single_range_and_source_order() -> None:
    doc = conf(
        {"subnet": "10.3.0.0/24", "gateway": "10.3.0.9", "ranges": [[{"subnet": "10.4.0.0/24"}]]},
        runtimeConfig={"ipRanges": [[{"subnet": "10.5.0.0/24"}]]},
    )
    cfg = load_host_local(doc, {})
    subnets = [str(s.ranges[0].subnet) for s in cfg.range_sets]
    # runtimeConfig.ipRanges are prepended to the legacy set, which is prepended to `ranges`.
    assert subnets == ["10.5.0.0/24", "10.3.0.0/24", "10.4.0.0/24"]
    assert str(cfg.range_sets[1].ranges[0].gateway) == "10.3.0.9"


def test_multi_range_set_and_dual_stack() -> None:
    ipam = {"ranges": [[{"subnet": "10.6.0.0/30"}, {"subnet": "10.6.1.0/30"}], [{"subnet": "fd00:6::/120"}]]}
    cfg = load_host_local(conf(ipam), {})
    assert [s.family for s in cfg.range_sets] == [4, 6]
    assert cfg.range_sets[0].text == "10.6.0.1-10.6.0.2,10.6.1.1-10.6.1.2"


def test_routes_keep_extra_keys_and_data_dir_is_normalised() -> None:
    ipam = {
        "dataDir": "/run/x//y/./",
        "resolvConf": "/etc/resolv.conf",
        "ranges": [[{"subnet": "10.7.0.0/24"}]],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.1.5/16", "gw": "10.7.0.1", "mtu": 1400, "table": 100}],
        "dns": {"nameservers": ["1.1.1.1"], "search": [], "domain": "example"},
    }
    cfg = load_host_local(conf(ipam), {})
    assert cfg.data_dir == "/run/x/y"
    assert cfg.resolv_conf == "/etc/resolv.conf"
    assert cfg.routes[0] == IpamRoute(ip_network("0.0.0.0/0"))
    assert cfg.routes[1].dst == ip_network("192.168.0.0/16")
    assert cfg.routes[1].gw == ip_address("10.7.0.1")
    assert cfg.routes[1].to_dict() == {"dst": "192.168.0.0/16", "gw": "10.7.0.1", "mtu": 1400, "table": 100}
    assert cfg.dns == {"nameservers": ["1.1.1.1"], "domain": "example"}


def test_old_versions_allow_one_set_per_family() -> None:
    ipam = {"ranges": [[{"subnet": "10.8.0.0/24"}], [{"subnet": "fd00:8::/64"}]]}
    assert len(load_host_local(conf(ipam, cniVersion="0.2.0"), {}).range_sets) == 2
    ipam["ranges"].append([{"subnet": "10.9.0.0/24"}])
    assert len(load_host_local(conf(ipam, cniVersion="0.3.0"), {}).range_sets) == 3
    fails(
        conf(ipam, cniVersion="0.2.0"),
        "ipam.ranges",
        "CNI version 0.2.0 does not support more than 1 address per family",
    )
    fails(conf(ipam, cniVersion=""), "does not support more than 1 address per family")


# -- validation errors ----------------------------------------------------


def one_range(**rng: Any) -> dict[str, Any]:
    return conf({"ranges": [[rng]]})


@pytest.mark.parametrize(
    ("doc", "parts"),
    [
        (
            one_range(subnet="10.1.2.3/24"),
            (
                "ipam.ranges[0][0].subnet: Network 10.1.2.3/24 has host bits set.",
                "For a subnet mask of length 24 the network address is 10.1.2.0",
            ),
        ),
        (
            one_range(subnet="10.1.2.0/31"),
            ("ipam.ranges[0][0].subnet: Network 10.1.2.0/31 too small to allocate from",),
        ),
        (one_range(subnet="10.1.2.3/32"), ("Network 10.1.2.3/32 too small to allocate from",)),
        (one_range(subnet="fd00::/127"), ("ipam.ranges[0][0].subnet: Network fd00::/127 too small",)),
        (one_range(subnet="10.1.2.0"), ("ipam.ranges[0][0].subnet: invalid CIDR address: 10.1.2.0",)),
        (one_range(subnet="10.1.2.0/255.255.255.0"), ("invalid CIDR address",)),
        (one_range(subnet="bogus/24"), ("invalid CIDR address: bogus/24",)),
        (one_range(subnet="fe80::%eth0/64"), ("invalid CIDR address",)),
        (one_range(subnet=24), ("ipam.ranges[0][0].subnet: expected a CIDR string, got number",)),
        (one_range(rangeStart="10.1.2.1"), ("ipam.ranges[0][0].subnet: missing",)),
        (
            one_range(subnet="10.1.2.0/24", rangeStart="10.1.3.1"),
            ("ipam.ranges[0][0].rangeStart: RangeStart 10.1.3.1 not in network 10.1.2.0/24",),
        ),
        (
            one_range(subnet="10.1.2.0/24", rangeEnd="10.1.3.1"),
            ("ipam.ranges[0][0].rangeEnd: RangeEnd 10.1.3.1 not in network 10.1.2.0/24",),
        ),
        (
            one_range(subnet="10.1.2.0/24", rangeStart="10.1.2.50", rangeEnd="10.1.2.40"),
            ("ipam.ranges[0][0].rangeStart: RangeStart 10.1.2.50 is after RangeEnd 10.1.2.40",),
        ),
        (one_range(subnet="10.1.2.0/24", rangeStart="10.1.2.x"), ("rangeStart: invalid IP address: 10.1.2.x",)),
        (one_range(subnet="10.1.2.0/24", gateway="fd00::1"), ("ipam.ranges[0][0].gateway: fd00::1 is not an IPv4",)),
        (one_range(subnet="::ffff:10.0.0.0/104"), ("IPNet IP and Mask version mismatch",)),
        (
            conf({"ranges": [[{"subnet": "10.1.0.0/24"}, {"subnet": "fd00::/64"}]]}),
            ("ipam.ranges[0][1]: mixed address families",),
        ),
        (
            conf({"ranges": [[{"subnet": "10.1.0.0/16"}, {"subnet": "10.1.5.0/24"}]]}),
            ("ipam.ranges[0][1]: subnets 10.1.0.1-10.1.255.254 and 10.1.5.1-10.1.5.254 overlap",),
        ),
        (
            conf({"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.1.0.0/25"}]]}),
            ("ipam.ranges[1]: range set 0 overlaps with 1",),
        ),
        (conf({"ranges": [[]]}), ("ipam.ranges[0]: empty range set",)),
        (conf({"ranges": []}), ("ipam.ranges: no IP ranges specified",)),
        (conf({"type": "host-local"}), ("no IP ranges specified",)),
        (conf({"ranges": {"subnet": "10.0.0.0/8"}}), ("ipam.ranges: expected an array of range sets, got object",)),
        (conf({"ranges": [["10.0.0.0/8"]]}), ("ipam.ranges[0][0]: expected an object, got string",)),
        ({"cniVersion": "1.0.0", "name": "n"}, ("ipam: IPAM config missing 'ipam' key",)),
        (conf("host-local"), ("ipam: expected an object",)),  # type: ignore[arg-type]
        (conf({"subnet": "10.1.2.3/24"}), ("ipam.subnet: Network 10.1.2.3/24 has host bits set",)),
        (conf({"subnet": "10.1.2.0/24", "rangeEnd": "10.2.0.0"}), ("ipam.rangeEnd: RangeEnd 10.2.0.0 not in network",)),
        (
            conf(runtimeConfig={"ipRanges": [[{"subnet": "10.1.0.0/24"}]]}),
            ("ipam.ranges[0]: range set 0 overlaps with 1",),
        ),
        (
            conf(runtimeConfig={"ipRanges": [[{"subnet": "10.9.0.1/24"}]]}),
            ("runtimeConfig.ipRanges[0][0].subnet: Network 10.9.0.1/24 has host bits set",),
        ),
        (
            conf({"ranges": [[{"subnet": "10.1.0.0/24"}]], "routes": [{"gw": "10.1.0.1"}]}),
            ("ipam.routes[0].dst: missing",),
        ),
        (
            conf({"ranges": [[{"subnet": "10.1.0.0/24"}]], "routes": [{"dst": "default"}]}),
            ("ipam.routes[0].dst: invalid CIDR address: default",),
        ),
        (
            conf({"ranges": [[{"subnet": "10.1.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0", "mtu": True}]}),
            ("ipam.routes[0].mtu: expected an integer, got boolean",),
        ),
        (conf({"ranges": [[{"subnet": "10.1.0.0/24"}]], "resolvConf": 5}), ("ipam.resolvConf: expected a string",)),
        (conf({"ranges": [[{"subnet": "10.1.0.0/24"}]], "dns": {"nameservers": "1.1.1.1"}}), ("ipam.dns.nameservers",)),
    ],
)
def test_invalid_configs(doc: dict[str, Any], parts: tuple[str, ...]) -> None:
    fails(doc, *parts)


# -- requested IPs ----------------------------------------------------------


def test_requested_ip_from_cni_args_with_commas_and_prefixes() -> None:
    cfg = load_host_local(conf(), {"IP": "10.1.0.5, 10.1.0.6/16,fd00::5/64,10.1.0.5"})
    assert cfg.requested_ips == (ip_address("10.1.0.5"), ip_address("10.1.0.6"), ip_address("fd00::5"))


def test_requested_ip_sources_first_non_empty_wins() -> None:
    args = {"IP": "10.1.0.1"}
    with_args = conf(args={"cni": {"ips": ["10.1.0.2/16"]}})
    assert load_host_local(with_args, args).requested_ips == (ip_address("10.1.0.2"),)
    both = conf(args={"cni": {"ips": ["10.1.0.2"]}}, runtimeConfig={"ips": ["10.1.0.3/16", "10.1.0.4"]})
    assert load_host_local(both, args).requested_ips == (ip_address("10.1.0.3"), ip_address("10.1.0.4"))
    empty = conf(args={"cni": {"ips": []}}, runtimeConfig={"ips": []})
    assert load_host_local(empty, args).requested_ips == (ip_address("10.1.0.1"),)


def test_requested_ipv4_mapped_is_canonicalised() -> None:
    assert load_host_local(conf(), {"IP": "::ffff:10.1.0.9"}).requested_ips == (ip_address("10.1.0.9"),)


@pytest.mark.parametrize(
    ("doc", "cni_args", "part"),
    [
        (conf(), {"IP": "10.1.0.x"}, "CNI_ARGS IP: invalid IP address: 10.1.0.x"),
        (conf(), {"IP": "10.1.0.1,"}, "CNI_ARGS IP: invalid IP address"),
        (conf(), {"IP": "fe80::1%eth0"}, "CNI_ARGS IP: invalid IP address"),
        (conf(args={"cni": {"ips": ["10.1.0.1", 7]}}), {}, "args.cni.ips[1]: expected an IP address string"),
        (conf(args={"cni": {"ips": "10.1.0.1"}}), {}, "args.cni.ips: expected an array"),
        (conf(runtimeConfig={"ips": ["10.1.0.1/99"]}), {}, "runtimeConfig.ips[0]: invalid CIDR address"),
    ],
)
def test_invalid_requested_ips(doc: dict[str, Any], cni_args: dict[str, str], part: str) -> None:
    fails(doc, part, cni_args=cni_args)


# -- path safety -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "part"),
    [
        (None, "name: missing network name"),
        ("", "name: missing network name"),
        ("../x", "name: invalid characters found in network name"),
        ("x/../../etc", "invalid characters"),
        ("a/b", "invalid characters"),
        (".", "invalid characters"),
        ("..", "invalid characters"),
        (".hidden", "invalid characters"),
        ("net\n", "invalid characters"),
        ("net\0", "invalid characters"),
        ("n" * 256, "longer than 255 bytes"),
        (5, "name: expected a string"),
    ],
)
def test_network_name_cannot_escape_the_data_dir(name: object, part: str) -> None:
    doc = conf()
    doc["name"] = name
    fails(doc, part)


@pytest.mark.parametrize(
    ("data_dir", "part"),
    [
        ("relative", "ipam.dataDir: must be an absolute path"),
        ("./x", "must be an absolute path"),
        ("/a/../b", "ipam.dataDir: must not contain '..' components"),
        ("/a/..", "'..' components"),
        ("/a/b\0/c", "ipam.dataDir: must not contain NUL"),
        ("/a/b\n/c", "must not contain NUL, newline"),
        (["/a"], "ipam.dataDir: expected a string"),
    ],
)
def test_data_dir_must_be_a_plain_absolute_path(data_dir: object, part: str) -> None:
    doc = conf()
    doc["ipam"]["dataDir"] = data_dir
    fails(doc, part)


def test_data_dir_with_dotdot_inside_a_name_is_fine() -> None:
    doc = conf()
    doc["ipam"]["dataDir"] = "/var/lib/a..b/"
    assert load_host_local(doc, {}).data_dir == "/var/lib/a..b"


def test_loading_does_not_mutate_the_input() -> None:
    doc = conf({"subnet": "10.3.0.0/24", "ranges": [[{"subnet": "10.4.0.0/24"}]]})
    before = copy.deepcopy(doc)
    load_host_local(doc, {"IP": "10.3.0.5"})
    assert doc == before


def test_parse_dns_keeps_only_non_empty_keys() -> None:
    assert parse_dns(None, "dns") == {}
    got = parse_dns({"nameservers": [], "domain": "", "search": ["a", "b"], "options": ["ndots:5"]}, "dns")
    assert got == {"search": ["a", "b"], "options": ["ndots:5"]}


def test_a_config_that_passed_is_parsed_once_and_one_that_fails_every_time(monkeypatch):
    import intent.ipam_config as ipam_config

    parsed = []
    real = ipam_config._load_host_local
    monkeypatch.setattr(ipam_config, "_load_host_local", lambda c, a: parsed.append(1) or real(c, a))
    monkeypatch.setattr(ipam_config, "_loaded", {})
    conf = {"name": "memo", "cniVersion": "1.0.0", "ipam": {"type": "host-local", "subnet": "10.9.0.0/24"}}
    first = ipam_config.load_host_local(conf, {})
    assert ipam_config.load_host_local({**conf, "prevResult": {"ips": []}}, {}) is first
    assert len(parsed) == 1
    assert ipam_config.load_host_local(conf, {"IP": "10.9.0.7"}).requested_ips != first.requested_ips
    bad = {**conf, "ipam": {"type": "host-local", "subnet": "10.9.0.0/33"}}
    for _ in range(2):
        with pytest.raises(CniError):
            ipam_config.load_host_local(bad, {})
    assert len(parsed) == 4
