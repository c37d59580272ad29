"""Run commands inside a second, complete Linux kernel: Debian's own kernel under QEMU.

The host kernel of our dev/CI machines lacks 802.1Q VLAN devices and bridge VLAN
filtering, and User-Mode Linux (the tier's first engine) panics at boot on hosts
with AMX state (its fixed-size XSAVE buffer). What boots on every host is QEMU with
software emulation (TCG) and the kernel that ``linux-image-amd64`` points to.

The kernel is never installed: :func:`build_cache` downloads the package, unpacks it
with ``dpkg-deb -x`` into a cache directory (``/var/cache/loxi-cni/kernel`` or
``$LOXI_KERNEL_CACHE``), extracts the ELF ``vmlinux`` from ``vmlinuz`` (QEMU boots it
through its PVH entry and skips the decompressor, slow under emulation), runs
``depmod`` there and writes a tiny initramfs (busybox and the modules the boot needs).
``scripts/setup`` builds it once; every later boot reuses it.

Guest environment (what a command run by :func:`run_in_guest` can rely on):

* the host's ``/`` over 9p, read-write: same Python, same virtualenv, same repo; the
  interpreter's standard library and the virtualenv's site-packages are mounted again,
  read-only with ``cache=loose`` (imports ~3x faster than through ``cache=mmap``);
* root in a fresh kernel with ``bridge``, ``8021q`` and ``veth`` loaded, every other
  module (nftables, ...) autoloaded from the cache, ``lo`` up; with a wire, ``eth0``;
* fresh proc, sysfs, devtmpfs, devpts and cgroup2, private tmpfs on ``/run`` (with
  ``/run/netns`` and ``/run/tmp``), ``/dev/shm``, ``/var/lib/cni``, ``/etc/cni/net.d``
  and ``/run/loxi``: state there never reaches the host (everything else written in
  the guest *does* land in the host's files);
* exactly the environment passed as ``env`` plus ``LOXI_IN_GUEST=1`` and
  ``LOXI_GUEST_NAME``, the working directory ``cwd``, stdin from ``/dev/null``;
  stdout and stderr are merged into a file on the share and returned byte for byte.

Pitfalls (measured on this project's machines):

* Python in the guest is ~16x slower than on the host: batch guest work into one boot
  (~2 s each). Two guests at once is the practical limit on 2 cores.
* AF_UNIX sockets and FIFOs cannot be made on the 9p share (ENXIO): keep sockets,
  locks and test stores on the guest's tmpfs (``TMPDIR=/run/tmp``).
* ``/dev/kvm`` may open and still run no stock kernel (a PVM-style KVM): hardware
  acceleration is used only once a probe boot proved it works on this host; the
  verdict is kept per host (CPU model, kernel, QEMU) in the cache.
* After an internal error QEMU pauses instead of exiting: every boot has a timeout
  that SIGKILLs it, and PR_SET_PDEATHSIG ties QEMU to the thread that started it.

Stdlib only; Linux on x86-64 only.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import lzma
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

#: Where the unpacked kernel, its modules and the initramfs live (built once).
CACHE_ROOT = Path(os.environ.get("LOXI_KERNEL_CACHE", "/var/cache/loxi-cni/kernel"))
#: Set to 1 to skip the tier on purpose (on a person's own machine); it never skips by itself.
SKIP_VARIABLE = "LOXI_SKIP_KERNEL_TIER"
#: ``auto`` (KVM where a probe proved it works, else TCG), ``tcg`` or ``kvm``.
ACCEL_VARIABLE = "LOXI_KERNEL_ACCEL"
#: Set to "1" for the guest command.
GUEST_ENV_FLAG = "LOXI_IN_GUEST"
GUEST_NAME_VARIABLE = "LOXI_GUEST_NAME"
#: Loaded by the initramfs (with their dependencies, from modules.dep) before the host root is mounted.
BOOT_MODULES = ("virtio_pci", "virtio_rng", "9pnet_virtio", "9p", "virtio_net", "bridge", "8021q", "veth")
GUEST_MODULES = ("bridge", "8021q", "veth")
#: Mount points that get a private tmpfs in the guest (missing ones are made on the host, removed afterwards).
GUEST_TMPFS_DIRS = ("/var/lib/cni", "/etc/cni/net.d", "/run/loxi")
#: World-writable scratch dir on the guest's private /run tmpfs; use it as TMPDIR.
GUEST_TMPDIR = "/run/tmp"
#: This checkout (tests/kernel/qemu.py is two levels down).
REPO = Path(__file__).resolve().parents[2]
_MASKED_IN_GUEST = ("/run", "/dev/shm", *GUEST_TMPFS_DIRS)
_GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: The emulator; ``LOXI_QEMU=/nonexistent`` shows what the tier says on a machine without it.
_QEMU = os.environ.get("LOXI_QEMU", "qemu-system-x86_64")
_BUSYBOX = "/bin/busybox"
_PR_SET_PDEATHSIG = 1
_KVM_PROBE_TIMEOUT = 25.0
_INSTALL_HINT = "bash scripts/setup installs qemu-system-x86, busybox-static and kmod and builds the kernel cache"


class GuestError(RuntimeError):
    """The harness failed (no exit status, timeout, no kernel): not the guest command."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(f"{message}\n--- guest console ---\n{output}" if output else message)
        self.output = output


