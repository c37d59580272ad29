"""ADD, CHECK and DEL: intent → desired graph → observe → diff → apply.

This is the one code path every entry point runs (the plugin, `loxi-plan`, the
tests): the commands differ only in what they do with the plan.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from applier import locks
from applier.execute import FEATURE_8021Q, FEATURE_VLAN_FILTERING, ExecutionReport, Executor
from applier.ipam import (
    HostLocalStore,
    IpamResult,
    held_addresses,
    ipam_add,
    ipam_check,
    ipam_del,
    ipam_rollback,
    ipam_type,
    is_host_local,
    validate_ipam,
)
from applier.ipam.delegate import run_ipam_plugin
from applier.netlink import NetlinkError, ports_of
from applier.netns import Namespaces, open_netns, same_namespace
from applier.observe import Observer, observe
from compiler.diff import diff, drift_messages
from compiler.graph import (
    HOST_VETH_PREFIX,
    DesiredState,
    alias_names_network,
    compile_desired,
    compile_teardown,
    host_veth_name,
    parse_owner_alias,
)
from compiler.model import NODE_NS, POD_NS, AddressLease, Attachment, Bridge, HostVeth, PodLink, Route, RouteIntent
from compiler.plan import Plan
from intent.config import NetConf
from intent.env import CniRequest
from intent.errors import (
    CHECK_FAILED,
    CONFLICT,
    INVALID_NETNS,
    INVALID_NETWORK_CONFIG,
    KERNEL_ERROR,
    NOT_AVAILABLE,
    NOT_AVAILABLE_LIMITED,
    CniError,
)
from intent.ipam_config import load_host_local
from intent.result import Result, ResultInterface, ResultIP, ResultRoute, canonical_cidr, parse_prev_result
from loxi.phases import phase
from loxi.reattach import refuse_another_conf


@dataclass(frozen=True)
class AddOutcome:
    result: Result
    plan: Plan


def attachment_of(conf: NetConf, request: CniRequest) -> Attachment:
    return Attachment(conf.name, request.container_id, request.ifname, request.netns)


def leases_from_ipam(ipam: IpamResult | None) -> tuple[list[AddressLease], list[RouteIntent]]:
    if ipam is None:
        return [], []
    leases = [AddressLease(interface=lease.address, gateway=lease.gateway) for lease in ipam.leases]
    routes = [RouteIntent(dst=route.dst, gateway=route.gw) for route in ipam.routes]
    return leases, routes


def _pod_namespaces(request: CniRequest) -> Namespaces:
    if same_namespace(request.netns) and request.environ.get("CNI_NETNS_OVERRIDE", "").lower() not in ("1", "true"):
        raise CniError(INVALID_NETNS, "plugin's netns and netns from CNI_NETNS should not be the same")
    try:
        return Namespaces.for_pod(request.netns)
    except FileNotFoundError:
        raise CniError(INVALID_NETNS, f"failed to open netns {request.netns!r}: no such file") from None
    except PermissionError as exc:
        raise CniError(INVALID_NETNS, f"failed to open netns {request.netns!r}: {exc.strerror}") from None


def result_routes(routes: Sequence[Route], ipam: IpamResult | None) -> list[ResultRoute]:
    """The result's routes as the reference bridge prints them: IPAM's as written, so a route the
    conf gives without gw is printed without one (the pod's route itself goes via the range's
    gateway, which the compiler filled in), and isDefaultGateway's default route with its gw."""
    ungated: dict[str, int] = {}
    for written in ipam.routes if ipam else ():
        if written.gw is None:
            ungated[str(written.dst)] = ungated.get(str(written.dst), 0) + 1
    out = []
    for route in routes:
        dst = str(route.dst)
        if ungated.get(dst, 0) > 0:
            ungated[dst] -= 1
            out.append(ResultRoute(dst=dst, gw=""))
        else:
            out.append(ResultRoute(dst=dst, gw=str(route.gateway) if route.gateway else ""))
    return out


