"""The launcher `loxi-plan install` writes, and the checks that it (and the built shim) run.

The launcher is one executable bound to the interpreter and the installation
this code runs from: its shebang is that interpreter with `-IS` (isolated: no
PYTHON* variables, no user site, no script directory; no `site`: no .pth
processing), written as one flag group because Linux passes everything after
the interpreter on a #! line as a single argument (`-I -S` would reach Python
as the one argument "-I -S"); and it adds the directories holding loxi-cni and
its dependencies to `sys.path` by absolute path, so it works with the minimal
environment runtimes give plugins (no PATH, no PYTHONPATH, no virtualenv
activation).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from loxi.install.base import DIST_NAME, SHIM_NAME, InstallError

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
    from applier.templating import make_environment

    python = python or sys.executable
    if not python or not os.path.isabs(python):
        raise InstallError(f"the interpreter path {python!r} is not absolute")
    if any(ch.isspace() for ch in python):
        raise InstallError(f"the interpreter path {python!r} contains white space: it cannot go on a #! line")
    shebang = f"#!{python} -IS"
    if len(shebang) > MAX_SHEBANG:
        raise InstallError(f"the interpreter path is too long for a #! line ({len(shebang)} > {MAX_SHEBANG})")
    return (
        make_environment()
        .from_string(LAUNCHER_TEMPLATE)
        .render(
            python=python,
            paths=repr(list(paths if paths is not None else import_paths())),
            version=_version(),
            entry=ENTRY_INPROCESS if inprocess else ENTRY,
        )
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
    probe = body + "import loxi.plugin.entry, loxi.plugin.cni, loxi.engine.commands, loxi.plugin.client,"
    probe += " loxi.agent.daemon\n"
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
