"""The semantic rules of a loxi-cni conf: what its JSON Schema cannot say.

Each rule returns every problem it sees, with the JSON path of the offending
value, instead of stopping at the first one as the plugin must. The rules are
the plugin's own: `intent.conf_rules` (the plugin object's keys, with
validate's wording beside ADD's) and intent.ipam_config for host-local, called
on one key at a time, so the wording stays the plugin's (and the reference
host-local's, which operators search for) and the two can never disagree about
what is valid. Only what ADD cannot see is added here: a missing cniVersion,
every MAC a conf gives, overlaps reported per range, the empty values of the
blog's conf.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from intent.conf_rules import mac_problem, violations
from intent.errors import CniError
from intent.ipam_config import (
    IpRange,
    RangeSet,
    check_data_dir,
    check_network_name,
    check_route_gateway,
    parse_range,
    parse_route,
)
from intent.versions import SUPPORTED_VERSIONS
from loxi.plan.locator import Path, format_path, parse_path

ERROR = "error"
WARNING = "warning"
HOST_LOCAL = "host-local"
EMPTY_SUBNET = (
    'subnet is empty: set it to the pod CIDR Kubernetes assigned to this node (e.g. "10.244.1.0/24"); '
    "`loxi-plan render` fills it in per node"
)
EMPTY_DST = 'route destination is empty: give a CIDR such as "10.96.0.0/12", or "0.0.0.0/0" for a default route'


@dataclass(frozen=True)
class Finding:
    """One problem, located by its JSON path inside the plugin object."""

    path: Path
    message: str
    severity: str = ERROR
    at_key: bool = False  # point at the member's key rather than its value (unknown or duplicate keys)
    strict_error: bool = False  # a warning that `--strict` turns into an error (unknown keys)


def from_error(err: CniError, fallback: Path = ()) -> Finding:
    """A finding from an intent.* CniError whose message reads `json.path: what is wrong`."""
    where, sep, message = err.msg.partition(": ")
    path = parse_path(where) if sep and " " not in where else None
    if path is None:
        return Finding(fallback, str(err))
    return Finding(path, message + (f" ({err.details})" if err.details else ""))


def _name(doc: Mapping[str, Any]) -> Iterator[Finding]:
    try:
        check_network_name(doc.get("name"))
    except CniError as err:
        yield from_error(err, ("name",))


def _version(doc: Mapping[str, Any]) -> Iterator[Finding]:
    version = doc.get("cniVersion")
    if version in (None, ""):
        yield Finding(
            ("cniVersion",), "cniVersion is missing or empty, which means 0.1.0: set it, e.g. to 1.0.0", WARNING
        )
    elif isinstance(version, str) and version not in SUPPORTED_VERSIONS:
        yield Finding(
            ("cniVersion",), f"unsupported cniVersion {version!r}; loxi-cni supports {', '.join(SUPPORTED_VERSIONS)}"
        )


def _shared(doc: Mapping[str, Any]) -> Iterator[Finding]:
    """The rules ADD applies too (intent.conf_rules), in validate's words."""
    for violation in violations(doc):
        yield Finding(violation.path, violation.report)


def _macs(doc: Mapping[str, Any]) -> Iterator[Finding]:
    """Every MAC the conf gives (ADD checks only the one it uses), with the plugin's check."""
    runtime = doc.get("runtimeConfig") if isinstance(doc.get("runtimeConfig"), Mapping) else {}
    args = doc.get("args") if isinstance(doc.get("args"), Mapping) else {}
    cni = args.get("cni") if isinstance(args.get("cni"), Mapping) else {}
    for path, value in (
        (("mac",), doc.get("mac")),
        (("runtimeConfig", "mac"), runtime.get("mac")),
        (("args", "cni", "mac"), cni.get("mac")),
    ):
        problem = mac_problem(value) if isinstance(value, str) and value else None
        if problem is not None:
            yield Finding(path, f"{problem[0]}: {problem[1]}")


# -- host-local -----------------------------------------------------------


