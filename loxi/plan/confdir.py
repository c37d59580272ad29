"""The loxi-cni networks a node's runtime loads, found the way libcni finds them.

Runtimes (containerd, CRI-O, podman, kubelet) list their conf directory with
libcni's `ConfFiles(dir, [".conf", ".conflist", ".json"])`: the directory's
own entries that are not directories, by extension, in lexical order of the
name (no recursion; `.conflist` files are lists, the others single confs).
`loxi-plan show` reads the same files, so it knows each network's store even
when its `ipam.dataDir` is not the default; without that it would report a
running pod's veth as unexplained. `cnitool`'s `NETCONFPATH` names another
directory, as it does for cnitool.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from intent.errors import INVALID_NETWORK_CONFIG, CniError
from intent.ipam_config import HostLocalConfig, load_host_local
from loxi.plan.conf import PLUGIN_TYPE, load_conf

DEFAULT_CONF_DIR = "/etc/cni/net.d"
EXTENSIONS = (".conf", ".conflist", ".json")
DEFAULT_BRIDGE = "cni0"


def default_conf_dir() -> str:
    return os.environ.get("NETCONFPATH") or DEFAULT_CONF_DIR


@dataclass(frozen=True)
class NetworkConf:
    """A loxi-cni network as one conf file defines it."""

    name: str
    source: str
    bridge: str
    ipam_type: str | None  # None: no ipam
    host_local: HostLocalConfig | None  # the store's config when the IPAM is host-local

    @property
    def store_dir(self) -> str | None:
        hl = self.host_local
        return os.path.join(hl.data_dir, hl.network_name) if hl else None


@dataclass(frozen=True)
class ConfProblem:
    source: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.source, "message": self.message}


def conf_files(directory: str) -> list[str]:
    """libcni's ConfFiles: the files of `directory` with a CNI extension, in lexical order; none if it is missing."""
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [e.path for e in entries if not e.is_dir() and os.path.splitext(e.name)[1] in EXTENSIONS]


def _ipam_type(doc: dict[str, Any]) -> str | None:
    ipam = doc.get("ipam")
    if not isinstance(ipam, dict) or not ipam:
        return None
    kind = ipam.get("type")
    return kind if isinstance(kind, str) else ""


def network_of(path: str) -> NetworkConf:
    """The loxi-cni network of one conf file; CniError or OSError when it cannot be read as one."""
    doc = load_conf(path).doc
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise CniError(INVALID_NETWORK_CONFIG, f"{path}: name: missing")
    bridge = doc.get("bridge")
    kind = _ipam_type(doc)
    host_local = load_host_local(doc, {}) if kind == "host-local" else None
    return NetworkConf(name, path, bridge if isinstance(bridge, str) and bridge else DEFAULT_BRIDGE, kind, host_local)


def _is_loxi(path: str) -> bool:
    """Does the file name a loxi-cni plugin at all? Other plugins' confs are none of show's business."""
    try:
        with open(path, "rb") as handle:
            return PLUGIN_TYPE.encode() in handle.read()
    except OSError:
        return False


def read_conf_dir(directory: str) -> tuple[list[str], list[NetworkConf], list[ConfProblem]]:
    """(files read, loxi-cni networks, problems) of a conf directory; the first file defining a network wins."""
    files = conf_files(directory)
    networks: list[NetworkConf] = []
    problems: list[ConfProblem] = []
    for path in files:
        if not _is_loxi(path):
            continue
        try:
            network = network_of(path)
        except (CniError, OSError, ValueError) as exc:
            if isinstance(exc, CniError) and "no plugin of type" in exc.msg:
                continue
            problems.append(ConfProblem(path, exc.msg if isinstance(exc, CniError) else str(exc)))
            continue
        if any(n.name == network.name for n in networks):
            first = next(n.source for n in networks if n.name == network.name)
            problems.append(ConfProblem(path, f"network {network.name} is already defined by {first}: ignored"))
            continue
        networks.append(network)
    return files, networks, problems


def read_confs(paths: Sequence[str]) -> list[NetworkConf]:
    """`--conf` files: each must be a loxi-cni conf (any error propagates to the CLI's one line)."""
    return [network_of(path) for path in paths]