def build_result(
    conf: NetConf, desired: DesiredState, namespaces: Namespaces, ipam: IpamResult | None, report: ExecutionReport
) -> Result:
    """The ADD result, with the MACs the kernel actually has: what this run gave
    the links it created, and a fresh read of every other link (an existing
    bridge keeps its own MTU, and its MAC may follow its ports)."""
    observer = Observer(namespaces)
    bridge: Bridge = desired.by_kind(Bridge)[0]
    veth: HostVeth = desired.by_kind(HostVeth)[0]
    pod: PodLink = desired.by_kind(PodLink)[0]
    interfaces = []
    for ns, name, sandbox in ((NODE_NS, bridge.name, ""), (NODE_NS, veth.name, ""), (POD_NS, pod.name, "netns")):
        created = report.created_links.get((ns, name))
        if created is not None:
            mac, mtu = created.mac, created.mtu
        else:
            msg = observer.link(ns, name)
            mac = (msg.get("IFLA_ADDRESS") or "") if msg is not None else ""
            mtu = (msg.get("IFLA_MTU") or 0) if msg is not None else 0
        sandbox_path = namespaces.pod_path if sandbox else ""
        interfaces.append(ResultInterface(name=name, mac=mac, sandbox=sandbox_path, mtu=mtu if conf.mtu else 0))
    ips = []
    for lease in ipam.leases if ipam else ():
        gateway = lease.gateway
        if gateway is None and conf.is_gateway:
            gateway = next(lease.address.network.hosts())
        ips.append(ResultIP(address=str(lease.address), gateway=str(gateway) if gateway else "", interface=2))
    routes = result_routes(desired.by_kind(Route), ipam)
    dns = dict(conf.dns) if conf.dns else dict(ipam.dns if ipam else {})
    return Result(interfaces=tuple(interfaces), ips=tuple(ips), routes=tuple(routes), dns=dns)


def cmd_add(conf: NetConf, request: CniRequest) -> AddOutcome:
    attachment = attachment_of(conf, request)
    validate_ipam(conf.raw, request)
    lock = locks.attachment_lock_name(conf.name, request.container_id, request.ifname)
    with locks.exclusive(lock), _pod_namespaces(request) as namespaces:
        observer = Observer(namespaces)  # also the plan's: the links it reads do not change in between
        refuse_another_conf(conf, request, attachment, observer)
        was_running = observer.link(NODE_NS, host_veth_name(attachment)) is not None
        with phase("ipam"):
            ipam = ipam_add(conf.raw, conf.stdin, request) if conf.has_ipam else None
        try:
            if ipam is not None and not ipam.leases:
                raise CniError(INVALID_NETWORK_CONFIG, "IPAM plugin returned missing IP config")
            leases, routes = leases_from_ipam(ipam)
            with phase("plan"):
                desired = compile_desired(conf, attachment, leases, routes)
                plan = diff(desired, observe(namespaces, desired, observer))
            if plan.conflicts:
                code = plan.conflicts[0].conflict_code or CONFLICT
                raise CniError(code, "; ".join(s.conflict for s in plan.conflicts))
            with phase("apply"):
                report = Executor(namespaces, enable_dad=conf.enable_dad).apply(plan, conf.bridge)
                result = build_result(conf, desired, namespaces, ipam, report)
        except BaseException:
            if ipam is not None:  # only what this ADD allocated: a lease it found may be a running pod's
                ipam_rollback(conf.raw, conf.stdin, request, ipam, was_running)
            raise
    return AddOutcome(result, plan)


def _prev_leases(conf: NetConf, request: CniRequest) -> list[AddressLease]:
    """The addresses prevResult says this pod interface was given."""
    prev = parse_prev_result(conf.prev_result or {})
    index = next((i for i, iface in enumerate(prev.interfaces) if iface.name == request.ifname and iface.sandbox), None)
    leases = []
    for ip in prev.ips:
        if prev.interfaces and ip.interface is not None and ip.interface != index:
            continue
        gateway = ipaddress.ip_address(ip.gateway) if ip.gateway else None
        leases.append(AddressLease(interface=ipaddress.ip_interface(canonical_cidr(ip.address)), gateway=gateway))
    return leases


def _prev_mac_drift(conf: NetConf, request: CniRequest, desired: DesiredState, observer: Observer) -> list[str]:
    prev = parse_prev_result(conf.prev_result or {})
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
    attachment = attachment_of(conf, request)
    with _pod_namespaces(request) as namespaces:
        leases = _prev_leases(conf, request)
        routes: Sequence[RouteIntent] = ()
        if conf.has_ipam:
            with phase("ipam"):
                ipam = ipam_check(conf.raw, conf.stdin, request)
            held = {lease.address for lease in ipam.leases}
            missing = [lease.interface for lease in leases if lease.interface not in held]
            if missing:
                raise CniError(CHECK_FAILED, f"IPAM does not hold {', '.join(map(str, missing))} for this container")
            _, routes = leases_from_ipam(ipam)
        with phase("plan"):
            desired = compile_desired(conf, attachment, leases, routes)
            observer = Observer(namespaces)
            plan = diff(desired, observe(namespaces, desired, observer))
        messages = drift_messages(plan, request.netns) + _prev_mac_drift(conf, request, desired, observer)
    if messages:
        raise CniError(CHECK_FAILED, "; ".join(messages))
    return plan


