"""Shared fixtures: throw-away network namespaces and the installed plugin, run as a runtime runs it.

Every namespace has a unique name and is deleted in a finally, whatever the test
did. The plugin is executed through `nsenter --net=<node namespace>` with only
the CNI variables in its environment (no PATH, no PYTHONPATH), the conf on
stdin, and its stdout, stderr and exit status captured.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
NSENTER = shutil.which("nsenter") or "/usr/bin/nsenter"
REFERENCE_CNI_DIR = Path("/usr/lib/cni")


# LOXI_TEST_MODE=agent: every plugin call goes through loxi-agent (the Python thin client);
# LOXI_TEST_MODE=shim: the same, with the plugin executed being the built static shim.
SHIM_MODE = os.environ.get("LOXI_TEST_MODE") == "shim"
AGENT_MODE = os.environ.get("LOXI_TEST_MODE") in ("agent", "shim")
# In-process calls (unit tests) keep out of the node's schema-verdict cache in
# /run/loxi; the installed plugin, run with only the CNI variables, uses it as
# on a node. tests/unit/test_schema_verdicts.py points it at temp directories.
os.environ.setdefault("LOXI_SCHEMA_CACHE_DIR", "")


def stop_process(proc: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM a daemon the tests started, wait for it, SIGKILL it if it does not go in time."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def agent_path() -> Path:
    return python_plugin_path().parent / "loxi-agent"


class AgentProcess:
    """A loxi-agent serving the tests on a private socket (LOXI_TEST_MODE=agent)."""

    def __init__(self, directory: Path, *options: str, netns: Netns | None = None) -> None:
        """Start it in this process's namespace, or inside `netns` (its own namespace a throw-away one)."""
        self.socket = directory / "agent.sock"
        self.log = directory / "agent.log"
        enter = [NSENTER, f"--net={netns.path}", "--"] if netns is not None else []
        with open(self.log, "wb") as log:
            argv = [*enter, str(agent_path()), "--socket", str(self.socket), *options]
            self.proc = subprocess.Popen(argv, stderr=log)
        # Python runs ~16x slower inside the kernel tier's emulated guest (tests/kernel/qemu.py).
        slow = 10 if os.environ.get("LOXI_IN_GUEST") == "1" else 1
        for _ in range(200 * slow):
            if self.socket.exists():
                self._wait_for_engines(30.0 * slow)
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"loxi-agent did not start: {self.log.read_text()}")

    def _wait_for_engines(self, timeout: float) -> None:
        """Until every engine process serves (loxi.agent.engine): a test then never measures, or races,
        an engine still starting. An agent whose status cannot be read yet is asked again."""
        from loxi.agent.status import fetch, status_socket

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                code, doc = fetch(status_socket(str(self.socket)))
            except OSError:
                code, doc = 0, {}
            if code == 200 and all(e.get("serving") for e in doc.get("engines", [])):
                return
            time.sleep(0.05)

    def engine_pids(self) -> set[int]:
        """The pids of the agent's engine processes (itself and its children): a call it served logs one."""
        from loxi.agent.status import fetch, status_socket

        code, doc = fetch(status_socket(str(self.socket)))
        assert code == 200, doc
        return {engine["pid"] for engine in doc["engines"]}

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture(params=["scanned", "watched"])
def store_view(request: pytest.FixtureRequest) -> Iterator[None]:
    """A host-local test twice: as a cold process sees the store (a scan per call) and as loxi-agent
    sees it (`applier.ipam.watch`: indexed, kept current by inotify)."""
    from applier.ipam.watch import watch_stores

    watch_stores(request.param == "watched")
    try:
        yield
    finally:
        watch_stores(False)


@pytest.fixture(scope="session")
def agent_socket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The socket the plugin should use: a test agent's in agent mode, '' (in-process) otherwise."""
    if not AGENT_MODE:
        yield ""
        return
    agent = AgentProcess(tmp_path_factory.mktemp("agent"))
    try:
        yield str(agent.socket)
    finally:
        agent.stop()