class GuestUnavailable(GuestError):
    """No second kernel can run on this machine; the message says why."""


@dataclass(frozen=True)
class KernelCache:
    """An unpacked Debian kernel: the ELF image, its module tree and the initramfs."""

    directory: Path
    version: str  # e.g. 6.1.0-57-amd64
    package: str  # e.g. linux-image-6.1.0-57-amd64 6.1.192-3

    @property
    def vmlinux(self) -> Path:
        return self.directory / "vmlinux"

    @property
    def initramfs(self) -> Path:
        return self.directory / "initramfs.cpio"

    @property
    def modroot(self) -> Path:
        """``modprobe -d`` root: ``lib/modules/<version>`` under it."""
        return self.directory / "root"


@dataclass(frozen=True)
class GuestRun:
    """One boot: the command's exit status, its output (stdout and stderr merged), wall time, engine."""

    returncode: int
    output: str
    seconds: float
    engine: str  # "qemu/tcg" or "qemu/kvm"
    console: str = ""
    raw: bytes = b""  # the output exactly as the command wrote it


@dataclass(frozen=True)
class Wire:
    """One end of a virtual Ethernet link between two guests (QEMU ``-netdev dgram`` over unix sockets)."""

    local: str
    remote: str
    mac: str


# ---------------------------------------------------------------- the cache


def _run(argv: Sequence[str], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)


def kernel_package() -> str:
    """The versioned package ``linux-image-amd64`` depends on (Debian's current kernel)."""
    for attempt in range(2):
        try:
            out = _run(["apt-cache", "depends", "linux-image-amd64"]).stdout
        except (OSError, subprocess.CalledProcessError):
            out = ""
        if found := re.search(r"Depends:\s*(linux-image-\S+)", out):
            return found.group(1)
        if attempt == 0:
            _run(["apt-get", "update", "-qq"])
    raise GuestUnavailable("apt-cache finds no package behind linux-image-amd64")


def extract_vmlinux(bzimage: bytes) -> bytes:
    """The ELF kernel inside a bzImage (Debian compresses it with xz)."""
    for magic, opener in ((b"\xfd7zXZ\x00", lzma.LZMADecompressor), (b"\x1f\x8b\x08", None)):
        at = bzimage.find(magic)
        if at < 0:
            continue
        if opener is None:
            import zlib

            out = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(bzimage[at:])
        else:
            out = opener().decompress(bzimage[at:])
        if out[:4] == b"\x7fELF":
            return out
    raise GuestUnavailable("no xz or gzip ELF payload found in vmlinuz")


