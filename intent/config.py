"""The network config on stdin, decoded, schema-checked and typed.

The compiler never sees raw JSON: it gets a `NetConf` whose every field has its
documented default, so a missing key and an explicit default compile the same.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from intent.conf_rules import mac_problem, require_valid
from intent.env import CONTAINER_ID_RE, CniRequest
from intent.errors import DECODE_FAILURE, INVALID_ENVIRONMENT, INVALID_NETWORK_CONFIG, CniError
from intent.versions import require_supported

SCHEMA_NAME = "loxi-cni.conf.schema.json"


@dataclass(frozen=True)
class NetConf:
    """One loxi-cni plugin config with defaults applied (README: "Conf keys")."""

    cni_version: str
    name: str
    bridge: str = "cni0"
    is_gateway: bool = False
    is_default_gateway: bool = False
    force_address: bool = False
    mtu: int = 0
    hairpin_mode: bool = False
    promisc_mode: bool = False
    vlan: int = 0
    preserve_default_vlan: bool = False
    vlan_trunk: tuple[int, ...] = ()
    uplink: str = ""
    uplink_mode: str = "vlan"
    port_isolation: bool = False
    ip_masq: bool = False
    ip_masq_backend: str = "nftables"
    mac_spoof_check: bool = False
    disable_container_interface: bool = False
    enable_dad: bool = False
    mac: str = ""
    ipam: Mapping[str, Any] = field(default_factory=dict)
    dns: Mapping[str, Any] = field(default_factory=dict)
    prev_result: Mapping[str, Any] | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)
    stdin: bytes = field(default=b"", repr=False)

    @property
    def has_ipam(self) -> bool:
        return bool(self.ipam.get("type"))


# stdin larger than this is refused (code 6) before it is parsed; intent.safe_io's bound for conf files.
MAX_STDIN = 4 * 1024 * 1024
# \ud800-\udfff escapes: the only way JSON text can carry a lone surrogate.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def refuse_json_constant(name: str) -> float:
    """json's parse_constant: NaN and Infinity are not JSON (Go refuses them)."""
    raise ValueError(f"invalid character {name[0]!r} looking for beginning of value")


def finite_json_float(text: str) -> float:
    """json's parse_float: 1e400 is no float64 (Go refuses it); Python would make it inf."""
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text} out of range")
    return value


def _replace_surrogates(value: Any) -> Any:
    """Go's json decodes a lone surrogate escape to U+FFFD; do the same, so no str
    that cannot be encoded (a name, a path) ever reaches a check or a syscall."""
    if isinstance(value, str):
        return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in value)
    if isinstance(value, list):
        return [_replace_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in value.items()}
    return value


def decode(stdin: bytes) -> dict[str, Any]:
    """stdin as Go's encoding/json reads it: UTF-8 only (no BOM, no UTF-16/32, which
    Python's json.loads would sniff and accept), no NaN or Infinity, finite numbers,
    and a nesting depth the parser can take (a deeper one is an error, not a crash)."""
    fail = "error unmarshall network config"
    if len(stdin) > MAX_STDIN:
        raise CniError(DECODE_FAILURE, f"{fail}: larger than {MAX_STDIN} bytes")
    try:
        text = stdin.decode("utf-8")
        doc = json.loads(text, parse_constant=refuse_json_constant, parse_float=finite_json_float)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else exc
        raise CniError(DECODE_FAILURE, f"{fail}: {reason}") from None
    if not isinstance(doc, dict):
        raise CniError(DECODE_FAILURE, f"{fail}: not a JSON object")
    if _SURROGATE_ESCAPE.search(text):
        doc = _replace_surrogates(doc)
    return doc


def check_name(doc: Mapping[str, Any]) -> str:
    name = doc.get("name")
    if not name:
        raise CniError(INVALID_NETWORK_CONFIG, "missing network name")
    if not isinstance(name, str) or not CONTAINER_ID_RE.fullmatch(name) or len(name) > 255:
        raise CniError(INVALID_NETWORK_CONFIG, "invalid characters found in network name", str(name)[:256])
    return name


