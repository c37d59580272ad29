"""A pod's lifecycle through CRI, as kubelet drives containerd: RunPodSandbox, PodSandboxStatus,
StopPodSandbox twice, RemovePodSandbox, with loxi-agent running and with it stopped."""

from __future__ import annotations

import ipaddress
import statistics
import time

import pytest

from tests.conftest import AgentProcess
from tests.runtimes.cri.conftest import SUBNETS, CriNet

K8S_ARGS = {"IgnoreUnknown", "K8S_POD_NAMESPACE", "K8S_POD_NAME", "K8S_POD_INFRA_CONTAINER_ID", "K8S_POD_UID"}


def cni_args(record: dict) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in record["env"]["CNI_ARGS"].split(";"))


def pod_addresses(net: CriNet, netns: str) -> list[str]:
    out = net.pod_exec(netns, "ip", "-o", "addr", "show", "dev", "eth0", "scope", "global", check=True).stdout
    return [line.split()[3] for line in out.splitlines()]


@pytest.mark.parametrize("mode", ["agent", "agent-stopped"])
def test_pod_lifecycle_through_cri(cri_net: CriNet, agent: AgentProcess, mode: str) -> None:
    socket = str(agent.socket)
    if mode == "agent-stopped":
        agent.stop()  # the socket path stays in the conf; every call falls back to in-process
    net = cri_net
    net.use(net.conflist(net.plugin(agent_socket=socket, ipMasq=True)))

    a, b = net.run("a"), net.run("b")
    status = {sid: net.daemon.client.pod_sandbox_status(sid) for sid in (a, b)}
    leases = net.leases()
    for sid in (a, b):
        st = status[sid]
        assert st.state == "SANDBOX_READY"
        # the IP kubelet reports is the one loxi-cni leased and put on eth0
        assert leases[st.ip] == sid, (st.ip, leases)
        assert pod_addresses(net, st.netns) == [f"{st.ip}/24"]
        (add,) = net.lines("ADD", sid)
        assert add["rc"] == 0 and add["ips"] == [f"{st.ip}/24"] and add["netns"] == st.netns
        # CRI's CNI_ARGS: the K8S_* keys and IgnoreUnknown (their order changes from call to call)
        (record,) = [r for r in net.recorded(sid) if r["command"] == "ADD"]
        args = cni_args(record)
        assert set(args) == K8S_ARGS and args["K8S_POD_INFRA_CONTAINER_ID"] == sid
        assert args["K8S_POD_NAME"] == f"{net.tag}-{'a' if sid == a else 'b'}" and args["IgnoreUnknown"] == "1"
        assert f"ip saddr {st.ip}" in net.netfilter()  # ipMasq's rule
    assert sorted(net.veths().values()) == sorted([a, b])
    assert net.ping(status[a].netns, net.gateway)
    assert net.ping(status[a].netns, status[b].ip)
    assert net.ping(status[b].netns, status[a].ip)

    pids = {line["pid"] for line in net.lines("ADD")}
    if mode == "agent":
        assert pids <= agent.engine_pids(), "the calls did not go through loxi-agent"
    else:
        assert agent.proc.pid not in pids and len(pids) == 2, "the calls were not run in-process"

    # StopPodSandbox: the pause task is killed, then DEL with the pod's namespace and the cached result
    net.daemon.client.stop_pod_sandbox(a)
    (first_del,) = net.lines("DEL", a)
    assert first_del["rc"] == 0 and first_del["netns"] == status[a].netns
    assert [r["prevResult"] for r in net.recorded(a) if r["command"] == "DEL"] == [True]
    assert status[a].ip not in net.leases()
    assert a not in net.veths().values()
    assert f"ip saddr {status[a].ip}" not in net.netfilter()
    assert net.daemon.client.pod_sandbox_status(a).state == "SANDBOX_NOTREADY"
    # b is untouched
    assert net.ping(status[b].netns, net.gateway)

    # Stop again, then Remove: two more DELs, with CNI_NETNS empty and no prevResult
    net.daemon.client.stop_pod_sandbox(a)
    net.daemon.client.remove_pod_sandbox(a)
    dels = net.lines("DEL", a)
    assert [(d["netns"], d["rc"]) for d in dels] == [(status[a].netns, 0), ("", 0), ("", 0)]
    assert [r["prevResult"] for r in net.recorded(a) if r["command"] == "DEL"] == [True, False, False]
    assert [r["env"]["CNI_NETNS"] for r in net.recorded(a) if r["command"] == "DEL"][1:] == ["", ""]
    assert a not in net.daemon.client.list_pod_sandbox()

    for sid in (b,):
        net.daemon.client.stop_pod_sandbox(sid)
        net.daemon.client.remove_pod_sandbox(sid)
    assert net.leases() == {}, "a lease is left"
    assert net.veths() == {}, "a veth is left"
    assert all(f"ip saddr {st.ip}" not in net.netfilter() for st in status.values()), "a masquerade rule is left"
    assert net.cache_entries() == [], "libcni's result cache still names a pod"
    if mode == "agent":
        assert {line["pid"] for line in net.lines()} <= agent.engine_pids()