def _check_range(doc: Any, path: Path, out: list[Finding]) -> IpRange | None:
    """All problems of one `{subnet, rangeStart, rangeEnd, gateway}`; the parsed range when it has none."""
    if not isinstance(doc, Mapping):
        return None  # the schema reports the type
    subnet = doc.get("subnet")
    if subnet == "":
        out.append(Finding((*path, "subnet"), EMPTY_SUBNET))
        return None
    if not isinstance(subnet, str):
        return None  # missing (reported by the caller or the schema) or of the wrong type (the schema)
    where = format_path(path)
    try:
        parse_range({"subnet": subnet}, where)
    except CniError as err:
        out.append(from_error(err, (*path, "subnet")))
        return None
    broken = False
    for key in ("gateway", "rangeStart", "rangeEnd"):
        value = doc.get(key)
        if value in (None, ""):
            continue
        try:  # the plugin's own check (a gateway outside the subnet or on its edges included)
            parse_range({"subnet": subnet, key: value}, where)
        except CniError as err:
            out.append(from_error(err, (*path, key)))
            broken = True
    if broken:
        return None
    try:
        return parse_range(doc, where)
    except CniError as err:  # rangeStart after rangeEnd: only visible with both
        out.append(from_error(err, path))
        return None


def _range_sets(ipam: Mapping[str, Any]) -> list[list[tuple[Path, Any]]]:
    """The range sets as host-local orders them (legacy `ipam.subnet` first), each range with its path."""
    sets: list[list[tuple[Path, Any]]] = []
    if ipam.get("subnet") is not None:
        sets.append([(("ipam",), ipam)])
    ranges = ipam.get("ranges")
    if isinstance(ranges, list):
        for i, rset in enumerate(ranges):
            if isinstance(rset, list):
                sets.append([(("ipam", "ranges", i, j), rng) for j, rng in enumerate(rset)])
    return sets


def _host_local(doc: Mapping[str, Any], ipam: Mapping[str, Any]) -> Iterator[Finding]:
    out: list[Finding] = []
    try:
        check_data_dir(ipam.get("dataDir"))
    except CniError as err:
        out.append(from_error(err, ("ipam", "dataDir")))
    sets = _range_sets(ipam)
    if not sets:
        out.append(Finding(("ipam",), "no IP ranges: set ipam.subnet (or ipam.ranges) to this node's pod CIDR"))
    parsed: list[list[tuple[Path, IpRange]]] = []
    for rset in sets:
        good = []
        for path, doc_range in rset:
            rng = _check_range(doc_range, path, out)
            if rng is not None:
                good.append((path, rng))
        for j, (path, rng) in enumerate(good):
            if any(other.subnet.version != rng.subnet.version for _, other in good[:j]):
                out.append(Finding(path, "mixed address families in one range set"))
            for other_path, other in good[:j]:
                if other.overlaps(rng):
                    out.append(Finding(path, f"range {rng.text} overlaps {other.text} at {format_path(other_path)}"))
        parsed.append(good)
    for j, later in enumerate(parsed):
        for i in range(j):
            clash = next(((a, b) for _, a in parsed[i] for _, b in later if a.overlaps(b)), None)
            if clash is not None and later:
                out.append(
                    Finding(
                        later[0][0], f"range set {j} overlaps with range set {i} ({clash[1].text} and {clash[0].text})"
                    )
                )
    range_sets = tuple(RangeSet(tuple(rng for _, rng in good)) for good in parsed if good)
    routes = ipam.get("routes")
    if isinstance(routes, list):
        for i, route in enumerate(routes):
            path: Path = ("ipam", "routes", i)
            if not isinstance(route, Mapping) or route.get("dst") is None:
                continue  # the schema reports a missing dst or a non-object
            if route.get("dst") == "":
                out.append(Finding((*path, "dst"), EMPTY_DST))
                continue
            try:
                parsed_route = parse_route(route, format_path(path))
                if range_sets:  # the plugin's rule; without a valid range the range's own finding says enough
                    check_route_gateway(parsed_route, format_path(path), range_sets)
            except CniError as err:
                out.append(from_error(err, path))
    yield from out


def _ipam(doc: Mapping[str, Any]) -> Iterator[Finding]:
    ipam = doc.get("ipam")
    if not isinstance(ipam, Mapping):
        return
    kind = ipam.get("type")
    if not kind:
        if any(key != "type" for key in ipam):
            yield Finding(
                ("ipam",), "ipam has no type: its other keys are ignored and the pod gets no address", WARNING
            )
        return
    if kind == HOST_LOCAL:
        yield from _host_local(doc, ipam)


RULES: tuple[Callable[[Mapping[str, Any]], Iterator[Finding]], ...] = (_version, _name, _shared, _macs, _ipam)


def semantic_findings(doc: Mapping[str, Any]) -> list[Finding]:
    """Every rule on one loxi-cni plugin object (with name and cniVersion already injected for a conflist)."""
    return [finding for rule in RULES for finding in rule(doc)]
