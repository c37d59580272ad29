"""Run commands inside a second, complete Linux kernel: User-Mode Linux (UML).

The host kernel of our dev/CI machines lacks 802.1Q VLAN devices and bridge VLAN
filtering. The Debian package ``user-mode-linux`` ships a kernel that runs as an
ordinary process (``/usr/bin/linux``, no KVM needed) with those features as modules
in ``/usr/lib/uml/modules/<version>``. This module boots that kernel once with the
host's own filesystem as root (hostfs), runs one command as a child of a generated
init script and hands back its exit status and console output.

Guest environment (what a command run by :func:`run_in_uml` can rely on):

* the host's files, read-write: same Python, same venvs and site-packages, same repo;
* root in a fresh kernel with ``bridge``, ``8021q`` and ``veth`` loaded, ``lo`` up,
  proc and sysfs mounted, no other network devices;
* private tmpfs on ``/run`` (with ``/run/netns`` and ``/run/tmp``), ``/dev/shm``,
  ``/var/lib/cni``, ``/etc/cni/net.d`` and ``/run/loxi``: state there never reaches
  the host (everything else written in the guest *does* land in the host's files);
* exactly the environment passed as ``env`` plus ``LOXI_IN_UML=1``, the working
  directory ``cwd`` and stdin from ``/dev/null``; stdout and stderr are merged.

Pitfalls:

* Python in the guest is 5-7x slower than on the host (``import pyroute2`` ~0.7 s,
  ``IPRoute(netns=...)`` ~0.2 s): batch guest tests into one boot (about 1.5-2 s each).
* Only the paths above are private. A guest test that writes to /tmp, /var or the repo
  writes to the host's files; ``default_guest_env`` therefore sets TMPDIR=/run/tmp.
* The UML kernel process needs an exec-capable dir for its memory file: ``/dev/shm``
  mounted noexec makes it die ("/dev/shm must be not mounted noexec"); this module
  passes TMPDIR=<first exec-capable of $TMPDIR, /dev/shm, its temp dir, /var/tmp, /tmp>.
* UML forks helper processes that outlive a killed main process: the whole process
  group is SIGKILLed afterwards, a detached watchdog does the same if the caller dies,
  and PR_SET_PDEATHSIG ties the kernel to the *thread* that called :func:`run_in_uml`.
* sysrq power-off is asynchronous; the init script keeps PID 1 alive after triggering it
  (an exiting PID 1 panics the kernel and the exit status can get lost).

Stdlib only; Linux only.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "GUEST_ENV_FLAG",
    "GUEST_MODULES",
    "GUEST_TMPDIR",
    "GUEST_TMPFS_DIRS",
    "UmlError",
    "UmlKernel",
    "UmlPytest",
    "UmlRun",
    "UmlUnavailable",
    "default_guest_env",
    "find_uml",
    "guest_skip_reason",
    "in_uml_guest",
    "probe_uml",
    "pytest_outcomes",
    "run_in_uml",
    "run_pytest_in_uml",
]

#: The UML kernel; ``LOXI_UML_KERNEL=/nonexistent`` makes the tier skip (e.g. to check the skip path).
UML_BINARY = os.environ.get("LOXI_UML_KERNEL", "/usr/bin/linux")
UML_MODULES_ROOT = "/usr/lib/uml/modules"
#: Set to "1" by the generated init script for the guest command.
GUEST_ENV_FLAG = "LOXI_IN_UML"
#: Kernel modules loaded in the guest before the command runs.
GUEST_MODULES = ("bridge", "8021q", "veth")
#: Mount points that get a private tmpfs in the guest (missing ones are created on the host, removed afterwards).
GUEST_TMPFS_DIRS = ("/var/lib/cni", "/etc/cni/net.d", "/run/loxi")
#: World-writable scratch dir on the guest's private /run tmpfs; use it as TMPDIR.
GUEST_TMPDIR = "/run/tmp"
#: Host paths hidden by guest tmpfs mounts: cwd and the harness's temp dir must avoid them.
_MASKED_IN_GUEST = ("/run", "/dev/shm", *GUEST_TMPFS_DIRS)
_GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_PR_SET_PDEATHSIG = 1

#: Type of the ``uml_pytest`` fixture: ``(test_paths, extra_args=(), timeout=300) -> (rc, output)``.
UmlPytest = Callable[..., tuple[int, str]]


class UmlError(RuntimeError):
    """The harness failed (no exit status, timeout): not the guest command."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(f"{message}\n--- UML console output ---\n{output}" if output else message)
        self.output = output


class UmlUnavailable(UmlError):
    """No usable UML kernel on this machine; the message says why."""


