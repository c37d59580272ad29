"""The IPRoute calls loxi-cni makes that its own socket does not encode, each named, each going to IPRoute.

It exists so that leaving the fast path is visible: `RtnlSocket` (applier.
netlink.socket) encodes a pod's plain requests itself, and every other call
the code makes is one of the methods below, which open pyroute2's full IPRoute
in the socket's namespace on first use (asyncio and every message family,
~100 ms of imports, ~0.3 ms of Python per request) and hand it the call
unchanged. There is no generic fallback: a method named nowhere here or in the
socket raises AttributeError, so a new call to IPRoute is a new method here,
with the place that needs it (tests/integration/test_netlink_fallbacks.py
holds each to IPRoute's answer on a real kernel). A `link`, `addr` or `route`
call outside the encoded set (a bridge or VLAN device to create, VLAN
filtering) also goes to `iproute()`, from the socket's `_call`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class IPRouteFallbacks:
    """Mixin of `RtnlSocket`: the calls it leaves to IPRoute (see the module docstring)."""

    _iproute: Any
    _open_iproute: Callable[[], Any]

    def iproute(self) -> Any:
        """The full pyroute2 IPRoute in this namespace, opened on first use."""
        if self._iproute is None:
            self._iproute = self._open_iproute()
        return self._iproute

    def brport(self, command: str, **kwarg: Any) -> Any:
        """A bridge port's flags (hairpin `mode`, `isolated`): the veth driver of applier.execute."""
        return self.iproute().brport(command, **kwarg)

    def vlan_filter(self, command: str, **kwarg: Any) -> Any:
        """A bridge port's VLANs (`vlan_info`): the port-VLAN driver of applier.execute."""
        return self.iproute().vlan_filter(command, **kwarg)

    def get_vlans(self, **kwarg: Any) -> Any:
        """The bridge ports' VLAN entries (an AF_BRIDGE dump): applier.observe.read_port_vlans."""
        return self.iproute().get_vlans(**kwarg)

    def get_links(self, *indexes: Any, **kwarg: Any) -> Any:
        """Every link of the namespace (a full dump): loxi.node.facts.read_links, for inventory and GC."""
        return self.iproute().get_links(*indexes, **kwarg)

    def get_netnsid(self, **kwarg: Any) -> Any:
        """The id this namespace gives another (`fd=`): loxi.node.facts, to find a veth's peer namespace."""
        return self.iproute().get_netnsid(**kwarg)
