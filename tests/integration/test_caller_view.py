"""loxi-agent answers as the calling process would.

* CNI_NETNS is resolved as the caller resolves it: `/proc/self/…`,
  `/proc/thread-self/…`, `/dev/fd/…` and symlinks to them name the caller's
  namespace, never the agent's. In-process and through the agent every such
  CNI_NETNS gets the same answer (exit status and document), and the agent's own
  namespace is never touched.
* STATUS's probe bridge has a name of its own per request: ten concurrent STATUS
  calls give ten identical answers and leave no probe behind.

In agent mode (LOXI_TEST_MODE=agent) the item-5 tests run their own loxi-agent
inside a throw-away namespace, so that a regression shows up there (a pod
interface in the agent's namespace) and never in the machine's namespace.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import AGENT_MODE, AgentProcess, Node, make_conf

POD_IFNAME = "callerpod0"  # a name nothing else uses: where it appears tells which namespace was used


@pytest.fixture
def callers(node: Node, netns, tmp_path):
    """(in-process node, node as the test mode runs it, the agent's namespace or None)."""
    local = Node(node.ns, node.data_dir, node.factory, "")
    if not AGENT_MODE:
        yield local, local, None
        return
    agent_ns = netns("agentns")
    agent = AgentProcess(tmp_path, netns=agent_ns)
    try:
        yield local, Node(node.ns, node.data_dir, node.factory, str(agent.socket)), agent_ns
    finally:
        agent.stop()


def per_process_paths(tmp: Path) -> dict[str, str]:
    link = tmp / "link-to-self"
    link.symlink_to("/proc/self/ns/net")
    thread_link = tmp / "link-to-thread-self"
    thread_link.symlink_to("/proc/thread-self/ns/net")
    chain = tmp / "link-to-link"
    chain.symlink_to(link)
    return {
        "/proc/self/ns/net": "/proc/self/ns/net",
        "/proc/thread-self/ns/net": "/proc/thread-self/ns/net",
        "a symlink to /proc/self/ns/net": str(link),
        "a symlink to /proc/thread-self/ns/net": str(thread_link),
        "a symlink to that symlink": str(chain),
        "/proc/self/ns/uts": "/proc/self/ns/uts",
        "/proc/self/fd/0 (stdin)": "/proc/self/fd/0",
        "/dev/stdin": "/dev/stdin",
        "/proc/self/ns": "/proc/self/ns",
        "/proc/self/nonexistent": "/proc/self/nonexistent",
    }


def answer(call) -> tuple[int, str]:
    return call.rc, call.stdout


def test_per_process_cni_netns_means_the_callers_namespace(callers, tmp_path):
    local, mode, agent_ns = callers
    conf = make_conf(local.data_dir)
    agent_before = agent_ns.links() if agent_ns else None
    tried = 0
    for label, path in per_process_paths(tmp_path).items():
        for command in ("ADD", "CHECK", "DEL"):
            doc = conf if command != "CHECK" else {**conf, "prevResult": {"cniVersion": "1.0.0"}}
            kw = {"container_id": "self", "netns": path, "ifname": POD_IFNAME}
            here = local.cni(command, doc, **kw)
            there = mode.cni(command, doc, **kw)
            assert answer(there) == answer(here), (label, command, here, there)
            if command == "ADD":
                assert here.rc == 1 and here.json["code"] == 8, (label, here)
            if command == "DEL":
                assert here.rc == 0, (label, here)
            tried += 1
        assert POD_IFNAME not in local.ns.links(), label
        if agent_ns is not None:
            assert agent_ns.links() == agent_before, f"{label}: the agent's own namespace was changed"
    assert local.ns.loxi_links() == [] and local.store_files("loxilight_cni") == []
    print(f"\nper-process CNI_NETNS: {tried} calls, the same answer in-process and in this mode")


def test_a_per_process_path_to_a_real_pod_works_in_both_modes(callers):
    """/proc/self/root/… is per-process too, and names the pod for caller and agent alike."""
    local, mode, _ = callers
    conf = make_conf(local.data_dir)
    pod = local.pod()
    path = f"/proc/self/root{pod.path}"
    add = mode.cni("ADD", conf, container_id="rooted", netns=path)
    assert add.rc == 0, add
    assert pod.addresses("eth0") == ["10.244.1.2/24"]
    check = local.cni("CHECK", {**conf, "prevResult": add.json}, container_id="rooted", netns=path)
    assert check.rc == 0, check
    assert mode.cni("DEL", conf, container_id="rooted", netns=path).rc == 0
    assert "eth0" not in pod.links() and local.store_files("loxilight_cni") == []


def test_ten_concurrent_status_calls_give_ten_identical_answers(node):
    conf = {**make_conf(node.data_dir), "cniVersion": "1.1.0", "vlan": 100}
    with ThreadPoolExecutor(max_workers=10) as pool:
        calls = list(pool.map(lambda _: node.cni("STATUS", conf), range(10)))
    answers = {answer(call) for call in calls}
    assert len(answers) == 1, [str(call) for call in calls]
    assert "EEXIST" not in calls[0].stdout and "internal error" not in calls[0].stdout, calls[0]
    assert not [name for name in node.ns.links() if "probe" in name], node.ns.links()
    print(f"\nconcurrent STATUS: 10 calls, one answer: rc={calls[0].rc} {calls[0].stdout[:80]!r}")