@cache
def _validator() -> Any:
    import jsonschema  # deferred: VERSION and env errors never need it

    from schemas import load_schema

    return jsonschema.Draft202012Validator(load_schema(SCHEMA_NAME))


def validate_schema_once(doc: Mapping[str, Any]) -> None:
    """validate_schema, skipped in a cold process when this node has already passed the same config.

    See `intent.schema_verdicts`: it saves a cold call the jsonschema import.
    A process whose validator is built (loxi-agent) just validates.
    """
    if _validator.cache_info().currsize:
        _validate_remembered(doc)
        return
    from intent import schema_verdicts
    from schemas import schema_bytes

    key = schema_verdicts.verdict_key(doc, schema_bytes(SCHEMA_NAME))
    if key is not None and schema_verdicts.known_valid(key):
        return
    validate_schema(doc)
    if key is not None:
        schema_verdicts.remember_valid(key)


VALID_DOCS_CACHE_SIZE = 256  # configs (prevResult aside): a node's networks, a pod's few variants
REMEMBERED_DOC_MAX = 1 << 16  # characters: a larger config is validated every time, never kept
_valid_docs: set[str] = set()


@cache
def _prev_result_unchecked() -> bool:
    """Whether the schema checks nothing inside prevResult (so a verdict holds whatever it is)."""
    from intent import schema_verdicts
    from schemas import schema_bytes

    return schema_verdicts._without_prev_result({"prevResult": {}}, schema_bytes(SCHEMA_NAME)) is not None


