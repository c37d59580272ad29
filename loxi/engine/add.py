"""ADD: allocate the pod's addresses, plan the attachment against the kernel, execute the plan, report the result.

A failed ADD leaves the node as it found it: the executor undoes its steps, and
only what this ADD allocated is given back to IPAM (a lease it found held may
be a running pod's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from applier import locks
from applier.execute import ExecutionReport, Executor
from applier.ipam import IpamResult, open_ipam
from applier.netns import Namespaces
from applier.observer import Observer
from compiler.graph import DesiredState, host_veth_name
from compiler.model import NODE_NS, POD_NS, Bridge, HostVeth, PodLink, Route
from compiler.plan import Plan
from intent.config import NetConf
from intent.env import CniRequest
from intent.errors import CONFLICT, INVALID_NETWORK_CONFIG, CniError
from intent.result import Result, ResultInterface, ResultIP, ResultRoute
from loxi.engine.phases import phase
from loxi.engine.pipeline import Wanted, attachment_of, leases_from_ipam, pipeline, pod_namespaces
from loxi.engine.reattach import refuse_another_conf


@dataclass(frozen=True)
class AddOutcome:
    result: Result
    plan: Plan


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
    ipam = open_ipam(conf.raw, conf.stdin, request)  # its config parsed and checked once, before any lock
    lock = locks.attachment_lock_name(conf.name, request.container_id, request.ifname)
    with locks.exclusive(lock), pod_namespaces(request) as namespaces:
        observer = Observer(namespaces)  # also the plan's: the links it reads do not change in between
        refuse_another_conf(conf, request, attachment, observer, ipam)
        was_running = observer.link(NODE_NS, host_veth_name(attachment)) is not None
        with phase("ipam"):
            added = ipam.add() if ipam is not None else None
        try:
            if added is not None and not added.leases:
                raise CniError(INVALID_NETWORK_CONFIG, "IPAM plugin returned missing IP config")
            leases, routes = leases_from_ipam(added)
            planned = pipeline(namespaces, Wanted(conf, attachment, leases, routes), observer)
            plan = planned.plan
            if plan.conflicts:
                code = plan.conflicts[0].conflict_code or CONFLICT
                raise CniError(code, "; ".join(s.conflict for s in plan.conflicts))
            with phase("apply"):
                report = Executor(namespaces, enable_dad=conf.enable_dad).apply(plan, conf.bridge)
                result = build_result(conf, planned.desired, namespaces, added, report)
        except BaseException:
            # Only what this ADD allocated: a lease it found may be a running pod's.
            if ipam is not None and added is not None:
                ipam.rollback(added, was_running)
            raise
    return AddOutcome(result, plan)
