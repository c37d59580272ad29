"""The runtime's half of a CNI call: environment variables and CNI_ARGS.

Everything here is checked before the kernel or the IPAM store is touched, so a
hostile container id or interface name can never reach a path or a netlink
message. Stdlib only: this runs on the cheapest paths.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from intent.errors import GENERIC_GO_ERROR, INVALID_ENVIRONMENT, CniError

COMMANDS = ("ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION")

# The Go skel's rules (cni-protocol.md §1.2), in its reporting order.
_ENV_ORDER = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH")
_REQUIRED = {
    "ADD": ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "CHECK": ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "DEL": ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"),
    "GC": ("CNI_COMMAND", "CNI_PATH"),
    "STATUS": ("CNI_COMMAND", "CNI_PATH"),
    "VERSION": ("CNI_COMMAND",),
}
CONTAINER_ID_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")
# Longer ids are legal for the spec, but nothing real is near this; it bounds
# file names in the IPAM store.
MAX_CONTAINER_ID = 1024
MAX_IFNAME = 15

# Keys CNI_ARGS may carry without IgnoreUnknown (the Go structs' field names): the reference
# bridge's (CommonArgs' IgnoreUnknown, MAC) and host-local's (IP), which loxi-cni serves in one
# process. The K8S_POD_* keys are known to neither, so, as there, they need IgnoreUnknown (which
# every runtime sends with them).
KNOWN_CNI_ARGS = frozenset({"IgnoreUnknown", "IP", "MAC"})


@dataclass(frozen=True)
class CniRequest:
    """One invocation as the runtime described it in the environment."""

    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: Mapping[str, str] = field(default_factory=dict)
    path: tuple[str, ...] = ()
    # The whole environment, passed on unchanged to delegated plugins.
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)
    # DEL only: the container id or ifname is not UTF-8, so no ADD can have made
    # anything under it; DEL answers success without touching anything.
    unattachable: bool = False


def validate_ifname(name: str) -> None:
    """The kernel's and the Go skel's interface-name rules."""
    if not name:
        raise CniError(INVALID_ENVIRONMENT, "interface name is empty")
    if len(name.encode()) > MAX_IFNAME:
        raise CniError(
            INVALID_ENVIRONMENT,
            "interface name is too long",
            f"interface name should be less than {MAX_IFNAME + 1} characters",
        )
    if name in (".", ".."):
        raise CniError(INVALID_ENVIRONMENT, "interface name is . or ..")
    for char in name:
        if char in "/:" or char.isspace() or char == "\0":
            raise CniError(INVALID_ENVIRONMENT, "interface name contains / or : or whitespace characters", repr(name))
    if "%" in name:
        # The kernel expands `%d` in a new link's name into the next free number: `br%d`
        # would create br0, a link nobody asked for and DEL could never find.
        raise CniError(INVALID_ENVIRONMENT, "interface name contains %, which the kernel expands", repr(name))


def validate_container_id(container_id: str) -> None:
    if len(container_id) > MAX_CONTAINER_ID or not CONTAINER_ID_RE.fullmatch(container_id):
        raise CniError(INVALID_ENVIRONMENT, "invalid characters in containerID", container_id[:256])


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def go_quote(text: str) -> str:
    """Go's `%q` of a string (strconv.Quote), so messages match the Go library's."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char in _GO_ESCAPES:
            out.append(_GO_ESCAPES[char])
        elif char.isprintable():
            out.append(char)
        elif ord(char) < 0x80:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


def _go_bool(pair: str, value: str) -> bool:
    """types.UnmarshallableBool: 1/true and 0/false, case-insensitive; anything else is an error."""
    lowered = value.lower()
    if lowered in ("1", "true"):
        return True
    if lowered in ("0", "false"):
        return False
    raise CniError(
        GENERIC_GO_ERROR,
        f"ARGS: error parsing value of pair {go_quote(pair)}: boolean unmarshal error: invalid input {lowered}",
    )