def module_load_order(modules_dir: Path, wanted: Sequence[str]) -> list[str]:
    """Relative paths of ``wanted`` and their dependencies, dependencies first (from modules.dep)."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
        by_name[Path(path).name.removesuffix(".ko").replace("-", "_")] = path
    order: list[str] = []

    def visit(path: str) -> None:
        if path in order:
            return
        for dep in reversed(deps.get(path, [])):
            visit(dep)
        order.append(path)

    for name in wanted:
        key = name.replace("-", "_")
        if key not in by_name:
            raise GuestUnavailable(f"kernel module {name} not found in {modules_dir}")
        visit(by_name[key])
    return order


def _cpio_newc(entries: Sequence[tuple[str, int, bytes]]) -> bytes:
    """An uncompressed initramfs (no decompression under emulation): (name, mode, data) entries."""
    out = bytearray()

    def pad(n: int) -> None:
        out.extend(b"\0" * (-n % 4))

    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], start=1):
        raw = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(raw), 0)
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        out += header + raw
        pad(len(header) + len(raw))
        out += data
        pad(len(data))
    return bytes(out)


def _initramfs(cache: KernelCache, load_order: Sequence[str]) -> bytes:
    modules_dir = cache.modroot / "lib" / "modules" / cache.version
    entries: list[tuple[str, int, bytes]] = [
        ("bin", 0o040755, b""),
        ("modules", 0o040755, b""),
        ("newroot", 0o040755, b""),
        ("proc", 0o040755, b""),
        ("sys", 0o040755, b""),
        ("dev", 0o040755, b""),
        ("bin/busybox", 0o100755, Path(_BUSYBOX).read_bytes()),
        ("init", 0o100755, _INIT.encode()),
        ("modprobe", 0o100755, _MODPROBE.format(modroot=shlex.quote(str(cache.modroot))).encode()),
        ("modules.load", 0o100644, "".join(Path(p).name + "\n" for p in load_order).encode()),
    ]
    entries += [(f"modules/{Path(p).name}", 0o100644, (modules_dir / p).read_bytes()) for p in load_order]
    return _cpio_newc(entries)


def find_cache() -> KernelCache | None:
    """The newest complete cache, or None."""
    best = None
    for ready in sorted(CACHE_ROOT.glob("*/ready.json")):
        with contextlib.suppress(OSError, ValueError, KeyError):
            meta = json.loads(ready.read_text())
            best = KernelCache(ready.parent, meta["version"], meta["package"])
    return best


def build_cache(log: Callable[[str], None] = lambda _: None) -> KernelCache:
    """Download, unpack and prepare Debian's kernel once; reuse it afterwards (idempotent)."""
    for tool in ("dpkg-deb", "depmod", "apt-get", "apt-cache"):
        if shutil.which(tool, path=_GUEST_PATH) is None:
            raise GuestUnavailable(f"{tool} not found ({_INSTALL_HINT})")
    if not os.access(_BUSYBOX, os.X_OK):
        raise GuestUnavailable(f"no {_BUSYBOX} ({_INSTALL_HINT})")
    try:
        package = kernel_package()
    except (GuestUnavailable, OSError, subprocess.CalledProcessError):
        if (cached := find_cache()) is not None:
            return cached  # no package lists now, but a kernel from before
        raise
    directory = CACHE_ROOT / package
    with contextlib.suppress(OSError, ValueError, KeyError):
        meta = json.loads((directory / "ready.json").read_text())
        return KernelCache(directory, meta["version"], meta["package"])
    log(f"kernel tier: preparing {package} in {directory}")
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    with tempfile.TemporaryDirectory(dir=CACHE_ROOT) as tmp:
        _run(["apt-get", "download", "-q", package], cwd=tmp)
        (deb,) = Path(tmp).glob("*.deb")
        root = directory / "root"
        _run(["dpkg-deb", "-x", str(deb), str(root)])
        # bookworm ships the tree under /lib (merged /usr on the host): keep modprobe's layout
        if not (root / "lib" / "modules").is_dir() and (root / "usr" / "lib" / "modules").is_dir():
            (root / "lib").symlink_to("usr/lib")
        (version,) = os.listdir(root / "lib" / "modules")
        _run(["depmod", "-b", str(root), version])
        (vmlinuz,) = (root / "boot").glob("vmlinuz-*")
        (directory / "vmlinux").write_bytes(extract_vmlinux(vmlinuz.read_bytes()))
        cache = KernelCache(directory, version, package)
        order = module_load_order(root / "lib" / "modules" / version, BOOT_MODULES)
        cache.initramfs.write_bytes(_initramfs(cache, order))
    (directory / "ready.json").write_text(json.dumps({"version": version, "package": package}))
    return cache


