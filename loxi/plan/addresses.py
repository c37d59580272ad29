"""Which addresses a plan or a check is about, and where they come from.

ADD's plan depends on the address IPAM hands out, but asking IPAM for one
allocates it. The IPAM object (`applier.ipam.open_ipam`, the one the engine
uses) can say, without writing anything, which address it would pick
(`preview`) and which ones this attachment already holds (`held`) when it is
served in-process; an IPAM that cannot tell without running (a delegated
plugin) answers None, so its addresses are left out and the output says so.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from applier.ipam import IpamResult, open_ipam
from compiler.model import AddressLease, RouteIntent
from intent.config import NetConf
from intent.env import CniRequest
from intent.errors import CniError
from intent.result import canonical_cidr, parse_prev_result
from loxi.engine.pipeline import leases_from_ipam

HELD = "held"  # in the host-local store for this attachment
PREVIEW = "preview"  # what host-local would allocate now; nothing is reserved
PREV_RESULT = "prev-result"  # from the conf's prevResult (delegated IPAM)

SOURCE_NONE = "none"
SOURCE_STORE = "store"
SOURCE_PREVIEW = "preview"
SOURCE_DELEGATED = "delegated"
SOURCE_PREV_RESULT = "prev-result"


@dataclass(frozen=True)
class LeaseView:
    address: str  # CIDR with host bits, e.g. 10.244.1.2/24
    gateway: str | None
    status: str  # HELD, PREVIEW or PREV_RESULT

    def lease(self) -> AddressLease:
        gateway = ipaddress.ip_address(self.gateway) if self.gateway else None
        return AddressLease(interface=ipaddress.ip_interface(self.address), gateway=gateway)

    def to_dict(self) -> dict[str, object]:
        return {"address": self.address, "gateway": self.gateway, "status": self.status}


@dataclass(frozen=True)
class Addresses:
    """The pod's addresses for one run of loxi-plan, with their provenance."""

    ipam_type: str  # "" when the conf has no IPAM (L2 only)
    source: str
    leases: tuple[LeaseView, ...] = ()
    routes: tuple[RouteIntent, ...] = ()
    note: str = ""
    store_dir: str = ""

    def compiler_leases(self) -> list[AddressLease]:
        return [view.lease() for view in self.leases]

    @property
    def to_allocate(self) -> list[LeaseView]:
        return [view for view in self.leases if view.status == PREVIEW]

    def to_dict(self) -> dict[str, object]:
        return {
            "ipam_type": self.ipam_type,
            "source": self.source,
            "leases": [view.to_dict() for view in self.leases],
            "routes": [{"dst": str(r.dst), "gw": str(r.gateway) if r.gateway else None} for r in self.routes],
            "note": self.note,
            "store_dir": self.store_dir or None,
        }


def _views(ipam: IpamResult, held: set, status_if_new: str) -> tuple[LeaseView, ...]:
    return tuple(
        LeaseView(
            str(lease.address),
            str(lease.gateway) if lease.gateway else None,
            HELD if lease.ip in held else status_if_new,
        )
        for lease in ipam.leases
    )


def _no_ipam() -> Addresses:
    return Addresses("", SOURCE_NONE, note="no IPAM in the conf: the pod gets no address (L2 only)")


def _delegated(kind: str, what: str) -> Addresses:
    return Addresses(
        kind,
        SOURCE_DELEGATED,
        note=f"addresses come from the {kind!r} IPAM plugin; {what}",
    )


def for_add(conf: NetConf, request: CniRequest) -> Addresses:
    """The addresses ADD would use now: held ones for a known attachment, else the IPAM's preview."""
    ipam = open_ipam(conf.raw, conf.stdin, request)
    if ipam is None:
        return _no_ipam()
    held = ipam.held()
    if held is None:
        return _delegated(
            ipam.kind, "they cannot be previewed without running it (which allocates), so they are left out"
        )
    try:
        preview = ipam.preview() or IpamResult(())
    except CniError as err:  # pool exhausted, requested IP taken: ADD would fail the same way
        raise CniError(err.code, f"ADD would fail: {err.msg}", err.details) from None
    views = _views(preview, {lease.ip for lease in held}, PREVIEW)
    _, routes = leases_from_ipam(preview)
    source = SOURCE_STORE if all(view.status == HELD for view in views) else SOURCE_PREVIEW
    note = "" if source == SOURCE_STORE else "preview: what host-local would allocate now; nothing is reserved"
    return Addresses(ipam.kind, source, views, tuple(routes), note, ipam.store_dir)


