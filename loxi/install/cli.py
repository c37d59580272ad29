"""`loxi-plan install` / `uninstall`: put loxi-cni where a container runtime finds it, and take it away again.

install places `<bin-dir>/loxi-cni`, one executable launcher bound to the
interpreter and the installation this code runs from: its shebang is that
interpreter with `-IS` (isolated: no PYTHON* variables, no user site, no
script directory; no `site`: no .pth processing), written as one flag group
because Linux passes everything after the interpreter on a #! line as a single
argument (`-I -S` would reach Python as the one argument "-I -S"); and it
adds the directories holding loxi-cni and its dependencies to `sys.path` by
absolute path, so it works with the minimal environment runtimes give plugins
(no PATH, no PYTHONPATH, no virtualenv activation). With `--template` it also
renders the node's conflist, validates it and writes it atomically.

Every file is written only when its content differs (temp file in the same
directory, fsync, rename), so a second install reports "unchanged" and touches
nothing. What install wrote is recorded with its sha256 in
`<bin-dir>/.loxi-cni.manifest.json`; uninstall removes exactly those files,
and only while their content is still what install wrote.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from intent.safe_io import MAX_CONF_BYTES, open_regular
from loxi.atomicfile import fsync_dir, write_atomic
from loxi.plan.subcommand import add_subcommand

PROG = "loxi-plan"
PLUGIN_NAME = "loxi-cni"
INPROCESS_NAME = "loxi-cni-inprocess"  # the launcher's name beside the shim (shim/loxi-shim.c: LAUNCHER_NAME)
SHIM_NAME = "loxi-cni-shim"  # where scripts/setup and the image put the built shim: <sys.prefix>/bin
PLUGIN_TYPE = "loxi-cni"
DIST_NAME = "loxi-cni"
DEFAULT_BIN_DIR = "/opt/cni/bin"
DEFAULT_CONF_DIR = "/etc/cni/net.d"
DEFAULT_CONF_NAME = "10-loxi.conflist"
MANIFEST_NAME = ".loxi-cni.manifest.json"
MANIFEST_VERSION = 1
LAUNCHER_MODE = 0o755
CONF_MODE = 0o644
MANIFEST_MODE = 0o644
MAX_SHEBANG = 255  # the kernel reads at most this much of a #! line (BINPRM_BUF_SIZE 256)

# What the plugin imports: the project's packages and its direct dependencies. Their
# transitive dependencies (attrs, referencing, markupsafe, ...) are found through
# the distribution metadata.
PROJECT_PACKAGES = ("loxi", "intent", "compiler", "applier", "schemas", "templates")
DEPENDENCY_PACKAGES = ("pyroute2", "jsonschema", "networkx", "jinja2")

LAUNCHER_TEMPLATE = """\
#!{{ python }} -IS
# loxi-cni launcher, written by `loxi-plan install` (loxi-cni {{ version }}); install rewrites it, do not edit.
# Bound to {{ python }} and the installation below: no PATH, PYTHONPATH or site processing needed.
import sys

sys.path.extend({{ paths }})

{{ entry }}
"""
# loxi-cni: the thin client (loxi-agent, else in-process); loxi-cni-inprocess (the shim's fallback): in-process
ENTRY = "from loxi.plugin.entry import main\n\nmain()"
ENTRY_INPROCESS = "from loxi.plugin.cni import main_in_process\n\nmain_in_process()"


class InstallError(Exception):
    """What went wrong, as the one line the operator sees."""


# ---------------------------------------------------------------------------
# the launcher


def _package_root(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise InstallError(f"cannot find the package {name!r} in this interpreter ({sys.executable})")
    if spec.submodule_search_locations:  # a package: its parent directory goes on sys.path
        locations = list(spec.submodule_search_locations)
        if spec.origin and spec.origin not in ("namespace", "built-in", "frozen"):
            return Path(spec.origin).resolve().parent.parent
        return Path(locations[0]).resolve().parent
    if not spec.origin:
        raise InstallError(f"the module {name!r} has no file")
    return Path(spec.origin).resolve().parent


_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _distribution_roots(name: str) -> list[Path]:
    """The directories holding `name`'s distribution and, recursively, its installed requirements."""
    roots: list[Path] = []
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop(0)
        key = re.sub(r"[-_.]+", "-", current).lower()
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = importlib.metadata.distribution(current)
        except importlib.metadata.PackageNotFoundError:
            continue
        roots.append(Path(str(dist.locate_file(""))).resolve())
        for requirement in dist.requires or ():
            if "extra" in requirement.partition(";")[2]:
                continue
            match = _REQ_NAME.match(requirement)
            if match:
                todo.append(match.group(1))
    return roots


