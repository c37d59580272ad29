"""The sysctl kind: one /proc/sys/net value in one namespace."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from compiler.model.attrs import VALUE
from compiler.model.base import NODE_NS, NetObject


@dataclass(frozen=True)
class Sysctl(NetObject):
    """A /proc/sys/net value; written only when it differs, never reverted by DEL."""

    kind: ClassVar[str] = "sysctl"
    rank: ClassVar[int] = 3
    attributes: ClassVar[tuple[str, ...]] = (VALUE,)

    path: str  # below /proc/sys, e.g. net/ipv4/ip_forward
    value: str
    namespace: str = NODE_NS

    @property
    def ns(self) -> str:
        return self.namespace

    @property
    def shared(self) -> bool:  # type: ignore[override]
        return self.namespace == NODE_NS

    def describe(self) -> str:
        return f"sysctl {self.path} = {self.value}"

    @property
    def name(self) -> str:
        return self.path

    def desired(self) -> dict[str, Any]:
        return {VALUE: self.value}
