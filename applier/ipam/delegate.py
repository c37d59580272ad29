"""Delegated IPAM: another IPAM plugin, run the way libcni's invoke package does.

`DelegatedIpam` is what `applier.ipam.open_ipam` makes for any type but
host-local. Only the lookup, the environment and the error mapping matter to
callers: a delegate's own CNI error must reach the runtime unchanged, anything
else becomes code 103 with the delegate's output as details; its result, in
whatever CNI version it speaks, is brought to `IpamResult`. `subprocess` is
imported lazily so the host-local path never pays for it.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import time
from collections.abc import Mapping, Set
from typing import Any

from applier.ipam.result import GcOutcome, IpamResult, Lease
from intent.env import CniRequest
from intent.errors import DELEGATE_FAILED, INVALID_NETWORK_CONFIG, CniError
from intent.ipam_values import IpamRoute, RangeSet, parse_cidr, parse_dns, parse_ip, parse_route

TIMEOUT_SECONDS = 60.0
# libcni retries an exec that hits "text file busy" (a binary being replaced) 5 times, 1 s apart.
TEXT_BUSY_RETRIES = 5
TEXT_BUSY_DELAY = 1.0
MAX_DETAILS = 4096


def check_plugin_name(plugin_type: str) -> None:
    """A plugin type is a file name in CNI_PATH, never a path."""
    if not plugin_type:
        raise CniError(INVALID_NETWORK_CONFIG, "ipam.type: no plugin name provided")
    if "/" in plugin_type or "\0" in plugin_type or plugin_type in (".", ".."):
        raise CniError(INVALID_NETWORK_CONFIG, f"ipam.type: {plugin_type!r} must be a plain plugin name")


def find_plugin(plugin_type: str, paths: tuple[str, ...]) -> str:
    """First regular file named `plugin_type` in `paths`, like Go's invoke.FindInPath."""
    check_plugin_name(plugin_type)
    if not paths:
        raise CniError(DELEGATE_FAILED, "no paths provided")
    for directory in paths:
        candidate = os.path.join(directory, plugin_type)
        try:
            if stat.S_ISREG(os.stat(candidate).st_mode):
                return candidate
        except OSError:
            continue
    # Go prints the slice as `[a b]`.
    raise CniError(DELEGATE_FAILED, f'failed to find plugin "{plugin_type}" in path [{" ".join(paths)}]')


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace").strip()[:MAX_DETAILS]


def _cni_error(stdout: bytes) -> CniError | None:
    try:
        doc = json.loads(stdout)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    code, msg, details = doc.get("code"), doc.get("msg"), doc.get("details", "")
    if isinstance(code, int) and not isinstance(code, bool) and isinstance(msg, str):
        return CniError(code, msg, details if isinstance(details, str) else json.dumps(details))
    return None


def run_ipam_plugin(plugin_type: str, command: str, stdin: bytes, request: CniRequest) -> dict[str, Any] | None:
    """Exec the delegate with our environment but `CNI_COMMAND=command`; its parsed stdout, or None if empty."""
    import subprocess

    path = find_plugin(plugin_type, request.path)
    env = dict(request.environ)
    env["CNI_COMMAND"] = command
    # Tests and internal callers may hand over a request without a raw environment.
    for key, value in (
        ("CNI_CONTAINERID", request.container_id),
        ("CNI_NETNS", request.netns),
        ("CNI_IFNAME", request.ifname),
        ("CNI_PATH", ":".join(request.path)),
    ):
        env.setdefault(key, value)

    for attempt in range(TEXT_BUSY_RETRIES + 1):
        try:
            proc = subprocess.run(
                [path], input=stdin, env=env, capture_output=True, timeout=TIMEOUT_SECONDS, check=False
            )
            break
        except subprocess.TimeoutExpired:
            raise CniError(
                DELEGATE_FAILED, f"{plugin_type} {command} failed", f"timed out after {TIMEOUT_SECONDS:g}s"
            ) from None
        except OSError as err:
            if err.errno == errno.ETXTBSY and attempt < TEXT_BUSY_RETRIES:
                time.sleep(TEXT_BUSY_DELAY)
                continue
            raise CniError(DELEGATE_FAILED, f"{plugin_type} {command} failed", f"exec {path}: {err.strerror}") from None

    if proc.returncode != 0:
        error = _cni_error(proc.stdout)
        if error is not None:
            raise error
        details = _text(proc.stderr) or _text(proc.stdout) or f"exit status {proc.returncode}"
        raise CniError(DELEGATE_FAILED, f"{plugin_type} {command} failed", details)

    if not proc.stdout.strip():
        return None
    try:
        doc = json.loads(proc.stdout)
    except ValueError as err:
        raise CniError(DELEGATE_FAILED, f"{plugin_type} {command} returned invalid JSON", str(err)) from None
    if not isinstance(doc, dict):
        raise CniError(DELEGATE_FAILED, f"{plugin_type} {command} returned invalid JSON", "not an object")
    return doc


