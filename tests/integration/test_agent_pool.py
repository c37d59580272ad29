"""loxi-agent's bounded worker pool: a burst larger than the pool, the bound on threads, the refusal over it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client.parser import text_string_to_metric_families

from loxi.agent.protocol import encode_request, recv_reply
from loxi.agent.status import fetch, status_socket
from tests.conftest import AgentProcess, Node, make_conf

# main (accept loop), the status socket's HTTP server, the reconciler; and room for a
# transient one (an HTTP request of ours, the engine's helper thread of a veth deletion)
FIXED_THREADS = 4


def threads(agent: AgentProcess) -> int:
    with open(f"/proc/{agent.proc.pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("Threads:"))


def status(agent: AgentProcess) -> dict:
    code, doc = fetch(status_socket(str(agent.socket)))
    assert code == 200, doc
    return doc


def fallbacks(agent: AgentProcess, reason: str) -> float:
    _, text = fetch(status_socket(str(agent.socket)), "/metrics")
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "loxi_agent_fallbacks_total" and sample.labels.get("reason") == reason:
                return sample.value
    raise AssertionError(f"no loxi_agent_fallbacks_total{{reason={reason!r}}}")


@pytest.fixture
def agents(tmp_path):
    made: list[AgentProcess] = []

    def make(*options: str) -> AgentProcess:
        directory = tmp_path / f"agent{len(made)}"
        directory.mkdir()
        made.append(AgentProcess(directory, *options))
        return made[-1]

    try:
        yield make
    finally:
        for agent in made:
            agent.stop()


def test_a_burst_larger_than_the_pool_is_served_and_the_threads_stay_bounded(node, agents):
    workers, burst = 2, 24
    agent = agents("--workers", str(workers))
    warm = Node(node.ns, node.data_dir, node.factory, str(agent.socket))
    conf = make_conf(warm.data_dir, ipam={**make_conf(warm.data_dir)["ipam"], "subnet": "10.251.9.0/24"})
    pods = [warm.pod() for _ in range(burst)]

    def call(command: str, i: int):
        return warm.cni(command, conf, container_id=f"burst{i}", netns=pods[i].path)

    idle = threads(agent)
    assert idle <= workers + FIXED_THREADS, idle
    seen, done = [idle], threading.Event()

    def sample() -> None:
        while not done.is_set():
            seen.append(threads(agent))
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with ThreadPoolExecutor(burst) as pool:
            adds = list(
                pool.map(lambda i: warm.cni("ADD", conf, container_id=f"burst{i}", netns=pods[i].path), range(burst))
            )
    finally:
        done.set()
        sampler.join()
    assert [a.rc for a in adds] == [0] * burst, [a for a in adds if a.rc != 0][:1]
    assert len({a.json["ips"][0]["address"] for a in adds}) == burst
    assert max(seen) <= workers + FIXED_THREADS, max(seen)  # a thread per request: up to `burst` more
    served = status(agent)
    # all of them went through the agent (none refused: the queue holds them), none is left in flight
    assert served["requests_served"] == burst and served["in_flight"] == 0, served
    assert fallbacks(agent, "agent-busy") == 0
    with ThreadPoolExecutor(burst) as pool:
        dels = list(
            pool.map(lambda i: warm.cni("DEL", conf, container_id=f"burst{i}", netns=pods[i].path), range(burst))
        )
    assert [d.rc for d in dels] == [0] * burst
    assert node.store_files("loxilight_cni") == [] and node.ns.loxi_links() == []


def silent(agent: AgentProcess) -> socket.socket:
    """A client that connects and sends nothing: it holds a worker (or a place in the queue)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(agent.socket))
    time.sleep(0.3)  # taken by a worker, or queued, before the next one comes
    return sock


