"""Plans: the ordered, typed steps that turn the observed state into the desired one.

A plan is data. The applier executes it, `loxi-plan` prints it, CHECK reads it
as a drift report; all three see the same steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from compiler.model import NetObject
from compiler.model.attrs import KIND

CREATE = "create"
MODIFY = "modify"
DELETE = "delete"


@dataclass(frozen=True)
class AttrChange:
    name: str
    before: Any
    after: Any


@dataclass(frozen=True)
class Step:
    """One operation on one object.

    `conflict` marks a step that cannot be carried out safely (the object is in
    the way and is not ours); a plan with a conflict is refused as a whole,
    before anything changes.
    """

    op: str
    obj: NetObject
    changes: tuple[AttrChange, ...] = ()
    reason: str = ""
    conflict: str = ""
    conflict_code: int = 0  # the CNI error code a conflict is reported with (0: CONFLICT)

    @property
    def ns(self) -> str:
        return self.obj.ns

    def describe(self) -> str:
        sign = {CREATE: "+", MODIFY: "~", DELETE: "-"}.get(self.op, "?")
        text = f"{sign} {self.obj.describe()}"
        if self.changes and self.op == MODIFY:
            shown = (f"{c.name}: {show_value(c.before)} → {show_value(c.after)}" for c in self.changes)
            text += " (" + ", ".join(shown) + ")"
        elif self.changes and self.op == CREATE:
            text += " (" + ", ".join(f"{c.name} {show_value(c.after)}" for c in self.changes if c.name != KIND) + ")"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "ns": self.obj.ns,
            "kind": self.obj.kind,
            "name": self.obj.name,
            "changes": [{"attr": c.name, "before": c.before, "after": c.after} for c in self.changes],
            "reason": self.reason,
            **({"conflict": self.conflict} if self.conflict else {}),
        }


def show_value(value: Any) -> str:
    """One value as plans and CHECK's messages write it: none, on/off, [a, b]."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...] = field(default_factory=tuple)

    @property
    def empty(self) -> bool:
        return not self.steps

    @property
    def conflicts(self) -> list[Step]:
        return [s for s in self.steps if s.conflict]

    def count(self, op: str) -> int:
        return sum(1 for s in self.steps if s.op == op)

    def summary(self) -> str:
        return f"{self.count(CREATE)} to create, {self.count(MODIFY)} to modify, {self.count(DELETE)} to delete"

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": [s.to_dict() for s in self.steps],
            "summary": {"create": self.count(CREATE), "modify": self.count(MODIFY), "delete": self.count(DELETE)},
        }
