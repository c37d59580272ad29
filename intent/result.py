"""The CNI result: one model, printed in whichever spec version the conf asks for.

Runtimes parse these documents strictly (podman rejects an empty MAC, containerd
an out-of-range interface index), so the layout follows the Go library's
`types.PrintResult` exactly: key order, omitted empties and indentation.
Stdlib only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from intent.errors import INCOMPATIBLE_VERSION, INVALID_NETWORK_CONFIG, CniError, dumps_indented
from intent.versions import parse_version


@dataclass(frozen=True)
class ResultInterface:
    name: str
    mac: str = ""
    sandbox: str = ""
    mtu: int = 0


@dataclass(frozen=True)
class ResultIP:
    address: str  # CIDR text with host bits, e.g. 10.244.1.5/24
    gateway: str = ""
    interface: int | None = None

    @property
    def family(self) -> str:
        return "6" if ":" in self.address else "4"


@dataclass(frozen=True)
class ResultRoute:
    dst: str
    gw: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)  # 1.1 keys: mtu, advmss, priority, table, scope


@dataclass(frozen=True)
class Result:
    interfaces: tuple[ResultInterface, ...] = ()
    ips: tuple[ResultIP, ...] = ()
    routes: tuple[ResultRoute, ...] = ()
    dns: Mapping[str, Any] = field(default_factory=dict)


def _dns(dns: Mapping[str, Any]) -> dict[str, Any]:
    return {k: dns[k] for k in ("nameservers", "domain", "search", "options") if dns.get(k)}


def _route_dict(route: ResultRoute, with_extra: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {"dst": route.dst}
    if route.gw:
        doc["gw"] = route.gw
    if with_extra:
        doc.update({k: v for k, v in route.extra.items() if v not in (None, 0, "")})
    return doc


def _sorted_deep(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted_deep(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted_deep(v) for v in value]
    return value


def result_to_dict(result: Result, version: str) -> dict[str, Any]:
    """Convert to the given version's document (cni-protocol.md §2)."""
    major_minor = parse_version(version)[:2]
    if major_minor < (0, 3):
        return _legacy_dict(result, version)
    doc: dict[str, Any] = {"cniVersion": version}
    modern = major_minor >= (1, 0)
    if result.interfaces:
        entries = []
        for iface in result.interfaces:
            entry: dict[str, Any] = {"name": iface.name}
            if iface.mac:
                entry["mac"] = iface.mac
            if major_minor >= (1, 1) and iface.mtu:
                entry["mtu"] = iface.mtu
            if iface.sandbox:
                entry["sandbox"] = iface.sandbox
            entries.append(entry)
        doc["interfaces"] = entries
    if result.ips:
        ips = []
        for ip in result.ips:
            entry = {} if modern else {"version": ip.family}
            if ip.interface is not None:
                entry["interface"] = ip.interface
            entry["address"] = ip.address
            if ip.gateway:
                entry["gateway"] = ip.gateway
            ips.append(entry)
        doc["ips"] = ips
    if result.routes:
        doc["routes"] = [_route_dict(r, with_extra=major_minor >= (1, 1)) for r in result.routes]
    dns = _dns(result.dns)
    if modern:
        if dns:
            doc["dns"] = dns
        return _sorted_deep(doc)
    doc["dns"] = dns
    return doc


def _legacy_dict(result: Result, version: str) -> dict[str, Any]:
    """0.1/0.2: first address of each family, routes split by family."""
    doc: dict[str, Any] = {"cniVersion": version}
    for family, key in (("4", "ip4"), ("6", "ip6")):
        ip = next((i for i in result.ips if i.family == family), None)
        if ip is None:
            continue
        block: dict[str, Any] = {"ip": ip.address}
        if ip.gateway:
            block["gateway"] = ip.gateway
        routes = [_route_dict(r, False) for r in result.routes if ("6" if ":" in r.dst else "4") == family]
        if routes:
            block["routes"] = routes
        doc[key] = block
    if "ip4" not in doc and "ip6" not in doc:
        raise CniError(INCOMPATIBLE_VERSION, "cannot convert: no valid IP addresses")
    doc["dns"] = _dns(result.dns)
    return doc


def require_convertible(version: str, has_addresses: bool) -> None:
    """Fail *before* ADD touches anything when its result could not be printed.

    0.1/0.2 results carry nothing but addresses, so an L2-only ADD (no `ipam`)
    cannot be reported at those versions (Go: `cannot convert: no valid IP
    addresses`). The reference finds out after creating the veth; call this
    first so nothing is left behind.
    """
    if parse_version(version or "0.1.0")[:2] < (0, 3) and not has_addresses:
        raise CniError(INCOMPATIBLE_VERSION, "cannot convert: no valid IP addresses")


def format_result(result: Result, version: str) -> str:
    """The Go library's layout: 4-space indent, no trailing newline."""
    return dumps_indented(result_to_dict(result, version))


def _prev_fail(where: str, msg: str) -> CniError:
    return CniError(INVALID_NETWORK_CONFIG, f"invalid prevResult: {where}: {msg}")


def _prev_list(doc: Mapping[str, Any], key: str, where: str) -> list[Mapping[str, Any]]:
    """`key` is absent or a list of objects."""
    items = doc.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        raise _prev_fail(f"{where}{key}", f"expected an array, got {type(items).__name__}")
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise _prev_fail(f"{where}{key}[{i}]", f"expected an object, got {type(item).__name__}")
    return items