def _stdlib_dirs() -> set[Path]:
    import sysconfig

    return {Path(sysconfig.get_paths()[key]).resolve() for key in ("stdlib", "platstdlib")}


def import_paths() -> list[str]:
    """The directories the launcher puts on sys.path, in order, without duplicates or stdlib dirs."""
    found: list[Path] = [_package_root(name) for name in (*PROJECT_PACKAGES, *DEPENDENCY_PACKAGES)]
    found += _distribution_roots(DIST_NAME)
    for dep in DEPENDENCY_PACKAGES:
        found += _distribution_roots(dep)
    stdlib = _stdlib_dirs()
    paths: list[str] = []
    for path in found:
        text = str(path)
        if path not in stdlib and text not in paths:
            paths.append(text)
    return paths


def _version() -> str:
    try:
        return importlib.metadata.version(DIST_NAME)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def render_launcher(python: str | None = None, paths: Sequence[str] | None = None, inprocess: bool = False) -> str:
    import jinja2

    python = python or sys.executable
    if not python or not os.path.isabs(python):
        raise InstallError(f"the interpreter path {python!r} is not absolute")
    if any(ch.isspace() for ch in python):
        raise InstallError(f"the interpreter path {python!r} contains white space: it cannot go on a #! line")
    shebang = f"#!{python} -IS"
    if len(shebang) > MAX_SHEBANG:
        raise InstallError(f"the interpreter path is too long for a #! line ({len(shebang)} > {MAX_SHEBANG})")
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    return env.from_string(LAUNCHER_TEMPLATE).render(
        python=python,
        paths=repr(list(paths if paths is not None else import_paths())),
        version=_version(),
        entry=ENTRY_INPROCESS if inprocess else ENTRY,
    )


def verify_launcher(path: str) -> None:
    """Run the launcher as a runtime would (empty environment): VERSION must answer, the engine must import."""
    try:
        proc = subprocess.run(
            [path], env={"CNI_COMMAND": "VERSION"}, input=b"{}", capture_output=True, timeout=60, cwd="/"
        )
    except OSError as err:
        raise InstallError(f"the launcher does not run: {err}") from None
    try:
        versions = json.loads(proc.stdout)["supportedVersions"]
    except (ValueError, KeyError, TypeError):
        versions = None
    if proc.returncode != 0 or not versions:
        detail = (proc.stderr or proc.stdout).decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise InstallError(f"the launcher fails VERSION (exit {proc.returncode}): {detail[0]}")
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    interpreter = text.splitlines()[0][2:].split()[0]
    body = text.split("\nfrom loxi.", 1)[0] + "\n"
    probe = body + "import loxi.plugin.entry, loxi.plugin.cni, loxi.engine, loxi.plugin.client, loxi.agent.daemon\n"
    proc = subprocess.run(
        [interpreter, "-I", "-S", "-c", probe], env={}, capture_output=True, timeout=120, cwd="/", check=False
    )
    if proc.returncode != 0:
        last = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise InstallError(f"the launcher cannot import the engine: {last[0]}")


def default_shim() -> str:
    """The built shim of this installation (scripts/setup and deploy/Dockerfile put it there)."""
    return os.path.join(sys.prefix, "bin", SHIM_NAME)