def test_a_request_over_the_bound_is_refused_and_the_client_runs_it_in_process(node, agents):
    # one engine: the bound is per engine process (each has its own workers and queue)
    agent = agents("--engines", "1", "--workers", "1", "--max-waiting", "1", "--request-timeout", "20")
    warm = Node(node.ns, node.data_dir, node.factory, str(agent.socket))
    conf = make_conf(warm.data_dir)
    pod = warm.pod()
    holders = [silent(agent), silent(agent)]  # the one worker, then the one place in the queue
    try:
        assert status(agent)["in_flight"] == 2  # the queued one counts: a SIGTERM drain waits for it too
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(agent.socket))
            # the refusal goes out at accept, before the request is read: the agent may have closed by now,
            # and what it sent stays readable
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(encode_request({b"CNI_COMMAND": b"ADD"}, b"{}"))
            refused, code, body = recv_reply(sock)
        assert refused and code == 1 and body.startswith(b"loxi-agent is busy"), body
        assert fallbacks(agent, "agent-busy") == 1
        # the plugin meets the same refusal and runs the call itself
        add = warm.cni("ADD", conf, container_id="over-bound", netns=pod.path)
        assert add.rc == 0, add
        assert pod.addresses("eth0") == ["10.244.1.2/24"]
        doc = status(agent)
        assert doc["requests_served"] == 0 and "agent-busy" in doc["last_error"], doc
        assert fallbacks(agent, "agent-busy") == 2
    finally:
        for sock in holders:
            sock.close()
    for _ in range(100):  # the worker sees the silent clients go and serves again
        if status(agent)["in_flight"] == 0:
            break
        time.sleep(0.05)
    check = warm.cni("CHECK", {**conf, "prevResult": add.json}, container_id="over-bound", netns=pod.path)
    assert check.rc == 0, check
    assert status(agent)["requests_served"] == 1
    assert warm.cni("DEL", conf, container_id="over-bound", netns=pod.path).rc == 0
    assert node.store_files("loxilight_cni") == []


def serving_engines(agent: AgentProcess, want: int, starts: int = 1, timeout: float = 30.0) -> list[dict]:
    """/status's engines once `want` serve and the last has been started `starts` times (or at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        engines = status(agent)["engines"]
        up = sum(1 for e in engines if e["serving"]) == want and engines[-1]["starts"] == starts
        if up or time.monotonic() > deadline:
            return engines
        time.sleep(0.1)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[-1][0] != "Z"
    except FileNotFoundError:
        return False


def test_engine_processes_share_the_socket_and_keep_one_set_of_books(node, agents):
    """--engines 2: a child engine accepts on the agent's socket; what it serves is counted by the agent
    (/status, metrics, nothing in flight); a killed child is started again; SIGTERM stops it too."""
    agent = agents("--engines", "2")
    engines = serving_engines(agent, 2)
    assert [e["engine"] for e in engines] == [1, 2] and all(e["serving"] for e in engines), engines
    child = engines[1]["pid"]
    warm = Node(node.ns, node.data_dir, node.factory, str(agent.socket))
    conf = make_conf(warm.data_dir, ipam={**make_conf(warm.data_dir)["ipam"], "subnet": "10.251.10.0/24"})
    burst = 30
    pods = [warm.pod() for _ in range(burst)]
    with ThreadPoolExecutor(10) as pool:
        adds = list(pool.map(lambda i: warm.cni("ADD", conf, container_id=f"eng{i}", netns=pods[i].path), range(burst)))
    assert [a.rc for a in adds] == [0] * burst, [a for a in adds if a.rc != 0][:1]
    assert len({a.json["ips"][0]["address"] for a in adds}) == burst  # one store, two processes, no duplicate
    doc = status(agent)
    by_engine = [e["requests_served"] for e in doc["engines"]]
    assert doc["requests_served"] == burst and sum(by_engine) == burst and doc["in_flight"] == 0, doc
    assert all(n > 0 for n in by_engine), f"both engines accept: {by_engine}"
    assert fallbacks(agent, "agent-busy") == 0
    _, text = fetch(status_socket(str(agent.socket)), "/metrics")
    calls = sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "loxi_cni_calls_total" and sample.labels.get("command") == "ADD"
    )
    assert calls == burst, text

    os.kill(child, signal.SIGKILL)  # the agent counts its books as closed and starts it again
    engines = serving_engines(agent, 2, starts=2)
    assert engines[1]["pid"] != child and engines[1]["starts"] == 2 and engines[1]["serving"], engines
    assert "engine 2" in (status(agent)["last_error"] or "")
    for i in range(burst):
        assert warm.cni("DEL", conf, container_id=f"eng{i}", netns=pods[i].path).rc == 0
    assert node.store_files("loxilight_cni") == [] and node.ns.loxi_links() == []
    assert status(agent)["in_flight"] == 0
    restarted = engines[1]["pid"]
    agent.stop()
    assert agent.proc.returncode == 0 and not alive(restarted)
