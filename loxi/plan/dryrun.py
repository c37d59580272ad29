"""`dry-run`: the plan ADD or DEL would execute now, computed by the plugin's own engine, executing nothing.

The engine's own pipeline (`loxi.engine.pipeline`), as ADD and DEL run it; the
only differences are that the addresses come from a side-effect-free source
(`loxi.plan.addresses`), no lock is taken and nothing is applied. The report
is plain data: the text and JSON renderings are views of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from applier.netns import Namespaces
from compiler.graph import host_veth_name
from compiler.plan import CREATE, DELETE, MODIFY, Plan
from intent.config import NetConf
from intent.env import CniRequest
from loxi.engine.pipeline import PodRefusals, Wanted, attachment_of, open_pod, pipeline
from loxi.plan import addresses as addr
from loxi.plan.addresses import Addresses, LeaseView

FORMAT_VERSION = 1
ADD = "ADD"
DEL = "DEL"


@dataclass(frozen=True)
class PlanReport:
    """What one dry-run found: the attachment, its addresses, the kernel plan and the IPAM changes."""

    command: str  # ADD or DEL
    network: str
    container_id: str
    ifname: str
    pod_netns: str
    node_netns: str  # "" when loxi-plan observed the namespace it runs in
    host_veth: str
    addresses: Addresses
    plan: Plan

    @property
    def ipam_allocate(self) -> list[LeaseView]:
        return self.addresses.to_allocate if self.command == ADD else []

    @property
    def ipam_release(self) -> list[LeaseView]:
        return list(self.addresses.leases) if self.command == DEL else []

    @property
    def changes_pending(self) -> bool:
        return not self.plan.empty or bool(self.ipam_allocate or self.ipam_release)

    def summary(self) -> dict[str, int]:
        return {
            "create": self.plan.count(CREATE) - sum(1 for s in self.plan.conflicts if s.op == CREATE),
            "modify": self.plan.count(MODIFY),
            "delete": self.plan.count(DELETE),
            "conflicts": len(self.plan.conflicts),
            "ipam_allocate": len(self.ipam_allocate),
            "ipam_release": len(self.ipam_release),
        }

    def to_dict(self) -> dict[str, Any]:
        """The document `schemas/plan.schema.json` describes."""
        ipam = [{"op": "allocate", "address": v.address, "preview": True} for v in self.ipam_allocate]
        ipam += [{"op": "release", "address": v.address, "preview": False} for v in self.ipam_release]
        return {
            "format_version": FORMAT_VERSION,
            "command": self.command,
            "attachment": {
                "network": self.network,
                "container_id": self.container_id,
                "ifname": self.ifname,
                "netns": self.pod_netns or None,
                "host_veth": self.host_veth,
            },
            "node_netns": self.node_netns or None,
            "addresses": self.addresses.to_dict(),
            "steps": [{**step.to_dict(), "description": step.obj.describe()} for step in self.plan.steps],
            "ipam": ipam,
            "summary": self.summary(),
            "changes_pending": self.changes_pending,
        }


# loxi-plan's wording: the path is an option it was given.
PLAN_REFUSALS = PodRefusals(
    node="--netns {path} is the node's own namespace",
    missing="--netns {path}: no such namespace",
    invalid="--netns {path}: not an absolute path to a network namespace",
)


def pod_namespaces(path: str) -> Namespaces:
    """The node (this thread's namespace) and the pod at `path`, refused like ADD refuses them."""
    return open_pod(path, PLAN_REFUSALS)


def _report(
    command: str, conf: NetConf, request: CniRequest, node_netns: str, found: Addresses, plan: Plan
) -> PlanReport:
    return PlanReport(command=command, plan=plan, **report_header(conf, request, node_netns, found))


def report_header(conf: NetConf, request: CniRequest, node_netns: str, found: Addresses) -> dict[str, Any]:
    """What every loxi-plan report of one attachment starts with (dry-run's plan and check's table alike)."""
    return {
        "network": conf.name,
        "container_id": request.container_id,
        "ifname": request.ifname,
        "pod_netns": request.netns,
        "node_netns": node_netns,
        "host_veth": host_veth_name(attachment_of(conf, request)),
        "addresses": found,
    }


def plan_add(conf: NetConf, request: CniRequest, node_netns: str = "") -> PlanReport:
    """ADD's plan against the live kernel, with the addresses host-local would hand out."""
    found = addr.for_add(conf, request)
    with pod_namespaces(request.netns) as namespaces:
        planned = pipeline(namespaces, Wanted.setup(conf, request, found.compiler_leases(), found.routes))
    return _report(ADD, conf, request, node_netns, found, planned.plan)


def plan_del(conf: NetConf, request: CniRequest, node_netns: str = "") -> PlanReport:
    """DEL's plan: it works from the node side only, so the pod namespace is not opened."""
    with Namespaces() as namespaces:
        planned = pipeline(namespaces, Wanted.removal(conf, attachment_of(conf, request)))
    return _report(DEL, conf, request, node_netns, addr.for_del(conf, request), planned.plan)
