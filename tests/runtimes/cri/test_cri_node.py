"""What a node's CRI runtime does around loxi-cni: hostPorts through the reference portmap chained
after it, a failing ADD, 20 sandboxes at once, and containerd restarted under running pods."""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from tests.runtimes.cri.client import Port
from tests.runtimes.cri.conftest import CriNet

SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1); print("listening", flush=True)
c, peer = s.accept(); c.sendall(b"loxi-hostport " + peer[0].encode()); c.close()
"""

CLIENT = """
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5); print(c.recv(100).decode())
"""


def test_host_port_through_portmap_chained_after_loxi_cni(cri_net: CriNet) -> None:
    net = cri_net
    portmap = {"type": "portmap", "capabilities": {"portMappings": True}}
    net.use(net.conflist(net.plugin(), portmap))
    sid = net.run("hp", ports=(Port(container_port=8080, host_port=30080),))
    st = net.daemon.client.pod_sandbox_status(sid)
    (add,) = [r for r in net.recorded(sid) if r["command"] == "ADD"]
    assert add["runtimeConfig"] == {
        "portMappings": [{"HostPort": 30080, "ContainerPort": 8080, "Protocol": "tcp", "HostIP": ""}]
    }, add  # what the CRI plugin passed to the chain (Go field names, lower-case protocol)
    server = subprocess.Popen(
        ["nsenter", f"--net={st.netns}", "--", sys.executable, "-c", SERVER, "8080"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "listening"
        # from the node namespace to the node's own address (the bridge gateway) on the host port
        reply = subprocess.run(
            net.daemon.ns.wrap([sys.executable, "-c", CLIENT, net.gateway, "30080"]),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert reply.returncode == 0, reply.stderr
        assert reply.stdout.startswith("loxi-hostport "), reply.stdout  # the server in the pod answered
        assert server.wait(timeout=10) == 0
    finally:
        server.kill()
        server.wait()
    assert "dport 30080" in net.netfilter()
    net.daemon.client.stop_pod_sandbox(sid)
    net.daemon.client.remove_pod_sandbox(sid)
    assert "dport 30080" not in net.netfilter(), "portmap's DNAT is left"
    assert net.leases() == {} and net.veths() == {}


def test_failing_add_pool_exhausted_is_shown_through_cri_and_leaves_nothing(cri_net: CriNet) -> None:
    net = cri_net
    only = net.subnet.rsplit(".", 1)[0] + ".2"
    ipam = {"type": "host-local", "subnet": net.subnet, "rangeStart": only, "rangeEnd": only}
    net.use(net.conflist(net.plugin(ipam=ipam)))
    first = net.run("one")
    assert net.leases() == {only: first}
    with pytest.raises(grpc.RpcError) as failed:
        net.run("two")
    details = failed.value.details()  # type: ignore[attr-defined]
    assert failed.value.code() == grpc.StatusCode.UNKNOWN  # type: ignore[attr-defined]
    assert (
        'plugin type="loxi-cni" failed (add): failed to allocate for range 0: '
        f"no IP addresses available in range set: {only}-{only}"
    ) in details, details
    second = details.split('sandbox "', 1)[1].split('"', 1)[0]
    (add,) = net.lines("ADD", second)
    assert add["rc"] == 1 and add["code"] == 999
    # containerd DELs the failed sandbox at once, with its namespace and no prevResult
    dels = net.lines("DEL", second)
    assert dels and all(d["rc"] == 0 for d in dels) and dels[0]["netns"]
    assert [r["prevResult"] for r in net.recorded(second) if r["command"] == "DEL"][:1] == [False]
    assert second not in net.daemon.client.list_pod_sandbox()
    assert net.leases() == {only: first}, "the failed ADD or its DEL touched the pool"
    assert set(net.veths().values()) == {first}, "the failed ADD left a veth"
    # a release, and the next pod gets the address
    net.daemon.client.stop_pod_sandbox(first)
    net.daemon.client.remove_pod_sandbox(first)
    third = net.run("three")
    assert net.daemon.client.pod_sandbox_status(third).ip == only
    assert net.leases() == {only: third}


def test_twenty_sandboxes_at_once_get_distinct_addresses_and_leave_nothing(cri_net: CriNet) -> None:
    net = cri_net
    net.use(net.conflist(net.plugin(), record=False))
    start = time.monotonic()
    with ThreadPoolExecutor(20) as pool:
        ids = list(pool.map(lambda i: net.run(f"c{i}"), range(20)))
    ran = time.monotonic() - start
    ips = [net.daemon.client.pod_sandbox_status(sid).ip for sid in ids]
    assert len(set(ips)) == 20
    assert net.leases() == dict(zip(ips, ids, strict=True))
    assert sorted(net.veths().values()) == sorted(ids)
    assert all(line["rc"] == 0 for line in net.lines("ADD")) and len(net.lines("ADD")) == 20

    def remove(sid: str) -> None:
        net.daemon.client.stop_pod_sandbox(sid)
        net.daemon.client.remove_pod_sandbox(sid)

    start = time.monotonic()
    with ThreadPoolExecutor(20) as pool:
        list(pool.map(remove, ids))
    removed = time.monotonic() - start
    print(f"\n20 sandboxes at once: run {ran:.1f} s, stop+remove {removed:.1f} s")
    assert net.leases() == {} and net.veths() == {}
    assert net.daemon.client.list_pod_sandbox().keys().isdisjoint(ids)
    assert net.cache_entries() == []


def test_containerd_restarted_under_running_pods(cri_net: CriNet) -> None:
    net = cri_net
    net.use(net.conflist(net.plugin(ipMasq=True)))
    a, b = net.run("ra"), net.run("rb")
    before = {sid: net.daemon.client.pod_sandbox_status(sid) for sid in (a, b)}
    calls = len(net.lines())
    net.daemon.stop()
    try:
        # the runtime is down; the pods' network is not
        assert net.ping(before[a].netns, before[b].ip)
        assert net.ping(before[b].netns, net.gateway)
    finally:
        net.daemon.start()
    net.daemon.wait_network(net.name)
    after = {sid: net.daemon.client.pod_sandbox_status(sid) for sid in (a, b)}
    for sid in (a, b):
        assert after[sid].state == "SANDBOX_READY" and after[sid].ip == before[sid].ip
    assert len(net.lines()) == calls, "containerd's restart ran the plugin"
    assert net.ping(after[a].netns, after[b].ip)
    assert net.leases() == {before[a].ip: a, before[b].ip: b}
    for sid in (a, b):
        net.daemon.client.stop_pod_sandbox(sid)
        net.daemon.client.remove_pod_sandbox(sid)
    assert all(d["rc"] == 0 for d in net.lines("DEL"))
    assert net.leases() == {} and net.veths() == {}
    assert all(f"ip saddr {st.ip}" not in net.netfilter() for st in before.values())
