"""The route kind: a route of ours in the pod, via the attachment's link."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from compiler.model.attrs import GATEWAY
from compiler.model.base import POD_NS, IPAddress, IPNetwork, NetObject


@dataclass(frozen=True)
class Route(NetObject):
    """A route in the pod via the attachment's link. Two routes to one destination
    (two defaults via two gateways) are two objects, both installed: the compiler
    marks them `via_in_name`, so the gateway is part of their names (and keys); a
    lone route keeps the short name `<dst> dev <link>`. Only a route of ours (LOXI_ROUTE_PROTO, on `dev`,
    via `gateway`) is this object: the kernel's connected route to the same subnet,
    another attachment's default route, someone else's route are never read as it,
    replaced by it, or removed with it."""

    kind: ClassVar[str] = "route"
    rank: ClassVar[int] = 8
    attributes: ClassVar[tuple[str, ...]] = (GATEWAY,)

    dst: IPNetwork
    dev: str
    gateway: IPAddress | None = None
    namespace: str = POD_NS
    via_in_name: bool = False  # another route of the graph has the same dst and dev

    @property
    def ns(self) -> str:
        return self.namespace

    @property
    def name(self) -> str:
        via = f" via {self.gateway}" if self.gateway and self.via_in_name else ""
        return f"{self.dst}{via} dev {self.dev}"

    def desired(self) -> dict[str, Any]:
        return {GATEWAY: str(self.gateway) if self.gateway else None}

    def describe(self) -> str:
        via = f" via {self.gateway}" if self.gateway else ""
        return f"route {self.dst}{via} dev {self.dev}"
