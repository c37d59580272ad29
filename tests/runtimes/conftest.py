"""Real container runtimes driving the installed loxi-cni launcher (test-environments.md §3, §4).

Everything runs inside throw-away node namespaces (`nsenter --net=…`, never
`ip netns exec`: runtimes need the real /sys for cgroups) with private temp
dirs for container storage, runtime state, sockets, CNI conf and the IPAM store.
The plugin directory holds the launcher written by `install --cni-bin-dir` and
copies of the reference plugins, so the runtime finds `loxi-cni` through its
plugin directories exactly as on a node. Each fixture removes what it made in a
finally: containers, daemons, mounts, namespaces, temp dirs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import stop_process

NSENTER = shutil.which("nsenter") or "/usr/bin/nsenter"
REFERENCE_CNI_DIR = Path("/usr/lib/cni")
REFERENCE_PLUGINS = ("portmap", "host-local", "loopback", "static", "tuning")
BUSYBOX_APPLETS = ("sh", "ip", "ping", "sleep", "cat", "nc", "httpd", "mkdir", "echo", "ls", "true")
IMAGE = "localhost/loxirt-bb:latest"
ULIMITS = ("--ulimit", "nofile=10000:10000", "--ulimit", "nproc=1000:1000")


def busybox() -> str | None:
    for candidate in ("/bin/busybox", "/usr/bin/busybox"):
        if os.path.exists(candidate):
            return candidate
    return None


def missing(*programs: str) -> list[str]:
    return [p for p in programs if shutil.which(p) is None]


def run(argv: list[str], *, check: bool = True, timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} → rc={proc.returncode}\nstdout={proc.stdout}\nstderr={proc.stderr}")
    return proc


def hook_wired() -> bool:
    """Whether loxi.plugin.cni.run logs (the cnilog hook is in place)."""
    import loxi.plugin.cni

    return hasattr(loxi.plugin.cni.run, "__wrapped__")


def read_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class NodeNs:
    """A throw-away network namespace playing the node."""

    def __init__(self, role: str = "node") -> None:
        self.name = f"loxirt-{role}-{uuid.uuid4().hex[:8]}"
        run(["ip", "netns", "add", self.name])
        run(["ip", "-n", self.name, "link", "set", "lo", "up"])

    @property
    def path(self) -> str:
        return f"/var/run/netns/{self.name}"

    def wrap(self, argv: list[str]) -> list[str]:
        return [NSENTER, f"--net={self.path}", "--", *argv]

    def links(self) -> list[dict]:
        out = run(["ip", "-j", "-n", self.name, "link", "show"]).stdout
        return json.loads(out) if out.strip() else []

    def loxi_links(self) -> list[str]:
        return sorted(link["ifname"] for link in self.links() if link["ifname"].startswith("loxi"))

    def delete(self) -> None:
        run(["ip", "netns", "delete", self.name], check=False)


def unmount_under(base: Path) -> None:
    """Lazily unmount anything a runtime left mounted below `base` (deepest first)."""
    with open("/proc/self/mounts") as handle:
        points = [line.split()[1].replace("\\040", " ") for line in handle]
    for point in sorted((p for p in points if p.startswith(str(base) + "/")), key=len, reverse=True):
        run(["umount", "-l", point], check=False)


def remove_tree(base: Path) -> None:
    unmount_under(base)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def runtime_base() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("runtime tests need root (network namespaces, container runtimes)")
    if busybox() is None:
        pytest.skip("busybox-static is not installed (apt-get install -y busybox-static): no image to run")
    # short: podman refuses a runroot longer than 50 characters, and socket paths are limited too
    base = Path(tempfile.mkdtemp(prefix="loxirt-", dir="/tmp"))
    try:
        yield base
    finally:
        remove_tree(base)


@pytest.fixture(scope="session")
def plugin_dir(runtime_base: Path) -> Path:
    """`install --cni-bin-dir` output plus copies of the reference plugins (copies: it may be bind-mounted)."""
    directory = runtime_base / "cni-bin"
    proc = run([sys.executable, "-m", "loxi.install", "install", "--cni-bin-dir", str(directory)], timeout=180)
    assert "launcher" in proc.stdout, proc.stdout
    for name in REFERENCE_PLUGINS:
        source = REFERENCE_CNI_DIR / name
        if source.exists():
            shutil.copy2(source, directory / name)
    return directory


@pytest.fixture(scope="session")
def rootfs(runtime_base: Path) -> Path:
    root = runtime_base / "rootfs"
    (root / "bin").mkdir(parents=True)
    for sub in ("proc", "sys", "dev", "etc", "tmp"):
        (root / sub).mkdir()
    shutil.copy2(busybox(), root / "bin" / "busybox")  # type: ignore[arg-type]
    for applet in BUSYBOX_APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    return root


class Podman:
    """podman 4.3 with the CNI backend, private storage/state, our plugin dir and conf dir."""

    def __init__(self, base: Path, plugin_dir: Path) -> None:
        self.base = base
        self.conf_dir = base / "net.d"
        for sub in ("root", "runroot", "tmp", "net.d"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        self.containers_conf = base / "containers.conf"
        self.containers_conf.write_text(
            "[network]\n"
            'network_backend = "cni"\n'
            f'cni_plugin_dirs = ["{plugin_dir}"]\n'
            f'network_config_dir = "{self.conf_dir}"\n'
            "[engine]\n"
            'events_logger = "file"\n'
        )
        self.env = {**os.environ, "CONTAINERS_CONF": str(self.containers_conf)}
        self.env.pop("CONTAINERS_STORAGE_CONF", None)

    def argv(self, *args: str) -> list[str]:
        return [
            "podman",
            "--root",
            str(self.base / "root"),
            "--runroot",
            str(self.base / "runroot"),
            "--tmpdir",
            str(self.base / "tmp"),
            "--storage-driver",
            "vfs",
            "--events-backend",
            "file",
            "--runtime",
            "runc",
            "--cgroup-manager",
            "cgroupfs",
            "--network-config-dir",
            str(self.conf_dir),
            *args,
        ]

    def __call__(
        self, *args: str, node: NodeNs | None = None, check: bool = True, timeout: float = 120, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv = self.argv(*args)
        return run(node.wrap(argv) if node else argv, check=check, timeout=timeout, env=self.env, input=input)

    def inspect(self, name: str) -> dict:
        return json.loads(self("inspect", "--type", "container", name).stdout)[0]


@pytest.fixture(scope="session")
def podman_session(runtime_base: Path, plugin_dir: Path, rootfs: Path) -> Iterator[Podman]:
    gone = missing("podman", "runc")
    if gone:
        pytest.skip(f"{', '.join(gone)} not installed (apt-get install -y podman runc busybox-static)")
    podman = Podman(runtime_base / "podman", plugin_dir)
    try:
        archive = runtime_base / "rootfs.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(rootfs, arcname=".")
        podman("import", str(archive), IMAGE)
        yield podman
    finally:
        podman("rm", "-a", "-f", "-t", "0", check=False)
        remove_tree(podman.base)


class PodmanNode:
    """One test's node: a namespace, its networks (conflists in podman's conf dir) and containers."""

    def __init__(self, podman: Podman, base: Path) -> None:
        self.podman = podman
        self.ns = NodeNs()
        self.base = base
        self.tag = uuid.uuid4().hex[:6]
        self.containers: list[str] = []
        self.confs: list[Path] = []

    def network(self, conflist: dict) -> str:
        path = self.podman.conf_dir / f"50-{conflist['name']}.conflist"
        path.write_text(json.dumps(conflist, indent=1))
        self.confs.append(path)
        return conflist["name"]

    def name(self, short: str) -> str:
        return f"loxirt-{self.tag}-{short}"

    def run_container(self, short: str, network: str, *cmd: str, extra: tuple[str, ...] = (), check: bool = True):
        name = self.name(short)
        self.containers.append(name)
        argv = ["run", "-d", "--name", name, *ULIMITS, "--cap-add", "NET_RAW", "--network", network, *extra, IMAGE]
        return self.podman(*argv, *(cmd or ("sleep", "3600")), node=self.ns, check=check)

    def __call__(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.podman(*args, node=self.ns, check=check, timeout=timeout)

    def cleanup(self) -> None:
        if self.containers:
            self.podman("rm", "-f", "-t", "0", "--ignore", *self.containers, node=self.ns, check=False)
        for path in self.confs:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        self.ns.delete()


@pytest.fixture
def podman_node(podman_session: Podman, tmp_path: Path) -> Iterator[PodmanNode]:
    node = PodmanNode(podman_session, tmp_path)
    try:
        yield node
    finally:
        node.cleanup()


class Containerd:
    """A private containerd 1.6 (own root, state, sockets; CRI off) started inside a node namespace."""

    def __init__(self, base: Path, plugin_dir: Path) -> None:
        self.base = base
        self.plugin_dir = plugin_dir
        for sub in ("root", "state", "opt", "fifo", "runc", "net.d", "cni-cache"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        self.socket = base / "containerd.sock"
        self.config = base / "config.toml"
        self.config.write_text(
            "version = 2\n"
            f'root = "{base / "root"}"\n'
            f'state = "{base / "state"}"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\n  address = "{self.socket}"\n'
            f'[ttrpc]\n  address = "{self.socket}.ttrpc"\n'
            f'[plugins."io.containerd.internal.v1.opt"]\n  path = "{base / "opt"}"\n'
        )
        self.ns = NodeNs("ctrd")
        self.log = open(base / "containerd.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.ns.wrap(["containerd", "--config", str(self.config)]), stdout=self.log, stderr=self.log
        )
        for _ in range(200):
            if self.socket.exists() and self.ctr("version", check=False).returncode == 0:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"containerd did not start: {(base / 'containerd.log').read_text()[-2000:]}")

    def ctr(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return run(["ctr", "--address", str(self.socket), "-n", "loxirt", *args], check=check, timeout=timeout)

    def run_cni(self, node: NodeNs, conflist: dict, cid: str, *cmd: str) -> subprocess.CompletedProcess[str]:
        """`ctr run --rm --cni` in a private mount namespace where /etc/cni/net.d is our conf dir
        (only its lexically first file counts) and /usr/lib/cni our plugin dir; /var/lib/cni (libcni's
        result cache) is private too."""
        conf_dir = self.base / "net.d"
        for old in conf_dir.iterdir():
            old.unlink()
        (conf_dir / "10-loxirt.conflist").write_text(json.dumps(conflist))
        script = (
            "set -e\n"
            f"mount --bind {conf_dir} /etc/cni/net.d\n"
            f"mount --bind {self.plugin_dir} {REFERENCE_CNI_DIR}\n"
            f"mount --bind {self.base / 'cni-cache'} /var/lib/cni\n"
            'exec "$@"\n'
        )
        argv = [
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "ctr-run",
            "ctr",
            "--address",
            str(self.socket),
            "-n",
            "loxirt",
            "run",
            "--rm",
            "--cni",
            "--fifo-dir",
            str(self.base / "fifo"),
            "--runc-root",
            str(self.base / "runc"),
            IMAGE,
            cid,
            *cmd,
        ]
        return run(node.wrap(argv), check=False, timeout=120)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            for task in self.ctr("tasks", "ls", "-q", check=False).stdout.split():
                self.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
                self.ctr("tasks", "delete", "-f", task, check=False)
            for container in self.ctr("containers", "ls", "-q", check=False).stdout.split():
                self.ctr("containers", "delete", container, check=False)
        stop_process(self.proc, timeout=15)
        self.log.close()
        self.ns.delete()


@pytest.fixture(scope="session")
def containerd(runtime_base: Path, plugin_dir: Path, podman_session: Podman) -> Iterator[Containerd]:
    gone = missing("containerd", "ctr", "runc", "unshare")
    if gone:
        pytest.skip(f"{', '.join(gone)} not installed (apt-get install -y containerd runc)")
    if not REFERENCE_CNI_DIR.is_dir() or not Path("/etc/cni/net.d").is_dir() or not Path("/var/lib/cni").is_dir():
        pytest.skip("ctr run --cni needs /usr/lib/cni, /etc/cni/net.d and /var/lib/cni to bind-mount over")
    daemon = Containerd(runtime_base / "containerd", plugin_dir)
    try:
        archive = runtime_base / "bb.tar"
        podman_session("save", "--format", "docker-archive", "-o", str(archive), IMAGE)
        daemon.ctr("images", "import", "--all-platforms", str(archive))
        yield daemon
    finally:
        daemon.stop()
        remove_tree(daemon.base)
