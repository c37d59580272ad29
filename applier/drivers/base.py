"""The driver interface and its registry: one driver per object kind, found by model class.

A driver knows one family of kinds end to end: how the kernel's state of such
an object is read (`observe`, into `compiler.model.Observed`), and how each
step on it is carried out and undone (`create`, `delete`, and one setter per
attribute a MODIFY may change, each pushing its inverse on the executor's undo
stack). The executor only looks the driver up by the step's model class: a
kind without a driver, an operation the driver lacks, or an attribute without
a setter raises `UnhandledChange`, which the executor reports as an internal
error (CNI code 110); nothing is silently skipped, so an ADD can never succeed
while leaving an attribute that CHECK then reports as drift.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from compiler.model import NetObject, Observed
from compiler.plan import CREATE, DELETE, MODIFY, AttrChange, Step

if TYPE_CHECKING:
    from applier.netns import Namespaces
    from applier.observer import Observer

FEATURE_VLAN_FILTERING = "bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING)"
FEATURE_8021Q = "802.1Q VLAN devices (CONFIG_VLAN_8021Q)"


class UnhandledChange(Exception):
    """A step the applier has no code for: a bug in loxi-cni, never a kernel's refusal."""


class Applying(Protocol):
    """What a driver may use while the executor runs a step (`applier.execute.Executor`)."""

    ns: Namespaces
    enable_dad: bool

    def ipr(self, ns: str) -> Any: ...

    def index(self, ns: str, name: str) -> int: ...

    def delete_link(self, ns: str, name: str) -> None: ...

    def push(self, description: str, action: Callable[[], None], obj: NetObject | None = None) -> None: ...

    def created_bridge(self) -> None: ...

    def created_link(self, ns: str, name: str, mac: str, mtu: int) -> None: ...


Setter = Callable[[Any, Applying, Any, AttrChange], None]
_OPERATIONS = {CREATE: "create", DELETE: "delete"}  # MODIFY: the setters


def sets(*names: str) -> Callable[[Setter], Setter]:
    """Mark a driver method as the setter of these attributes (compiler.model.attrs)."""

    def mark(method: Setter) -> Setter:
        method.sets = names  # type: ignore[attr-defined]
        return method

    return mark


class Driver:
    """How one family of kinds is observed and changed. Subclasses name their `kinds`."""

    kinds: ClassVar[tuple[type[NetObject], ...]] = ()
    # The kernel feature an EOPNOTSUPP on this driver's steps means is missing ("" : none in particular).
    feature: ClassVar[str] = ""
    setters: ClassVar[dict[str, Setter]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.setters = {}
        for klass in reversed(cls.__mro__):
            for method in vars(klass).values():
                for name in getattr(method, "sets", ()):
                    cls.setters[name] = method

    def observe(self, observer: Observer, obj: Any) -> Observed | None:
        raise UnhandledChange(f"no observer for {obj.describe()}")

    def apply(self, ctx: Applying, step: Step) -> None:
        if step.op == CREATE:
            self.create(ctx, step.obj)
        elif step.op == DELETE:
            self.delete(ctx, step.obj)
        elif step.op == MODIFY:
            self.modify(ctx, step)
        else:
            raise UnhandledChange(f"{step.obj.describe()}: no operation {step.op!r}")

    def check(self, step: Step) -> None:
        """Raise UnhandledChange unless this driver can carry `step` out (run before the plan's first step)."""
        if step.op == MODIFY:
            for change in step.changes:
                self.setter(step, change.name)
            return
        method = _OPERATIONS.get(step.op, "")
        if not method or getattr(type(self), method) is getattr(Driver, method):
            raise UnhandledChange(f"{step.obj.describe()}: {type(self).__name__} has no operation {step.op!r}")

    def create(self, ctx: Applying, obj: Any) -> None:
        raise UnhandledChange(f"{type(self).__name__} cannot create {obj.describe()}")

    def delete(self, ctx: Applying, obj: Any) -> None:
        raise UnhandledChange(f"{type(self).__name__} cannot delete {obj.describe()}")

    def ordered(self, changes: Iterable[AttrChange]) -> list[AttrChange]:
        """The order a MODIFY's changes are applied in (the plan's, unless a driver knows better)."""
        return list(changes)

    def modify(self, ctx: Applying, step: Step) -> None:
        """Every change through its setter; all are checked before the first is applied."""
        changes = self.ordered(step.changes)
        setters = [self.setter(step, change.name) for change in changes]
        for setter, change in zip(setters, changes, strict=True):
            setter(self, ctx, step.obj, change)

    def setter(self, step: Step, name: str) -> Setter:
        setter = self.setters.get(name)
        if setter is None:
            raise UnhandledChange(f"{step.describe()}: {type(self).__name__} has no setter for {name!r}")
        return setter


_DRIVERS: dict[type[NetObject], Driver] = {}


def register(cls: type[Driver]) -> type[Driver]:
    """Class decorator: one instance of the driver serves each of its `kinds`."""
    driver = cls()
    for kind in cls.kinds:
        if kind in _DRIVERS:
            raise RuntimeError(f"{kind.__name__} has two drivers: {type(_DRIVERS[kind]).__name__}, {cls.__name__}")
        _DRIVERS[kind] = driver
    return cls


def driver_for(kind: type[NetObject]) -> Driver:
    """The driver of a model class; UnhandledChange when it has none."""
    driver = _DRIVERS.get(kind)
    if driver is None:
        raise UnhandledChange(f"no driver for the kind {kind.__name__}")
    return driver


def registered() -> dict[type[NetObject], Driver]:
    """Every model class with its driver (a copy)."""
    return dict(_DRIVERS)