# ---------------------------------------------------------------- the guest's PID 1

_INIT = r"""#!/bin/busybox sh
# PID 1 of a loxi-cni kernel-tier guest (tests/kernel/qemu.py). The kernel passes
# loxi_dir=<private host dir> as an environment variable; everything per boot is there.
/bin/busybox --install -s /bin
export PATH=/bin
say() { echo "guest-init: $*" > /dev/console; }
halt() { sync; reboot -f; sleep 60; }
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules.load); do insmod /modules/$m || say "insmod $m failed"; done
opts=trans=virtio,version=9p2000.L,msize=512000
mount -t 9p -o $opts,cache=mmap hostroot /newroot || { say "cannot mount the host root"; halt; }
R=/newroot
D=$R$loxi_dir
[ -f $D/run.sh ] || { say "no $loxi_dir/run.sh on the share"; halt; }
mount -t proc proc $R/proc
mount -t sysfs sys $R/sys
mount -t devtmpfs dev $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts devpts $R/dev/pts
mount -t tmpfs -o mode=1777 tmpfs $R/dev/shm
mount -t cgroup2 none $R/sys/fs/cgroup 2>/dev/null
mount -t tmpfs -o mode=0755 tmpfs $R/run
mkdir -p $R/run/netns $R/run/tmp && chmod 1777 $R/run/tmp
while read tag path; do
    mount -t 9p -o $opts,cache=loose,ro "$tag" "$R$path" || say "share $tag on $path failed"
done < $D/shares
for d in $(cat $D/tmpfs); do mkdir -p $R$d && mount -t tmpfs -o mode=0755 tmpfs $R$d || say "tmpfs $d failed"; done
echo /modprobe > /proc/sys/kernel/modprobe
hostname "$(cat $D/hostname)"
ip link set lo up
chroot $R /bin/sh $loxi_dir/run.sh > $D/output 2>&1 < /dev/null
echo $? > $D/status.part && mv $D/status.part $D/status
halt
"""

# The kernel runs kernel.modprobe from PID 1's root (the initramfs): run the host's modprobe on the cache.
_MODPROBE = """#!/bin/sh
exec /bin/chroot /newroot /sbin/modprobe -d {modroot} "$@"
"""


# ---------------------------------------------------------------- probing


def _host_key() -> str:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "flags")):
                model += line
    qemu = shutil.which(_QEMU) or ""
    return hashlib.sha256(f"{model}|{platform.release()}|{qemu}".encode()).hexdigest()[:16]


@dataclass
class _Probe:
    cache: KernelCache | None = None
    accel: str = "tcg"
    reason: str = ""


_probe_result: _Probe | None = None


def skip_reason() -> str | None:
    """Why a person asked to skip the tier, or None."""
    if os.environ.get(SKIP_VARIABLE) == "1":
        return f"kernel tier skipped on purpose ({SKIP_VARIABLE}=1)"
    return None


def probe() -> tuple[KernelCache | None, str, str]:
    """``(cache, accel, "")`` when a guest can boot here, else ``(None, "", reason)``."""
    global _probe_result
    if _probe_result is None:
        _probe_result = _probe()
    return _probe_result.cache, _probe_result.accel, _probe_result.reason


def _probe() -> _Probe:
    result = _Probe()
    if not sys.platform.startswith("linux") or platform.machine() != "x86_64":
        result.reason = f"the kernel tier needs Linux on x86-64, not {sys.platform}/{platform.machine()}"
        return result
    if shutil.which(_QEMU, path=_GUEST_PATH) is None:
        result.reason = f"{_QEMU} not found ({_INSTALL_HINT})"
        return result
    cache = find_cache()
    if cache is None:
        try:
            cache = build_cache()
        except (GuestUnavailable, OSError, subprocess.CalledProcessError) as exc:
            result.reason = f"no kernel cache in {CACHE_ROOT} and building it failed: {exc}"
            return result
    result.cache = cache
    wanted = os.environ.get(ACCEL_VARIABLE, "auto")
    if wanted not in ("auto", "tcg", "kvm"):
        result.cache, result.reason = None, f"{ACCEL_VARIABLE}={wanted!r}: expected auto, tcg or kvm"
        return result
    result.accel = "tcg"
    if wanted == "kvm" or (wanted == "auto" and _kvm_works(cache)):
        result.accel = "kvm"
    return result


