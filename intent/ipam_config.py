"""The `ipam` part of a network config, checked the way the reference host-local checks it.

Everything a later step needs (the store path, the range sets, the requested IPs)
is validated here, before anything touches the disk, so a hostile or sloppy
config can only ever produce a code-7 error. Messages name the JSON path of the
offending key and keep the reference plugin's wording, because operators search
for those strings. The single values (addresses, ranges, routes, DNS) are
parsed by `intent.ipam_values`; this module puts a whole config together (the
network name, dataDir, the range sets in the reference's order, the requested
IPs) and remembers the configs that passed. Stdlib only: this runs on every
ADD/DEL/CHECK.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from intent.ipam_values import (
    DNS_KEYS,
    ROUTE_EXTRA_KEYS,
    IpamRoute,
    IpRange,
    RangeSet,
    canonical_ip,
    check_gateway,
    check_route_gateway,
    expect,
    fail,
    parse_cidr,
    parse_dns,
    parse_ip,
    parse_range,
    parse_range_set,
    parse_route,
)
from intent.iptypes import IPAddress, IPInterface, IPNetwork

# The values' types and parsers, for the importers of this module (intent.ipam_values is their home).
__all__ = [
    "DEFAULT_DATA_DIR",
    "DNS_KEYS",
    "NETWORK_NAME_RE",
    "ROUTE_EXTRA_KEYS",
    "HostLocalConfig",
    "IPAddress",
    "IPInterface",
    "IPNetwork",
    "IpRange",
    "IpamRoute",
    "RangeSet",
    "check_data_dir",
    "check_gateway",
    "check_network_name",
    "check_route_gateway",
    "load_host_local",
    "parse_cidr",
    "parse_dns",
    "parse_ip",
    "parse_range",
    "parse_range_set",
    "parse_route",
]

DEFAULT_DATA_DIR = "/var/lib/cni/networks"
# The skel's rule for network names; fullmatch so a trailing newline cannot slip through `$`.
NETWORK_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*")
# The name becomes one directory entry, so it must fit NAME_MAX.
MAX_NETWORK_NAME = 255
MAX_DATA_DIR = 4095 - 1 - MAX_NETWORK_NAME - 1 - 64


@dataclass(frozen=True)
class HostLocalConfig:
    network_name: str
    data_dir: str
    range_sets: tuple[RangeSet, ...]
    routes: tuple[IpamRoute, ...] = ()
    resolv_conf: str | None = None
    requested_ips: tuple[IPAddress, ...] = ()
    # Inline `ipam.dns` in CNI result form (only non-empty keys); not a reference key,
    # used when no resolvConf is given.
    dns: Mapping[str, Any] = field(default_factory=dict)

    @property
    def store_dir(self) -> str:
        return os.path.join(self.data_dir, self.network_name)


def check_network_name(value: object) -> str:
    """The name becomes a directory under dataDir: it must stay one plain component."""
    if value is None or value == "":
        raise fail("name", "missing network name")
    name = expect(value, str, "name", "a string")
    if name in (".", "..") or not NETWORK_NAME_RE.fullmatch(name):
        raise fail("name", "invalid characters found in network name")
    if len(name.encode()) > MAX_NETWORK_NAME:
        raise fail("name", f"network name is longer than {MAX_NETWORK_NAME} bytes")
    return name


def check_data_dir(value: object) -> str:
    """An absolute path with no `..`, so the store can never be steered outside it."""
    if value is None or value == "":
        return DEFAULT_DATA_DIR
    text = expect(value, str, "ipam.dataDir", "a string")
    if any(ord(c) < 0x20 or c == "\x7f" for c in text):
        raise fail("ipam.dataDir", "must not contain NUL, newline or other control characters")
    if not text.startswith("/"):
        raise fail("ipam.dataDir", f"must be an absolute path, got {text!r}")
    if ".." in text.split("/"):
        raise fail("ipam.dataDir", f"must not contain '..' components, got {text!r}")
    # Room for /<network name>/<address or temp file name> within PATH_MAX (4096).
    if len(text.encode()) > MAX_DATA_DIR or any(len(part.encode()) > 255 for part in text.split("/")):
        raise fail("ipam.dataDir", f"is too long (at most {MAX_DATA_DIR} bytes, 255 per component)")
    return os.path.normpath(text)


def _version_tuple(text: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(part) for part in (text or "0.1.0").split("."))
    except ValueError:
        return None  # the caller has already rejected unsupported versions


def _requested_ip(value: object, path: str) -> IPAddress:
    """A requested IP may be written as a CIDR; only the address matters."""
    if isinstance(value, str) and "/" in value:
        return canonical_ip(parse_cidr(value, path).ip)
    return parse_ip(value, path)


def _requested_ips(conf: Mapping[str, Any], cni_args: Mapping[str, str]) -> tuple[IPAddress, ...]:
    runtime = conf.get("runtimeConfig")
    runtime_ips = runtime.get("ips") if isinstance(runtime, Mapping) else None
    args = conf.get("args")
    cni = args.get("cni") if isinstance(args, Mapping) else None
    args_ips = cni.get("ips") if isinstance(cni, Mapping) else None

    found: list[IPAddress] = []
    if runtime_ips:
        items = expect(runtime_ips, list, "runtimeConfig.ips", "an array of IP strings")
        found = [_requested_ip(v, f"runtimeConfig.ips[{i}]") for i, v in enumerate(items)]
    elif args_ips:
        items = expect(args_ips, list, "args.cni.ips", "an array of IP strings")
        found = [_requested_ip(v, f"args.cni.ips[{i}]") for i, v in enumerate(items)]
    elif cni_args.get("IP"):
        found = [_requested_ip(v.strip(), "CNI_ARGS IP") for v in cni_args["IP"].split(",")]
    return tuple(dict.fromkeys(found))


def _all_range_sets(conf: Mapping[str, Any], ipam: Mapping[str, Any]) -> tuple[RangeSet, ...]:
    """runtimeConfig.ipRanges first, then the legacy single range, then `ranges`, as the reference orders them."""
    sources: list[tuple[str, object]] = []
    runtime = conf.get("runtimeConfig")
    if isinstance(runtime, Mapping) and runtime.get("ipRanges"):
        items = expect(runtime["ipRanges"], list, "runtimeConfig.ipRanges", "an array of range sets")
        sources += [(f"runtimeConfig.ipRanges[{i}]", item) for i, item in enumerate(items)]
    if ipam.get("subnet") is not None:
        legacy = {k: ipam.get(k) for k in ("subnet", "rangeStart", "rangeEnd", "gateway")}
        sources.append(("ipam", [legacy]))
    if ipam.get("ranges") is not None:
        items = expect(ipam["ranges"], list, "ipam.ranges", "an array of range sets")
        sources += [(f"ipam.ranges[{i}]", item) for i, item in enumerate(items)]
    if not sources:
        raise fail("ipam.ranges", "no IP ranges specified")

    # The legacy keys live directly under `ipam`, so their paths read `ipam.subnet`.
    sets = [RangeSet((parse_range(v[0], "ipam"),)) if p == "ipam" else parse_range_set(v, p) for p, v in sources]
    for j, later in enumerate(sets):
        for i in range(j):
            if sets[i].overlaps(later):
                raise fail(sources[j][0], f"range set {i} overlaps with {j}")
    return tuple(sets)


LOADED_CACHE_SIZE = 64  # network configs: a node serves a few
LOADED_KEY_MAX = 1 << 16  # characters: a larger config is parsed every time, never kept
_loaded: dict[str, HostLocalConfig] = {}
_LOADED_FROM = ("name", "cniVersion", "ipam", "runtimeConfig", "args")  # the keys _load_host_local reads


def load_host_local(conf: Mapping[str, Any], cni_args: Mapping[str, str]) -> HostLocalConfig:
    """Type and check a whole network config for host-local; raise code 7 on anything wrong.

    A call asks this three or four times (validation, the reattach check,
    allocation, the result) and loxi-agent for every pod of a network, with
    the same config: a config that passed is remembered by the canonical JSON
    of the keys read here (not `prevResult`, nor keys of other plugins) and the CNI_ARGS,
    so it is parsed once. The result is frozen; one that fails is parsed,
    and fails, every time.
    """
    try:
        key = json.dumps(
            [{k: conf[k] for k in _LOADED_FROM if k in conf}, sorted(cni_args.items())],
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
    except (TypeError, ValueError, AttributeError, RecursionError):
        return _load_host_local(conf, cni_args)
    loaded = _loaded.get(key)
    if loaded is None:
        loaded = _load_host_local(conf, cni_args)
        if len(key) <= LOADED_KEY_MAX:
            if len(_loaded) >= LOADED_CACHE_SIZE:
                _loaded.clear()
            _loaded[key] = loaded
    return loaded


def _load_host_local(conf: Mapping[str, Any], cni_args: Mapping[str, str]) -> HostLocalConfig:
    name = check_network_name(conf.get("name"))
    ipam = conf.get("ipam")
    if ipam is None:
        raise fail("ipam", "IPAM config missing 'ipam' key")
    ipam = expect(ipam, Mapping, "ipam", "an object")
    data_dir = check_data_dir(ipam.get("dataDir"))
    range_sets = _all_range_sets(conf, ipam)

    version = _version_tuple(str(conf.get("cniVersion") or ""))
    if version is not None and version < (0, 3, 0):
        for family in (4, 6):
            if sum(1 for s in range_sets if s.family == family) > 1:
                raise fail(
                    "ipam.ranges",
                    f"CNI version {conf.get('cniVersion')} does not support more than 1 address per family",
                )

    routes: tuple[IpamRoute, ...] = ()
    if ipam.get("routes") is not None:
        items = expect(ipam["routes"], list, "ipam.routes", "an array of routes")
        routes = tuple(parse_route(item, f"ipam.routes[{i}]") for i, item in enumerate(items))
        for i, route in enumerate(routes):
            check_route_gateway(route, f"ipam.routes[{i}]", range_sets)

    resolv_conf = ipam.get("resolvConf")
    if resolv_conf is not None:
        expect(resolv_conf, str, "ipam.resolvConf", "a string")
        if "\0" in resolv_conf:
            raise fail("ipam.resolvConf", "must not contain NUL")

    return HostLocalConfig(
        network_name=name,
        data_dir=data_dir,
        range_sets=range_sets,
        routes=routes,
        resolv_conf=resolv_conf or None,
        requested_ips=_requested_ips(conf, cni_args),
        dns=parse_dns(ipam.get("dns"), "ipam.dns"),
    )
