"""What install wrote, and writing it: the manifest, atomic replacement of regular files only, the directory lock.

Every file is written only when its content differs (temp file in the same
directory, fsync, rename), so a second install reports "unchanged" and touches
nothing. What install wrote is recorded with its sha256 in
`<bin-dir>/.loxi-cni.manifest.json`; uninstall removes exactly those files,
and only while their content is still what install wrote.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from intent.safe_io import MAX_CONF_BYTES, open_regular
from loxi.atomicfile import fsync_dir, write_atomic
from loxi.install.base import MANIFEST_MODE, MANIFEST_NAME, MANIFEST_VERSION, PROG, InstallError


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_target(path: str) -> bytes | None:
    """The content of an install target, None if there is none.

    A target that is a symlink, a FIFO (whose open would block), a device or a
    socket raises an OSError saying so: install replaces only regular files.
    """
    try:
        fd = open_regular(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as handle:
        return handle.read(MAX_CONF_BYTES)


@contextlib.contextmanager
def dir_lock(directory: str) -> Iterator[None]:
    """Two installs (an init container and the periodic one) never interleave."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@dataclass
class Change:
    kind: str
    path: str
    action: str  # created, updated, replaced, mode fixed, unchanged, removed, kept, missing

    def line(self) -> str:
        return f"{self.kind} {self.path}: {self.action}"


def _manifest_path(bin_dir: str) -> str:
    return os.path.join(bin_dir, MANIFEST_NAME)


def read_manifest(bin_dir: str) -> dict[str, dict[str, Any]]:
    """{absolute path: {kind, sha256, mode}}; empty when there is none. A corrupt manifest is an error.

    Paths are recorded relative to the bin dir (an absolute one, as older manifests have, stays as it
    is): the install container sees the node under /host, the node sees it at /, and both views
    resolve the same relative path to the same file, so `uninstall` works from either.
    """
    data = read_target(_manifest_path(bin_dir))
    if data is None:
        return {}
    try:
        doc = json.loads(data)
        entries = ({**entry, "path": os.path.normpath(os.path.join(bin_dir, entry["path"]))} for entry in doc["files"])
        return {entry["path"]: entry for entry in entries}
    except (ValueError, KeyError, TypeError) as err:
        raise InstallError(f"{_manifest_path(bin_dir)}: unreadable manifest ({err}): fix or remove it") from None


def _manifest_bytes(bin_dir: str, entries: dict[str, dict[str, Any]]) -> bytes:
    doc = {
        "version": MANIFEST_VERSION,
        "writer": f"{PROG} install (loxi-cni)",
        "files": [{**entries[p], "path": os.path.relpath(p, bin_dir)} for p in sorted(entries)],
    }
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def write_manifest(bin_dir: str, entries: dict[str, dict[str, Any]]) -> None:
    path = _manifest_path(bin_dir)
    if not entries:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            fsync_dir(bin_dir)
        return
    data = _manifest_bytes(bin_dir, entries)
    if read_target(path) != data:
        write_atomic(path, data, MANIFEST_MODE)


def place(kind: str, path: str, data: bytes, mode: int, manifest: dict[str, dict[str, Any]], verify=None) -> Change:
    """Write `data` to `path` unless it already holds exactly that; record it in the manifest."""
    current = read_target(path)
    entry = {"path": path, "kind": kind, "sha256": sha256_of(data), "mode": f"{mode:04o}"}
    if current == data:
        action = "unchanged"
        if (os.stat(path).st_mode & 0o7777) != mode:
            os.chmod(path, mode)
            action = "mode fixed"
    else:
        if current is None:
            action = "created"
        else:
            recorded = manifest.get(path)
            ours = recorded is not None and recorded.get("sha256") == sha256_of(current)
            action = "updated" if ours else "replaced (it was not written by loxi-plan install)"
        if verify is not None:
            write_atomic(path, data, mode, verify)
        else:
            write_atomic(path, data, mode)
    manifest[path] = entry
    return Change(kind, path, action)


def remove_ours(path: str, manifest: dict[str, dict[str, Any]]) -> list[Change]:
    entry = manifest.get(path)
    current = read_target(path) if entry is not None else None
    if entry is None or current is None or sha256_of(current) != entry.get("sha256"):
        return []
    os.unlink(path)
    fsync_dir(os.path.dirname(path))
    del manifest[path]
    return [Change(entry.get("kind", "file"), path, "removed")]
