"""The DaemonSet for real (issue 22): the image built here, its containers run against a node.

A node is a network namespace plus a directory tree standing for the host's paths of the
DaemonSet's hostPath volumes (/opt/cni/bin, /etc/cni/net.d, /opt/loxi, /run/loxi, /var/lib/cni,
/var/log/loxi, /run/xtables.lock); /var/run/netns is the real one, where the pods' namespaces are.
Everything a container gets (command, privileged, hostNetwork, hostPID, env, mounts, probes) is
read from deploy/loxi-cni.yaml, so the manifest and this test cannot drift apart. The kubelet's
part is played here: the downward API's NODE_NAME, a service account (token, CA) and an API
server on the node's loopback that answers the Node object with its pod CIDR.

Pod calls run OUTSIDE any container, as a runtime on the node runs them: the tree's
/opt/cni/bin/loxi-cni with the CNI variables and the conf on stdin, in a private mount
namespace where the tree is mounted at the host's paths (`host` view), or chrooted into a root
with only the tree and the system libraries, no Python (`bare` view), entered into the node's
network namespace with nsenter.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runtimes.conftest import NSENTER, ULIMITS, NodeNs, run, unmount_under

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "deploy" / "loxi-cni.yaml"
CACHE = Path(os.environ.get("LOXI_IMAGE_CACHE", "/var/cache/loxi-cni/image"))
STORE = CACHE / "podman"  # persistent, so the images (and podman's layer cache) survive test runs
PODMAN_OPTS = (
    f"--root {STORE}/root --runroot {STORE}/run --storage-driver overlay "
    "--runtime runc --cgroup-manager cgroupfs --events-backend file"
)
NETNS_DIR = "/var/run/netns"
CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"
POD_CIDR = "10.244.7.0/24"
API_PORT = 6443
TOKEN = "loxi-test-token"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
# The kernel here has no bridge VLAN filtering: the operator's documented override of the template's VLAN.
TEMPLATE_VARS = "vlan_id=0"
VERSION = re.search(r'^version = "(.*)"$', (ROOT / "pyproject.toml").read_text(), re.M).group(1)  # type: ignore[union-attr]
NEXT_VERSION = VERSION + ".post1"

API_SERVER = r"""
import http.server, json, ssl, sys
cert, key, node, cidr, token, port = sys.argv[1:7]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path == f"/api/v1/nodes/{node}" and self.headers.get("Authorization") == f"Bearer {token}"
        doc = {"kind": "Node", "metadata": {"name": node}, "spec": {"podCIDR": cidr}}
        body = json.dumps(doc if ok else {}).encode()
        self.send_response(200 if ok else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), H)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
print("ready", flush=True)
server.serve_forever()
"""

HTTP_GET = r"""
import sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])) as r:
        print(r.status); sys.stdout.write(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code)
except OSError as e:
    print(0); print(e)
