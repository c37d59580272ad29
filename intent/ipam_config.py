"""The `ipam` part of a network config, checked the way the reference host-local checks it.

Everything a later step needs (the store path, the range sets, the requested IPs)
is validated here, before anything touches the disk, so a hostile or sloppy
config can only ever produce a code-7 error. Messages name the JSON path of the
offending key and keep the reference plugin's wording, because operators search
for those strings. Stdlib only: this runs on every ADD/DEL/CHECK.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv6Address, ip_address, ip_interface
from typing import Any

from intent.errors import INVALID_NETWORK_CONFIG, CniError
from intent.iptypes import IPAddress, IPInterface, IPNetwork

DEFAULT_DATA_DIR = "/var/lib/cni/networks"
# The skel's rule for network names; fullmatch so a trailing newline cannot slip through `$`.
NETWORK_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*")
# The name becomes one directory entry, so it must fit NAME_MAX.
MAX_NETWORK_NAME = 255
MAX_DATA_DIR = 4095 - 1 - MAX_NETWORK_NAME - 1 - 64
# CNI 1.1 route attributes: passed through untouched, the caller decides what it honours.
ROUTE_EXTRA_KEYS = ("mtu", "advmss", "priority", "table", "scope")
DNS_KEYS = ("nameservers", "domain", "search", "options")


@dataclass(frozen=True)
class IpRange:
    """One `{subnet, rangeStart, rangeEnd, gateway}` entry with its defaults filled in."""

    subnet: IPNetwork
    range_start: IPAddress
    range_end: IPAddress
    gateway: IPAddress | None = None

    def contains(self, ip: IPAddress) -> bool:
        return ip.version == self.subnet.version and self.range_start <= ip <= self.range_end

    def overlaps(self, other: IpRange) -> bool:
        if self.subnet.version != other.subnet.version:
            return False
        return self.range_start <= other.range_end and other.range_start <= self.range_end

    @property
    def text(self) -> str:
        return f"{self.range_start}-{self.range_end}"


@dataclass(frozen=True)
class RangeSet:
    """A pool of ranges of one family from which exactly one address is taken."""

    ranges: tuple[IpRange, ...]

    @property
    def family(self) -> int:
        return self.ranges[0].subnet.version

    def range_for(self, ip: IPAddress) -> IpRange | None:
        return next((r for r in self.ranges if r.contains(ip)), None)

    def contains(self, ip: IPAddress) -> bool:
        return self.range_for(ip) is not None

    def overlaps(self, other: RangeSet) -> bool:
        return any(a.overlaps(b) for a in self.ranges for b in other.ranges)

    @property
    def text(self) -> str:
        """The reference's RangeSet.String(); it appears in the exhaustion error runtimes match on."""
        return ",".join(r.text for r in self.ranges)


@dataclass(frozen=True)
class IpamRoute:
    dst: IPNetwork
    gw: IPAddress | None = None
    # mtu, advmss, priority, table, scope exactly as written in the config.
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"dst": str(self.dst)}
        if self.gw is not None:
            doc["gw"] = str(self.gw)
        doc.update(self.extra)
        return doc


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


def _fail(path: str, msg: str) -> CniError:
    return CniError(INVALID_NETWORK_CONFIG, f"{path}: {msg}")


