"""The sysctl driver: /proc/sys/net values, read and written inside their namespace.

/proc/sys/net shows the network namespace of the thread that opens the file, so
every read and write here runs inside `Namespaces.inside(ns)`. A value is
written only when it differs; the node's are shared and never put back, a
pod's old value is put back by a rollback.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from applier.drivers.base import Applying, Driver, register, sets
from compiler.model import NODE_NS, Observed, Sysctl
from compiler.model.attrs import VALUE
from compiler.plan import AttrChange

if TYPE_CHECKING:
    from applier.observer import Observer


def sysctl_file(path: str) -> str:
    """`net/ipv4/ip_forward` → `/proc/sys/net/ipv4/ip_forward`, refusing escapes."""
    parts = path.split("/")
    if parts[0] != "net" or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"not a net sysctl: {path!r}")
    return os.path.join("/proc/sys", *parts)


def read_sysctl(path: str) -> str | None:
    try:
        with open(sysctl_file(path), encoding="ascii") as handle:
            return handle.read().strip()
    except FileNotFoundError:
        return None


def write_sysctl(path: str, value: str) -> None:
    with open(sysctl_file(path), "w", encoding="ascii") as handle:
        handle.write(value)


@register
class SysctlDriver(Driver):
    kinds = (Sysctl,)

    def observe(self, observer: Observer, obj: Sysctl) -> Observed | None:
        if not observer.ns.has(obj.ns):
            return None
        with observer.ns.inside(obj.ns):
            value = read_sysctl(obj.path)
        return None if value is None else Observed({VALUE: value})

    def create(self, ctx: Applying, obj: Sysctl) -> None:
        with ctx.ns.inside(obj.ns):
            before = read_sysctl(obj.path)
            if before != obj.value:
                write_sysctl(obj.path, obj.value)
        if before is not None and before != obj.value and obj.ns != NODE_NS:
            ctx.push(f"sysctl {obj.path}", lambda: self._restore(ctx, obj, before))

    @sets(VALUE)
    def _value(self, ctx: Applying, obj: Sysctl, change: AttrChange) -> None:
        self.create(ctx, obj)

    @staticmethod
    def _restore(ctx: Applying, obj: Sysctl, value: str) -> None:
        with ctx.ns.inside(obj.ns):
            write_sysctl(obj.path, value)
