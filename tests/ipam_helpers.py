"""One-shot IPAM calls for tests: each opens the conf's IPAM as `command` would, then makes one call.

The product always goes through `applier.ipam.open_ipam` and keeps the object for
the whole request; tests that only want "ADD this conf" or "DEL it" use these so
each assertion reads as one CNI command.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from applier.ipam import Ipam, IpamResult, open_ipam
from applier.ipam.delegate import DelegatedIpam
from intent.env import CniRequest


def _opened(conf: Mapping[str, Any], stdin: bytes, request: CniRequest, command: str) -> Ipam:
    ipam = open_ipam(conf, stdin, replace(request, command=command))
    return ipam if ipam is not None else DelegatedIpam("", stdin, request)  # refused: no plugin name


def ipam_add(conf: Mapping[str, Any], stdin: bytes, request: CniRequest) -> IpamResult:
    return _opened(conf, stdin, request, "ADD").add()


def ipam_del(conf: Mapping[str, Any], stdin: bytes, request: CniRequest) -> None:
    _opened(conf, stdin, request, "DEL").delete()


def ipam_check(conf: Mapping[str, Any], stdin: bytes, request: CniRequest) -> IpamResult:
    return _opened(conf, stdin, request, "CHECK").check()


def ipam_preview(conf: Mapping[str, Any], request: CniRequest) -> IpamResult | None:
    """None without IPAM, as `loxi-plan dry-run` sees it."""
    ipam = open_ipam(conf, b"", replace(request, command="ADD"))
    return None if ipam is None else ipam.preview()