def python_plugin_path() -> Path:
    explicit = os.environ.get("LOXI_CNI_BIN")
    return Path(explicit) if explicit else Path(sys.prefix) / "bin" / "loxi-cni"


_shim_dir: list[Path] = []


def shim_bin_dir(extra_cflags: str = "", sanitize: bool = False) -> Path:
    """A CNI bin dir as `loxi-plan install` leaves a node: the shim, built now from shim/, as
    `loxi-cni`, and the in-process launcher beside it as `loxi-cni-inprocess`."""
    from loxi.install import INPROCESS_NAME, render_launcher

    directory = Path(tempfile.mkdtemp(prefix="loxi-shim-"))
    atexit.register(shutil.rmtree, directory, True)
    env = {**os.environ, "PYTHON": sys.executable, "EXTRA_CFLAGS": extra_cflags, "SANITIZE": "1" if sanitize else "0"}
    subprocess.run(
        ["sh", str(REPO / "shim" / "build.sh"), str(directory / "loxi-cni")], check=True, env=env, capture_output=True
    )
    (directory / INPROCESS_NAME).write_text(render_launcher(inprocess=True))
    (directory / INPROCESS_NAME).chmod(0o755)
    return directory


def plugin_path() -> Path:
    """The plugin the suite executes: the Python launcher, or in shim mode the built shim."""
    if not SHIM_MODE:
        return python_plugin_path()
    if not _shim_dir:
        _shim_dir.append(shim_bin_dir())
    return _shim_dir[0] / "loxi-cni"


def is_root() -> bool:
    return os.geteuid() == 0


needs_root = pytest.mark.skipif(not is_root(), reason="needs root to create network namespaces")


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True)


@dataclass
class CniCall:
    rc: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)

    def __str__(self) -> str:
        return f"rc={self.rc}\nstdout={self.stdout}\nstderr={self.stderr[-3000:]}"


@dataclass
class Netns:
    name: str

    @property
    def path(self) -> str:
        return f"/var/run/netns/{self.name}"

    def ip(self, *args: str) -> Any:
        """`ip -j` inside this namespace, parsed."""
        out = sh("ip", "-j", "-n", self.name, *args).stdout
        return json.loads(out) if out.strip() else []

    def ip_run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("ip", "-n", self.name, *args, check=check)

    def links(self) -> dict[str, dict]:
        return {link["ifname"]: link for link in self.ip("-d", "link", "show")}

    def link(self, name: str) -> dict:
        return self.ip("-d", "link", "show", "dev", name)[0]

    def addresses(self, dev: str) -> list[str]:
        info = self.ip("addr", "show", "dev", dev)
        return [f"{a['local']}/{a['prefixlen']}" for a in info[0]["addr_info"] if a.get("scope") != "link"]

    def routes(self, family: str = "-4") -> list[dict]:
        return self.ip(family, "route", "show", "table", "main")

    def exec(self, *argv: str, check: bool = False, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [NSENTER, f"--net={self.path}", "--", *argv], capture_output=True, text=True, check=check, timeout=timeout
        )

    def sysctl(self, path: str) -> str:
        return self.exec("cat", f"/proc/sys/{path}", check=True).stdout.strip()

    def loxi_links(self) -> list[str]:
        return sorted(name for name in self.links() if name.startswith("loxi"))


class NetnsFactory:
    def __init__(self) -> None:
        self.made: list[Netns] = []

    def __call__(self, role: str = "ns") -> Netns:
        ns = Netns(f"loxit-{role}-{uuid.uuid4().hex[:10]}")
        sh("ip", "netns", "add", ns.name)
        self.made.append(ns)
        ns.ip_run("link", "set", "lo", "up")
        return ns

    def delete(self, ns: Netns) -> None:
        sh("ip", "netns", "delete", ns.name, check=False)
        if ns in self.made:
            self.made.remove(ns)

    def cleanup(self) -> None:
        for ns in list(self.made):
            self.delete(ns)


