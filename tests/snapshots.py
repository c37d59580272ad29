"""Snapshots of what a CNI call may change: files under a directory, and a namespace's kernel state.

Used by the reliability, hostile-input and mixed-load tests to assert "this call
changed nothing" (or exactly what it should) by comparing a snapshot taken
before with one taken after.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import CniCall, Netns, Node

# Leases are files named by their address; the rest of a host-local store is bookkeeping.
STORE_BOOKKEEPING = ("lock", "last_reserved_ip.")
TMP_PREFIX = ".loxi-tmp."


def tree(root: str | Path) -> dict[str, tuple[str, int, str]]:
    """Every entry below `root` (itself included): relative path → (kind, mode bits, content hash).

    Symlinks are recorded, never followed. A missing root is the empty snapshot.
    """
    root = Path(root)
    out: dict[str, tuple[str, int, str]] = {}
    if not os.path.lexists(root):
        return out
    for path in [root, *sorted(root.rglob("*"))]:
        info = path.lstat()
        rel = str(path.relative_to(root))
        if stat.S_ISLNK(info.st_mode):
            out[rel] = ("link", 0, os.readlink(path))
        elif stat.S_ISDIR(info.st_mode):
            out[rel] = ("dir", stat.S_IMODE(info.st_mode), "")
        elif stat.S_ISREG(info.st_mode):
            out[rel] = ("file", stat.S_IMODE(info.st_mode), hashlib.sha256(path.read_bytes()).hexdigest())
        else:
            out[rel] = ("other", stat.S_IMODE(info.st_mode), "")
    return out


def kernel_state(ns: Netns) -> dict[str, Any]:
    """Links (with the attributes a plan step can change), addresses and routes of one namespace."""
    links = {}
    for name, link in ns.links().items():
        info = link.get("linkinfo", {})
        links[name] = {
            "kind": info.get("info_kind", ""),
            "master": link.get("master", ""),
            "mtu": link.get("mtu"),
            "flags": sorted(link.get("flags", [])),
            "mac": link.get("address", ""),
            "alias": link.get("ifalias", ""),
            "port": {k: v for k, v in info.get("info_slave_data", {}).items() if k in ("hairpin", "isolated")},
        }
    addresses = sorted(
        f"{a['local']}/{a['prefixlen']}@{entry['ifname']}"
        for entry in ns.ip("addr", "show")
        for a in entry.get("addr_info", [])
        if a.get("scope") != "link"
    )
    routes = sorted(json.dumps(r, sort_keys=True) for fam in ("-4", "-6") for r in ns.routes(fam))
    return {"links": links, "addresses": addresses, "routes": routes}


def lease_files(node: Node, network: str) -> dict[str, str]:
    """address → owner text (`cid\\r\\nifname`) of every lease file of `network`."""
    directory = node.data_dir / network
    if not directory.exists():
        return {}
    return {
        p.name: p.read_bytes().decode() for p in directory.iterdir() if not p.name.startswith((*STORE_BOOKKEEPING, "."))
    }


def store_anomalies(directory: Path) -> list[str]:
    """What an atomic store never holds: temp files, empty or malformed lease files, non-regular entries."""
    problems = []
    if not directory.exists():
        return problems
    for path in sorted(directory.iterdir()):
        name = path.name
        info = path.lstat()
        if name.startswith(TMP_PREFIX):
            problems.append(f"temp file {name}")
        elif not stat.S_ISREG(info.st_mode):
            problems.append(f"not a regular file: {name}")
        elif name == "lock" or name.startswith("last_reserved_ip."):
            continue
        elif info.st_size == 0:
            problems.append(f"empty lease file {name}")
        else:
            cid, sep, ifname = path.read_bytes().decode().partition("\r\n")
            if not sep or not cid or not ifname:
                problems.append(f"malformed lease file {name}: {path.read_bytes().decode()!r}")
    return problems


def run_plugin(
    node: Node,
    command: str,
    conf: dict | bytes,
    *,
    container_id: str = "",
    netns: str = "",
    ifname: str = "eth0",
    args: str = "",
    env: dict[str, str] | None = None,
    timeout: float = 20,
) -> CniCall:
    """`node.cni`, always in-process (the hostile tests set variables loxi-agent does not
    forward, such as LOXI_LOCK_DIR), with a short timeout: a hang fails fast with TimeoutExpired."""
    return node.cni(
        command,
        conf,
        container_id=container_id,
        netns=netns,
        ifname=ifname,
        args=args,
        env={"LOXI_AGENT_SOCKET": "", **(env or {})},
        timeout=timeout,
    )


def assert_cni_error(call: CniCall, code: int) -> dict:
    """rc 1 and exactly one CNI error document with `code` on stdout; no traceback anywhere on stdout."""
    assert call.rc == 1, call
    doc = json.loads(call.stdout)
    assert isinstance(doc, dict) and doc.get("code") == code and isinstance(doc.get("msg"), str), call
    assert "Traceback" not in call.stdout and "Traceback" not in call.stderr, call
    return doc


def describe_diff(before: Any, after: Any, path: str = "") -> list[str]:
    """Where two snapshots differ, as `path: before -> after` lines (for assertion messages)."""
    if isinstance(before, dict) and isinstance(after, dict):
        out = []
        for key in sorted(set(before) | set(after), key=str):
            if before.get(key) != after.get(key):
                out += describe_diff(before.get(key), after.get(key), f"{path}/{key}")
        return out
    if isinstance(before, (list, tuple)) and isinstance(after, (list, tuple)) and len(before) == len(after):
        out = []
        for i, (a, b) in enumerate(zip(before, after, strict=True)):
            if a != b:
                out += describe_diff(a, b, f"{path}[{i}]")
        return out
    if isinstance(before, list) and isinstance(after, list):
        gone = [x for x in before if x not in after]
        new = [x for x in after if x not in before]
        return [f"{path}: removed {gone} added {new}"]
    return [f"{path}: {before!r} -> {after!r}"]


def settled(snapshot: Callable[[], Any], timeout: float = 4.0) -> Any:
    """A snapshot that two reads 0.3 s apart agree on (the kernel finishes carrier and IPv6 work
    asynchronously after an ADD or DEL), or the last one read."""
    previous = snapshot()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.3)
        current = snapshot()
        if current == previous:
            return current
        previous = current
    return previous