@dataclass(frozen=True)
class UmlKernel:
    """A UML kernel binary and the module tree that matches it."""

    binary: str  # e.g. /usr/bin/linux
    version: str  # e.g. 6.1.176
    modules_dir: str  # e.g. /usr/lib/uml/modules/6.1.176


@dataclass(frozen=True)
class UmlRun:
    """Result of one boot: the command's exit status, console output (CR stripped), wall time."""

    returncode: int
    output: str
    seconds: float


def _find_tool(name: str) -> str | None:
    return shutil.which(name, path=_GUEST_PATH)


@functools.lru_cache(maxsize=1)
def probe_uml() -> tuple[UmlKernel | None, str]:
    """Look for a usable UML kernel. Returns ``(kernel, "")`` or ``(None, reason)``."""
    if not sys.platform.startswith("linux"):
        return None, f"UML needs a Linux host, not {sys.platform}"
    install = "apt-get install -y user-mode-linux kmod"
    if not os.access(UML_BINARY, os.X_OK):
        return None, f"no UML kernel at {UML_BINARY} ({install})"
    for tool in ("modprobe", "ip", "stty", "env"):
        if _find_tool(tool) is None:
            return None, f"{tool} not found in {_GUEST_PATH} (needed by the guest init; {install} iproute2)"
    try:
        versions = sorted(os.listdir(UML_MODULES_ROOT))
    except OSError:
        versions = []
    try:
        out = subprocess.run(
            [UML_BINARY, "--version"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"{UML_BINARY} --version failed: {exc}"
    version = out.split()[-1] if out else ""
    if version not in versions:
        if not version and len(versions) == 1:
            version = versions[0]
        else:
            return None, f"no UML modules for kernel {version!r} in {UML_MODULES_ROOT} (found {versions})"
    return UmlKernel(UML_BINARY, version, os.path.join(UML_MODULES_ROOT, version)), ""


def find_uml() -> UmlKernel | None:
    """The UML kernel, or None when absent (:func:`probe_uml` gives the reason)."""
    return probe_uml()[0]


def in_uml_guest() -> bool:
    """True inside a guest booted by :func:`run_in_uml` (env flag set and 8021q present)."""
    return guest_skip_reason() is None


def guest_skip_reason() -> str | None:
    """Why guest-only tests cannot run here, or None when inside a proper UML guest."""
    if os.environ.get(GUEST_ENV_FLAG) != "1":
        return (
            f"guest-only test: runs inside User-Mode Linux ({GUEST_ENV_FLAG}=1 not set); "
            "run tests/kernel/test_uml_tier.py instead"
        )
    if not (os.path.exists("/proc/net/vlan") or os.path.isdir("/sys/module/8021q")):
        return f"{GUEST_ENV_FLAG}=1 but this kernel has no 8021q (module not loaded?)"
    return None


def _under(path: str, prefixes: Sequence[str]) -> str | None:
    real = os.path.realpath(path)
    for prefix in prefixes:
        if real == prefix or real.startswith(prefix.rstrip("/") + "/"):
            return prefix
    return None


def _exec_ok(path: str) -> bool:
    """A writable directory on a filesystem without noexec (UML mmaps its RAM file PROT_EXEC)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK) and not st.f_flag & os.ST_NOEXEC


def _uml_memory_dir(private_dir: str) -> str:
    """Pick TMPDIR for the UML kernel process (where it creates its memory file).

    UML refuses to start ("/dev/shm must be not mounted noexec") when its temp dir is
    noexec. Prefer tmpfs (/dev/shm) for speed; otherwise any exec-capable dir works
    (UML prints a harmless "not on tmpfs" warning).
    """
    for cand in (os.environ.get("TMPDIR"), "/dev/shm", private_dir, "/var/tmp", "/tmp"):
        if cand and _exec_ok(cand):
            return cand
    raise UmlUnavailable("no exec-capable temp dir for UML's memory file (tried $TMPDIR, /dev/shm, /var/tmp, /tmp)")


def _private_dir_base() -> str:
    """A host temp dir that the guest also sees (not hidden by its tmpfs mounts)."""
    for cand in (tempfile.gettempdir(), "/var/tmp", "/tmp"):
        if os.path.isdir(cand) and os.access(cand, os.W_OK) and not _under(cand, _MASKED_IN_GUEST):
            return cand
    raise UmlUnavailable("no writable temp dir outside " + ", ".join(_MASKED_IN_GUEST))


def _missing_host_dirs(paths: Sequence[str]) -> list[str]:
    """Directories (ancestors first) that the guest's ``mkdir -p`` would create on the host."""
    missing: list[str] = []
    for path in paths:
        if _under(path, ("/run",)):
            continue  # lives on the guest's /run tmpfs
        chain = []
        while not os.path.lexists(path):
            chain.append(path)
            path = os.path.dirname(path)
        missing += [d for d in reversed(chain) if d not in missing]
    return missing


def _init_script(
    kernel: UmlKernel, moddir: str, status: str, argv: Sequence[str], cwd: str, env: Mapping[str, str]
) -> str:
    q = shlex.quote
    assignments = " ".join(q(f"{k}={v}") for k, v in {**env, GUEST_ENV_FLAG: "1"}.items())
    tmpfs = " ".join(q(d) for d in GUEST_TMPFS_DIRS)
    return f"""#!/bin/sh
# Generated by tests/kernel/uml.py: PID 1 of a UML guest. Do not edit.
export PATH={_GUEST_PATH}
warn() {{ echo "uml-init: $*" >&2; }}
finish() {{
    echo "$1" > {q(status + ".part")} && mv {q(status + ".part")} {q(status)}
    sync
    echo o > /proc/sysrq-trigger
    # sysrq power-off is asynchronous: PID 1 must not exit first (that panics the kernel).
    while :; do sleep 1; done
}}
mount -t proc proc /proc || warn "mount /proc failed"
mount -t sysfs sys /sys || warn "mount /sys failed"
mkdir -p /run /dev/shm
mount -t tmpfs -o mode=0755 tmpfs /run || warn "tmpfs /run failed"
mount -t tmpfs -o mode=1777 tmpfs /dev/shm || warn "tmpfs /dev/shm failed"
mkdir -p /run/netns {q(GUEST_TMPDIR)} && chmod 1777 {q(GUEST_TMPDIR)}
ip link set lo up || warn "lo up failed"
stty -onlcr 2>/dev/null || warn "stty -onlcr failed"
modprobe -d {q(moddir)} -a {" ".join(GUEST_MODULES)} || warn "modprobe {" ".join(GUEST_MODULES)} failed"
# Mount points missing on the host are created (through hostfs); run_in_uml removes them again.
for d in {tmpfs}; do
    mkdir -p "$d" && mount -t tmpfs -o mode=0755 tmpfs "$d" || warn "tmpfs $d failed"
done
cd {q(cwd)} || {{ warn "cd {cwd} failed"; finish 125; }}
env -i {assignments} {" ".join(q(a) for a in argv)} </dev/null
finish $?
"""


_WATCHDOG = """
import os, signal, sys, time
parent, pgid, deadline = int(sys.argv[1]), int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
while True:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        break
    try:
        os.kill(parent, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    if not alive or time.monotonic() > deadline:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        break
    time.sleep(0.5)
"""


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _kill_group(pgid: int) -> None:
    """SIGKILL the kernel's process group (UML leaves helper processes behind otherwise)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)  # zombies still count until PID 1 reaps them; wait briefly
        except ProcessLookupError:
            return
        time.sleep(0.05)


def run_in_uml(
    argv: list[str],
    *,
    cwd: str,
    env: dict[str, str],
    timeout: float = 300,
    mem: str = "1G",
) -> UmlRun:
    """Boot the UML kernel once, run ``argv`` in ``cwd`` with exactly ``env``, power off.

    ``argv[0]`` is looked up in ``env["PATH"]`` (``env -i`` semantics); prefer absolute
    paths such as ``sys.executable``. ``cwd`` must be an existing absolute path not under
    /run, /dev/shm or the guest's tmpfs mounts. ``mem`` is UML's ``mem=`` (e.g. ``512M``).

    Returns the command's exit status and the merged console output. Raises
    :class:`UmlUnavailable` when there is no UML kernel and :class:`UmlError` when the
    boot timed out or never reported an exit status (the console output is in the message).
    """
    kernel, reason = probe_uml()
    if kernel is None:
        raise UmlUnavailable(reason)
    if not argv:
        raise ValueError("argv is empty")
    if not os.path.isabs(cwd) or not os.path.isdir(cwd):
        raise ValueError(f"cwd must be an existing absolute directory: {cwd!r}")
    if masked := _under(cwd, _MASKED_IN_GUEST):
        raise ValueError(f"cwd {cwd!r} is hidden in the guest by its tmpfs on {masked}")
    if not re.fullmatch(r"[0-9]+[KMG]?", mem):
        raise ValueError(f"bad mem {mem!r}, expected e.g. 512M or 1G")
    for key, value in env.items():
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise ValueError(f"bad environment entry {key!r}")

    private = tempfile.mkdtemp(prefix="loxi-uml-", dir=_private_dir_base())
    missing = _missing_host_dirs(GUEST_TMPFS_DIRS)
    proc: subprocess.Popen[bytes] | None = None
    console = os.path.join(private, "console.log")
    start = time.monotonic()
    try:
        moddir = os.path.join(private, "modroot")
        os.makedirs(os.path.join(moddir, "lib", "modules"))
        os.symlink(kernel.modules_dir, os.path.join(moddir, "lib", "modules", kernel.version))
        status = os.path.join(private, "status")
        init = os.path.join(private, "init")
        with open(init, "w", encoding="utf-8") as f:
            f.write(_init_script(kernel, moddir, status, argv, os.path.realpath(cwd), env))
        os.chmod(init, 0o755)
        cmd = [
            kernel.binary,
            f"mem={mem}",
            "root=/dev/root",
            "rootfstype=hostfs",
            "rootflags=/",
            "rw",
            f"init={init}",
            "con0=fd:0,fd:1",
            "con=null",
            "quiet",
            "loglevel=1",
            f"uml_dir={private}",
            f"umid={os.path.basename(private)}",
        ]
        kenv = {"PATH": _GUEST_PATH, "TMPDIR": _uml_memory_dir(private)}
        with open(console, "wb") as out:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=kenv,
                start_new_session=True,  # own process group: UML forks helper processes
                preexec_fn=_set_pdeathsig,
            )
        # Out-of-process guard: kills the group even if this Python process dies.
        subprocess.Popen(
            [sys.executable, "-I", "-c", _WATCHDOG, str(os.getpid()), str(proc.pid), str(timeout + 30)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.wait()
            raise UmlError(f"UML guest timed out after {timeout:.0f}s running {argv!r}", _read(console)) from None
        seconds = time.monotonic() - start
        output = _read(console)
        try:
            with open(status, encoding="utf-8") as f:
                returncode = int(f.read().strip())
        except (OSError, ValueError):
            raise UmlError(
                f"UML guest never reported an exit status (kernel exited {proc.returncode}) for {argv!r}", output
            ) from None
        return UmlRun(returncode=returncode, output=output, seconds=seconds)
    finally:
        if proc is not None:
            _kill_group(proc.pid)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(private, ignore_errors=True)
        for d in reversed(missing):  # only the empty mount points the guest created
            with contextlib.suppress(OSError):
                os.rmdir(d)


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", errors="replace").replace("\r", "")
    except OSError:
        return ""


def default_guest_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The host's environment adapted for the guest.

    Keeps PATH, PYTHONPATH, HOME, VIRTUAL_ENV, PYENV_ROOT etc.; drops pytest's per-run
    variables (PYTEST_CURRENT_TEST, PYTEST_ADDOPTS, xdist's) and points TMPDIR at the
    guest's private tmpfs so tmp files (pytest's tmp_path included) never hit the host.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("PYTEST_") or k in ("TMP", "TEMP", "COV_CORE_SOURCE", GUEST_ENV_FLAG))
    }
    path = env.get("PATH", "")
    for d in _GUEST_PATH.split(":"):
        if d not in path.split(":"):
            path = f"{path}:{d}" if path else d
    env["PATH"] = path
    env["TMPDIR"] = GUEST_TMPDIR
    env.setdefault("COLUMNS", "120")
    if extra:
        env.update(extra)
    return env


def run_pytest_in_uml(
    test_paths: Sequence[str],
    extra_args: Sequence[str] = (),
    *,
    cwd: str,
    env: dict[str, str] | None = None,
    python: str = sys.executable,
    timeout: float = 300,
    mem: str = "1G",
) -> UmlRun:
    """Run ``python -m pytest -q -p no:cacheprovider <test_paths>`` in one UML boot.

    ``python`` defaults to the interpreter running the caller, so the guest uses the same
    interpreter and site-packages (a venv's included). Skip reasons and failures are
    summarized (``-rfEs``); colours are off.
    """
    argv = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--color=no", "-rfEs", *extra_args, *test_paths]
    return run_in_uml(argv, cwd=cwd, env=default_guest_env() if env is None else env, timeout=timeout, mem=mem)


_SUMMARY = re.compile(r"^=*\s*(?P<body>(?:\d+ [a-z]+(?:, )?)+) in [0-9.]+s\b.*$", re.MULTILINE)


def pytest_outcomes(output: str) -> dict[str, int]:
    """Counts from pytest's last summary line, e.g. ``{"passed": 6, "skipped": 1}``; {} if none."""
    matches = list(_SUMMARY.finditer(output))
    if not matches:
        return {}
    counts: dict[str, int] = {}
    for part in matches[-1]["body"].split(", "):
        number, word = part.split(" ", 1)
        counts[{"error": "errors", "warning": "warnings"}.get(word, word)] = int(number)
    return counts