def test_dual_stack_additional_ips_carry_the_ipv6_address(cri_net: CriNet) -> None:
    net = cri_net
    v6 = f"fd00:232:{net.tag[:4]}::/64"
    ipam = {"type": "host-local", "ranges": [[{"subnet": net.subnet}], [{"subnet": v6}]]}
    net.use(net.conflist(net.plugin(ipam=ipam)))
    sid = net.run("ds")
    st = net.daemon.client.pod_sandbox_status(sid)
    assert ipaddress.ip_address(st.ip) in ipaddress.ip_network(net.subnet)
    assert len(st.additional_ips) == 1 and ipaddress.ip_address(st.additional_ips[0]) in ipaddress.ip_network(v6)
    assert net.leases() == {st.ip: sid, st.additional_ips[0]: sid}
    assert sorted(pod_addresses(net, st.netns)) == sorted([f"{st.ip}/24", f"{st.additional_ips[0]}/64"])
    assert net.ping(st.netns, net.gateway)
    assert net.ping(st.netns, str(ipaddress.ip_network(v6)[1]), family="-6")
    net.daemon.client.stop_pod_sandbox(sid)
    net.daemon.client.remove_pod_sandbox(sid)
    assert net.leases() == {} and net.veths() == {}


def test_cri_cycle_timings(cri_net: CriNet, agent: AgentProcess) -> None:
    """RunPodSandbox → PodSandboxStatus → Stop → Remove, timed: loxi-cni through loxi-agent and cold,
    and the reference bridge on the same node; every cycle must leave nothing behind."""
    net = cri_net
    ref_subnet = next(SUBNETS)  # the reference's own bridge and subnet beside loxi-cni's
    confs = {
        "loxi-cni + agent": net.conflist(net.plugin(agent_socket=str(agent.socket)), record=False),
        "loxi-cni cold": net.conflist(net.plugin(), record=False),
        "bridge (ref)": net.conflist(
            {
                **net.plugin(ipam={"type": "host-local", "subnet": ref_subnet}),
                "type": "bridge",
                "bridge": f"lxref{net.tag}",
            },
            record=False,
        ),
    }
    medians = {}
    for label, conf in confs.items():
        net.use(conf)
        times = []
        for i in range(4):
            start = time.monotonic()
            sid = net.run(f"t{i}")
            assert net.daemon.client.pod_sandbox_status(sid).ip
            net.daemon.client.stop_pod_sandbox(sid)
            net.daemon.client.remove_pod_sandbox(sid)
            times.append(time.monotonic() - start)
            assert net.leases() == {}
        medians[label] = statistics.median(times) * 1000
    assert net.veths() == {}
    print("\nCRI cycle medians (ms): " + ", ".join(f"{k} {v:.0f}" for k, v in medians.items()))