def _prev_text(doc: Mapping[str, Any], key: str, where: str, parse: Any = None, required: bool = False) -> None:
    value = doc.get(key)
    if value is None or (value == "" and not required):
        if required:
            raise _prev_fail(f"{where}.{key}", "missing")
        return
    if not isinstance(value, str):
        raise _prev_fail(f"{where}.{key}", f"expected a string, got {type(value).__name__}")
    if parse is not None:
        try:
            parse(value)
        except ValueError:
            raise _prev_fail(f"{where}.{key}", f"{value!r} is not {parse.__doc__}") from None


def _cidr(text: str) -> None:
    """an address with a prefix length (e.g. 10.244.1.5/24)"""
    if "/" not in text:
        raise ValueError(text)
    ipaddress.ip_interface(text)


def _address(text: str) -> None:
    """an IP address"""
    ipaddress.ip_address(text)


def _network(text: str) -> None:
    """a CIDR (e.g. 10.96.0.0/12)"""
    ipaddress.ip_network(text, strict=False)


def check_prev_result(doc: Any) -> None:
    """Refuse (code 7) a prevResult CHECK cannot rely on: of the wrong shape, or empty.

    Every field CHECK reads is type-checked and every address parsed here, so a
    malformed one is a config error naming the field, never a traceback deep in
    the diff. An empty prevResult (no interface, no address) would make CHECK
    compare nothing and pass: it is refused too.
    """
    if not isinstance(doc, Mapping):
        raise CniError(INVALID_NETWORK_CONFIG, "Required prevResult missing")
    legacy = [key for key in ("ip4", "ip6") if key in doc]
    for key in legacy:
        block = doc[key]
        if not isinstance(block, Mapping):
            raise _prev_fail(key, f"expected an object, got {type(block).__name__}")
        _prev_text(block, "ip", key, _cidr, required=True)
        _prev_text(block, "gateway", key, _address)
        for i, route in enumerate(_prev_list(block, "routes", f"{key}.")):
            _prev_text(route, "dst", f"{key}.routes[{i}]", _network, required=True)
            _prev_text(route, "gw", f"{key}.routes[{i}]", _address)
    interfaces = _prev_list(doc, "interfaces", "")
    for i, iface in enumerate(interfaces):
        for key in ("name", "mac", "sandbox"):
            _prev_text(iface, key, f"interfaces[{i}]", required=key == "name")
        mtu = iface.get("mtu")
        if mtu is not None and (not isinstance(mtu, int) or isinstance(mtu, bool)):
            raise _prev_fail(f"interfaces[{i}].mtu", "expected an integer")
    ips = _prev_list(doc, "ips", "")
    for i, ip in enumerate(ips):
        _prev_text(ip, "address", f"ips[{i}]", _cidr, required=True)
        _prev_text(ip, "gateway", f"ips[{i}]", _address)
        index = ip.get("interface")
        if index is not None and (not isinstance(index, int) or isinstance(index, bool) or index < 0):
            raise _prev_fail(f"ips[{i}].interface", "expected an interface index (a non-negative integer)")
    for i, route in enumerate(_prev_list(doc, "routes", "")):
        _prev_text(route, "dst", f"routes[{i}]", _network, required=True)
        _prev_text(route, "gw", f"routes[{i}]", _address)
    dns = doc.get("dns")
    if dns is not None and not isinstance(dns, Mapping):
        raise _prev_fail("dns", f"expected an object, got {type(dns).__name__}")
    if not (legacy or interfaces or ips):
        raise CniError(
            INVALID_NETWORK_CONFIG, "invalid prevResult: it names no interface and no address: nothing to check"
        )


def parse_prev_result(doc: Mapping[str, Any]) -> Result:
    """Read a prevResult of any version back into the model (for CHECK and DEL)."""
    if "ip4" in doc or "ip6" in doc:
        ips, routes = [], []
        for key in ("ip4", "ip6"):
            block = doc.get(key) or {}
            if block.get("ip"):
                ips.append(ResultIP(address=block["ip"], gateway=block.get("gateway", "")))
            routes += [ResultRoute(dst=r.get("dst", ""), gw=r.get("gw", "")) for r in block.get("routes") or []]
        return Result(ips=tuple(ips), routes=tuple(routes), dns=doc.get("dns") or {})
    interfaces = tuple(
        ResultInterface(name=i.get("name", ""), mac=i.get("mac", ""), sandbox=i.get("sandbox", ""), mtu=i.get("mtu", 0))
        for i in doc.get("interfaces") or []
    )
    ips = tuple(
        ResultIP(address=i.get("address", ""), gateway=i.get("gateway", ""), interface=i.get("interface"))
        for i in doc.get("ips") or []
    )
    routes = tuple(
        ResultRoute(
            dst=r.get("dst", ""), gw=r.get("gw", ""), extra={k: v for k, v in r.items() if k not in ("dst", "gw")}
        )
        for r in doc.get("routes") or []
    )
    return Result(interfaces=interfaces, ips=ips, routes=routes, dns=doc.get("dns") or {})


def canonical_cidr(text: str) -> str:
    """Normalise CIDR text so results and observations compare equal."""
    return str(ipaddress.ip_interface(text))
