"""The typed objects of a desired-state graph.

Each object names one thing in one network namespace (`node` is the namespace
the plugin runs in, `pod` is CNI_NETNS) and the attributes loxi-cni manages on
it. Attributes not listed are never read or written, so a pod's later changes by
other plugins (a chained portmap, a service mesh) are not drift.

One module per kind family (links, vlans, addresses, routes, sysctls,
netfilter), mirrored by one driver each in `applier.drivers`; the attribute
names in `compiler.model.attrs`; the base and its declarations in
`compiler.model.base`. Everything is re-exported here: `from compiler.model
import Bridge` is the one spelling importers use.
"""

from __future__ import annotations

from compiler.model.addresses import Address
from compiler.model.base import (
    LOXI_ROUTE_PROTO,
    NODE_NS,
    POD_NS,
    IPAddress,
    IPInterface,
    IPNetwork,
    NetObject,
    ObjectKey,
    Observed,
    Rival,
    Snapshot,
)
from compiler.model.intents import AddressLease, Attachment, RouteIntent, attachment_digest
from compiler.model.links import Bridge, HostVeth, PodLink, Uplink
from compiler.model.netfilter import Masquerade, SpoofCheck
from compiler.model.routes import Route
from compiler.model.sysctls import Sysctl
from compiler.model.vlans import PortVlans, VlanDevice, format_vlans, parse_vlans

__all__ = [
    "LOXI_ROUTE_PROTO",
    "NODE_NS",
    "POD_NS",
    "Address",
    "AddressLease",
    "Attachment",
    "Bridge",
    "HostVeth",
    "IPAddress",
    "IPInterface",
    "IPNetwork",
    "Masquerade",
    "NetObject",
    "ObjectKey",
    "Observed",
    "PodLink",
    "PortVlans",
    "Rival",
    "Route",
    "RouteIntent",
    "Snapshot",
    "SpoofCheck",
    "Sysctl",
    "Uplink",
    "VlanDevice",
    "attachment_digest",
    "format_vlans",
    "parse_vlans",
]
