"""`check`: every managed attribute of every object of an attachment, desired against observed.

CHECK in the plugin answers yes or no; an operator wants the whole table, the
passing rows too, to see what was compared. Pass/fail comes from the plugin's
own `diff` (one source of truth: the same rules decide what ADD would repair),
and this module only lays the result out per attribute.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from compiler.graph import DesiredState
from compiler.model import ObjectKey, Snapshot
from compiler.plan import MODIFY, Plan, Step
from intent.config import NetConf
from intent.env import CniRequest
from loxi.engine.pipeline import Wanted, attachment_of, pipeline
from loxi.plan import addresses as addr
from loxi.plan.addresses import Addresses
from loxi.plan.dryrun import FORMAT_VERSION, pod_namespaces, report_header

PASS = "pass"
FAIL = "fail"
SKIP = "skip"  # a create-only attribute that differs: ADD leaves it alone, so it is not drift
CREATE_ONLY_NOTE = "applied only when the object is created; not enforced afterwards"


@dataclass(frozen=True)
class AttrCheck:
    attr: str
    desired: Any
    observed: Any
    status: str
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "attr": self.attr,
            "desired": self.desired,
            "observed": self.observed,
            "status": self.status,
            "note": self.note,
        }


@dataclass(frozen=True)
class ObjectCheck:
    ns: str
    kind: str
    name: str
    description: str
    present: bool
    wanted: bool  # False for an object that must not be there (a stale address forceAddress removes)
    attrs: tuple[AttrCheck, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def status(self) -> str:
        ok = self.present == self.wanted and not self.problems and all(a.status != FAIL for a in self.attrs)
        return PASS if ok else FAIL

    def to_dict(self) -> dict[str, Any]:
        return {
            "ns": self.ns,
            "kind": self.kind,
            "name": self.name,
            "description": self.description,
            "present": self.present,
            "wanted": self.wanted,
            "status": self.status,
            "problems": list(self.problems),
            "attributes": [a.to_dict() for a in self.attrs],
        }


def _step_problem(step: Step) -> str:
    return step.conflict or step.reason


def _attr_rows(obj: Any, observed: Any, failing: set[str], rebuilt: bool) -> tuple[AttrCheck, ...]:
    rows = []
    for name, want in obj.desired().items():
        have = observed.attrs.get(name) if observed is not None else None
        if observed is None or name in failing:
            status, note = FAIL, ""
        elif name in obj.create_only and have != want:
            status, note = SKIP, CREATE_ONLY_NOTE
        elif rebuilt:  # the diff stopped at kind or peer and compared nothing else: compare for display
            status, note = (PASS if have == want else FAIL), ""
        else:
            status, note = PASS, ""
        rows.append(AttrCheck(name, want, have, status, note))
    return tuple(rows)


def compare(desired: DesiredState, snapshot: Snapshot, plan: Plan) -> list[ObjectCheck]:
    """One row per object of `desired` (in creation order), then one per object the plan would remove."""
    steps: dict[ObjectKey, list[Step]] = defaultdict(list)
    for step in plan.steps:
        steps[step.obj.key].append(step)
    rows = []
    for obj in desired.order():
        observed = snapshot.get(obj.key)
        mine = steps.pop(obj.key, [])
        failing = {change.name for step in mine if step.op == MODIFY for change in step.changes}
        rebuilt = observed is not None and any(step.op != MODIFY for step in mine)
        problems = tuple(_step_problem(step) for step in mine if step.op != MODIFY and observed is not None)
        rows.append(
            ObjectCheck(
                ns=obj.ns,
                kind=obj.kind,
                name=obj.name,
                description=obj.describe(),
                present=observed is not None,
                wanted=True,
                attrs=_attr_rows(obj, observed, failing, rebuilt),
                problems=problems,
            )
        )
    for key, extra in steps.items():
        obj = extra[0].obj
        rows.append(
            ObjectCheck(
                ns=key.ns,
                kind=key.kind,
                name=key.name,
                description=obj.describe(),
                present=True,
                wanted=False,
                problems=tuple(_step_problem(step) for step in extra),
            )
        )
    return rows


@dataclass(frozen=True)
class CheckReport:
    network: str
    container_id: str
    ifname: str
    pod_netns: str
    node_netns: str
    host_veth: str
    addresses: Addresses
    objects: tuple[ObjectCheck, ...]

    @property
    def ipam_status(self) -> str:
        """An attachment whose host-local store holds nothing has lost its address: that is drift too."""
        if self.addresses.source == addr.SOURCE_STORE and not self.addresses.leases:
            return FAIL
        return PASS if self.addresses.leases else SKIP

    def counts(self) -> dict[str, int]:
        """Rows: each object's existence, each of its attributes, each problem, and the IPAM lease."""
        counts = {PASS: 0, FAIL: 0, SKIP: 0}
        for obj in self.objects:
            counts[PASS if obj.present == obj.wanted else FAIL] += 1
            counts[FAIL] += len(obj.problems) if obj.wanted else 0  # an unwanted object's problem is its presence
            for row in obj.attrs:
                counts[row.status] += 1
        counts[self.ipam_status] += 1
        return counts

    @property
    def drift(self) -> bool:
        return self.counts()[FAIL] > 0

    def to_dict(self) -> dict[str, Any]:
        """The document `schemas/check.schema.json` describes."""
        return {
            "format_version": FORMAT_VERSION,
            "attachment": {
                "network": self.network,
                "container_id": self.container_id,
                "ifname": self.ifname,
                "netns": self.pod_netns,
                "host_veth": self.host_veth,
            },
            "node_netns": self.node_netns or None,
            "addresses": {**self.addresses.to_dict(), "status": self.ipam_status},
            "objects": [obj.to_dict() for obj in self.objects],
            "summary": self.counts(),
            "drift": self.drift,
        }


def check_attachment(conf: NetConf, request: CniRequest, node_netns: str = "") -> CheckReport:
    """The attachment as the IPAM store records it, compared with the kernel."""
    attachment = attachment_of(conf, request)
    found = addr.for_check(conf, request)
    with pod_namespaces(request.netns) as namespaces:
        planned = pipeline(namespaces, Wanted(conf, attachment, found.compiler_leases(), found.routes))
    rows = compare(planned.desired, planned.snapshot, planned.plan)
    return CheckReport(objects=tuple(rows), **report_header(conf, request, node_netns, found))