def _prev_result_views(conf: NetConf, ifname: str) -> tuple[LeaseView, ...]:
    prev = parse_prev_result(conf.prev_result or {})
    index = next((i for i, iface in enumerate(prev.interfaces) if iface.name == ifname and iface.sandbox), None)
    views = []
    for ip in prev.ips:
        if prev.interfaces and ip.interface is not None and ip.interface != index:
            continue
        views.append(LeaseView(canonical_cidr(ip.address), ip.gateway or None, PREV_RESULT))
    return tuple(views)


def for_check(conf: NetConf, request: CniRequest) -> Addresses:
    """The addresses this attachment holds: the IPAM's store's, or prevResult's when only the plugin knows."""
    ipam = open_ipam(conf.raw, conf.stdin, request)
    if ipam is None:
        return _no_ipam()
    held = ipam.held()
    if held is None:
        if conf.prev_result is not None:
            return Addresses(ipam.kind, SOURCE_PREV_RESULT, _prev_result_views(conf, request.ifname))
        return _delegated(ipam.kind, "without a prevResult in the conf they are unknown, so addresses are not checked")
    # Those in the conf's range sets, set by set (the list comes in the store's address order).
    leases = sorted((x for x in held if x.range_set_index >= 0), key=lambda x: x.range_set_index)
    views = tuple(LeaseView(str(x.address), str(x.gateway) if x.gateway else None, HELD) for x in leases)
    routes = tuple(RouteIntent(dst=r.dst, gateway=r.gw) for r in ipam.routes)
    note = "" if views else "the host-local store holds no address for this attachment"
    return Addresses(ipam.kind, SOURCE_STORE, views, routes, note, ipam.store_dir)


def for_del(conf: NetConf, request: CniRequest) -> Addresses:
    """The store files DEL would release: `cid\\r\\nifname` owners, else legacy `cid`-only ones (as release does)."""
    ipam = open_ipam(conf.raw, conf.stdin, request)
    if ipam is None:
        return _no_ipam()
    held = ipam.held()
    if held is None:
        return _delegated(ipam.kind, "DEL is passed on to it; what it releases cannot be previewed")
    views = tuple(LeaseView(str(lease.address), None, HELD) for lease in held)
    return Addresses(ipam.kind, SOURCE_STORE, views, (), "", ipam.store_dir)


PLACEHOLDER = "placeholder"  # not an allocation: the first address of each range set, to draw the graph
SOURCE_PLACEHOLDER = "placeholder"


def placeholder(conf: NetConf) -> Addresses:
    """A stand-in lease per range set of the conf, so the graph shows the address objects without any I/O."""
    ipam = open_ipam(conf.raw, conf.stdin, CniRequest(command=""))  # no command: the conf as written
    if ipam is None:
        return _no_ipam()
    if not ipam.range_sets:  # the plugin keeps its pools to itself
        return _delegated(ipam.kind, "the graph leaves the pod's addresses out")
    views = []
    for rset in ipam.range_sets:
        rng = rset.ranges[0]
        ip = (
            rng.range_start
            if rng.range_start != rng.gateway or rng.range_start == rng.range_end
            else rng.range_start + 1
        )
        gateway = str(rng.gateway) if rng.gateway else None
        views.append(LeaseView(f"{ip}/{rng.subnet.prefixlen}", gateway, PLACEHOLDER))
    routes = tuple(RouteIntent(dst=r.dst, gateway=r.gw) for r in ipam.routes)
    note = "placeholder addresses (the first of each range): the graph's shape does not depend on which one"
    return Addresses(ipam.kind, SOURCE_PLACEHOLDER, tuple(views), routes, note, ipam.store_dir)
