"""The CNI result: one model, printed in whichever spec version the conf asks for.

Runtimes parse these documents strictly (podman rejects an empty MAC, containerd
an out-of-range interface index), so the layout follows the Go library's
`types.PrintResult` exactly: key order, omitted empties and indentation.
Stdlib only.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from intent.errors import INCOMPATIBLE_VERSION, CniError
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
    return json.dumps(result_to_dict(result, version), indent=4)


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