def cmd_del(conf: NetConf, request: CniRequest) -> Plan:
    """Remove the pod's veth and release its addresses. Succeeds when everything is already gone.

    The host end goes by name (whatever state the pod is in), and CNI_IFNAME goes
    inside CNI_NETNS when that namespace is there, whatever happened to the host
    end (renamed, moved away, detached: the pod would stay attached). An address
    is released only when no interface in the pod still carries it."""
    validate_ipam(conf.raw, request)
    lock = locks.attachment_lock_name(conf.name, request.container_id, request.ifname)
    with locks.best_effort(), locks.exclusive(lock, remove=True):  # a DEL that cannot lock still cleans up
        return teardown(conf, request)


def teardown(conf: NetConf, request: CniRequest) -> Plan:
    """DEL's work, for a caller that holds the attachment lock (DEL itself, and the
    agent's reconciler, which takes the lock without waiting and skips a busy attachment):
    the veth, the attachment's netfilter rules, then the addresses."""
    attachment = attachment_of(conf, request)
    with Namespaces(request.netns, _pod_fd_for_del(request)) as namespaces:
        with phase("plan"):
            desired = compile_teardown(conf, attachment, pod=namespaces.has(POD_NS))
            plan = diff(desired, observe(namespaces, desired))
        with phase("apply"):
            Executor(namespaces).apply(plan, conf.bridge)
        carried = _still_carried(conf, request, namespaces)
    if carried:
        print(f"loxi-cni: DEL keeps the lease of {', '.join(carried)}: the pod still carries it", file=sys.stderr)
    elif conf.has_ipam:
        with phase("ipam"):
            ipam_del(conf.raw, conf.stdin, request)
    return plan


def _pod_fd_for_del(request: CniRequest) -> int | None:
    """DEL's pod namespace: open when it is there and is not the plugin's own, else None (empty,
    gone, not a namespace: DEL still removes the node side and succeeds). The plugin's own
    namespace is never taken for a pod's, so DEL never deletes the node's CNI_IFNAME."""
    if not request.netns or same_namespace(request.netns):
        return None
    try:
        return open_netns(request.netns)
    except (OSError, CniError):
        return None


def _still_carried(conf: NetConf, request: CniRequest, namespaces: Namespaces) -> list[str]:
    """The attachment's addresses some interface in the pod still has after the teardown."""
    if not conf.has_ipam or not namespaces.has(POD_NS):
        return []
    # The pod's addresses first: usually none is left but loopback's, and the store need not be read.
    present = [msg for msg in namespaces.ipr(POD_NS).addr("dump", index=0, dump_filter={}) if msg.get("IFA_ADDRESS")]
    if not any(not ipaddress.ip_address(msg.get("IFA_ADDRESS")).is_loopback for msg in present):
        return []
    if is_host_local(conf.raw):
        ips = {str(ip) for ip in held_addresses(conf.raw, request)}
    else:
        try:
            ips = {str(ipaddress.ip_interface(canonical_cidr(ip.address)).ip) for ip in _prev_ips(conf)}
        except (CniError, ValueError, TypeError, AttributeError):
            ips = set()
    if not ips:
        return []
    found = []
    for msg in present:
        address = msg.get("IFA_ADDRESS")
        if str(ipaddress.ip_address(address)) in ips:
            found.append(f"{address} (link {msg.get('IFA_LABEL') or msg['index']})")
    return found


def _prev_ips(conf: NetConf) -> list[Any]:
    return list(parse_prev_result(conf.prev_result).ips) if conf.prev_result else []


def _valid_attachments(conf: NetConf) -> set[tuple[str, str]]:
    """GC's keep-list; libcni sends both spellings (cni#1101)."""
    listed = conf.raw.get("cni.dev/valid-attachments")
    if listed is None:
        listed = conf.raw.get("cni.dev/attachments")
    if not isinstance(listed, list):
        raise CniError(INVALID_NETWORK_CONFIG, "GC: cni.dev/valid-attachments must be a list")
    keep = set()
    for entry in listed:
        if not isinstance(entry, dict) or not isinstance(entry.get("containerID"), str):
            raise CniError(INVALID_NETWORK_CONFIG, f"GC: invalid attachment {entry!r}")
        keep.add((entry["containerID"], str(entry.get("ifname", ""))))
    return keep


