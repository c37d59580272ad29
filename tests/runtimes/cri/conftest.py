"""Fixtures of the CRI tier: one private containerd with its CRI plugin for the session, one
network (conflist, bridge, subnet, IPAM store, log) per test, and the leak checks.

The session pays once for what is slow to make (protoc, the static pause image,
`loxi-plan install`, the daemon); each test swaps in its own conflist and waits
until the CRI plugin's Status shows it loaded, as kubelet waits for
NetworkReady. Whatever a test leaves, its fixture stops and removes through the
CRI; the session's finally removes every sandbox, stops the daemon, kills the
shims it left, deletes the node namespace and the temp dir.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import AgentProcess
from tests.runtimes.conftest import REFERENCE_CNI_DIR, missing, read_log, remove_tree, run
from tests.runtimes.cri import recorder
from tests.runtimes.cri.daemon import CNI_CACHE, PAUSE_IMAGE, CriContainerd
from tests.runtimes.cri.pause import build_image
from tests.runtimes.cri.stubs import generate

# containerd 1.6 takes one bin dir: loopback (always run by the CRI plugin) and every chained plugin go in it
CHAINED_REFERENCE_PLUGINS = ("loopback", "portmap", "host-local", "bridge")


@pytest.fixture(scope="session")
def cri_daemon() -> Iterator[CriContainerd]:
    gone = missing("containerd", "ctr", "runc", "gcc", "nsenter")
    if gone:
        pytest.skip(f"{', '.join(gone)} not installed (apt-get install -y containerd runc gcc libc6-dev)")
    try:
        import grpc  # noqa: F401
        import grpc_tools  # noqa: F401
    except ImportError:
        pytest.skip("grpcio / grpcio-tools missing (pip install -e '.[test]')")
    base = Path(tempfile.mkdtemp(prefix="loxicri-", dir="/tmp"))
    daemon: CriContainerd | None = None
    try:
        stubs = generate(base / "stubs")
        image = build_image(base / "pause", PAUSE_IMAGE)
        bin_dir = base / "bin"
        proc = run([sys.executable, "-m", "loxi.install", "install", "--cni-bin-dir", str(bin_dir)], timeout=180)
        assert "launcher" in proc.stdout, proc.stdout
        for name in CHAINED_REFERENCE_PLUGINS:
            (bin_dir / name).symlink_to(REFERENCE_CNI_DIR / name)
        (bin_dir / recorder.NAME).write_text(recorder.SCRIPT)
        (bin_dir / recorder.NAME).chmod(0o755)
        daemon = CriContainerd(base / "ctrd", bin_dir, base / "net.d", stubs)
        daemon.start()
        daemon.import_image(image)
        yield daemon
    finally:
        if daemon is not None:
            daemon.shutdown()
        remove_tree(base)


@dataclass
class CriNet:
    """One test's network on the CRI node: names, store, log, records, and the sandboxes it ran."""

    daemon: CriContainerd
    tmp: Path
    subnet: str
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    sandboxes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.name = f"loxicri-{self.tag}"
        self.bridge = f"lxcri{self.tag}"
        self.data_dir = self.tmp / "ipam"
        self.log = self.tmp / "loxi.log"
        self.records = self.tmp / "records"
        self.records.mkdir()
        self.gateway = self.subnet.rsplit(".", 1)[0] + ".1"

    def plugin(self, *, agent_socket: str | None = None, **extra: object) -> dict:
        """loxi-cni's entry; without an agent socket it names one nobody listens on: in-process runs."""
        ipam = extra.pop("ipam", None) or {"type": "host-local", "subnet": self.subnet}
        ipam = {**ipam, "dataDir": str(self.data_dir)}  # type: ignore[dict-item]
        return {
            "type": "loxi-cni",
            "bridge": self.bridge,
            "isGateway": True,
            "logFile": str(self.log),
            "agentSocket": agent_socket or str(self.tmp / "no-agent.sock"),
            **extra,
            "ipam": ipam,
        }

    def conflist(self, *plugins: dict, record: bool = True) -> dict:
        """A conflist as loxi-cni ships them: cniVersion 1.0.0 for libcni before 1.2 (containerd 1.6's
        refuses a 1.1.0 result), cniVersions up to 1.1.0 for the newer ones, which then send STATUS."""
        chain = list(plugins)
        if record:
            chain.append(
                {"type": recorder.NAME, "recordDir": str(self.records), "capabilities": {"portMappings": True}}
            )
        return {"cniVersion": "1.0.0", "cniVersions": ["1.0.0", "1.1.0"], "name": self.name, "plugins": chain}

    def use(self, conflist: dict) -> None:
        self.daemon.use_conflist(conflist)

    def run(self, pod: str, **kw: object) -> str:
        sandbox_id = self.daemon.client.run_pod_sandbox(f"{self.tag}-{pod}", **kw)  # type: ignore[arg-type]
        self.sandboxes.append(sandbox_id)
        return sandbox_id

    def lines(self, command: str | None = None, sandbox_id: str | None = None) -> list[dict]:
        """loxi-cni's own log lines (every ADD/DEL it ran, with CNI_NETNS and the outcome)."""
        return [
            line
            for line in read_log(self.log)
            if line.get("network") == self.name
            and (command is None or line["command"] == command)
            and (sandbox_id is None or line["containerID"] == sandbox_id)
        ]

    def recorded(self, sandbox_id: str) -> list[dict]:
        """What the chained recorder saw for a sandbox, in call order."""
        found = [json.loads(p.read_text()) for p in sorted(self.records.iterdir())]
        return [r for r in found if r["env"].get("CNI_CONTAINERID") == sandbox_id]

    def leases(self) -> dict[str, str]:
        """{address: sandbox id} in the host-local store."""
        directory = self.data_dir / self.name
        if not directory.is_dir():
            return {}
        return {
            p.name: p.read_bytes().split(b"\r\n")[0].decode()
            for p in directory.iterdir()
            if p.name[0].isdigit() or ":" in p.name
        }

    def veths(self) -> dict[str, str]:
        """{host veth: sandbox id} of this network's attachments in the node namespace (by alias)."""
        out = {}
        for link in self.daemon.ns.links():
            alias = link.get("ifalias", "")
            if link["ifname"].startswith("loxi") and alias.startswith(f"loxi-cni {self.name} "):
                out[link["ifname"]] = alias.split(" ")[2]
        return out

    def netfilter(self) -> str:
        """The node namespace's whole ruleset (nft: loxi-cni's tables and iptables-nft's portmap chains)."""
        return run(self.daemon.ns.wrap(["nft", "list", "ruleset"]), check=False).stdout

    def cache_entries(self) -> list[str]:
        """libcni's cached results of this network (containerd keeps them in the host's /var/lib/cni)."""
        return sorted(p.name for p in CNI_CACHE.glob(f"{self.name}-*")) if CNI_CACHE.is_dir() else []

    def pod_exec(self, netns: str, *argv: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return run(["nsenter", f"--net={netns}", "--", *argv], check=check, timeout=60)

    def ping(self, netns: str, target: str, *, family: str = "-4") -> bool:
        return self.pod_exec(netns, "ping", family, "-c", "1", "-w", "5", target).returncode == 0

    def cleanup(self) -> None:
        for sandbox_id in self.sandboxes:
            with contextlib.suppress(Exception):
                self.daemon.client.stop_pod_sandbox(sandbox_id)
            with contextlib.suppress(Exception):
                self.daemon.client.remove_pod_sandbox(sandbox_id)


SUBNETS = iter(f"10.232.{n}.0/24" for n in range(10, 250))


@pytest.fixture
def cri_net(cri_daemon: CriContainerd, tmp_path: Path) -> Iterator[CriNet]:
    if cri_daemon.cri is None:  # a test that stopped the daemon and failed before starting it again
        cri_daemon.start()
    net = CriNet(cri_daemon, tmp_path, next(SUBNETS))
    try:
        yield net
    finally:
        net.cleanup()


@pytest.fixture
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """A loxi-agent on a private socket, started inside no namespace in particular: it enters the
    caller's (the client sends its netns) for every request."""
    directory = tmp_path_factory.mktemp("cri-agent")
    process = AgentProcess(directory)
    try:
        yield process
    finally:
        process.stop()
        shutil.rmtree(directory, ignore_errors=True)