def _kvm_works(cache: KernelCache) -> bool:
    """Whether a stock kernel boots under KVM here; the verdict is kept per host in the cache."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    verdict = cache.directory / f"kvm-{_host_key()}.json"
    with contextlib.suppress(OSError, ValueError, KeyError):
        return bool(json.loads(verdict.read_text())["works"])
    works = False
    with contextlib.suppress(GuestError, OSError):
        run = _boot(cache, "kvm", ["/bin/true"], cwd="/", env={"PATH": _GUEST_PATH}, timeout=_KVM_PROBE_TIMEOUT)
        works = run.returncode == 0
    with contextlib.suppress(OSError):
        verdict.write_text(json.dumps({"works": works, "checked": time.time()}))
    return works


# ---------------------------------------------------------------- booting


def _under(path: str, prefixes: Sequence[str]) -> str | None:
    real = os.path.realpath(path)
    for prefix in prefixes:
        if real == prefix or real.startswith(prefix.rstrip("/") + "/"):
            return prefix
    return None


def _private_dir_base() -> str:
    """A host temp dir the guest also sees (not hidden by its tmpfs mounts)."""
    for cand in (tempfile.gettempdir(), "/var/tmp", "/tmp"):
        if os.path.isdir(cand) and os.access(cand, os.W_OK) and not _under(cand, _MASKED_IN_GUEST):
            return cand
    raise GuestUnavailable("no writable temp dir outside " + ", ".join(_MASKED_IN_GUEST))


def _missing_host_dirs(paths: Sequence[str]) -> list[str]:
    """Directories (ancestors first) that the guest's ``mkdir -p`` would create on the host."""
    missing: list[str] = []
    for path in paths:
        if _under(path, ("/run",)):
            continue
        chain = []
        while not os.path.lexists(path):
            chain.append(path)
            path = os.path.dirname(path)
        missing += [d for d in reversed(chain) if d not in missing]
    return missing


