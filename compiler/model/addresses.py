"""The address kind: an IP address on a link, and the node's IPv4 exclusivity rule."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, ClassVar

from compiler.model.attrs import IPV4, PREFIXLEN
from compiler.model.base import NODE_NS, IPInterface, NetObject, ObjectKey, Rival, Snapshot


@dataclass(frozen=True)
class Address(NetObject):
    """An IP address on a link; `exclusive_ipv4` replaces other IPv4 addresses (forceAddress)."""

    kind: ClassVar[str] = "address"
    rank: ClassVar[int] = 2
    attributes: ClassVar[tuple[str, ...]] = (PREFIXLEN,)

    link: str
    interface: IPInterface
    namespace: str = NODE_NS
    exclusive_ipv4: bool = False

    @property
    def ns(self) -> str:
        return self.namespace

    @property
    def name(self) -> str:
        return f"{self.interface.ip} dev {self.link}"

    @property
    def shared(self) -> bool:  # type: ignore[override]
        return self.namespace == NODE_NS

    @property
    def guard_bridge(self) -> str:
        return self.link

    @property
    def link_key(self) -> ObjectKey:
        """The link it is on: the bridge in the node's namespace, CNI_IFNAME in the pod's."""
        return ObjectKey(self.namespace, "bridge" if self.namespace == NODE_NS else "link", self.link)

    def desired(self) -> dict[str, Any]:
        return {PREFIXLEN: self.interface.network.prefixlen}

    def describe(self) -> str:
        return f"address {self.interface} on {self.link}"

    def drift_subject(self) -> tuple[str, str]:
        return self.link, f"address {self.interface}"

    def rivals(self, snapshot: Snapshot) -> list[Rival]:
        """IPv4 on the bridge is exclusive, as in the reference: another address is a
        conflict unless forceAddress, which replaces it."""
        link = snapshot.get(self.link_key)
        if self.interface.version != 4 or self.namespace != NODE_NS or link is None:
            return []
        found = []
        for other in link.facts.get(IPV4, []):
            if ipaddress.ip_interface(other).ip == self.interface.ip:
                continue
            stale = Address(link=self.link, interface=ipaddress.ip_interface(other))
            if self.exclusive_ipv4:
                found.append(Rival(stale, evict=f"forceAddress: {self.link} must carry only {self.interface}"))
            else:
                conflict = f'"{self.link}" already has an IP address different from {self.interface}: {other}'
                found.append(Rival(stale, conflict=conflict))
        return found
