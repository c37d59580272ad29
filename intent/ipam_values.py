"""The values inside an `ipam` section, typed and checked the way the reference host-local checks them.

IP addresses, CIDRs, ranges and range sets, routes and DNS: each parser takes
the JSON value and the JSON path it was found at, and raises code 7 naming that
path, in the reference plugin's wording, because operators search for those
strings. `intent.ipam_config` puts them together into a whole config. Stdlib
only: this runs on every ADD/DEL/CHECK.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv6Address, ip_address, ip_interface
from typing import Any

from intent.errors import INVALID_NETWORK_CONFIG, CniError
from intent.iptypes import IPAddress, IPInterface, IPNetwork

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


def fail(path: str, msg: str) -> CniError:
    return CniError(INVALID_NETWORK_CONFIG, f"{path}: {msg}")


def _type_name(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def expect(value: object, kind: type, path: str, what: str) -> Any:
    # JSON booleans are Python ints; a config saying `"mtu": true` is still wrong.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise fail(path, f"expected {what}, got {_type_name(value)}")
    return value


def canonical_ip(ip: IPAddress) -> IPAddress:
    """Go's canonicalizeIP: an IPv4-mapped IPv6 address is an IPv4 address."""
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def parse_ip(value: object, path: str) -> IPAddress:
    text = expect(value, str, path, "an IP address string")
    # ipaddress accepts zone ids ("fe80::1%eth0"); Go's ParseIP and file names must not.
    if "%" in text:
        raise fail(path, f"invalid IP address: {text}")
    try:
        return canonical_ip(ip_address(text))
    except ValueError:
        raise fail(path, f"invalid IP address: {text}") from None


def parse_cidr(value: object, path: str) -> IPInterface:
    """Go's ParseCIDR: `addr/len` with a decimal length; the host bits are kept."""
    text = expect(value, str, path, "a CIDR string")
    addr, sep, prefix = text.partition("/")
    if not sep or not prefix or not all(c in "0123456789" for c in prefix) or "%" in addr:
        raise fail(path, f"invalid CIDR address: {text}")
    try:
        return ip_interface(text)
    except ValueError:
        raise fail(path, f"invalid CIDR address: {text}") from None


def parse_route(value: object, path: str) -> IpamRoute:
    doc = expect(value, Mapping, path, "an object")
    if "dst" not in doc:
        raise fail(f"{path}.dst", "missing")
    dst = parse_cidr(doc["dst"], f"{path}.dst").network
    gw = None if doc.get("gw") in (None, "") else parse_ip(doc["gw"], f"{path}.gw")
    extra = {}
    for key in ROUTE_EXTRA_KEYS:
        if doc.get(key) is not None:
            extra[key] = expect(doc[key], int, f"{path}.{key}", "an integer")
    return IpamRoute(dst=dst, gw=gw, extra=extra)


def parse_dns(value: object, path: str) -> dict[str, Any]:
    """A `{nameservers, domain, search, options}` object reduced to its non-empty keys."""
    if value is None:
        return {}
    doc = expect(value, Mapping, path, "an object")
    out: dict[str, Any] = {}
    for key in DNS_KEYS:
        item = doc.get(key)
        if item in (None, "", []):
            continue
        if key == "domain":
            out[key] = expect(item, str, f"{path}.{key}", "a string")
            continue
        items = expect(item, list, f"{path}.{key}", "an array of strings")
        out[key] = [expect(s, str, f"{path}.{key}[{i}]", "a string") for i, s in enumerate(items)]
    return out


def parse_range(value: object, path: str) -> IpRange:
    doc = expect(value, Mapping, path, "an object")
    if doc.get("subnet") is None:
        raise fail(f"{path}.subnet", "missing")
    iface = parse_cidr(doc["subnet"], f"{path}.subnet")
    net = iface.network
    if iface.version == 6 and iface.ip.ipv4_mapped is not None:
        raise fail(f"{path}.subnet", "IPNet IP and Mask version mismatch")
    if net.prefixlen > net.max_prefixlen - 2:
        raise fail(f"{path}.subnet", f"Network {iface.with_prefixlen} too small to allocate from")
    if iface.ip != net.network_address:
        raise fail(
            f"{path}.subnet",
            f"Network {iface.with_prefixlen} has host bits set. For a subnet mask of length {net.prefixlen} "
            f"the network address is {net.network_address}",
        )

    def in_family(key: str) -> IPAddress | None:
        if doc.get(key) in (None, ""):
            return None
        ip = parse_ip(doc[key], f"{path}.{key}")
        if ip.version != net.version:
            raise fail(f"{path}.{key}", f"{ip} is not an IPv{net.version} address like subnet {net}")
        return ip

    first = net.network_address + 1
    # IPv4 keeps the broadcast address out of the pool; IPv6 has none.
    last = net.broadcast_address - 1 if net.version == 4 else net.broadcast_address
    gateway = in_family("gateway")
    start = in_family("rangeStart")
    end = in_family("rangeEnd")
    if start is not None and start not in net:
        raise fail(f"{path}.rangeStart", f"RangeStart {start} not in network {net}")
    if end is not None and end not in net:
        raise fail(f"{path}.rangeEnd", f"RangeEnd {end} not in network {net}")
    if gateway is not None:
        check_gateway(gateway, net, f"{path}.gateway")
    start = first if start is None else start
    end = last if end is None else end
    gateway = first if gateway is None else gateway
    if start > end:
        raise fail(f"{path}.rangeStart", f"RangeStart {start} is after RangeEnd {end}")
    return IpRange(subnet=net, range_start=start, range_end=end, gateway=gateway)


def check_gateway(gateway: IPAddress, net: IPNetwork, path: str) -> None:
    """A range's gateway must be a host of its subnet: the pod routes through it on-link.

    The reference host-local does not check (cni-protocol.md §4): a gateway
    outside the subnet, or its network or broadcast address, gives pods a route
    the kernel refuses (ENETUNREACH) or one that leads nowhere. loxi-cni refuses
    the conf instead, here, where ADD and `loxi-plan validate` both look.
    """
    if gateway not in net:
        raise fail(path, f"gateway {gateway} is not in subnet {net}")
    if gateway == net.network_address:
        raise fail(path, f"gateway {gateway} is the network address of {net}")
    if net.version == 4 and gateway == net.broadcast_address:
        raise fail(path, f"gateway {gateway} is the broadcast address of {net}")


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
        raise fail(f"{path}.gw", f"route gateway {route.gw} is outside every range ({where}): it is not on-link")


def parse_range_set(value: object, path: str) -> RangeSet:
    items = expect(value, list, path, "an array of ranges")
    if not items:
        raise fail(path, "empty range set")
    ranges = tuple(parse_range(item, f"{path}[{i}]") for i, item in enumerate(items))
    for i, rng in enumerate(ranges[1:], start=1):
        if rng.subnet.version != ranges[0].subnet.version:
            raise fail(f"{path}[{i}]", "mixed address families")
    for i, a in enumerate(ranges):
        for j in range(i + 1, len(ranges)):
            if a.overlaps(ranges[j]):
                raise fail(f"{path}[{j}]", f"subnets {a.text} and {ranges[j].text} overlap")
    return RangeSet(ranges)