class DelegatedIpam:
    """Another IPAM plugin for one request (`applier.ipam.Ipam`): each command is its exec."""

    store_dir = ""  # its store, if any, is its own
    range_sets: tuple[RangeSet, ...] = ()
    routes: tuple[IpamRoute, ...] = ()

    def __init__(self, kind: str, stdin: bytes, request: CniRequest) -> None:
        check_plugin_name(kind)
        self.kind = kind
        self.stdin = stdin
        self.request = request

    def _run(self, command: str) -> dict[str, Any] | None:
        return run_ipam_plugin(self.kind, command, self.stdin, self.request)

    def add(self) -> IpamResult:
        doc = self._run("ADD")
        if doc is None:
            raise CniError(DELEGATE_FAILED, f"{self.kind} ADD failed", "the plugin printed no result")
        return result_from_document(doc, self.kind)

    def rollback(self, added: IpamResult, was_running: bool) -> None:
        """A delegate cannot say which leases are new: it is asked to DEL only when the attachment
        did not run before this ADD."""
        if not was_running:
            self._run("DEL")

    def delete(self) -> None:
        self._run("DEL")

    def check(self) -> IpamResult:
        doc = self._run("CHECK")
        return IpamResult(()) if doc is None else result_from_document(doc, self.kind)

    def preview(self) -> IpamResult | None:
        return None  # only running the plugin could tell, and that allocates

    def held(self) -> tuple[Lease, ...] | None:
        return None

    def gc(self, keep: Set[tuple[str, str]]) -> GcOutcome:
        """The plugin reads the keep-list from the conf on its stdin."""
        self._run("GC")
        return GcOutcome()

    def status(self) -> None:
        self._run("STATUS")


def result_from_document(doc: Mapping[str, Any], plugin_type: str) -> IpamResult:
    """A delegate's result in any CNI version (0.1/0.2 `ip4`/`ip6`, 0.3.0 `ip`, 0.3.1+ `ips`)."""
    try:
        leases: list[Lease] = []
        routes: list[IpamRoute] = []
        listed = doc.get("ips") if doc.get("ips") is not None else doc.get("ip")
        if isinstance(listed, list):
            for i, entry in enumerate(listed):
                leases.append(_lease(entry, f"ips[{i}]", "address", len(leases)))
        else:
            for key in ("ip4", "ip6"):
                entry = doc.get(key)
                if entry is None:
                    continue
                leases.append(_lease(entry, key, "ip", len(leases)))
                routes += _routes(entry.get("routes"), f"{key}.routes")
        routes += _routes(doc.get("routes"), "routes")
        dns = parse_dns(doc.get("dns"), "dns")
    except CniError as err:
        raise CniError(DELEGATE_FAILED, f"{plugin_type} returned an invalid result", err.msg) from None
    return IpamResult(tuple(leases), tuple(routes), dns)


def _lease(entry: object, path: str, key: str, index: int) -> Lease:
    if not isinstance(entry, Mapping):
        raise CniError(INVALID_NETWORK_CONFIG, f"{path}: expected an object")
    address = parse_cidr(entry.get(key), f"{path}.{key}")
    gateway = None if entry.get("gateway") in (None, "") else parse_ip(entry["gateway"], f"{path}.gateway")
    return Lease(address, gateway, index)


def _routes(value: object, path: str) -> list[IpamRoute]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise CniError(INVALID_NETWORK_CONFIG, f"{path}: expected an array")
    return [parse_route(item, f"{path}[{i}]") for i, item in enumerate(value)]
