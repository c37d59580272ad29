"""/proc/sys/net values, read and written in the namespace the caller is in.

/proc/sys/net shows the network namespace of the thread that opens the file, so
callers wrap these in `Namespaces.inside(ns)`.
"""

from __future__ import annotations

import os


def sysctl_file(path: str) -> str:
    """`net/ipv4/ip_forward` → `/proc/sys/net/ipv4/ip_forward`, refusing escapes."""
    parts = path.split("/")
    if parts[0] != "net" or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"not a net sysctl: {path!r}")
    return os.path.join("/proc/sys", *parts)


def read_sysctl(path: str) -> str | None:
    try:
        with open(sysctl_file(path), encoding="ascii") as handle:
            return handle.read().strip()
    except FileNotFoundError:
        return None


def write_sysctl(path: str, value: str) -> None:
    with open(sysctl_file(path), "w", encoding="ascii") as handle:
        handle.write(value)