"""


def podman(*args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return run(["podman", *PODMAN_OPTS.split(), *args], check=check, timeout=timeout)


def build_image(*args: str) -> str:
    env = {**os.environ, "PODMAN_OPTS": PODMAN_OPTS, "LOXI_IMAGE_CACHE": str(CACHE)}
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-image"), *args], capture_output=True, text=True, env=env, timeout=1200
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def daemonset() -> dict:
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    return next(d for d in docs if d["kind"] == "DaemonSet")


def tree_snapshot(base: Path) -> dict[str, str]:
    """Every path under base: 'dir', or its mode and sha256."""
    found: dict[str, str] = {}
    for root, dirs, files in os.walk(base):
        for name in dirs:
            found[str(Path(root, name).relative_to(base))] = "dir"
        for name in files:
            path = Path(root, name)
            if path.is_socket():
                found[str(path.relative_to(base))] = "socket"
                continue
            found[str(path.relative_to(base))] = (
                f"{path.stat().st_mode:o} {hashlib.sha256(path.read_bytes()).hexdigest()}"
            )
    return found


class Node:
    """A node: its network namespace, its tree, the kubelet's service account and API stand-in, its pods."""

    VIEW_PATHS = ("/opt/cni/bin", "/opt/loxi", "/run/loxi", "/var/lib/cni")

    def __init__(self, base: Path) -> None:
        self.base = base
        self.name = f"loxids-{uuid.uuid4().hex[:6]}"
        self.ns = NodeNs("ds")
        self.tree = base / "tree"
        spec = daemonset()["spec"]["template"]["spec"]
        self.pod_spec = spec
        self.volumes = {v["name"]: v for v in spec["volumes"]}
        for volume in spec["volumes"]:
            self.host_path(volume)
        self.pods: dict[str, NodeNs] = {}
        self.containers: list[str] = []
        self.made_dirs: list[str] = []
        self.api: subprocess.Popen | None = None
        self._service_account()

    # -- the host side of the DaemonSet's volumes
    def host_path(self, volume: dict) -> str:
        path = volume["hostPath"]["path"]
        if path == NETNS_DIR:
            return path  # the pods' namespaces are the real ones
        target = self.tree / path.lstrip("/")
        if volume["hostPath"].get("type") == "FileOrCreate":
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()
        else:
            target.mkdir(parents=True, exist_ok=True)
        return str(target)

    def _service_account(self) -> None:
        sa = self.base / "sa"
        sa.mkdir()
        (sa / "token").write_text(TOKEN)
        run(
            [
                *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"),
                *("-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(sa / "key"), "-out", str(sa / "ca.crt")),
            ]
        )
        self.sa = sa
        server = [sys.executable, "-I", "-c", API_SERVER, str(sa / "ca.crt"), str(sa / "key")]
        self.api = subprocess.Popen(
            self.ns.wrap([*server, self.name, POD_CIDR, TOKEN, str(API_PORT)]),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.api.stdout is not None and self.api.stdout.readline().strip() == "ready"

    # -- the DaemonSet's containers, as the kubelet would start them
    def container_argv(self, container: dict, image: str, name: str) -> list[str]:
        spec = self.pod_spec
        argv = ["run", "--name", name, *ULIMITS]
        if spec.get("hostNetwork"):
            argv += ["--network", f"ns:{self.ns.path}"]
        if spec.get("hostPID"):
            argv += ["--pid", "host"]
        if container.get("securityContext", {}).get("privileged"):
            argv += ["--privileged"]
        for mount in container.get("volumeMounts", []):
            propagation = {"HostToContainer": ":rslave", "Bidirectional": ":rshared"}.get(
                mount.get("mountPropagation", ""), ""
            )
            argv += ["-v", f"{self.host_path(self.volumes[mount['name']])}:{mount['mountPath']}{propagation}"]
        argv += ["-v", f"{self.sa}:{SA_DIR}:ro", "-e", "KUBERNETES_SERVICE_HOST=127.0.0.1"]
        argv += ["-e", f"KUBERNETES_SERVICE_PORT={API_PORT}"]
        for env in container.get("env", []):
            if "valueFrom" in env:
                assert env["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}, env
                value = self.name
            else:
                value = TEMPLATE_VARS if env["name"] == "LOXI_TEMPLATE_VARS" else env["value"]
            argv += ["-e", f"{env['name']}={value}"]
        command = container["command"]
        argv += ["--entrypoint", json.dumps(command[:1]), image, *command[1:], *container.get("args", [])]
        return argv

    def run_init(self, image: str) -> subprocess.CompletedProcess[str]:
        container = self.pod_spec["initContainers"][0]
        name = f"{self.name}-{container['name']}-{uuid.uuid4().hex[:4]}"
        self.containers.append(name)
        argv = self.container_argv(container, image, name)
        return podman(argv[0], "--rm", *argv[1:])

    def start_agent(self, image: str) -> str:
        container = self.pod_spec["containers"][0]
        name = f"{self.name}-{container['name']}-{uuid.uuid4().hex[:4]}"
        self.containers.append(name)
        argv = self.container_argv(container, image, name)
        podman(argv[0], "-d", *argv[1:])
        self.wait_probe(container, "readinessProbe", True)
        return name

    def stop_container(self, name: str) -> None:
        grace = self.pod_spec.get("terminationGracePeriodSeconds", 30)
        podman("stop", "-t", str(grace), name, timeout=grace + 30)

    # -- the kubelet's probes: an HTTP GET from the node's network namespace
    def probe(self, container: dict, kind: str) -> tuple[bool, int]:
        probe = container[kind]
        get = probe["httpGet"]
        url = f"{get.get('scheme', 'HTTP').lower()}://{get.get('host', '127.0.0.1')}:{get['port']}{get['path']}"
        out = run(self.ns.wrap([sys.executable, "-I", "-c", HTTP_GET, url, str(probe.get("timeoutSeconds", 1))]))
        status = int(out.stdout.splitlines()[0])
        return 200 <= status < 400, status

    def wait_probe(self, container: dict, kind: str, want: bool, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while True:
            ok, status = self.probe(container, kind)
            if ok == want:
                return status
            assert time.monotonic() < deadline, f"{kind} stayed {status}"
            time.sleep(0.2)

    def http(self, path: str) -> str:
        get = self.pod_spec["containers"][0]["readinessProbe"]["httpGet"]
        out = run(
            self.ns.wrap([sys.executable, "-I", "-c", HTTP_GET, f"http://{get['host']}:{get['port']}{path}", "5"])
        )
        assert out.stdout.startswith("200\n"), out.stdout
        return out.stdout

    def calls(self, command: str) -> float:
        """loxi_cni_calls_total{command,code=0} of the running agent."""
        metrics = self.http("/metrics")
        for line in metrics.splitlines():
            if line.startswith("loxi_cni_calls_total{") and f'command="{command}"' in line and 'code="0"' in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    # -- pod calls, outside any container
    def view(self, argv: list[str], bare: Path | None = None) -> list[str]:
        """argv as a runtime on the node runs it: the tree at the host's paths, in the node namespace."""
        if bare is not None:
            return [NSENTER, f"--net={self.ns.path}", "--", CHROOT, str(bare), *argv]
        script = "set -e\n"
        for path in self.VIEW_PATHS:
            if not os.path.isdir(path):  # an empty mount point, removed again at cleanup
                os.makedirs(path)
                self.made_dirs.append(path)
            script += f"mount --bind {self.tree / path.lstrip('/')} {path}\n"
        script += f'exec {NSENTER} --net={self.ns.path} -- "$@"\n'
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "node", *argv]

    def conf(self) -> dict:
        conflist = json.loads((self.tree / "etc/cni/net.d/10-loxi.conflist").read_text())
        plugin = next(p for p in conflist["plugins"] if p["type"] == "loxi-cni")
        return {"cniVersion": conflist["cniVersion"], "name": conflist["name"], **plugin}

    def pod(self, key: str) -> NodeNs:
        if key not in self.pods:
            self.pods[key] = NodeNs("dspod")
        return self.pods[key]

    def cni(
        self, command: str, key: str, prev: dict | None = None, bare: Path | None = None, env: dict | None = None
    ) -> subprocess.CompletedProcess[str]:
        pod = self.pod(key)
        conf = self.conf()
        if prev is not None:
            conf["prevResult"] = prev
        variables = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": hashlib.sha256(key.encode()).hexdigest(),
            "CNI_NETNS": pod.path,
            "CNI_IFNAME": "eth0",
            "CNI_PATH": "/opt/cni/bin",
            **(env or {}),
        }
        return subprocess.run(
            self.view(["/opt/cni/bin/loxi-cni"], bare),
            input=json.dumps(conf),
            capture_output=True,
            text=True,
            env=variables,
            timeout=120,
        )

    def add_ok(self, key: str, bare: Path | None = None) -> dict:
        proc = self.cni("ADD", key, bare=bare)
        assert proc.returncode == 0, (key, proc.stdout, proc.stderr)
        result = json.loads(proc.stdout)
        assert result["ips"][0]["address"].startswith("10.244.7."), result
        return result

    def allocations(self) -> list[str]:
        store = self.tree / "var/lib/cni/networks" / self.conf()["name"]
        return sorted(p.name for p in store.iterdir() if re.fullmatch(r"[0-9.]+", p.name)) if store.is_dir() else []

    def runtimes(self) -> list[str]:
        return sorted(p.name for p in (self.tree / "opt/loxi").iterdir())

    def cleanup(self) -> None:
        if self.containers:
            podman("rm", "-f", "-t", "0", "--ignore", *self.containers, check=False)
        for pod in self.pods.values():
            pod.delete()
        if self.api is not None:
            self.api.kill()
            self.api.wait()
        self.ns.delete()
        for path in reversed(self.made_dirs):
            with contextlib.suppress(OSError):
                os.rmdir(path)


@pytest.fixture(scope="module")
def image() -> str:
    if os.geteuid() != 0:
        pytest.skip("needs root (debootstrap, podman, network namespaces)")
    gone = [p for p in ("podman", "runc", "debootstrap", "openssl", "unshare", "chroot") if shutil.which(p) is None]
    if gone:
        pytest.skip(f"{', '.join(gone)} not installed (scripts/setup installs them)")
    return build_image()


@pytest.fixture(scope="module")
def node(image: str) -> Iterator[Node]:
    base = Path(tempfile.mkdtemp(prefix="loxids-", dir="/tmp"))
    made = Node(base)
    try:
        yield made
    finally:
        made.cleanup()
        unmount_under(base)
        shutil.rmtree(base, ignore_errors=True)


def bare_root(node: Node) -> Iterator[Path]:
    """A root with the node tree and the system libraries only: no Python anywhere."""
    root = node.base / "bare"
    mounts: list[Path] = []
    for sub in (
        "usr/lib/x86_64-linux-gnu",
        "usr/lib64",
        "dev",
        "proc",
        "opt/cni/bin",
        "opt/loxi",
        "run/loxi",
        "run/netns",
        "var/lib/cni",
        "tmp",
    ):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for link, target in (("lib", "usr/lib"), ("lib64", "usr/lib64"), ("var/run", "../run")):
        if not (root / link).is_symlink():
            (root / link).symlink_to(target)
    binds = {
        "usr/lib/x86_64-linux-gnu": "/usr/lib/x86_64-linux-gnu",
        "usr/lib64": "/usr/lib64",
        "dev": "/dev",
        "proc": "/proc",
        "run/netns": "/run/netns",
    }
    binds.update({p.lstrip("/"): str(node.tree / p.lstrip("/")) for p in Node.VIEW_PATHS})
    try:
        for sub, source in binds.items():
            run(["mount", "--rbind" if sub in ("dev", "proc") else "--bind", source, str(root / sub)])
            mounts.append(root / sub)
            # A slave receives the host's new mounts (pod namespaces made later) and sends nothing
            # back: without it the lazy unmount below propagates to the host and unmounts every
            # network namespace made under /run/netns since the bind (and /dev's submounts).
            run(["mount", "--make-rslave", str(root / sub)])
        yield root
    finally:
        for mount in reversed(mounts):
            run(["umount", "-l", str(mount)], check=False)


def test_daemonset_on_a_node(node: Node, image: str) -> None:
    """install places shim, runtime and conflist; pod calls outside any container go through the agent,
    fall back in-process when it is stopped, and the manifest's probes follow it."""
    before = tree_snapshot(node.tree)
    install = node.run_init(image)
    assert "is the static shim" in install.stdout, install.stdout
    bin_dir = node.tree / "opt/cni/bin"
    assert sorted(p.name for p in bin_dir.iterdir()) == [".loxi-cni.manifest.json", "loxi-cni", "loxi-cni-inprocess"]
    (runtime,) = node.runtimes()
    assert runtime.startswith(f"runtime-{VERSION}-py3"), runtime
    launcher = (bin_dir / "loxi-cni-inprocess").read_text()
    assert launcher.startswith(f"#!/opt/loxi/{runtime}/bin/python3 -IS\n"), launcher[:200]
    conflist = json.loads((node.tree / "etc/cni/net.d/10-loxi.conflist").read_text())
    assert conflist["plugins"][0]["ipam"]["subnet"] == POD_CIDR  # read from the Node object through the API
    assert conflist["plugins"][0]["vlanID"] == 0
    node.install_before = before  # type: ignore[attr-defined]

    # VERSION from the shim itself, as a runtime asks before every call
    version = subprocess.run(
        node.view(["/opt/cni/bin/loxi-cni"]), env={"CNI_COMMAND": "VERSION"}, capture_output=True, text=True, input="{}"
    )
    assert version.returncode == 0 and "1.1.0" in json.loads(version.stdout)["supportedVersions"]

    # no agent yet: the shim hands the calls to the in-process launcher from /opt/loxi
    first = node.add_ok("pod-0")

    agent_container = node.pod_spec["containers"][0]
    agent = node.start_agent(image)
    assert node.probe(agent_container, "livenessProbe") == (True, 200)
    assert node.probe(agent_container, "readinessProbe") == (True, 200)
    results = {key: node.add_ok(key) for key in ("pod-1", "pod-2", "pod-3")}
    for key, result in results.items():
        check = node.cni("CHECK", key, prev=result)
        assert check.returncode == 0, check.stdout
    assert node.calls("ADD") == 3 and node.calls("CHECK") == 3  # the agent served them
    assert "eth0" in run(["ip", "-n", node.pod("pod-1").name, "-j", "addr"]).stdout
    dell = node.cni("DEL", "pod-3", prev=results["pod-3"])
    assert dell.returncode == 0, dell.stdout
    assert node.calls("DEL") == 1
    assert len(node.allocations()) == 3  # pod-0, pod-1, pod-2

    # the agent stopped (SIGTERM, as the kubelet stops it): the probes fail, the next ADD runs in-process
    node.stop_container(agent)
    assert node.probe(agent_container, "livenessProbe")[0] is False
    assert node.probe(agent_container, "readinessProbe")[0] is False
    assert not (node.tree / "run/loxi/agent.sock").exists()
    fallback = node.add_ok("pod-4")
    assert fallback["ips"][0]["address"] not in {r["ips"][0]["address"] for r in results.values()}
    assert node.cni("CHECK", "pod-4", prev=fallback).returncode == 0

    # started again: served by the agent, which never saw pod-4's ADD
    podman("start", agent)
    node.wait_probe(agent_container, "readinessProbe", True)
    node.add_ok("pod-5")
    assert node.calls("ADD") == 1
    for key, result in (("pod-0", first), ("pod-4", fallback)):
        assert node.cni("DEL", key, prev=result).returncode == 0
    assert node.calls("DEL") == 2
    node.agent = agent  # type: ignore[attr-defined]


def test_node_without_python(node: Node, image: str) -> None:
    """From a root with no Python (only the node tree and the system libraries): the shim works with the
    agent, falls back to /opt/loxi's runtime without it, and without that runtime answers code 11."""
    agent = node.agent  # type: ignore[attr-defined]
    container = node.pod_spec["containers"][0]
    for bare in bare_root(node):
        assert subprocess.run(["chroot", str(bare), "/usr/bin/python3", "-c", "1"], capture_output=True).returncode != 0
        adds = node.calls("ADD")
        result = node.add_ok("bare-1", bare=bare)
        assert node.calls("ADD") == adds + 1
        node.stop_container(agent)
        node.wait_probe(container, "readinessProbe", False)
        fallback = node.add_ok("bare-2", bare=bare)  # the runtime install copied to /opt/loxi
        assert node.cni("CHECK", "bare-2", prev=fallback, bare=bare).returncode == 0
        hidden = node.base / "hidden-runtimes"
        (node.tree / "opt/loxi").rename(hidden)
        (node.tree / "opt/loxi").mkdir()
        try:
            # the bind mount still shows the old directory: remount the now-empty one
            run(["umount", "-l", str(bare / "opt/loxi")])
            run(["mount", "--bind", str(node.tree / "opt/loxi"), str(bare / "opt/loxi")])
            proc = node.cni("ADD", "bare-3", bare=bare)
            assert proc.returncode == 1, proc.stdout
            error = json.loads(proc.stdout)
            assert error["code"] == 11, error
            assert "/run/loxi/agent.sock" in error["msg"], error
            gone = node.cni("DEL", "bare-1", prev=result, bare=bare)
            assert gone.returncode == 1 and json.loads(gone.stdout)["code"] == 11
        finally:
            (node.tree / "opt/loxi").rmdir()
            hidden.rename(node.tree / "opt/loxi")
            run(["umount", "-l", str(bare / "opt/loxi")])
            run(["mount", "--bind", str(node.tree / "opt/loxi"), str(bare / "opt/loxi")])
        # the DEL that failed is retried once the agent is back, and does not leak
        podman("start", agent)
        node.wait_probe(container, "readinessProbe", True)
        leases = len(node.allocations())
        assert node.cni("DEL", "bare-1", prev=result, bare=bare).returncode == 0
        assert node.cni("DEL", "bare-2", prev=fallback, bare=bare).returncode == 0
        assert len(node.allocations()) == leases - 2
        assert node.calls("DEL") == 2


def test_upgrade_and_uninstall(node: Node, image: str) -> None:
    """A second image (a version bump) rolled out while 20 pods run and ADDs are in flight: no call fails,
    the files are replaced by rename, the old runtime goes once unused, the pods' DEL works under the new
    version; then uninstall leaves the tree as before install but for the running pods' leases."""
    next_image = build_image("--version", NEXT_VERSION, "--tag", f"localhost/loxi-cni:{NEXT_VERSION}")
    agent = node.agent  # type: ignore[attr-defined]
    running = {f"up-{i}": node.add_ok(f"up-{i}") for i in range(20)}
    bin_dir = node.tree / "opt/cni/bin"
    files = ("loxi-cni", "loxi-cni-inprocess")
    inodes = {name: (bin_dir / name).stat().st_ino for name in files}
    contents = {name: (bin_dir / name).read_bytes() for name in files}
    (old_runtime,) = node.runtimes()

    failures: list[tuple[str, str, str]] = []
    done = threading.Event()
    count = [0]

    def churn(worker: int) -> None:
        i = 0
        while not done.is_set():
            key = f"churn-{worker}-{i}"
            add = node.cni("ADD", key)
            if add.returncode != 0:
                failures.append((key, "ADD", add.stdout + add.stderr))
            else:
                dell = node.cni("DEL", key, prev=json.loads(add.stdout))
                if dell.returncode != 0:
                    failures.append((key, "DEL", dell.stdout + dell.stderr))
            node.pods.pop(key).delete()
            count[0] += 1
            i += 1

    workers = [threading.Thread(target=churn, args=(w,)) for w in range(2)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(1)
        node.stop_container(agent)  # RollingUpdate: the old pod goes first
        node.run_init(next_image)
        new_agent = node.start_agent(next_image)
        time.sleep(2)
    finally:
        done.set()
        for worker in workers:
            worker.join()
    assert failures == [] and count[0] >= 4, (failures, count)
    # a file whose content changed was replaced by a rename (a new inode), never rewritten in place;
    # the shim of the bump is byte for byte the old one (same versions, same protocol): left as it was
    assert (bin_dir / "loxi-cni-inprocess").read_bytes() != contents["loxi-cni-inprocess"]
    for name, inode in inodes.items():
        same = (bin_dir / name).read_bytes() == contents[name]
        assert ((bin_dir / name).stat().st_ino == inode) == same, f"{name}: changed {not same}, inode {inode}"
    assert sorted(p.name for p in bin_dir.iterdir()) == [".loxi-cni.manifest.json", "loxi-cni", "loxi-cni-inprocess"]
    new_runtimes = [r for r in node.runtimes() if r.startswith(f"runtime-{NEXT_VERSION}-")]
    assert len(new_runtimes) == 1, node.runtimes()
    assert f"loxi-cni {NEXT_VERSION})" in (bin_dir / "loxi-cni-inprocess").read_text()
    # the periodic install of the new agent's container removes the old runtime once nothing runs from it
    podman("exec", new_agent, "/usr/local/bin/loxi-node", "install")
    assert node.runtimes() == new_runtimes, node.runtimes()
    assert old_runtime not in node.runtimes()

    # the pods that ran across the upgrade: DEL under the new version, through the new agent
    dels = node.calls("DEL")
    for key in list(running)[:10]:
        assert node.cni("DEL", key, prev=running.pop(key)).returncode == 0
    assert node.calls("DEL") == dels + 10

    # uninstall (the image's loxi-plan uninstall, with the install container's mounts); pods still run
    network = node.conf()["name"]
    live = node.allocations()
    assert len(live) >= 10 + 3, live  # up-10..19, and pod-1, pod-2, pod-5 of the first test
    node.stop_container(new_agent)
    container = dict(node.pod_spec["initContainers"][0], command=["/usr/local/bin/loxi-node", "uninstall"])
    name = f"{node.name}-uninstall"
    node.containers.append(name)
    argv = node.container_argv(container, next_image, name)
    out = podman(argv[0], "--rm", *argv[1:])
    assert "removed" in out.stdout, out.stdout
    after = tree_snapshot(node.tree)
    before = node.install_before  # type: ignore[attr-defined]
    store = f"var/lib/cni/networks/{network}/"
    written = {p for p in after if p not in before or after[p] != before[p]}
    # what remains: the running pods' leases (and the store's bookkeeping), and the agent's own state and log
    leases = {p for p in written if p.startswith(store) or store.startswith(p + "/")}
    agent_state = {p for p in written if p.startswith(("run/loxi", "var/log/loxi"))}
    assert written - leases - agent_state == set(), sorted(written - leases - agent_state)
    # the agent's tmpfs state (attachment locks, the networks it served, schema verdicts) and its log
    tops = ("run/loxi/", "var/log/loxi/")  # the directories themselves may be new too: their entries count
    entries = {p[len(t) :].split("/")[0] for p in agent_state for t in tops if p.startswith(t)}
    assert entries <= {"locks", "networks", "schema-ok", "agent.log", "agent.log.lock"}, sorted(agent_state)
    assert sorted(Path(p).name for p in leases if re.fullmatch(r".*/[0-9.]+", p)) == live
    assert {Path(p).name for p in leases} - set(live) <= {"networks", network, "lock", "last_reserved_ip.0"}
    assert [p for p in before if p not in after] == []