def verify_shim(path: str) -> None:
    """The shim answers VERSION itself, from the list it was built with: it must be this engine's."""
    from intent.versions import version_info_json

    try:
        proc = subprocess.run([path], env={"CNI_COMMAND": "VERSION"}, capture_output=True, timeout=30, cwd="/")
    except OSError as err:
        raise InstallError(f"the shim does not run: {err}") from None
    if proc.returncode != 0 or proc.stdout != (version_info_json() + "\n").encode():
        raise InstallError(
            f"the shim answers VERSION with {proc.stdout[:200]!r} (exit {proc.returncode}), not this engine's "
            "versions: rebuild it (shim/build.sh)"
        )


# ---------------------------------------------------------------------------
# the conflist


def render_conflist(template: str, node_pod_cidr: str | None, variables: Sequence[str] = ()) -> str:
    from loxi.plan import conftemplate as ct
    from loxi.plan.errors import PlanError

    try:
        path = ct.find_template(template)
        values: dict[str, Any] = dict(ct.parse_var(v) for v in variables)
        if node_pod_cidr is not None:
            values["node_pod_cidr"] = ct.pod_cidr(node_pod_cidr)
        text = ct.render(path, values)
    except PlanError as err:
        raise InstallError(str(err)) from None
    validate_conflist(text, str(path))
    return text