def _validate_remembered(doc: Mapping[str, Any]) -> None:
    """validate_schema, once per config in a process that keeps its validator (loxi-agent).

    jsonschema took ~0.4 ms of the agent's CPU per call for the same few
    configs; a config that passed is remembered by its canonical JSON (with
    prevResult as `{}` when the schema looks nothing inside it, as
    `intent.schema_verdicts` keys a verdict), one that fails is validated,
    and refused with the same message, every time.
    """
    key = None
    if not isinstance(doc.get("prevResult", {}), dict) or ("prevResult" in doc and not _prev_result_unchecked()):
        validate_schema(doc)
        return
    try:
        keyed = {**doc, "prevResult": {}} if "prevResult" in doc else doc
        key = json.dumps(keyed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        pass
    if key is not None and key in _valid_docs:
        return
    validate_schema(doc)
    if key is not None and len(key) <= REMEMBERED_DOC_MAX:
        if len(_valid_docs) >= VALID_DOCS_CACHE_SIZE:
            _valid_docs.clear()
        _valid_docs.add(key)


def validate_schema(doc: Mapping[str, Any]) -> None:
    """Check against schemas/loxi-cni.conf.schema.json; the message names the key."""
    validator = _validator()
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = first.json_path.removeprefix("$.") if first.absolute_path else "config"
        details = "; ".join(f"{e.json_path.removeprefix('$.')}: {e.message}" for e in errors[1:5])
        raise CniError(INVALID_NETWORK_CONFIG, f"invalid network config: {where}: {first.message}", details)


def _pick_mac(doc: Mapping[str, Any], request: CniRequest) -> str:
    """runtimeConfig.mac > args.cni.mac > CNI_ARGS MAC > conf `mac` (cni-protocol.md §3.1)."""
    runtime = doc.get("runtimeConfig") or {}
    cni_args = ((doc.get("args") or {}).get("cni") or {}) if isinstance(doc.get("args"), dict) else {}
    for source, value in (
        ("runtimeConfig.mac", runtime.get("mac")),
        ("args.cni.mac", cni_args.get("mac") if isinstance(cni_args, dict) else None),
        ("CNI_ARGS MAC", request.args.get("MAC")),
        ("mac", doc.get("mac")),
    ):
        if value:
            problem = mac_problem(value) if isinstance(value, str) else (f"invalid MAC address {value!r}", "")
            if problem is not None:
                code = INVALID_ENVIRONMENT if source == "CNI_ARGS MAC" else INVALID_NETWORK_CONFIG
                raise CniError(code, f"{source}: {problem[0]}")
            return value.lower()
    return ""


_INTEGER_KEYS = ("mtu", "vlanID", "vlan")


def _refuse_float_integers(doc: Mapping[str, Any]) -> None:
    """JSON Schema counts 100.0 as an integer; Go's json (and so every runtime
    reading our result) does not. Refuse it as the reference plugin would."""
    places = [(key, doc.get(key)) for key in _INTEGER_KEYS]
    for i, entry in enumerate(doc.get("vlanTrunk") or []):
        places += [(f"vlanTrunk[{i}].{key}", entry.get(key)) for key in ("id", "minID", "maxID")]
    for where, value in places:
        if isinstance(value, float):
            raise CniError(INVALID_NETWORK_CONFIG, f"invalid network config: {where}: {value!r} is not an integer")


def _trunk_vids(doc: Mapping[str, Any]) -> tuple[int, ...]:
    """Expand `vlanTrunk` ({id} or {minID, maxID}) into VLAN ids, as the reference reads it."""
    vids: set[int] = set()
    for i, entry in enumerate(doc.get("vlanTrunk") or []):
        where = f"invalid network config: vlanTrunk[{i}]"
        if "id" in entry:
            vids.add(entry["id"])
            continue
        low, high = entry.get("minID"), entry.get("maxID")
        if low is None or high is None:
            raise CniError(INVALID_NETWORK_CONFIG, f"{where}: minID and maxID are both required without id")
        if low > high:
            raise CniError(INVALID_NETWORK_CONFIG, f"{where}: minID {low} is greater than maxID {high}")
        vids.update(range(low, high + 1))
    return tuple(sorted(vids))


def load_netconf(
    stdin: bytes, request: CniRequest, doc: dict[str, Any] | None = None, version: str | None = None
) -> NetConf:
    """Decode, validate and type the config. Raises CniError 1, 2, 6 or 7.
    `version`: what require_supported already made of the doc's cniVersion (loxi-cni checks it first)."""
    doc = decode(stdin) if doc is None else doc
    version = require_supported(doc.get("cniVersion") or "") if version is None else version
    name = check_name(doc)
    validate_schema_once(doc)
    _refuse_float_integers(doc)
    require_valid(doc)  # the semantic rules, shared with `loxi-plan validate` (intent.conf_rules)
    bridge = doc.get("bridge", "cni0")
    vlan_id, vlan = doc.get("vlanID", 0), doc.get("vlan", 0)
    mtu = doc.get("mtu", 0)
    uplink = doc.get("uplink", "")
    ipam = doc.get("ipam") or {}
    prev = doc.get("prevResult")
    return NetConf(
        cni_version=version,
        name=name,
        bridge=bridge,
        is_gateway=bool(doc.get("isGateway") or doc.get("isDefaultGateway")),
        is_default_gateway=bool(doc.get("isDefaultGateway")),
        force_address=bool(doc.get("forceAddress")),
        mtu=mtu,
        hairpin_mode=bool(doc.get("hairpinMode")),
        promisc_mode=bool(doc.get("promiscMode")),
        vlan=vlan_id or vlan,
        preserve_default_vlan=bool(doc.get("preserveDefaultVlan")),
        vlan_trunk=_trunk_vids(doc),
        uplink=uplink,
        uplink_mode=doc.get("uplinkMode", "vlan"),
        port_isolation=bool(doc.get("portIsolation")),
        ip_masq=bool(doc.get("ipMasq")),
        ip_masq_backend=doc.get("ipMasqBackend", "nftables"),
        mac_spoof_check=bool(doc.get("macspoofchk")),
        disable_container_interface=bool(doc.get("disableContainerInterface")),
        enable_dad=bool(doc.get("enabledad")),
        mac=_pick_mac(doc, request),
        ipam=ipam,
        dns=doc.get("dns") or {},
        prev_result=prev if isinstance(prev, dict) else None,
        raw=doc,
        stdin=stdin,
    )