def fast_shares() -> list[str]:
    """Read-only, loosely cached 9p shares over ``/usr``, this virtualenv and this checkout.

    Through the root share (``cache=mmap``) every process re-reads the interpreter, its
    libraries and every module from the host; a loose cache keeps them in the guest's
    page cache (``python -c pass`` 2.0 -> 0.6 s). The host must not change these trees
    while a guest runs, and the guest cannot write there: :func:`compile_checkout` writes
    the checkout's bytecode first, or every guest process would compile it again.
    """
    paths = {os.path.realpath(sysconfig.get_paths()[key]) for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    paths |= {os.path.realpath(sys.prefix), "/usr", str(REPO)}  # the interpreter, its libraries, this checkout
    found = sorted(p for p in paths if os.path.isdir(p) and not _under(p, _MASKED_IN_GUEST))
    return [p for p in found if not _under(p, [q for q in found if q != p])]  # a share covers what is below it


def compile_checkout() -> None:
    """Write the checkout's bytecode on the host (the guest sees it read-only)."""
    import compileall

    for top in sorted(REPO.iterdir()):
        if top.is_dir() and not top.name.startswith(".") and any(top.glob("*.py")):
            compileall.compile_dir(str(top), quiet=2)


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _check_env(env: Mapping[str, str]) -> None:
    for key, value in env.items():
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise ValueError(f"bad environment entry {key!r}")


class Guest:
    """A booting guest; :meth:`wait` gives its :class:`GuestRun`. Two may run at once (two nodes)."""

    def __init__(
        self,
        cache: KernelCache,
        accel: str,
        argv: Sequence[str],
        *,
        cwd: str,
        env: Mapping[str, str],
        timeout: float,
        mem: str = "1G",
        name: str = "guest",
        wire: Wire | None = None,
    ) -> None:
        if not argv:
            raise ValueError("argv is empty")
        if not os.path.isabs(cwd) or not os.path.isdir(cwd):
            raise ValueError(f"cwd must be an existing absolute directory: {cwd!r}")
        if masked := _under(cwd, _MASKED_IN_GUEST):
            raise ValueError(f"cwd {cwd!r} is hidden in the guest by its tmpfs on {masked}")
        if not re.fullmatch(r"[0-9]+[MG]", mem):
            raise ValueError(f"bad mem {mem!r}, expected e.g. 512M or 1G")
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", name):
            raise ValueError(f"bad guest name {name!r}")
        _check_env(env)
        self.engine = f"qemu/{accel}"
        self.timeout = timeout
        self.private = tempfile.mkdtemp(prefix=f"loxi-{name}-", dir=_private_dir_base())
        self.missing = _missing_host_dirs(GUEST_TMPFS_DIRS)
        self.console = os.path.join(self.private, "console.log")
        self.start = time.monotonic()
        self.proc: subprocess.Popen[bytes] | None = None
        try:
            self._prepare(argv, cwd, {**env, GUEST_ENV_FLAG: "1", GUEST_NAME_VARIABLE: name}, name)
            cmd = self._command(cache, accel, mem, wire)
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={"PATH": _GUEST_PATH},
                start_new_session=True,
                preexec_fn=_set_pdeathsig,
            )
        except BaseException:
            self._cleanup()
            raise

    def _prepare(self, argv: Sequence[str], cwd: str, env: Mapping[str, str], name: str) -> None:
        q = shlex.quote
        assignments = " ".join(q(f"{k}={v}") for k, v in env.items())
        script = (
            f"export PATH={_GUEST_PATH}\n"
            f"cd {q(os.path.realpath(cwd))} || exit 125\n"
            f"exec env -i {assignments} {' '.join(q(a) for a in argv)}\n"
        )
        self.shares = fast_shares()
        if str(REPO) in self.shares:
            compile_checkout()
        files = {
            "run.sh": script,
            "shares": "".join(f"ro{i} {path}\n" for i, path in enumerate(self.shares)),
            "tmpfs": "".join(f"{d}\n" for d in GUEST_TMPFS_DIRS),
            "hostname": f"{name}\n",
        }
        for filename, text in files.items():
            with open(os.path.join(self.private, filename), "w", encoding="utf-8") as f:
                f.write(text)

    def _command(self, cache: KernelCache, accel: str, mem: str, wire: Wire | None) -> list[str]:
        append = (
            "console=ttyS0 quiet loglevel=1 panic=-1 cryptomgr.notests random.trust_cpu=on "
            f"8250.nr_uarts=1 mitigations=off loxi_dir={self.private}"
        )
        cmd = [
            _QEMU,
            *("-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none"),
            *("-M", "q35", "-m", mem, "-smp", "1", "-no-reboot"),
            *(("-accel", "kvm", "-cpu", "host") if accel == "kvm" else ("-accel", "tcg", "-cpu", "max")),
            *("-kernel", str(cache.vmlinux), "-initrd", str(cache.initramfs), "-append", append),
            *("-serial", f"file:{self.console}"),
            *("-fsdev", "local,id=hostroot,path=/,security_model=passthrough,multidevs=remap"),
            *("-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot"),
            *("-device", "virtio-rng-pci"),
        ]
        for i, path in enumerate(self.shares):
            cmd += ["-fsdev", f"local,id=ro{i},path={path},security_model=passthrough,readonly=on,multidevs=remap"]
            cmd += ["-device", f"virtio-9p-pci,fsdev=ro{i},mount_tag=ro{i}"]
        if wire is not None:
            cmd += [
                "-netdev",
                f"dgram,id=wire,local.type=unix,local.path={wire.local},remote.type=unix,remote.path={wire.remote}",
                "-device",
                f"virtio-net-pci,netdev=wire,mac={wire.mac}",
            ]
        return cmd

    def wait(self) -> GuestRun:
        """Wait for the guest to power off (SIGKILL at the timeout); raises :class:`GuestError` without a status."""
        assert self.proc is not None
        try:
            try:
                self.proc.wait(timeout=max(0.0, self.start + self.timeout - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill()
                raise GuestError(f"guest timed out after {self.timeout:.0f}s", _read(self.console)) from None
            seconds = time.monotonic() - self.start
            console = _read(self.console)
            raw = _read_bytes(os.path.join(self.private, "output"))
            output = raw.decode("utf-8", errors="replace")
            try:
                with open(os.path.join(self.private, "status"), encoding="utf-8") as f:
                    returncode = int(f.read().strip())
            except (OSError, ValueError):
                raise GuestError(
                    f"guest never reported an exit status (QEMU exited {self.proc.returncode})",
                    console + ("\n--- output ---\n" + output if output else ""),
                ) from None
            return GuestRun(returncode, output, seconds, self.engine, console, raw)
        finally:
            self._cleanup()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def _cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self.private, ignore_errors=True)
        for d in reversed(self.missing):  # only the empty mount points the guest created
            with contextlib.suppress(OSError):
                os.rmdir(d)


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def _read(path: str) -> str:
    return _read_bytes(path).decode("utf-8", errors="replace")


def _boot(cache: KernelCache, accel: str, argv: Sequence[str], **kwargs) -> GuestRun:
    return Guest(cache, accel, argv, **kwargs).wait()


def _available() -> tuple[KernelCache, str]:
    cache, accel, reason = probe()
    if cache is None:
        raise GuestUnavailable(reason)
    return cache, accel


def start_guest(argv: Sequence[str], *, cwd: str, env: Mapping[str, str], timeout: float = 300, **kwargs) -> Guest:
    """Boot a guest running ``argv`` and return at once (see :class:`Guest`)."""
    cache, accel = _available()
    return Guest(cache, accel, argv, cwd=cwd, env=env, timeout=timeout, **kwargs)


def run_in_guest(argv: Sequence[str], *, cwd: str, env: Mapping[str, str], timeout: float = 300, **kwargs) -> GuestRun:
    """Boot once, run ``argv`` in ``cwd`` with exactly ``env`` (plus the guest flag), power off."""
    return start_guest(argv, cwd=cwd, env=env, timeout=timeout, **kwargs).wait()


def default_guest_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The host's environment adapted for the guest: no pytest per-run variables, TMPDIR on the guest's tmpfs."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("PYTEST_") or k in ("TMP", "TEMP", "COV_CORE_SOURCE", GUEST_ENV_FLAG))
    }
    path = env.get("PATH", "").split(":") if env.get("PATH") else []
    env["PATH"] = ":".join([*path, *(d for d in _GUEST_PATH.split(":") if d not in path)])
    env["TMPDIR"] = GUEST_TMPDIR
    env.setdefault("COLUMNS", "120")
    if extra:
        env.update(extra)
    return env