def validate_conflist(text: str, source: str = "<conflist>") -> dict[str, Any]:
    """Parses, is a conflist with a loxi-cni plugin, and that plugin passes loxi-cni's schema and rules."""
    from intent.config import validate_schema
    from intent.errors import CniError

    try:
        doc = json.loads(text)
    except ValueError as err:
        raise InstallError(f"{source}: the rendered conflist is not JSON: {err}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("plugins"), list):
        raise InstallError(f"{source}: the rendered conf is not a conflist (no 'plugins' list)")
    if not doc.get("name"):
        raise InstallError(f"{source}: the rendered conflist has no 'name'")
    ours = [p for p in doc["plugins"] if isinstance(p, dict) and p.get("type") == PLUGIN_TYPE]
    if not ours:
        raise InstallError(f"{source}: the rendered conflist has no plugin of type {PLUGIN_TYPE!r}")
    for plugin in ours:
        merged = {"cniVersion": doc.get("cniVersion", ""), "name": doc["name"], **plugin}
        try:
            validate_schema(merged)
        except CniError as err:
            raise InstallError(f"{source}: {err.msg}" + (f" ({err.details})" if err.details else "")) from None
    try:
        from loxi.plan.validate import validate_text
    except ImportError:  # the richer checks are optional here
        return doc
    report = validate_text(text, source)
    if not report.valid:
        first = next(p for p in report.problems if p.severity == "error") if report.problems else None
        raise InstallError(f"{source}: invalid conflist: {getattr(first, 'message', first)}")
    return doc


# ---------------------------------------------------------------------------
# files, atomically and only when different


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read(path: str) -> bytes | None:
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
def _dir_lock(directory: str) -> Iterator[None]:
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
    """{path: {kind, sha256, mode}}; empty when there is none. A corrupt manifest is an error."""
    data = _read(_manifest_path(bin_dir))
    if data is None:
        return {}
    try:
        doc = json.loads(data)
        return {entry["path"]: entry for entry in doc["files"]}
    except (ValueError, KeyError, TypeError) as err:
        raise InstallError(f"{_manifest_path(bin_dir)}: unreadable manifest ({err}): fix or remove it") from None


def _manifest_bytes(entries: dict[str, dict[str, Any]]) -> bytes:
    doc = {
        "version": MANIFEST_VERSION,
        "writer": f"{PROG} install (loxi-cni)",
        "files": [entries[p] for p in sorted(entries)],
    }
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def _write_manifest(bin_dir: str, entries: dict[str, dict[str, Any]]) -> None:
    path = _manifest_path(bin_dir)
    if not entries:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            fsync_dir(bin_dir)
        return
    data = _manifest_bytes(entries)
    if _read(path) != data:
        write_atomic(path, data, MANIFEST_MODE)


def place(kind: str, path: str, data: bytes, mode: int, manifest: dict[str, dict[str, Any]], verify=None) -> Change:
    """Write `data` to `path` unless it already holds exactly that; record it in the manifest."""
    current = _read(path)
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


# ---------------------------------------------------------------------------
# the commands


def install(
    bin_dir: str = DEFAULT_BIN_DIR,
    conf_dir: str = DEFAULT_CONF_DIR,
    template: str | None = None,
    node_pod_cidr: str | None = None,
    conf_name: str = DEFAULT_CONF_NAME,
    variables: Sequence[str] = (),
    verify: bool = True,
    shim: str | None = None,
) -> list[Change]:
    """`shim`: the built shim to place as loxi-cni (default `default_shim()` when it exists;
    "" places the Python launcher as loxi-cni, as without a shim)."""
    bin_dir = os.path.abspath(bin_dir)
    conf_dir = os.path.abspath(conf_dir)
    if node_pod_cidr is not None and template is None:
        raise InstallError("--node-pod-cidr needs --template (the conflist template it fills in)")
    if os.sep in conf_name or not conf_name.endswith((".conflist", ".conf", ".json")):
        raise InstallError(f"--conf-name {conf_name!r}: a file name ending in .conflist (runtimes read only those)")
    # everything that can fail on the input is done before anything is written
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
    with _dir_lock(bin_dir):
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
            changes += _remove_ours(os.path.join(bin_dir, INPROCESS_NAME), manifest)
        if conflist is not None:
            changes.append(place("conflist", os.path.join(conf_dir, conf_name), conflist, CONF_MODE, manifest))
        _write_manifest(bin_dir, manifest)
    return changes


def _remove_ours(path: str, manifest: dict[str, dict[str, Any]]) -> list[Change]:
    entry = manifest.get(path)
    current = _read(path) if entry is not None else None
    if entry is None or current is None or sha256_of(current) != entry.get("sha256"):
        return []
    os.unlink(path)
    fsync_dir(os.path.dirname(path))
    del manifest[path]
    return [Change(entry.get("kind", "file"), path, "removed")]


def uninstall(bin_dir: str = DEFAULT_BIN_DIR) -> list[Change]:
    bin_dir = os.path.abspath(bin_dir)
    if not os.path.isdir(bin_dir):
        return []
    changes: list[Change] = []
    with _dir_lock(bin_dir):
        manifest = read_manifest(bin_dir)
        for path in sorted(manifest):
            entry = manifest[path]
            current = _read(path)
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
        _write_manifest(bin_dir, manifest)  # keeps only what was not removed
    return changes


# ---------------------------------------------------------------------------
# command line

INSTALL_HELP = "Place the loxi-cni launcher (and the node's conflist) for container runtimes; idempotent."
INSTALL_EXAMPLES = """\
examples:
  loxi-plan install
  loxi-plan install --template loxilight --node-pod-cidr 10.244.1.0/24
  loxi-plan install --cni-bin-dir /opt/cni/bin --cni-conf-dir /etc/cni/net.d \\
      --template /etc/loxi/my.conflist.j2 --node-pod-cidr 10.244.1.0/24 --var vlan_id=0 --conf-name 10-loxi.conflist

exit status: 0 done (every line says created, updated, replaced or unchanged), 1 error (nothing half-written)"""
UNINSTALL_HELP = "Remove exactly what install placed (per its manifest); files changed since are kept, with a warning."
UNINSTALL_EXAMPLES = """\
examples:
  loxi-plan uninstall
  loxi-plan uninstall --cni-bin-dir /opt/cni/bin

exit status: 0 done (files changed since install are kept and named on stderr), 1 error"""


def _add_install(subparsers: Any) -> None:
    parser = add_subcommand(subparsers, "install", INSTALL_HELP, INSTALL_EXAMPLES)
    parser.add_argument("--cni-bin-dir", metavar="DIR", default=DEFAULT_BIN_DIR, help=f"default {DEFAULT_BIN_DIR}")
    parser.add_argument("--cni-conf-dir", metavar="DIR", default=DEFAULT_CONF_DIR, help=f"default {DEFAULT_CONF_DIR}")
    parser.add_argument("--template", metavar="T", help="conflist template: a path or a shipped name (loxilight)")
    parser.add_argument(
        "--node-pod-cidr", metavar="CIDR", help="this node's pod CIDR (template variable node_pod_cidr)"
    )
    parser.add_argument("--var", metavar="KEY=VALUE", action="append", default=[], help="another template variable")
    parser.add_argument("--conf-name", metavar="NAME", default=DEFAULT_CONF_NAME, help=f"default {DEFAULT_CONF_NAME}")
    parser.add_argument("--no-verify", action="store_true", help="do not run the new launcher before placing it")
    parser.add_argument(
        "--shim",
        metavar="PATH",
        default=None,
        help=f"the built shim to place as loxi-cni (default {default_shim()} when built; '' for the Python launcher)",
    )
    parser.set_defaults(handler=main_install)


def _add_uninstall(subparsers: Any) -> None:
    parser = add_subcommand(subparsers, "uninstall", UNINSTALL_HELP, UNINSTALL_EXAMPLES)
    parser.add_argument(
        "--cni-bin-dir",
        metavar="DIR",
        default=DEFAULT_BIN_DIR,
        help=f"where install put the launcher and manifest ({DEFAULT_BIN_DIR})",
    )
    parser.set_defaults(handler=main_uninstall)


def register(subparsers: Any) -> None:
    """Add `install` and `uninstall` to an argparse subparsers object; each sets `handler`."""
    _add_install(subparsers)
    _add_uninstall(subparsers)


def main_install(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        changes = install(
            bin_dir=args.cni_bin_dir,
            conf_dir=args.cni_conf_dir,
            template=args.template,
            node_pod_cidr=args.node_pod_cidr,
            conf_name=args.conf_name,
            variables=args.var,
            verify=not getattr(args, "no_verify", False),
            shim=getattr(args, "shim", None),
        )
    except (InstallError, OSError) as exc:
        err.write(f"{PROG} install: error: {exc}\n")
        return 1
    for change in changes:
        out.write(change.line() + "\n")
        if change.action.startswith("replaced"):
            err.write(f"{PROG} install: warning: {change.path} was not written by install: replaced\n")
    shim = next((c for c in changes if c.kind == "shim"), None)
    if shim is not None:
        out.write(f"install: {shim.path} is the static shim (to loxi-agent; fallback {INPROCESS_NAME} beside it)\n")
    else:
        out.write(f"install: {os.path.join(os.path.abspath(args.cni_bin_dir), PLUGIN_NAME)} is the Python launcher\n")
    changed = sum(1 for c in changes if c.action != "unchanged")
    out.write("install: unchanged\n" if not changed else f"install: {changed} changed\n")
    return 0


def main_uninstall(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        changes = uninstall(args.cni_bin_dir)
    except (InstallError, OSError) as exc:
        err.write(f"{PROG} uninstall: error: {exc}\n")
        return 1
    if not changes:
        out.write(f"uninstall: nothing installed in {os.path.abspath(args.cni_bin_dir)} (no {MANIFEST_NAME})\n")
        return 0
    for change in changes:
        out.write(change.line() + "\n")
        if change.action.startswith("kept"):
            err.write(f"{PROG} uninstall: warning: {change.path} changed since install: not removed\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description="install / uninstall loxi-cni on this node")
    subparsers = parser.add_subparsers(dest="subcommand", metavar="COMMAND", required=True)
    register(subparsers)
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
