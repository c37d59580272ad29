"""`install` and `uninstall` on one node's directories: what is placed where, in which order, under the lock.

install places `<bin-dir>/loxi-cni` (the built shim, with the launcher beside
it as its fallback, or the launcher itself) and, with a template, the node's
conflist; uninstall removes what the manifest names, while unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from loxi.atomicfile import fsync_dir
from loxi.install.base import (
    CONF_MODE,
    DEFAULT_BIN_DIR,
    DEFAULT_CONF_DIR,
    DEFAULT_CONF_NAME,
    INPROCESS_NAME,
    LAUNCHER_MODE,
    PLUGIN_NAME,
    InstallError,
)
from loxi.install.conflist import render_conflist
from loxi.install.launcher import default_shim, render_launcher, verify_launcher, verify_shim
from loxi.install.manifest import (
    Change,
    dir_lock,
    place,
    read_manifest,
    read_target,
    remove_ours,
    sha256_of,
    write_manifest,
)
from loxi.install.private import require_private_environment


def install(
    bin_dir: str = DEFAULT_BIN_DIR,
    conf_dir: str = DEFAULT_CONF_DIR,
    template: str | None = None,
    node_pod_cidr: str | None = None,
    conf_name: str = DEFAULT_CONF_NAME,
    variables: Sequence[str] = (),
    verify: bool = True,
    shim: str | None = None,
    allow_shared: bool = False,
) -> list[Change]:
    """`shim`: the built shim to place as loxi-cni (default `default_shim()` when it exists;
    "" places the Python launcher as loxi-cni, as without a shim). `allow_shared`: bind the
    launcher to an interpreter that is no private environment (`loxi.install.private`)."""
    bin_dir = os.path.abspath(bin_dir)
    conf_dir = os.path.abspath(conf_dir)
    if node_pod_cidr is not None and template is None:
        raise InstallError("--node-pod-cidr needs --template (the conflist template it fills in)")
    if os.sep in conf_name or not conf_name.endswith((".conflist", ".conf", ".json")):
        raise InstallError(f"--conf-name {conf_name!r}: a file name ending in .conflist (runtimes read only those)")
    # everything that can fail on the input is done before anything is written
    require_private_environment(allow_shared)
    launcher = None  # rendered below, once it is known whether it runs beside the shim
    if shim is None:
        shim = default_shim() if os.path.isfile(default_shim()) else ""
    shim_bytes = None
    if shim:  # the shim hands the call to loxi-agent itself: its fallback runs in-process at once
        try:
            with open(shim, "rb") as handle:
                shim_bytes = handle.read()
        except OSError as err:
            raise InstallError(f"the shim {shim}: {err.strerror or err}") from None
    launcher = render_launcher(inprocess=shim_bytes is not None).encode()
    conflist = render_conflist(template, node_pod_cidr, variables).encode() if template else None
    os.makedirs(bin_dir, mode=0o755, exist_ok=True)
    if conflist is not None:
        os.makedirs(conf_dir, mode=0o755, exist_ok=True)
    changes: list[Change] = []
    with dir_lock(bin_dir):
        manifest = read_manifest(bin_dir)
        # a manifest entry whose file is gone and is not re-placed now is forgotten
        for path in [p for p in manifest if not os.path.exists(p)]:
            del manifest[path]
        # with the shim: the launcher beside it first (the shim's fallback), then the shim as loxi-cni
        launcher_path = os.path.join(bin_dir, INPROCESS_NAME if shim_bytes is not None else PLUGIN_NAME)
        changes.append(
            place("launcher", launcher_path, launcher, LAUNCHER_MODE, manifest, verify_launcher if verify else None)
        )
        if shim_bytes is not None:
            changes.append(
                place(
                    "shim",
                    os.path.join(bin_dir, PLUGIN_NAME),
                    shim_bytes,
                    LAUNCHER_MODE,
                    manifest,
                    verify_shim if verify else None,
                )
            )
        else:  # a launcher beside a former shim is ours to remove, while unchanged
            changes += remove_ours(os.path.join(bin_dir, INPROCESS_NAME), manifest)
        if conflist is not None:
            changes.append(place("conflist", os.path.join(conf_dir, conf_name), conflist, CONF_MODE, manifest))
        write_manifest(bin_dir, manifest)
    return changes


def uninstall(bin_dir: str = DEFAULT_BIN_DIR) -> list[Change]:
    bin_dir = os.path.abspath(bin_dir)
    if not os.path.isdir(bin_dir):
        return []
    changes: list[Change] = []
    with dir_lock(bin_dir):
        manifest = read_manifest(bin_dir)
        for path in sorted(manifest):
            entry = manifest[path]
            current = read_target(path)
            if current is None:
                changes.append(Change(entry.get("kind", "file"), path, "missing"))
                del manifest[path]
            elif sha256_of(current) != entry.get("sha256"):
                changes.append(Change(entry.get("kind", "file"), path, "kept: changed since install, not removed"))
            else:
                os.unlink(path)
                fsync_dir(os.path.dirname(path))
                changes.append(Change(entry.get("kind", "file"), path, "removed"))
                del manifest[path]
        write_manifest(bin_dir, manifest)  # keeps only what was not removed
    return changes
