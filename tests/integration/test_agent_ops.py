"""loxi-agent as operators run it: metrics, health, draining on SIGTERM, rotated logs, the reconciler.

HTTP goes only to 127.0.0.1 or to the agent's unix sockets. Every agent here
is a real process; the reconciler's agent runs inside the test's node namespace,
as the DaemonSet's runs in the node's, since it reconciles only networks served
from its own namespace.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from applier.locks import attachment_lock_name, lock_dir
from loxi.agent.protocol import encode_request, recv_reply
from loxi.agent.status import fetch, status_socket
from tests.conftest import NSENTER, REFERENCE_CNI_DIR, Node, agent_path, make_conf, stop_process

pytestmark = pytest.mark.kernel


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Agent:
    """loxi-agent with its HTTP side on 127.0.0.1:PORT, optionally inside a namespace."""

    def __init__(self, directory: Path, *options: str, netns: str = "", env: dict[str, str] | None = None) -> None:
        self.socket = directory / "agent.sock"
        self.status = Path(status_socket(str(self.socket)))
        self.port = free_port()
        self.log = directory / "agent.stderr"
        argv = [str(agent_path()), "--socket", str(self.socket), "--metrics-address", f"127.0.0.1:{self.port}"]
        argv += ["--ipam-data-dir", str(directory / "ipam"), *options]
        if netns:  # the metrics address then lives in that namespace: use the status socket
            argv = [NSENTER, f"--net={netns}", "--", *argv]
        self.netns = netns
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(argv, stderr=log, env={**os.environ, **(env or {})})

    def wait_socket(self) -> None:
        for _ in range(400):
            if self.socket.exists():
                return
            assert self.proc.poll() is None, self.log.read_text()
            time.sleep(0.025)
        raise AssertionError(f"no socket: {self.log.read_text()}")

    def get(self, endpoint: str) -> tuple[int, object]:
        if self.netns:
            return fetch(str(self.status), endpoint)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{endpoint}", timeout=5) as answer:
                body = answer.read().decode()
                return answer.status, (json.loads(body) if endpoint != "/metrics" else body)
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read().decode())

    def wait_http(self) -> None:
        for _ in range(400):
            try:
                self.get("/healthz")
                return
            except OSError:
                assert self.proc.poll() is None, self.log.read_text()
                time.sleep(0.025)
        raise AssertionError("no HTTP endpoint")

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        code, text = self.get("/metrics")
        assert code == 200
        out = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return out

    def stop(self) -> None:
        stop_process(self.proc, timeout=15)


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def agent_factory(tmp_path):
    made: list[Agent] = []

    def make(*options: str, **kwargs) -> Agent:
        agent = Agent(tmp_path, *options, **kwargs)
        made.append(agent)
        return agent

    try:
        yield make
    finally:
        for agent in made:
            agent.stop()


def via(node: Node, agent: Agent) -> Node:
    return Node(node.ns, node.data_dir, node.factory, str(agent.socket))


# -- metrics ------------------------------------------------------------------------


def test_every_counter_moves_with_the_calls_it_counts(node, agent_factory):
    agent = agent_factory()
    agent.wait_socket()
    agent.wait_http()
    warm = via(node, agent)
    pod = warm.pod()
    conf = make_conf(
        warm.data_dir, name="metricsnet", ipam={**make_conf(warm.data_dir)["ipam"], "subnet": "10.251.8.0/24"}
    )
    gc_conf = {**conf, "cniVersion": "1.1.0", "cni.dev/valid-attachments": [{"containerID": "m1", "ifname": "eth0"}]}
    start = agent.samples()
    build = [dict(labels) for name, labels in start if name == "loxi_agent_build_info"]
    assert build and build[0]["version"] == "0.1.0" and build[0]["pyroute2"] == "0.9.7" and build[0]["python"], build
    assert value(start, "loxi_agent_start_time_seconds") > time.time() - 120

    # VERSION never reaches the agent: the thin client answers it from built-ins.
    calls = [
        ("ADD", conf, "0", {"container_id": "m1", "netns": pod.path}),
        ("CHECK", None, "0", {"container_id": "m1", "netns": pod.path}),
        ("STATUS", {**conf, "cniVersion": "1.1.0"}, "0", {}),
        ("GC", gc_conf, "0", {}),
        ("ADD", b"{not json", "6", {"container_id": "m2", "netns": pod.path}),
        ("DEL", conf, "0", {"container_id": "m1", "netns": pod.path}),
    ]
    prev_result = None
    for command, body, code, kwargs in calls:
        before = agent.samples()
        if command == "CHECK":
            body = {**conf, "prevResult": prev_result}
        call = warm.cni(command, body, **kwargs)
        assert (call.rc == 0) == (code == "0"), (command, call)
        if command == "ADD" and code == "0":
            prev_result = call.json
            after_add = agent.samples()
            pool = {"network": "metricsnet", "range_set": "10.244.1.1-10.244.1.254"}
            pool["range_set"] = next(
                dict(k[1])["range_set"]
                for k in after_add
                if k[0] == "loxi_ipam_addresses" and dict(k[1])["network"] == "metricsnet"
            )
            assert value(after_add, "loxi_ipam_addresses", **pool, state="used") == 1
            assert value(after_add, "loxi_ipam_addresses", **pool, state="free") == 252  # .1 is the gateway
        after = agent.samples()
        assert (
            value(after, "loxi_cni_calls_total", command=command, code=code)
            == value(before, "loxi_cni_calls_total", command=command, code=code) + 1
        ), f"{command} not counted"
        assert (
            value(after, "loxi_cni_call_duration_seconds_count", command=command)
            == value(before, "loxi_cni_call_duration_seconds_count", command=command) + 1
        ), f"{command}'s latency not observed"
    end = agent.samples()
    for phase in ("ipam", "plan", "apply"):
        assert value(end, "loxi_cni_phase_duration_seconds_count", command="ADD", phase=phase) >= 1, phase
        assert value(end, "loxi_cni_phase_duration_seconds_count", command="DEL", phase=phase) >= 1, phase
    assert value(end, "loxi_cni_phase_duration_seconds_count", command="CHECK", phase="plan") == 1

    assert "code 6" in agent.get("/status")[1]["last_error"]

    # in flight: a client that connects and does not send yet
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.connect(str(agent.socket))
    try:
        for _ in range(100):
            if value(agent.samples(), "loxi_agent_requests_in_flight") == 1:
                break
            time.sleep(0.02)
        assert value(agent.samples(), "loxi_agent_requests_in_flight") == 1
    finally:
        raw.close()
    for _ in range(100):
        if value(agent.samples(), "loxi_agent_requests_in_flight") == 0:
            break
        time.sleep(0.02)
    assert value(agent.samples(), "loxi_agent_requests_in_flight") == 0
    status = agent.get("/status")[1]
    assert status["requests_served"] == len(calls)
    assert "broken-request" in status["last_error"], status


def test_fallbacks_the_agent_causes_are_counted(node, agent_factory):
    agent = agent_factory("--request-timeout", "0.3")
    agent.wait_socket()
    agent.wait_http()
    before = agent.samples()
    # a request without the caller's namespace is refused (and the client runs it in-process)
    bare = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    bare.connect(str(agent.socket))
    try:
        bare.sendall(encode_request({b"CNI_COMMAND": b"ADD"}, b"{}"))
        refused, _, body = recv_reply(bare)
    finally:
        bare.close()
    assert refused and b"namespace" in body
    # a client that never sends its request is cut off
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.connect(str(agent.socket))
    try:
        time.sleep(0.8)
    finally:
        raw.close()
    after = agent.samples()
    for reason in ("no-netns", "request-timeout"):
        assert (
            value(after, "loxi_agent_fallbacks_total", reason=reason)
            == value(before, "loxi_agent_fallbacks_total", reason=reason) + 1
        ), reason


# -- health -------------------------------------------------------------------------


def test_readyz_is_false_until_ready_and_from_sigterm_on(node, agent_factory, tmp_path):
    hold = tmp_path / "hold"
    hold.write_text("")
    agent = agent_factory("--drain-timeout", "10", env={"LOXI_AGENT_TEST_HOLD": str(hold)})
    agent.wait_http()
    code, doc = agent.get("/readyz")
    assert code == 503 and doc["engine imported"] is False and doc["socket listening"] is False, doc
    assert agent.get("/healthz")[0] == 503 and not agent.socket.exists()
    hold.unlink()
    agent.wait_socket()
    for _ in range(200):
        code, doc = agent.get("/readyz")
        if code == 200:
            break
        time.sleep(0.025)
    assert code == 200 and all(doc.values()), doc
    assert agent.get("/healthz")[0] == 200

    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # a request in flight holds the exit
    raw.connect(str(agent.socket))
    try:
        time.sleep(0.2)
        agent.proc.send_signal(signal.SIGTERM)
        for _ in range(100):
            code, doc = agent.get("/readyz")
            if code == 503:
                break
            time.sleep(0.02)
        assert code == 503 and doc["not shutting down"] is False, doc
        assert agent.proc.poll() is None, "exits only once the request in flight is done"
        assert not agent.socket.exists(), "new clients find no socket"
        warm = via(node, agent)
        pod = warm.pod()
        conf = make_conf(warm.data_dir, name="drainnet")
        add = warm.cni("ADD", conf, container_id="d1", netns=pod.path)
        assert add.rc == 0, add  # fell back in-process
        assert warm.cni("DEL", conf, container_id="d1", netns=pod.path).rc == 0
        assert agent.get("/status")[1]["requests_served"] == 0
    finally:
        raw.close()
    agent.proc.wait(timeout=10)


def test_readyz_says_when_the_ipam_store_is_not_writable(agent_factory, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    agent = agent_factory("--ipam-data-dir", str(blocker / "networks"))
    agent.wait_socket()
    agent.wait_http()
    code, doc = agent.get("/readyz")
    assert code == 503 and doc["IPAM store writable"] is False and doc["engine imported"] is True, doc


# -- logs ---------------------------------------------------------------------------


WRITER = """
import sys
from loxi.logrotate import append_line
path, who, count, size, keep = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
for i in range(count):
    append_line(path, f'{{"writer": "{who}", "n": {i}, "pad": "{"x" * 60}"}}\\n'.encode(), size, keep)
