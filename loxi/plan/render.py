"""Text views of loxi-plan's reports, rendered from jinja2 templates shipped in `loxi/plan/templates`.

The reports are data (`PlanReport`, `CheckReport`, `Inventory`); this module
turns them into plain dicts of display strings and lets a template do the
layout, so the wording can change without touching the logic and the JSON
output never depends on the text.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compiler.model import NODE_NS
from compiler.plan import CREATE, DELETE, MODIFY, Step
from compiler.plan import show_value as show  # one value formatter: the plan's own

if TYPE_CHECKING:
    import jinja2

    from loxi.plan.check import CheckReport
    from loxi.plan.dryrun import PlanReport
    from loxi.plan.inventory import Inventory

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
SIGNS = {CREATE: "+", MODIFY: "~", DELETE: "-"}
# Objects whose description already names every managed attribute.
SELF_DESCRIBED = frozenset({"address", "sysctl", "route"})


@cache
def environment() -> jinja2.Environment:
    from applier.templating import make_environment

    return make_environment(TEMPLATE_DIR, filters={"show": show})


def _ns_title(ns: str, node_netns: str, pod_netns: str) -> str:
    if ns == NODE_NS:
        return f"node ({node_netns})" if node_netns else "node"
    return f"pod ({pod_netns})" if pod_netns else "pod"


def _step_view(step: Step) -> dict[str, Any]:
    text = step.obj.describe()
    if step.op == CREATE and step.obj.kind not in SELF_DESCRIBED:
        attrs = [f"{c.name} {show(c.after)}" for c in step.changes if c.name != "kind"]
        text += f" ({', '.join(attrs)})" if attrs else ""
    if step.op == DELETE and step.reason:
        peer = getattr(step.obj, "peer_name", "")
        gone = f"; its peer {peer} in the pod goes with it" if step.obj.kind == "veth" and peer else ""
        text += f" ({step.reason}{gone})"
    return {
        "sign": "!" if step.conflict else SIGNS[step.op],
        "text": text,
        "conflict": step.conflict,
        "changes": [
            {"attr": c.name, "before": show(c.before), "after": show(c.after)}
            for c in step.changes
            if step.op == MODIFY
        ],
    }


def _groups(steps: list[Step] | tuple[Step, ...], node_netns: str, pod_netns: str) -> list[dict[str, Any]]:
    """Steps grouped by namespace (node first), each group in execution order."""
    order = sorted({step.ns for step in steps}, key=lambda ns: (ns != NODE_NS, ns))
    return [
        {"title": _ns_title(ns, node_netns, pod_netns), "steps": [_step_view(s) for s in steps if s.ns == ns]}
        for ns in order
    ]


def _lease_text(view: Any) -> str:
    gateway = f", gateway {view.gateway}" if view.gateway else ""
    return f"{view.address} ({view.status}{gateway})"


def plan_text(report: PlanReport) -> str:
    summary = report.summary()
    context = {
        "r": report,
        "groups": _groups(report.plan.steps, report.node_netns, report.pod_netns),
        "addresses": [_lease_text(v) for v in report.addresses.leases],
        "allocate": report.ipam_allocate,
        "release": report.ipam_release,
        "summary": summary,
    }
    return environment().get_template("plan.txt.j2").render(context)


def check_text(report: CheckReport) -> str:
    order = sorted({obj.ns for obj in report.objects}, key=lambda ns: (ns != NODE_NS, ns))
    groups = [
        {
            "title": _ns_title(ns, report.node_netns, report.pod_netns),
            "objects": [obj for obj in report.objects if obj.ns == ns],
        }
        for ns in order
    ]
    context = {
        "r": report,
        "groups": groups,
        "counts": report.counts(),
        "leases": [_lease_text(v) for v in report.addresses.leases],
    }
    return environment().get_template("check.txt.j2").render(context)


def inventory_text(inventory: Inventory) -> str:
    return environment().get_template("show.txt.j2").render({"inv": inventory})


def agent_text(agent: dict[str, Any] | None) -> str:
    """The agent's state, and what its reconciler would release and when."""
    if agent is None:
        return "\nloxi-agent: not running (calls run in-process)\n"
    ready = agent.get("ready") or {}
    failing = [name for name, ok in ready.items() if not ok]
    lines = [
        "",
        f"loxi-agent (pid {agent.get('pid')}): up since {agent.get('up_since')}, "
        f"{agent.get('requests_served')} requests served, {agent.get('in_flight')} in flight, "
        + ("ready" if not failing else f"not ready ({', '.join(failing)})"),
        f"  last error: {agent.get('last_error') or 'none'}"
        + (f" at {agent['last_error_time']}" if agent.get("last_error_time") else ""),
    ]
    engines = agent.get("engines") or []
    if len(engines) > 1:
        up = sum(1 for e in engines if e.get("serving"))
        served = ", ".join(f"{e.get('requests_served')} (pid {e.get('pid')})" for e in engines)
        lines.append(f"  engines: {up} of {len(engines)} serving; requests served by each: {served}")
    rec = agent.get("reconciler") or {}
    if not rec.get("enabled"):
        lines.append("  reconciler: off (--no-reconcile)")
    else:
        nets = ", ".join(rec.get("networks") or []) or "none yet"
        lines.append(
            f"  reconciler: every {rec.get('interval_seconds'):g} s, grace {rec.get('grace_seconds'):g} s, "
            f"networks {nets}, last pass {rec.get('last_pass') or 'not yet'}"
        )
        for c in rec.get("pending") or []:
            why = f" (last time: {c['last_skip']})" if c.get("last_skip") else ""
            lines.append(
                f"    would reclaim {c['network']} {c['container_id']}/{c.get('ifname') or '(no ifname)'} "
                f"{', '.join(c.get('ips') or []) or '(no address)'} at {c['due']}{why}"
            )
        if not rec.get("pending"):
            lines.append("    nothing to reclaim")
    return "\n".join(lines) + "\n"
