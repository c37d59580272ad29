"""The semantic rules of a loxi-cni conf (what its JSON Schema cannot say), one set for ADD and `loxi-plan validate`.

ADD stops at the first rule a conf breaks and answers with a CNI error (code 7,
INVALID_NETWORK_CONFIG; 2 for a key not built yet), in the wording the
reference plugin and the operators' searches know; `loxi-plan validate`
reports every rule broken, located by its JSON path, in words that say what to
do. Both wordings are kept here with the rule, so neither path can learn a rule
the other does not (the host-local rules, gateways and routes included, are
`intent.ipam_config`'s, which both call). A rule reads the raw document and
tolerates values of the wrong type: validate runs it on a conf the schema
refused too (the schema reports those).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from intent.env import validate_ifname
from intent.errors import INVALID_NETWORK_CONFIG, UNSUPPORTED_FIELD, CniError

MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
MIN_MTU = 68
# Keys whose feature is not built yet: setting them must not be silently ignored.
NOT_YET_SUPPORTED: tuple[str, ...] = ()
INVALID = "invalid network config"


@dataclass(frozen=True)
class Violation:
    """One broken rule: where, what validate says, and the CNI error ADD answers with."""

    path: tuple[str | int, ...]
    report: str  # loxi-plan validate's message
    msg: str  # ADD's CNI error message
    details: str = ""
    code: int = INVALID_NETWORK_CONFIG

    def error(self) -> CniError:
        return CniError(self.code, self.msg, self.details)


def _int(value: Any) -> int | None:
    """A JSON integer (booleans are ints in Python, not in JSON)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def mac_problem(value: str) -> tuple[str, str] | None:
    """(what is wrong, what to do) with a MAC address a conf or CNI_ARGS gives, None when it is usable."""
    if not MAC_RE.match(value):
        return f"invalid MAC address {value!r}", "expected six hex pairs like 0a:58:0a:f4:01:05"
    if int(value.split(":")[0], 16) & 1:
        return f"{value} is a multicast address", "a pod MAC must be unicast"
    return None


def _not_yet(doc: Mapping[str, Any]) -> Iterator[Violation]:
    for key in NOT_YET_SUPPORTED:
        if doc.get(key):
            yield Violation(
                (key,),
                f"{key} is not supported by this loxi-cni version: the plugin refuses the conf",
                f"{key} is not supported by this loxi-cni version",
                f"{key}={doc[key]!r}",
                UNSUPPORTED_FIELD,
            )


def _interface_name(key: str) -> Callable[[Mapping[str, Any]], Iterator[Violation]]:
    """The rule for a conf key that names a Linux interface (`bridge`, `uplink`)."""

    def rule(doc: Mapping[str, Any]) -> Iterator[Violation]:
        name = doc.get(key)
        if isinstance(name, str) and name:
            try:
                validate_ifname(name)
            except CniError as err:
                report = f"{err.msg}: {name!r} cannot be a Linux interface name"
                yield Violation((key,), report, f"{INVALID}: {key}: {err.msg}", name)

    return rule


def _vlan(doc: Mapping[str, Any]) -> Iterator[Violation]:
    vlan_id, vlan = _int(doc.get("vlanID")), _int(doc.get("vlan"))
    if vlan_id and vlan and vlan_id != vlan:
        what = f"vlanID ({vlan_id}) and vlan ({vlan}) disagree"
        yield Violation(("vlan",), f"{what}: set only one of them", f"{INVALID}: {what}")


def _mtu(doc: Mapping[str, Any]) -> Iterator[Violation]:
    mtu = _int(doc.get("mtu"))
    if mtu and 0 < mtu < MIN_MTU:
        report = f"mtu {mtu} is below the minimum of {MIN_MTU} (0 keeps the kernel's default)"
        yield Violation(("mtu",), report, f"{INVALID}: mtu: {mtu} is below the minimum of {MIN_MTU}")


def _hairpin(doc: Mapping[str, Any]) -> Iterator[Violation]:
    if doc.get("hairpinMode") is True and doc.get("promiscMode") is True:
        yield Violation(
            ("promiscMode",),
            "promiscMode cannot be combined with hairpinMode (the plugin refuses the pair)",
            "cannot set hairpin mode and promiscuous mode at the same time",  # the reference's words
        )


def _uplink_vlan(doc: Mapping[str, Any]) -> Iterator[Violation]:
    if isinstance(doc.get("uplink"), str) and doc["uplink"] and not (_int(doc.get("vlanID")) or _int(doc.get("vlan"))):
        yield Violation(("uplink",), "uplink needs vlanID (or vlan)", f"{INVALID}: uplink needs vlanID (or vlan)")


def _container_interface(doc: Mapping[str, Any]) -> Iterator[Violation]:
    ipam = doc.get("ipam")
    if doc.get("disableContainerInterface") and isinstance(ipam, Mapping) and ipam.get("type"):
        what = "disableContainerInterface cannot be used with ipam"
        yield Violation(("disableContainerInterface",), what, f"{INVALID}: {what}")


# In the order ADD checks them (its error is the first one).
RULES: tuple[Callable[[Mapping[str, Any]], Iterator[Violation]], ...] = (
    _not_yet,
    _interface_name("bridge"),
    _vlan,
    _mtu,
    _hairpin,
    _interface_name("uplink"),
    _uplink_vlan,
    _container_interface,
)


def violations(doc: Mapping[str, Any]) -> Iterator[Violation]:
    """Every rule `doc` breaks, lazily, in ADD's order."""
    for rule in RULES:
        yield from rule(doc)


def require_valid(doc: Mapping[str, Any]) -> None:
    """ADD's use: raise the first broken rule's CNI error."""
    for violation in violations(doc):
        raise violation.error()