def parse_cni_args(text: str) -> dict[str, str]:
    """Split `K=V;K=V` as Go's LoadArgs does, including its unknown-key rule and messages.

    Unknown pairs are reported whole, in the order given (`ARGS: unknown args ["FOO=1"]`). LoadArgs
    returns plain Go errors, which skel prints as 999: so do these, as the reference bridge does.
    """
    pairs: dict[str, str] = {}
    if not text:
        return pairs
    unknown: list[str] = []
    ignore_unknown = False
    for item in text.split(";"):
        parts = item.split("=")
        if len(parts) != 2:
            raise CniError(GENERIC_GO_ERROR, f"ARGS: invalid pair {go_quote(item)}")
        key, value = parts
        if key not in KNOWN_CNI_ARGS:
            unknown.append(item)
            continue
        if key == "IgnoreUnknown":
            ignore_unknown = _go_bool(item, value)
        pairs[key] = value
    if unknown and not ignore_unknown:
        raise CniError(GENERIC_GO_ERROR, f"ARGS: unknown args [{' '.join(go_quote(u) for u in unknown)}]")
    for item in unknown:  # kept for delegates and logs; known keys win over nothing
        key, value = item.split("=")
        pairs.setdefault(key, value)
    return pairs


def is_utf8(text: str) -> bool:
    """False for a str holding bytes that were not UTF-8 (os.environ and the agent
    decode the environment with surrogateescape, so such bytes arrive as lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _not_utf8(env: dict[str, str], command: str) -> bool:
    """Refuse a CNI_* variable that is not UTF-8 (code 4), except on DEL, which must clean up.

    DEL does not need CNI_NETNS, CNI_ARGS or the broken CNI_PATH entries: they
    are dropped. A container id or ifname that is not UTF-8 names nothing an ADD
    could have made (ADD refuses it), so DEL has nothing to do: returns True.
    """
    bad = [var for var in _ENV_ORDER if not is_utf8(env.get(var, ""))]
    if not bad:
        return False
    if command != "DEL":
        raise CniError(INVALID_ENVIRONMENT, f"{bad[0]} is not valid UTF-8", ascii(env[bad[0]])[:256])
    for var in bad:
        if var == "CNI_PATH":
            env[var] = ":".join(p for p in env[var].split(":") if is_utf8(p))
        elif var in ("CNI_NETNS", "CNI_ARGS"):
            env[var] = ""
    return "CNI_CONTAINERID" in bad or "CNI_IFNAME" in bad


def read_request(environ: Mapping[str, str] | None = None) -> CniRequest:
    """Build the request from the environment, raising code 4 on anything wrong."""
    env = dict(os.environ if environ is None else environ)
    command = env.get("CNI_COMMAND", "")
    if command and command not in COMMANDS:
        shown = command if is_utf8(command) else ascii(command)[1:-1]
        raise CniError(INVALID_ENVIRONMENT, f"unknown CNI_COMMAND: {shown}")
    missing = [var for var in _ENV_ORDER if var in _REQUIRED.get(command, ()) and not env.get(var)]
    if missing:
        raise CniError(INVALID_ENVIRONMENT, f"required env variables [{','.join(missing)}] missing")
    if _not_utf8(env, command):
        return CniRequest(command=command, environ=env, unattachable=True)
    container_id = env.get("CNI_CONTAINERID", "")
    ifname = env.get("CNI_IFNAME", "")
    if command in ("ADD", "DEL", "CHECK"):
        validate_container_id(container_id)
        validate_ifname(ifname)
    netns = env.get("CNI_NETNS", "")
    if "\0" in netns:
        raise CniError(INVALID_ENVIRONMENT, "CNI_NETNS contains a NUL byte")
    return CniRequest(
        command=command,
        container_id=container_id,
        netns=netns,
        ifname=ifname,
        args=parse_cni_args(env.get("CNI_ARGS", "")),
        path=tuple(p for p in env.get("CNI_PATH", "").split(":") if p),
        environ=env,
    )
