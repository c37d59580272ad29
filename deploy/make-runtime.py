#!/usr/bin/env python3
"""Assemble the self-contained Python runtime the DaemonSet copies to the node (/opt/loxi/runtime-<id>).

    python3 deploy/make-runtime.py DEST SRC SHIM

DEST gets this interpreter's binary (and libpython when the binary links it), its standard library
(no tests, IDLE, tkinter, ensurepip, no site-packages of the base), loxi-cni and its dependencies
installed from SRC with pip (--target, from a throw-away venv: works on Debian's python3, which has
no pip of its own, and on the official python image alike), the built shim as bin/loxi-cni-shim
(where `loxi-plan install` finds it: <sys.prefix>/bin) and bin/loxi-plan, bin/loxi-agent scripts run
as `DEST/bin/python3 DEST/bin/loxi-plan …`. The interpreter finds its prefix from its own location
(lib/pythonX.Y/os.py beside bin/), so DEST works wherever it is copied. DEST/RUNTIME_ID names the
runtime: the version, the Python version and a hash of every file, so two builds of one version
never share a directory on the node.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

SKIP_STDLIB = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "site-packages", "dist-packages"}
SCRIPTS = {
    "loxi-plan": "from loxi.plan.cli import main",
    "loxi-agent": "from loxi.agent.daemon import main",
}


def copy_interpreter(dest: Path) -> str:
    exe = Path(os.path.realpath(sys.executable))
    ver = f"{sys.version_info[0]}.{sys.version_info[1]}"
    (dest / "bin").mkdir(parents=True)
    shutil.copy2(exe, dest / "bin" / f"python{ver}")
    (dest / "bin" / "python3").symlink_to(f"python{ver}")
    # the official image's binary links libpython with rpath $ORIGIN/../lib; Debian's has it built in
    ldd = subprocess.run(["ldd", str(exe)], capture_output=True, text=True, check=True).stdout
    (dest / "lib").mkdir()
    for lib in re.findall(r"=>\s*(\S*libpython\S+)", ldd):
        shutil.copy2(os.path.realpath(lib), dest / "lib" / os.path.basename(lib))
    stdlib = Path(sysconfig.get_paths()["stdlib"])

    def ignore(directory: str, names: list[str]) -> set[str]:
        if Path(directory) == stdlib:
            return {n for n in names if n in SKIP_STDLIB or n.startswith("config-")}
        return set()

    shutil.copytree(stdlib, dest / "lib" / f"python{ver}", symlinks=True, ignore=ignore, dirs_exist_ok=True)
    dynload = Path(sysconfig.get_config_var("DESTSHARED") or "")
    if dynload.is_dir() and stdlib not in dynload.parents:
        shutil.copytree(dynload, dest / "lib" / f"python{ver}" / "lib-dynload", symlinks=True, dirs_exist_ok=True)
    return ver


def runtime_python(dest: Path, code: str) -> str:
    proc = subprocess.run([str(dest / "bin" / "python3"), "-c", code], capture_output=True, text=True, env={})
    if proc.returncode != 0:
        raise SystemExit(f"make-runtime: {dest}/bin/python3 fails: {proc.stderr.strip()}")
    return proc.stdout.strip()


def install_packages(dest: Path, src: Path) -> Path:
    prefix = runtime_python(dest, "import sys; print(sys.prefix)")
    if Path(prefix) != dest:
        raise SystemExit(f"make-runtime: the copied interpreter does not find its prefix ({prefix} != {dest})")
    site = Path(runtime_python(dest, "import site; print(site.getsitepackages()[0])"))
    cert = os.environ.get("LOXI_PIP_CERT", "")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "venv", f"{tmp}/venv"], check=True)
        subprocess.run(
            [f"{tmp}/venv/bin/pip", "install", "-q", "--no-cache-dir", "--target", str(site), str(src)],
            check=True,
            env={**os.environ, "PIP_CERT": cert} if cert else None,  # the build-isolation pip reads it too
        )
    shutil.rmtree(site / "bin", ignore_errors=True)  # pip's console scripts name the throw-away venv
    for name, line in SCRIPTS.items():
        path = dest / "bin" / name
        path.write_text(f"# run as: <runtime>/bin/python3 {path.name} ARGS\nimport sys\n\n{line}\n\nsys.exit(main())\n")
        path.chmod(0o755)
    return site


def runtime_id(dest: Path) -> str:
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(dest):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            digest.update(str(path.relative_to(dest)).encode() + b"\0")
            digest.update(os.readlink(path).encode() if path.is_symlink() else path.read_bytes())
    version = runtime_python(dest, "import importlib.metadata as m; print(m.version('loxi-cni'))")
    py = "".join(map(str, sys.version_info[:3]))
    return f"{version}-py{py}-{digest.hexdigest()[:12]}"


def main() -> int:
    dest, src, shim = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    if dest.exists():
        raise SystemExit(f"make-runtime: {dest} exists")
    copy_interpreter(dest)
    install_packages(dest, src)
    shutil.copy2(shim, dest / "bin" / "loxi-cni-shim")
    runtime_python(
        dest, "import loxi.engine.commands, loxi.install.cli, loxi.agent.daemon, pyroute2, jsonschema, networkx, jinja2"
    )
    (dest / "RUNTIME_ID").write_text(runtime_id(dest) + "\n")
    print(f"make-runtime: {dest} = runtime-{(dest / 'RUNTIME_ID').read_text().strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