def cmd_gc(conf: NetConf, request: CniRequest) -> list[str]:
    """Release every allocation and remove every loxi port of this network that no
    listed attachment owns. Continues past errors and reports them together.
    Returns what it removed (for logs and tests)."""
    keep = _valid_attachments(conf)
    removed: list[str] = []
    errors: list[str] = []
    if conf.has_ipam and is_host_local(conf.raw):
        store = HostLocalStore(load_host_local(conf.raw, {}))
        for allocation in store.allocations():
            owner = (allocation.container_id, allocation.ifname)
            if owner in keep or (not allocation.ifname and any(cid == allocation.container_id for cid, _ in keep)):
                continue
            try:
                store.release(allocation.container_id, allocation.ifname)
                removed.append(f"address {allocation.ip}")
            except CniError as exc:
                errors.append(f"release {allocation.ip}: {exc}")
    elif conf.has_ipam:
        run_ipam_plugin(ipam_type(conf.raw), "GC", conf.stdin, request)
    keep_names = {host_veth_name(Attachment(conf.name, cid, ifname, "")) for cid, ifname in keep}
    with Namespaces() as namespaces:
        ipr = namespaces.ipr(NODE_NS)
        bridge = ipr.link_lookup(ifname=conf.bridge)
        for port in ports_of(ipr, bridge[0]) if bridge else ():
            name = port.get("IFLA_IFNAME", "")
            owner = parse_owner_alias(port.get("IFLA_IFALIAS"))
            mine = owner is not None and alias_names_network(owner[0], conf.name)
            if not name.startswith(HOST_VETH_PREFIX) or not mine or name in keep_names:
                continue
            try:
                ipr.delete_link(port["index"])
                removed.append(f"veth {name}")
            except NetlinkError as exc:
                if exc.code != errno.ENODEV:
                    errors.append(f"delete {name}: {exc}")
    if errors:
        raise CniError(KERNEL_ERROR, "GC finished with errors", "; ".join(errors))
    return removed


PROBE_PREFIX = "lxprb"


def probe_bridge_name() -> str:
    """`lxprb` + 8 random hex digits: unique per call, not per process, because
    one loxi-agent process serves concurrent STATUS calls (a pid-derived name
    made them collide with EEXIST). 13 characters, so `<probe>.1` fits IFNAMSIZ;
    not `loxi…`, so nothing mistakes it for a pod's host veth."""
    return PROBE_PREFIX + os.urandom(4).hex()


def missing_kernel_features(ipr: Any, conf: NetConf) -> list[str]:
    """Probe, with a short-lived bridge of our own, for what a VLAN conf needs.

    Reading a bridge's vlan_filtering attribute proves nothing (kernels without
    the feature report 0 too), so STATUS asks the kernel the only reliable way.
    """
    if not (conf.vlan or conf.vlan_trunk):
        return []
    probe = probe_bridge_name()
    missing = []
    try:
        ipr.link("add", ifname=probe, kind="bridge", br_vlan_filtering=1)
    except NetlinkError as exc:
        if exc.code != errno.EOPNOTSUPP:
            raise
        missing.append(FEATURE_VLAN_FILTERING)
        ipr.link("add", ifname=probe, kind="bridge")
    try:
        if conf.uplink and conf.uplink_mode == "vlan":
            try:
                ipr.link("add", ifname=f"{probe}.1", kind="vlan", link=ipr.link_lookup(ifname=probe)[0], vlan_id=1)
            except NetlinkError as exc:
                if exc.code != errno.EOPNOTSUPP:
                    raise
                missing.append(FEATURE_8021Q)
    finally:
        ipr.link("del", index=ipr.link_lookup(ifname=probe)[0])
    return missing


def cmd_status(conf: NetConf, request: CniRequest) -> None:
    """Exit 0 when an ADD could succeed now; 50 when it could not; 51 when pods
    already attached may have lost connectivity (their bridge is down)."""
    with Namespaces() as namespaces:
        ipr = namespaces.ipr(NODE_NS)
        missing = missing_kernel_features(ipr, conf)
        if missing:
            raise CniError(NOT_AVAILABLE, f"the kernel lacks {' and '.join(missing)}, needed by the VLAN setting")
        if conf.uplink and not ipr.link_lookup(ifname=conf.uplink):
            raise CniError(NOT_AVAILABLE, f"uplink {conf.uplink} does not exist in the node namespace")
        found = ipr.link_lookup(ifname=conf.bridge)
        if found:
            link = ipr.link("get", index=found[0])[0]
            kind = (link.get("IFLA_LINKINFO") or {}).get("IFLA_INFO_KIND")
            if kind != "bridge":
                raise CniError(NOT_AVAILABLE, f'"{conf.bridge}" already exists but is not a bridge')
            if not link["flags"] & 1 and ports_of(ipr, found[0]):
                raise CniError(
                    NOT_AVAILABLE_LIMITED, f"bridge {conf.bridge} is down: attached pods have no connectivity"
                )
    if not conf.has_ipam:
        return
    if is_host_local(conf.raw):
        config = load_host_local(conf.raw, {})
        store = HostLocalStore(config)
        for index, range_set in enumerate(config.range_sets):
            if not store.has_free(index):
                raise CniError(NOT_AVAILABLE, f"no free address in range set {index}: {range_set.text}")
    else:
        run_ipam_plugin(ipam_type(conf.raw), "STATUS", conf.stdin, request)
