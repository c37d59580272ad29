"""What IPAM hands the engine, whichever implementation served it.

Plain frozen data shared by host-local, the delegate and their callers, so the
engine and `loxi-plan` read one shape (`applier.ipam` says how it is made).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface
from typing import Any

from intent.ipam_values import IpamRoute
from intent.iptypes import IPAddress


@dataclass(frozen=True)
class Lease:
    """One address held by an attachment; `address` keeps the host bits with the subnet's prefix."""

    address: IPv4Interface | IPv6Interface
    gateway: IPv4Address | IPv6Address | None
    range_set_index: int

    @property
    def ip(self) -> IPAddress:
        return self.address.ip


@dataclass(frozen=True)
class IpamResult:
    leases: tuple[Lease, ...]
    routes: tuple[IpamRoute, ...] = ()
    # CNI result form {nameservers, domain, search, options}, only non-empty keys.
    dns: Mapping[str, Any] = field(default_factory=dict)
    # True when every lease was already held by this attachment (a retried ADD).
    reused: bool = False
    # host-local: the leases this ADD took (not found held); a failed ADD gives back these only.
    reserved: tuple[Lease, ...] = field(default=(), compare=False)  # how this result came about, not what it is


@dataclass(frozen=True)
class GcOutcome:
    """What a GC released (`address <ip>`, for logs and tests) and what it could not, to report together."""

    removed: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    # (container id, ifname) of each attachment whose lease was released: the engine tears these down
    # (veth, netfilter rules) with DEL's plan, a pod that vanished without DEL having no port to find.
    released: tuple[tuple[str, str], ...] = ()