@pytest.fixture
def netns() -> Iterator[NetnsFactory]:
    if not is_root():
        pytest.skip("needs root to create network namespaces")
    factory = NetnsFactory()
    try:
        yield factory
    finally:
        factory.cleanup()


def _check_against_schemas(command: str, conf: dict | bytes | None, call: CniCall) -> None:
    """Every result and error the suite sees from loxi-cni must match schemas/ (issue: protocol)."""
    from tests.result_schemas import RESULT_VERSIONS, validate_error, validate_result

    if call.rc != 0 and call.stdout.strip().startswith("{"):
        validate_error(call.json)
    elif call.rc == 0 and command == "ADD" and isinstance(conf, dict):
        version = conf.get("cniVersion") or "0.1.0"
        if version in RESULT_VERSIONS:
            validate_result(call.json, version)


class Node:
    """A node: its namespace, its IPAM store, and the plugin run inside it."""

    def __init__(self, ns: Netns, data_dir: Path, factory: NetnsFactory, agent_socket: str = "") -> None:
        self.ns = ns
        self.data_dir = data_dir
        self.factory = factory
        self.agent_socket = agent_socket

    def cni(
        self,
        command: str,
        conf: dict | bytes | None,
        *,
        container_id: str = "",
        netns: str = "",
        ifname: str = "eth0",
        args: str = "",
        env: dict[str, str] | None = None,
        plugin: Path | None = None,
        cni_path: str = "",
        timeout: float = 60,
    ) -> CniCall:
        environ = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": netns,
            "CNI_IFNAME": ifname,
            "CNI_ARGS": args,
            "CNI_PATH": cni_path or f"{REFERENCE_CNI_DIR}:/opt/cni/bin",
            # '' keeps the call in-process even if a node agent runs on this machine
            "LOXI_AGENT_SOCKET": self.agent_socket,
        }
        environ.update(env or {})
        environ = {k: v for k, v in environ.items() if v is not None}
        stdin = conf if isinstance(conf, bytes) else json.dumps(conf or {}).encode()
        proc = subprocess.run(
            [NSENTER, f"--net={self.ns.path}", "--", str(plugin or plugin_path())],
            input=stdin,
            capture_output=True,
            env=environ,
            timeout=timeout,
        )
        call = CniCall(proc.returncode, proc.stdout.decode(), proc.stderr.decode())
        if plugin is None:
            _check_against_schemas(command, conf, call)
        return call

    def pod(self) -> Netns:
        return self.factory("pod")

    def store_files(self, network: str) -> list[str]:
        directory = self.data_dir / network
        if not directory.exists():
            return []
        return sorted(p.name for p in directory.iterdir() if p.name[0].isdigit() or ":" in p.name)


@pytest.fixture
def node(netns: NetnsFactory, tmp_path: Path, agent_socket: str) -> Node:
    """A fresh node; in agent mode (LOXI_TEST_MODE=agent) its plugin calls go through loxi-agent."""
    assert plugin_path().exists(), f"{plugin_path()} is not installed: run scripts/setup"
    return Node(netns("node"), tmp_path / "ipam", netns, agent_socket)


def make_conf(data_dir: Path, **overrides: Any) -> dict:
    """The seed conf of the blog post, with a real subnet and routes (no VLAN: see the UML tier)."""
    conf: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "name": "loxilight_cni",
        "type": "loxi-cni",
        "bridge": "hsvlan100",
        "isGateway": True,
        "isDefaultGateway": False,
        "mtu": 1500,
        "hairpinMode": False,
        "promiscMode": False,
        "ipam": {
            "type": "host-local",
            "subnet": "10.244.1.0/24",
            "routes": [{"dst": "10.96.0.0/12"}],
            "dataDir": str(data_dir),
        },
    }
    for key, value in overrides.items():
        if value is None:
            conf.pop(key, None)
        else:
            conf[key] = value
    return conf