def guest_pytest_argv(
    test_paths: Sequence[str], extra_args: Sequence[str] = (), python: str = sys.executable
) -> list[str]:
    """``python -m pytest`` as the guest runs it: quiet, no cache, reasons for skips and failures."""
    return [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--color=no", "-rfEs", *extra_args, *test_paths]


def in_guest() -> bool:
    return guest_skip_reason() is None


def guest_skip_reason() -> str | None:
    """Why guest-only tests cannot run here, or None inside a guest this module booted."""
    if os.environ.get(GUEST_ENV_FLAG) != "1":
        return f"guest-only test: runs inside the kernel tier's guest ({GUEST_ENV_FLAG}=1 not set)"
    if not (os.path.exists("/proc/net/vlan") or os.path.isdir("/sys/module/8021q")):
        return f"{GUEST_ENV_FLAG}=1 but this kernel has no 8021q"
    return None


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


if __name__ == "__main__":  # python -m tests.kernel.qemu: build (or find) the cache, say what boots here
    built = build_cache(log=print)
    print(f"kernel tier: {built.package} ({built.version}) in {built.directory}")
    if "--probe" in sys.argv:
        found, how, why = probe()
        print(f"kernel tier: guests boot with qemu/{how}" if found else f"kernel tier: no guest can boot: {why}")
