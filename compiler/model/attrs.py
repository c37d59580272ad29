"""The names of the attributes and facts loxi-cni manages, declared once.

The kinds' `desired()` and `attributes`, the applier's observers and setters,
the diff and the plan all spell an attribute through these constants: a name
misspelt in one of them is an import error, not an attribute that is compared
but never set (ADD succeeding and CHECK failing on it).
"""

from __future__ import annotations

# Attributes: what `desired()` wants and an observation reports.
KIND = "kind"  # the link's kind: compared first, never changed in place
UP = "up"
MTU = "mtu"
MAC = "mac"
PROMISC = "promisc"
VLAN_FILTERING = "vlan_filtering"
PEER = "peer"  # the other end of a veth: a wrong one is never modified in place
MASTER = "master"
HAIRPIN = "hairpin"
ISOLATED = "isolated"
VLAN_ID = "vlan_id"
PARENT = "parent"
VLANS = "vlans"
PREFIXLEN = "prefixlen"
GATEWAY = "gateway"
VALUE = "value"
RULES = "rules"
RULE = "rule"

# Facts: what an observation records beside the attributes, for the diff and the result.
INDEX = "index"
IPV4 = "ipv4"  # a link's IPv4 addresses, "address/prefix"
PROTO = "proto"
