"""The IP type aliases every layer annotates with: one definition, in the bottom layer.

`ipaddress` has a class per family; an address, network or interface of either
family is one of two. The intent (IPAM config), the compiler's model and the
node's liveness rules all name these unions, so they are defined once here.
Standard library only: this sits on the cold path.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Interface, IPv6Network

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network
IPInterface = IPv4Interface | IPv6Interface

__all__ = ["IPAddress", "IPInterface", "IPNetwork"]