def _type_name(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def _expect(value: object, kind: type, path: str, what: str) -> Any:
    # JSON booleans are Python ints; a config saying `"mtu": true` is still wrong.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise _fail(path, f"expected {what}, got {_type_name(value)}")
    return value


def _canonical(ip: IPAddress) -> IPAddress:
    """Go's canonicalizeIP: an IPv4-mapped IPv6 address is an IPv4 address."""
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def parse_ip(value: object, path: str) -> IPAddress:
    text = _expect(value, str, path, "an IP address string")
    # ipaddress accepts zone ids ("fe80::1%eth0"); Go's ParseIP and file names must not.
    if "%" in text:
        raise _fail(path, f"invalid IP address: {text}")
    try:
        return _canonical(ip_address(text))
    except ValueError:
        raise _fail(path, f"invalid IP address: {text}") from None


def parse_cidr(value: object, path: str) -> IPInterface:
    """Go's ParseCIDR: `addr/len` with a decimal length; the host bits are kept."""
    text = _expect(value, str, path, "a CIDR string")
    addr, sep, prefix = text.partition("/")
    if not sep or not prefix or not all(c in "0123456789" for c in prefix) or "%" in addr:
        raise _fail(path, f"invalid CIDR address: {text}")
    try:
        return ip_interface(text)
    except ValueError:
        raise _fail(path, f"invalid CIDR address: {text}") from None


def parse_route(value: object, path: str) -> IpamRoute:
    doc = _expect(value, Mapping, path, "an object")
    if "dst" not in doc:
        raise _fail(f"{path}.dst", "missing")
    dst = parse_cidr(doc["dst"], f"{path}.dst").network
    gw = None if doc.get("gw") in (None, "") else parse_ip(doc["gw"], f"{path}.gw")
    extra = {}
    for key in ROUTE_EXTRA_KEYS:
        if doc.get(key) is not None:
            extra[key] = _expect(doc[key], int, f"{path}.{key}", "an integer")
    return IpamRoute(dst=dst, gw=gw, extra=extra)


def parse_dns(value: object, path: str) -> dict[str, Any]:
    """A `{nameservers, domain, search, options}` object reduced to its non-empty keys."""
    if value is None:
        return {}
    doc = _expect(value, Mapping, path, "an object")
    out: dict[str, Any] = {}
    for key in DNS_KEYS:
        item = doc.get(key)
        if item in (None, "", []):
            continue
        if key == "domain":
            out[key] = _expect(item, str, f"{path}.{key}", "a string")
            continue
        items = _expect(item, list, f"{path}.{key}", "an array of strings")
        out[key] = [_expect(s, str, f"{path}.{key}[{i}]", "a string") for i, s in enumerate(items)]
    return out


def parse_range(value: object, path: str) -> IpRange:
    doc = _expect(value, Mapping, path, "an object")
    if doc.get("subnet") is None:
        raise _fail(f"{path}.subnet", "missing")
    iface = parse_cidr(doc["subnet"], f"{path}.subnet")
    net = iface.network
    if iface.version == 6 and iface.ip.ipv4_mapped is not None:
        raise _fail(f"{path}.subnet", "IPNet IP and Mask version mismatch")
    if net.prefixlen > net.max_prefixlen - 2:
        raise _fail(f"{path}.subnet", f"Network {iface.with_prefixlen} too small to allocate from")
    if iface.ip != net.network_address:
        raise _fail(
            f"{path}.subnet",
            f"Network {iface.with_prefixlen} has host bits set. For a subnet mask of length {net.prefixlen} "
            f"the network address is {net.network_address}",
        )

    def in_family(key: str) -> IPAddress | None:
        if doc.get(key) in (None, ""):
            return None
        ip = parse_ip(doc[key], f"{path}.{key}")
        if ip.version != net.version:
            raise _fail(f"{path}.{key}", f"{ip} is not an IPv{net.version} address like subnet {net}")
        return ip

    first = net.network_address + 1
    # IPv4 keeps the broadcast address out of the pool; IPv6 has none.
    last = net.broadcast_address - 1 if net.version == 4 else net.broadcast_address
    gateway = in_family("gateway")
    start = in_family("rangeStart")
    end = in_family("rangeEnd")
    if start is not None and start not in net:
        raise _fail(f"{path}.rangeStart", f"RangeStart {start} not in network {net}")
    if end is not None and end not in net:
        raise _fail(f"{path}.rangeEnd", f"RangeEnd {end} not in network {net}")
    if gateway is not None:
        check_gateway(gateway, net, f"{path}.gateway")
    start = first if start is None else start
    end = last if end is None else end
    gateway = first if gateway is None else gateway
    if start > end:
        raise _fail(f"{path}.rangeStart", f"RangeStart {start} is after RangeEnd {end}")
    return IpRange(subnet=net, range_start=start, range_end=end, gateway=gateway)


def check_gateway(gateway: IPAddress, net: IPNetwork, path: str) -> None:
    """A range's gateway must be a host of its subnet: the pod routes through it on-link.

    The reference host-local does not check (cni-protocol.md §4): a gateway
    outside the subnet, or its network or broadcast address, gives pods a route
    the kernel refuses (ENETUNREACH) or one that leads nowhere. loxi-cni refuses
    the conf instead, here, where ADD and `loxi-plan validate` both look.
    """
    if gateway not in net:
        raise _fail(path, f"gateway {gateway} is not in subnet {net}")
    if gateway == net.network_address:
        raise _fail(path, f"gateway {gateway} is the network address of {net}")
    if net.version == 4 and gateway == net.broadcast_address:
        raise _fail(path, f"gateway {gateway} is the broadcast address of {net}")


def check_route_gateway(route: IpamRoute, path: str, range_sets: tuple[RangeSet, ...]) -> None:
    """A route's `gw` must be on-link: inside a subnet of one of the pod's range sets.

    Any other gateway cannot be reached from the pod's interface; the kernel
    refuses the route (ENETUNREACH) after the pod's veth and address are made.
    """
    if route.gw is None:
        return
    subnets = [rng.subnet for rset in range_sets for rng in rset.ranges if rng.subnet.version == route.gw.version]
    if not any(route.gw in subnet for subnet in subnets):
        where = ", ".join(map(str, subnets)) or f"no IPv{route.gw.version} range"
        raise _fail(f"{path}.gw", f"route gateway {route.gw} is outside every range ({where}): it is not on-link")


def parse_range_set(value: object, path: str) -> RangeSet:
    items = _expect(value, list, path, "an array of ranges")
    if not items:
        raise _fail(path, "empty range set")
    ranges = tuple(parse_range(item, f"{path}[{i}]") for i, item in enumerate(items))
    for i, rng in enumerate(ranges[1:], start=1):
        if rng.subnet.version != ranges[0].subnet.version:
            raise _fail(f"{path}[{i}]", "mixed address families")
    for i, a in enumerate(ranges):
        for j in range(i + 1, len(ranges)):
            if a.overlaps(ranges[j]):
                raise _fail(f"{path}[{j}]", f"subnets {a.text} and {ranges[j].text} overlap")
    return RangeSet(ranges)


def check_network_name(value: object) -> str:
    """The name becomes a directory under dataDir: it must stay one plain component."""
    if value is None or value == "":
        raise _fail("name", "missing network name")
    name = _expect(value, str, "name", "a string")
    if name in (".", "..") or not NETWORK_NAME_RE.fullmatch(name):
        raise _fail("name", "invalid characters found in network name")
    if len(name.encode()) > MAX_NETWORK_NAME:
        raise _fail("name", f"network name is longer than {MAX_NETWORK_NAME} bytes")
    return name


def check_data_dir(value: object) -> str:
    """An absolute path with no `..`, so the store can never be steered outside it."""
    if value is None or value == "":
        return DEFAULT_DATA_DIR
    text = _expect(value, str, "ipam.dataDir", "a string")
    if any(ord(c) < 0x20 or c == "\x7f" for c in text):
        raise _fail("ipam.dataDir", "must not contain NUL, newline or other control characters")
    if not text.startswith("/"):
        raise _fail("ipam.dataDir", f"must be an absolute path, got {text!r}")
    if ".." in text.split("/"):
        raise _fail("ipam.dataDir", f"must not contain '..' components, got {text!r}")
    # Room for /<network name>/<address or temp file name> within PATH_MAX (4096).
    if len(text.encode()) > MAX_DATA_DIR or any(len(part.encode()) > 255 for part in text.split("/")):
        raise _fail("ipam.dataDir", f"is too long (at most {MAX_DATA_DIR} bytes, 255 per component)")
    return os.path.normpath(text)


def _version_tuple(text: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(part) for part in (text or "0.1.0").split("."))
    except ValueError:
        return None  # the caller has already rejected unsupported versions


def _requested_ip(value: object, path: str) -> IPAddress:
    """A requested IP may be written as a CIDR; only the address matters."""
    if isinstance(value, str) and "/" in value:
        return _canonical(parse_cidr(value, path).ip)
    return parse_ip(value, path)


def _requested_ips(conf: Mapping[str, Any], cni_args: Mapping[str, str]) -> tuple[IPAddress, ...]:
    runtime = conf.get("runtimeConfig")
    runtime_ips = runtime.get("ips") if isinstance(runtime, Mapping) else None
    args = conf.get("args")
    cni = args.get("cni") if isinstance(args, Mapping) else None
    args_ips = cni.get("ips") if isinstance(cni, Mapping) else None

    found: list[IPAddress] = []
    if runtime_ips:
        items = _expect(runtime_ips, list, "runtimeConfig.ips", "an array of IP strings")
        found = [_requested_ip(v, f"runtimeConfig.ips[{i}]") for i, v in enumerate(items)]
    elif args_ips:
        items = _expect(args_ips, list, "args.cni.ips", "an array of IP strings")
        found = [_requested_ip(v, f"args.cni.ips[{i}]") for i, v in enumerate(items)]
    elif cni_args.get("IP"):
        found = [_requested_ip(v.strip(), "CNI_ARGS IP") for v in cni_args["IP"].split(",")]
    return tuple(dict.fromkeys(found))


def _all_range_sets(conf: Mapping[str, Any], ipam: Mapping[str, Any]) -> tuple[RangeSet, ...]:
    """runtimeConfig.ipRanges first, then the legacy single range, then `ranges`, as the reference orders them."""
    sources: list[tuple[str, object]] = []
    runtime = conf.get("runtimeConfig")
    if isinstance(runtime, Mapping) and runtime.get("ipRanges"):
        items = _expect(runtime["ipRanges"], list, "runtimeConfig.ipRanges", "an array of range sets")
        sources += [(f"runtimeConfig.ipRanges[{i}]", item) for i, item in enumerate(items)]
    if ipam.get("subnet") is not None:
        legacy = {k: ipam.get(k) for k in ("subnet", "rangeStart", "rangeEnd", "gateway")}
        sources.append(("ipam", [legacy]))
    if ipam.get("ranges") is not None:
        items = _expect(ipam["ranges"], list, "ipam.ranges", "an array of range sets")
        sources += [(f"ipam.ranges[{i}]", item) for i, item in enumerate(items)]
    if not sources:
        raise _fail("ipam.ranges", "no IP ranges specified")

    # The legacy keys live directly under `ipam`, so their paths read `ipam.subnet`.
    sets = [RangeSet((parse_range(v[0], "ipam"),)) if p == "ipam" else parse_range_set(v, p) for p, v in sources]
    for j, later in enumerate(sets):
        for i in range(j):
            if sets[i].overlaps(later):
                raise _fail(sources[j][0], f"range set {i} overlaps with {j}")
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
        raise _fail("ipam", "IPAM config missing 'ipam' key")
    ipam = _expect(ipam, Mapping, "ipam", "an object")
    data_dir = check_data_dir(ipam.get("dataDir"))
    range_sets = _all_range_sets(conf, ipam)

    version = _version_tuple(str(conf.get("cniVersion") or ""))
    if version is not None and version < (0, 3, 0):
        for family in (4, 6):
            if sum(1 for s in range_sets if s.family == family) > 1:
                raise _fail(
                    "ipam.ranges",
                    f"CNI version {conf.get('cniVersion')} does not support more than 1 address per family",
                )

    routes: tuple[IpamRoute, ...] = ()
    if ipam.get("routes") is not None:
        items = _expect(ipam["routes"], list, "ipam.routes", "an array of routes")
        routes = tuple(parse_route(item, f"ipam.routes[{i}]") for i, item in enumerate(items))
        for i, route in enumerate(routes):
            check_route_gateway(route, f"ipam.routes[{i}]", range_sets)

    resolv_conf = ipam.get("resolvConf")
    if resolv_conf is not None:
        _expect(resolv_conf, str, "ipam.resolvConf", "a string")
        if "\0" in resolv_conf:
            raise _fail("ipam.resolvConf", "must not contain NUL")

    return HostLocalConfig(
        network_name=name,
        data_dir=data_dir,
        range_sets=range_sets,
        routes=routes,
        resolv_conf=resolv_conf or None,
        requested_ips=_requested_ips(conf, cni_args),
        dns=parse_dns(ipam.get("dns"), "ipam.dns"),
    )
