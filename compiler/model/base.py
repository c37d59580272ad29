"""The base of every object kind: identity, the declarations the diff reads, observations.

A kind says here, as data, what the diff would otherwise have to know about it
by `isinstance`: which attributes it manages, which are set only at creation,
which cannot change in place, whether a wrong object of its name is replaced,
and which other objects it cannot share its link with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

from intent.iptypes import IPAddress, IPInterface, IPNetwork  # noqa: F401  (re-exported)

NODE_NS = "node"
POD_NS = "pod"
# Routes loxi-cni installs carry this protocol number, so they are told apart
# from routes the kernel or another agent made (`ip route` shows "proto 76").
LOXI_ROUTE_PROTO = 76


@dataclass(frozen=True, order=True)
class ObjectKey:
    """Identity of an object: namespace, kind and a name unique within both."""

    ns: str
    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.ns}/{self.kind}/{self.name}"


@dataclass
class Observed:
    """What the kernel has for one object: the managed attributes plus facts the
    diff needs (the link's other IPv4 addresses, its MAC). Pure data."""

    attrs: dict[str, Any]
    facts: dict[str, Any] = field(default_factory=dict)


Snapshot = dict[ObjectKey, Observed | None]


@dataclass(frozen=True)
class NetObject:
    """Base of every graph node.

    `shared` objects serve every pod on the bridge: teardown never removes them
    and a rollback removes them only when no other pod has come to use them.
    `create_only` attributes are applied when the object is created and are not
    enforced on an object that already exists (the reference plugin leaves an
    existing bridge's MTU alone, and so do we).
    """

    kind: ClassVar[str] = "object"
    rank: ClassVar[int] = 0  # tie-breaker for the topological order
    shared: ClassVar[bool] = False
    creatable: ClassVar[bool] = True  # False: must already exist (the node's uplink)
    # Every attribute `desired()` may name (compiler.model.attrs); the applier has a setter for each.
    attributes: ClassVar[tuple[str, ...]] = ()
    create_only: ClassVar[frozenset[str]] = frozenset()
    # Cannot change in place: an existing object that differs in one is a conflict.
    immutable: ClassVar[tuple[str, ...]] = ()
    # An existing object of this name with the wrong peer is ours (its name is our
    # hash): it is deleted and created again. Otherwise the name is taken: a conflict.
    replaceable: ClassVar[bool] = False

    @property
    def ns(self) -> str:
        return NODE_NS

    @property
    def name(self) -> str:
        raise NotImplementedError

    @cached_property
    def key(self) -> ObjectKey:
        """Computed once per object (the fields it is made of are frozen): the graph, the diff
        and the drivers ask it tens of times a call."""
        return ObjectKey(self.ns, self.kind, self.name)

    @property
    def guard_bridge(self) -> str:
        """The bridge whose pods keep a rollback from undoing this (shared) object."""
        return ""

    def desired(self) -> dict[str, Any]:
        """The managed attributes and their wanted values."""
        return {}

    def describe(self) -> str:
        return f"{self.kind} {self.name}"

    def satisfied(self, name: str, have: Any, want: Any) -> bool:
        """Does the observed value of attribute `name` meet the wanted one?"""
        return have == want

    def immutable_text(self, attrs: dict[str, Any]) -> str:
        """The immutable attributes of `attrs`, for the conflict message."""
        return ", ".join(f"{name} {attrs.get(name)}" for name in self.immutable)

    def drift_subject(self) -> tuple[str, str]:
        """(where, what) for CHECK's "missing" message: `<where>: <what> missing`."""
        return self.name, self.kind

    def rivals(self, snapshot: Snapshot) -> list[Rival]:
        """Objects the kernel has that this one cannot coexist with (none for most kinds)."""
        return []


@dataclass(frozen=True)
class Rival:
    """An object in the way of another: removed (`evict`, with the reason) or a conflict."""

    obj: NetObject
    evict: str = ""
    conflict: str = ""
