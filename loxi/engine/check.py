"""CHECK: the attachment prevResult describes, planned against the kernel; any step is drift (code 104).

prevResult is parsed once per call: its addresses are the ones the graph is
compiled with, and its MACs are compared with the links the plan observed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from applier.ipam import open_ipam
from applier.observer import Observer
from compiler.diff import drift_messages
from compiler.graph import DesiredState
from compiler.model import NODE_NS, POD_NS, AddressLease, RouteIntent
from compiler.plan import Plan
from intent.config import NetConf
from intent.env import CniRequest
from intent.errors import CHECK_FAILED, INVALID_NETWORK_CONFIG, CniError
from intent.result import Result, canonical_cidr, parse_prev_result
from loxi.engine.phases import phase
from loxi.engine.pipeline import Wanted, leases_from_ipam, pipeline, pod_namespaces


def prev_leases(prev: Result, ifname: str) -> list[AddressLease]:
    """The addresses prevResult says this pod interface was given."""
    index = next((i for i, iface in enumerate(prev.interfaces) if iface.name == ifname and iface.sandbox), None)
    leases = []
    for ip in prev.ips:
        if prev.interfaces and ip.interface is not None and ip.interface != index:
            continue
        gateway = ipaddress.ip_address(ip.gateway) if ip.gateway else None
        leases.append(AddressLease(interface=ipaddress.ip_interface(canonical_cidr(ip.address)), gateway=gateway))
    return leases


def prev_mac_drift(prev: Result, request: CniRequest, desired: DesiredState, observer: Observer) -> list[str]:
    """prevResult's MACs against the links the plan observed (read from the observer's cache)."""
    messages = []
    for iface in prev.interfaces:
        ns = POD_NS if iface.sandbox else NODE_NS
        if iface.sandbox and iface.sandbox != request.netns:
            continue
        if not iface.mac or iface.name not in {obj.name for obj in desired.objects()}:
            continue
        msg = observer.link(ns, iface.name)
        have = (msg.get("IFLA_ADDRESS") or "") if msg is not None else ""
        if msg is not None and have.lower() != iface.mac.lower():
            messages.append(f"{iface.name}: mac is {have}, want {iface.mac} (from prevResult)")
    return messages


def cmd_check(conf: NetConf, request: CniRequest) -> Plan:
    if conf.prev_result is None:
        raise CniError(INVALID_NETWORK_CONFIG, "Required prevResult missing")
    with pod_namespaces(request) as namespaces:
        prev = parse_prev_result(conf.prev_result)
        leases = prev_leases(prev, request.ifname)
        routes: Sequence[RouteIntent] = ()
        ipam = open_ipam(conf.raw, conf.stdin, request)
        if ipam is not None:
            with phase("ipam"):
                checked = ipam.check()
            held = {lease.address for lease in checked.leases}
            missing = [lease.interface for lease in leases if lease.interface not in held]
            if missing:
                raise CniError(CHECK_FAILED, f"IPAM does not hold {', '.join(map(str, missing))} for this container")
            _, routes = leases_from_ipam(checked)
        observer = Observer(namespaces)
        planned = pipeline(namespaces, Wanted.setup(conf, request, leases, routes), observer)
        messages = drift_messages(planned.plan, request.netns)
        messages += prev_mac_drift(prev, request, planned.desired, observer)
    if messages:
        raise CniError(CHECK_FAILED, "; ".join(messages))
    return planned.plan