"""


@pytest.mark.parametrize("keep", [200, 3])
def test_rotation_under_four_concurrent_writers_loses_no_line_and_keeps_the_bound(tmp_path, keep):
    path = tmp_path / "cni.log"
    size, lines = 4096, 600
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"w{w}", str(lines), str(size), str(keep)])
        for w in range(4)
    ]
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    files = sorted(p for p in tmp_path.iterdir() if p.name.startswith("cni.log") and not p.name.endswith(".lock"))
    assert len(files) <= 1 + keep
    assert all(p.stat().st_size <= size for p in files), [p.stat().st_size for p in files]
    seen = [json.loads(line) for p in files for line in p.read_text().splitlines()]
    got = {(d["writer"], d["n"]) for d in seen}
    assert len(seen) == len(got), "a line written twice"
    if keep == 200:  # room for everything: every line of every writer is there, whole
        assert got == {(f"w{w}", i) for w in range(4) for i in range(lines)}
    else:  # the oldest files were dropped; what is kept is the newest, without a gap
        for w in range(4):
            mine = sorted(n for who, n in got if who == f"w{w}")  # a writer that ended early may be all rotated out
            assert not mine or mine == list(range(mine[0], lines)), w
        assert len(seen) * 90 > keep * size * 0.8, "the old files kept are (nearly) full"


def test_the_plugin_log_rotates_and_carries_traceparent(node, tmp_path):
    log = tmp_path / "logs" / "cni.log"
    conf = make_conf(node.data_dir, name="lognet", logFile=str(log), logFileMaxSize=600, logFileMaxCount=2)
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    pod = node.pod()
    for i in range(6):
        add = node.cni("ADD", conf, container_id=f"l{i}", netns=pod.path, ifname=f"e{i}", env={"TRACEPARENT": trace})
        assert add.rc == 0, add
    files = sorted(p.name for p in log.parent.iterdir() if not p.name.endswith(".lock"))
    assert files == ["cni.log", "cni.log.1", "cni.log.2"], files
    lines = [json.loads(line) for name in files for line in (log.parent / name).read_text().splitlines()]
    assert lines and all(line["traceparent"] == trace for line in lines)
    assert all((log.parent / name).stat().st_size <= 600 for name in files)


# -- the reconciler -----------------------------------------------------------------


def reconcile_conf(data_dir: Path, name: str, subnet: str, one_address: bool = False) -> dict:
    ipam = {"type": "host-local", "subnet": subnet, "dataDir": str(data_dir)}
    if one_address:
        base = subnet.rsplit(".", 1)[0]
        ipam.update(rangeStart=f"{base}.2", rangeEnd=f"{base}.2")
    return make_conf(data_dir, name=name, bridge=f"lxr{uuid.uuid4().hex[:8]}", ipMasq=True, ipam=ipam)


def show(agent: Agent, network: str) -> str:
    conf = agent.socket.parent / "networks" / f"{network}.conf"
    argv = [str(agent_path().parent / "loxi-plan"), "show", "--conf", str(conf), "--agent-socket", str(agent.socket)]
    proc = subprocess.run(argv, capture_output=True, text=True)
    assert proc.returncode == 0, proc
    return proc.stdout


def wait_for(predicate, timeout: float = 15.0, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def test_the_reconciler_releases_a_dead_pods_address_and_leaves_busy_and_foreign_ones(node, agent_factory):
    agent = agent_factory("--reconcile-grace", "3", "--reconcile-interval", "0.2", netns=node.ns.path)
    agent.wait_socket()
    warm = via(node, agent)
    network = f"rec{uuid.uuid4().hex[:6]}"
    conf = reconcile_conf(warm.data_dir, network, "10.251.9.0/24", one_address=True)
    store = warm.data_dir / network

    # a pod whose namespace is deleted without DEL
    gone = warm.pod()
    assert warm.cni("ADD", conf, container_id="dead", netns=gone.path).rc == 0
    assert (store / "10.251.9.2").exists()
    node_rules = node.ns.exec("nft", "list", "table", "inet", "loxi_cni_masquerade").stdout
    assert "10.251.9.2" in node_rules, node_rules
    warm.factory.delete(gone)
    # the pool's one address is the dead pod's: a new pod cannot get one yet
    newcomer = warm.pod()
    early = warm.cni("ADD", conf, container_id="new", netns=newcomer.path)
    assert early.rc == 1 and early.json["code"] == 999, early

    # a pod mid-ADD: its allocation is written, its veth not yet, and it holds its lock
    (store / "10.251.9.3").write_text("midadd\r\neth0")
    lock = os.open(
        os.path.join(lock_dir(), attachment_lock_name(network, "midadd", "eth0") + ".lock"),
        os.O_RDWR | os.O_CREAT,
        0o600,
    )
    fcntl.flock(lock, fcntl.LOCK_EX)
    # a reference host-local allocation of another network in the same dataDir
    other = f"ref{uuid.uuid4().hex[:6]}"
    ref_conf = {
        "cniVersion": "1.0.0",
        "name": other,
        "type": "bridge",
        "ipam": {"type": "host-local", "subnet": "10.251.10.0/24", "dataDir": str(warm.data_dir)},
    }
    ref = subprocess.run(
        [str(REFERENCE_CNI_DIR / "host-local")],
        input=json.dumps(ref_conf).encode(),
        capture_output=True,
        env={
            "CNI_COMMAND": "ADD",
            "CNI_CONTAINERID": "refpod",
            "CNI_NETNS": "/nonexistent",
            "CNI_IFNAME": "eth0",
            "CNI_PATH": str(REFERENCE_CNI_DIR),
        },
    )
    assert ref.returncode == 0, ref
    try:
        # within the grace period: listed by loxi-plan show with its due time, not yet released
        assert wait_for(lambda: fetch(str(agent.status))[1]["reconciler"]["pending"]), agent.log.read_text()
        text = show(agent, network)
        assert f"would reclaim {network} dead/eth0 10.251.9.2 at " in text, text
        assert "loxi-agent (pid" in text and "requests served" in text, text
        assert (store / "10.251.9.2").exists()
        assert fetch(str(agent.status))[1]["reconciler"]["networks"] == [network]
        assert wait_for(lambda: (store / "10.251.9.2").exists() is False), agent.log.read_text()
        assert any(c["container_id"] == "dead" for c in fetch(str(agent.status))[1]["reconciler"]["released"])
        # the netfilter rules went with it, as DEL removes them
        assert "10.251.9.2" not in node.ns.exec("nft", "list", "table", "inet", "loxi_cni_masquerade").stdout
        # the freed address goes to a new pod
        late = warm.cni("ADD", conf, container_id="new", netns=newcomer.path)
        assert late.rc == 0, late
        assert newcomer.addresses("eth0") == ["10.251.9.2/24"]
        # the busy one and the foreign one stayed, after many passes
        time.sleep(2.5)
        assert (store / "10.251.9.3").exists(), "mid-ADD allocation released"
        assert (warm.data_dir / other / "10.251.10.2").exists(), "another network's allocation released"
        pending = fetch(str(agent.status))[1]["reconciler"]["pending"]
        assert pending == [], "a busy attachment is not even a candidate (loxi.node.liveness: busy, not leaked)"
        text = show(agent, network)
        assert "busy" in text and "midadd" in text, text
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        os.close(lock)
    # once the ADD "ends" without a veth (it died), it is leaked: listed with its due time, then released
    assert wait_for(lambda: fetch(str(agent.status))[1]["reconciler"]["pending"]), agent.log.read_text()
    text = show(agent, network)
    assert f"would reclaim {network} midadd/eth0 10.251.9.3 at " in text, text
    assert wait_for(lambda: not (store / "10.251.9.3").exists()), agent.log.read_text()
    metrics = fetch(str(agent.status), "/metrics")[1]
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(metrics)
        for s in f.samples
    }
    assert value(samples, "loxi_reconcile_reclaimed_total", network=network) == 2
    assert value(samples, "loxi_reconcile_leaked_found_total", network=network) == 2
    assert warm.cni("DEL", conf, container_id="new", netns=newcomer.path).rc == 0


def test_the_suites_own_agent_counts_every_call_the_suite_sends_it(node, agent_socket):
    """In the suite's agent pass, the session's loxi-agent (the one every integration test goes
    through) is scraped around a pod's whole life: each command moves its own counter by one."""
    if not agent_socket:
        pytest.skip("the suite's agent pass only (LOXI_TEST_MODE=agent)")

    def samples() -> dict:
        code, text = fetch(status_socket(agent_socket), "/metrics")
        assert code == 200
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    pod = node.pod()
    conf = make_conf(node.data_dir, name="suitemetrics")
    results: dict[str, object] = {}
    steps = [
        ("ADD", lambda: node.cni("ADD", conf, container_id="sm1", netns=pod.path)),
        (
            "CHECK",
            lambda: node.cni("CHECK", {**conf, "prevResult": results["ADD"]}, container_id="sm1", netns=pod.path),
        ),
        ("STATUS", lambda: node.cni("STATUS", {**conf, "cniVersion": "1.1.0"})),
        ("DEL", lambda: node.cni("DEL", conf, container_id="sm1", netns=pod.path)),
        ("GC", lambda: node.cni("GC", {**conf, "cniVersion": "1.1.0", "cni.dev/valid-attachments": []})),
    ]
    for command, run in steps:
        before = samples()
        call = run()
        assert call.rc == 0, (command, call)
        results[command] = call.json if call.stdout.strip() else None
        after = samples()
        key = ("loxi_cni_calls_total", (("code", "0"), ("command", command)))
        assert after.get(key, 0) == before.get(key, 0) + 1, f"{command} through the suite's agent was not counted"
