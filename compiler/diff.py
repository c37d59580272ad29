"""Diff a desired state against an observed snapshot: the plan, or the drift.

Pure function over data. ADD executes the plan it returns; CHECK expects it to
be empty and turns any step into a drift message; `loxi-plan` prints it.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from compiler.graph import DesiredState
from compiler.model import (
    NODE_NS,
    Address,
    Bridge,
    HostVeth,
    NetObject,
    ObjectKey,
    Observed,
    PodLink,
    PortVlans,
    Snapshot,
    VlanDevice,
    parse_vlans,
)
from compiler.plan import CREATE, DELETE, MODIFY, AttrChange, Plan, Step
from intent.errors import MISSING_OBJECT


def _link_key(obj: Address) -> ObjectKey:
    kind = "bridge" if obj.namespace == NODE_NS else "link"
    return ObjectKey(obj.namespace, kind, obj.link)


def _attr_changes(obj: NetObject, observed: Observed) -> list[AttrChange]:
    changes = []
    for name, want in obj.desired().items():
        if name in obj.create_only or name == "kind":
            continue
        have = observed.attrs.get(name)
        if isinstance(obj, PortVlans) and not obj.exact:
            have_vids = parse_vlans(have)
            if all(have_vids.get(vid) == flags for vid, flags in parse_vlans(want).items()):
                continue
        if have != want:
            changes.append(AttrChange(name, have, want))
    return changes


def _creation(obj: NetObject) -> Step:
    changes = tuple(AttrChange(name, None, value) for name, value in obj.desired().items())
    return Step(CREATE, obj, changes, reason="missing")


def _address_steps(obj: Address, snapshot: Snapshot) -> list[Step]:
    """IPv4 on the bridge is exclusive, as in the reference: another address is a
    conflict unless forceAddress, which replaces it."""
    link = snapshot.get(_link_key(obj))
    if obj.interface.version != 4 or obj.namespace != NODE_NS or link is None:
        return []
    others = [a for a in link.facts.get("ipv4", []) if ipaddress.ip_interface(a).ip != obj.interface.ip]
    steps = []
    for other in others:
        stale = Address(link=obj.link, interface=ipaddress.ip_interface(other))
        if obj.exclusive_ipv4:
            steps.append(Step(DELETE, stale, reason=f"forceAddress: {obj.link} must carry only {obj.interface}"))
        else:
            conflict = f'"{obj.link}" already has an IP address different from {obj.interface}: {other}'
            steps.append(Step(CREATE, obj, reason="conflicting address", conflict=conflict))
    return steps


def _peer_mismatch(obj: NetObject, observed: Observed) -> bool:
    return isinstance(obj, HostVeth | PodLink) and observed.attrs.get("peer") != obj.desired()["peer"]


def diff(desired: DesiredState, snapshot: Snapshot) -> Plan:
    """Steps, in execution order: deletions first (reverse order), then the rest."""
    deletions: list[Step] = []
    forward: list[Step] = []
    for obj in desired.order():
        observed = snapshot.get(obj.key)
        if isinstance(obj, Address):
            for step in _address_steps(obj, snapshot):
                (deletions if step.op == DELETE else forward).append(step)
        if observed is None:
            if not obj.creatable:
                conflict = f"{obj.kind} {obj.name} does not exist in the node namespace"
                forward.append(Step(CREATE, obj, reason="missing", conflict=conflict, conflict_code=MISSING_OBJECT))
            else:
                forward.append(_creation(obj))
            continue
        have_kind = observed.attrs.get("kind")
        want_kind = obj.desired().get("kind")
        if want_kind and have_kind != want_kind:
            what = "a bridge" if isinstance(obj, Bridge) else f"a {want_kind}"
            forward.append(
                Step(CREATE, obj, reason="wrong kind", conflict=f'"{obj.name}" already exists but is not {what}')
            )
            continue
        if isinstance(obj, VlanDevice) and (
            observed.attrs.get("vlan_id") != obj.vlan_id or observed.attrs.get("parent") != obj.parent
        ):
            have = f"VLAN {observed.attrs.get('vlan_id')} on {observed.attrs.get('parent')}"
            conflict = f"{obj.name} exists as {have}, want VLAN {obj.vlan_id} on {obj.parent}: cannot change in place"
            forward.append(Step(MODIFY, obj, reason="immutable attribute", conflict=conflict))
            continue
        if _peer_mismatch(obj, observed):
            if isinstance(obj, PodLink):
                conflict = f"{obj.name} already exists in the pod namespace and is not the peer of {obj.peer_name}"
                forward.append(Step(CREATE, obj, reason="name taken", conflict=conflict))
            else:
                reason = f"its peer is not {obj.desired()['peer']} in the pod namespace"
                deletions.append(Step(DELETE, obj, reason=reason))
                forward.append(_creation(obj))
            continue
        changes = _attr_changes(obj, observed)
        if changes:
            forward.append(Step(MODIFY, obj, tuple(changes), reason="differs"))
    for obj in reversed(desired.absent):
        observed = snapshot.get(obj.key)
        want_kind = obj.desired().get("kind")
        # A teardown removes only what is of its kind (DEL's CNI_IFNAME: a veth, never another plugin's device).
        if observed is not None and (not want_kind or observed.attrs.get("kind") == want_kind):
            deletions.append(Step(DELETE, obj, reason="teardown"))
    return Plan(tuple(deletions + forward))


def _where(step: Step, netns: str) -> str:
    return f"{step.obj.name} in {netns}" if step.ns != NODE_NS else step.obj.name


def drift_messages(plan: Plan, netns: str) -> list[str]:
    """CHECK's report: one message per drifted object or attribute."""
    messages = []
    for step in plan.steps:
        obj = step.obj
        if step.conflict:
            messages.append(step.conflict)
        elif step.op == CREATE and isinstance(obj, Address):
            where = f"{obj.link} in {netns}" if step.ns != NODE_NS else obj.link
            messages.append(f"{where}: address {obj.interface} missing")
        elif step.op == CREATE:
            messages.append(f"{_where(step, netns)}: {obj.kind} missing")
        elif step.op == DELETE:
            messages.append(f"{_where(step, netns)}: {step.reason}")
        else:
            for change in step.changes:
                messages.append(
                    f"{_where(step, netns)}: {change.name} is {_text(change.before)}, want {_text(change.after)}"
                )
    return messages


def _text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)
