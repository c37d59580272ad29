"""Diff a desired state against an observed snapshot: the plan, or the drift.

Pure function over data. ADD executes the plan it returns; CHECK expects it to
be empty and turns any step into a drift message; `loxi-plan` prints it.
"""

from __future__ import annotations

from compiler.graph import DesiredState
from compiler.model import NODE_NS, NetObject, Observed, Snapshot
from compiler.model.attrs import KIND, PEER
from compiler.plan import CREATE, DELETE, MODIFY, AttrChange, Plan, Step, show_value
from intent.errors import MISSING_OBJECT


def _attr_changes(obj: NetObject, observed: Observed) -> list[AttrChange]:
    changes = []
    for name, want in obj.desired().items():
        if name in obj.create_only or name == KIND:
            continue
        have = observed.attrs.get(name)
        if not obj.satisfied(name, have, want):
            changes.append(AttrChange(name, have, want))
    return changes


def _creation(obj: NetObject) -> Step:
    changes = tuple(AttrChange(name, None, value) for name, value in obj.desired().items())
    return Step(CREATE, obj, changes, reason="missing")


def _rival_steps(obj: NetObject, snapshot: Snapshot) -> list[Step]:
    """What stands in the way of `obj` (another IPv4 address on the bridge): removed, or a conflict."""
    steps = []
    for rival in obj.rivals(snapshot):
        if rival.evict:
            steps.append(Step(DELETE, rival.obj, reason=rival.evict))
        else:
            steps.append(Step(CREATE, obj, reason=f"conflicting {obj.kind}", conflict=rival.conflict))
    return steps


def _existing_steps(obj: NetObject, observed: Observed, deletions: list[Step], forward: list[Step]) -> None:
    """The steps for an object the kernel has: a conflict, a replacement, or the attributes that differ."""
    want = obj.desired()
    want_kind = want.get(KIND)
    if want_kind and observed.attrs.get(KIND) != want_kind:
        forward.append(
            Step(CREATE, obj, reason="wrong kind", conflict=f'"{obj.name}" already exists but is not a {want_kind}')
        )
        return
    if any(observed.attrs.get(name) != want.get(name) for name in obj.immutable):
        conflict = (
            f"{obj.name} exists as {obj.immutable_text(observed.attrs)}, want {obj.immutable_text(want)}: "
            "cannot change in place"
        )
        forward.append(Step(MODIFY, obj, reason="immutable attribute", conflict=conflict))
        return
    if PEER in want and observed.attrs.get(PEER) != want[PEER]:
        if obj.replaceable:
            deletions.append(Step(DELETE, obj, reason=f"its peer is not {want[PEER]} in the pod namespace"))
            forward.append(_creation(obj))
        else:
            conflict = f"{obj.name} already exists in the {obj.ns} namespace and is not the peer of {want[PEER]}"
            forward.append(Step(CREATE, obj, reason="name taken", conflict=conflict))
        return
    changes = _attr_changes(obj, observed)
    if changes:
        forward.append(Step(MODIFY, obj, tuple(changes), reason="differs"))


def diff(desired: DesiredState, snapshot: Snapshot) -> Plan:
    """Steps, in execution order: deletions first (reverse order), then the rest."""
    deletions: list[Step] = []
    forward: list[Step] = []
    for obj in desired.order():
        observed = snapshot.get(obj.key)
        for step in _rival_steps(obj, snapshot):
            (deletions if step.op == DELETE else forward).append(step)
        if observed is None:
            if not obj.creatable:
                conflict = f"{obj.kind} {obj.name} does not exist in the node namespace"
                forward.append(Step(CREATE, obj, reason="missing", conflict=conflict, conflict_code=MISSING_OBJECT))
            else:
                forward.append(_creation(obj))
            continue
        _existing_steps(obj, observed, deletions, forward)
    for obj in reversed(desired.absent):
        observed = snapshot.get(obj.key)
        want_kind = obj.desired().get(KIND)
        # A teardown removes only what is of its kind (DEL's CNI_IFNAME: a veth, never another plugin's device).
        if observed is not None and (not want_kind or observed.attrs.get(KIND) == want_kind):
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
        elif step.op == CREATE:
            where, what = obj.drift_subject()
            messages.append(f"{where if step.ns == NODE_NS else f'{where} in {netns}'}: {what} missing")
        elif step.op == DELETE:
            messages.append(f"{_where(step, netns)}: {step.reason}")
        else:
            where = _where(step, netns)
            for change in step.changes:
                have, want = show_value(change.before), show_value(change.after)
                messages.append(f"{where}: {change.name} is {have}, want {want}")
    return messages
