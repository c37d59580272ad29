"""Crashes, restarts and missed DELs: the node always ends consistent, nothing leaks.

* SIGKILL before every plan step of an ADD (the `LOXI_TEST_KILL_BEFORE_STEP`
  test hook, applier/execute.py), on an empty node and on a node that already
  runs a pod; then the runtime's recovery (DEL, then ADD) or a plain retried ADD.
* SIGKILL at random instants of an ADD (inside a step, inside the allocator).
* GC reclaims the allocation of a pod whose namespace vanished without a DEL.
* The host-local store is written atomically and privately.
"""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import NSENTER, REFERENCE_CNI_DIR, Netns, NetnsFactory, Node, make_conf, plugin_path
from tests.snapshots import lease_files, store_anomalies

NETWORK = "loxilight_cni"
GATEWAY = "10.244.1.1"
MAX_STEPS = 30  # far above any plan of the seed conf: a bound, not an expectation
KILL = {"LOXI_TEST_KILL_BEFORE_STEP": ""}


def new_node(factory: NetnsFactory, tmp_path: Path, label: str) -> Node:
    return Node(factory("node"), tmp_path / f"ipam-{label}", factory)


def drop_node(factory: NetnsFactory, node: Node, *pods: Netns) -> None:
    for ns in (*pods, node.ns):
        factory.delete(ns)


def killed_add(node: Node, conf: dict, cid: str, pod: Netns, step: int):
    return node.cni("ADD", conf, container_id=cid, netns=pod.path, env={"LOXI_TEST_KILL_BEFORE_STEP": str(step)})


def assert_working(node: Node, conf: dict, cid: str, pod: Netns, result: dict) -> None:
    """The pod has its address, reaches the gateway, and CHECK agrees."""
    address = result["ips"][0]["address"]
    assert pod.addresses("eth0") == [address]
    assert lease_files(node, NETWORK).get(address.split("/")[0]) == f"{cid}\r\neth0"
    ping = pod.exec("ping", "-c", "1", "-W", "2", GATEWAY)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    check = node.cni("CHECK", {**conf, "prevResult": result}, container_id=cid, netns=pod.path)
    assert check.rc == 0, check


def assert_clean(node: Node, *, keep_links: list[str] | None = None, keep_leases: int = 0) -> None:
    assert node.ns.loxi_links() == sorted(keep_links or [])
    assert len(lease_files(node, NETWORK)) == keep_leases, lease_files(node, NETWORK)
    assert store_anomalies(node.data_dir / NETWORK) == []


def test_kill_before_every_plan_step_then_del_and_add_recover(netns, tmp_path):
    """Empty node (no bridge): kill before step N, DEL, ADD, working pod, DEL leaves nothing.

    N runs 1, 2, ... on a fresh node each time until the ADD outlives its whole plan.
    """
    tested = 0
    for step in range(1, MAX_STEPS + 1):
        node = new_node(netns, tmp_path, f"k{step}")
        pod = node.pod()
        try:
            conf = make_conf(node.data_dir)
            call = killed_add(node, conf, "victim", pod, step)
            if call.rc == 0:  # the plan has step - 1 steps: every kill point is done
                assert_working(node, conf, "victim", pod, call.json)
                break
            assert call.rc == -signal.SIGKILL and call.stdout == "", (step, call)
            assert len(lease_files(node, NETWORK)) == 1, "IPAM runs before the plan: the kill left a lease"
            assert store_anomalies(node.data_dir / NETWORK) == []
            delete = node.cni("DEL", conf, container_id="victim", netns=pod.path)
            assert delete.rc == 0 and delete.stdout == "", (step, delete)
            assert_clean(node)
            add = node.cni("ADD", conf, container_id="victim", netns=pod.path)
            assert add.rc == 0, (step, add)
            assert_working(node, conf, "victim", pod, add.json)
            assert node.ns.addresses("hsvlan100") == [f"{GATEWAY}/24"]
            delete = node.cni("DEL", conf, container_id="victim", netns=pod.path)
            assert delete.rc == 0, (step, delete)
            assert_clean(node)
            tested += 1
        finally:
            drop_node(netns, node, pod)
    assert tested >= 6, f"the seed plan on an empty node has {tested} steps"
    print(f"\nkill points tested (empty node, kill + DEL + ADD): {tested} (every step of the plan)")


def test_kill_before_every_plan_step_then_a_retried_add_succeeds(netns, tmp_path):
    """No DEL in between: the retried ADD finishes the job with the same address and leaks nothing."""
    tested = 0
    for step in range(1, MAX_STEPS + 1):
        node = new_node(netns, tmp_path, f"r{step}")
        pod = node.pod()
        try:
            conf = make_conf(node.data_dir)
            call = killed_add(node, conf, "victim", pod, step)
            if call.rc == 0:
                break
            assert call.rc == -signal.SIGKILL and call.stdout == "", (step, call)
            (leased,) = lease_files(node, NETWORK)
            add = node.cni("ADD", conf, container_id="victim", netns=pod.path)
            assert add.rc == 0, (step, add)
            assert add.json["ips"][0]["address"] == f"{leased}/24", "the retry gets the killed ADD's address back"
            assert list(lease_files(node, NETWORK)) == [leased], "and takes no second one"
            assert node.ns.loxi_links() == [add.json["interfaces"][1]["name"]]
            assert_working(node, conf, "victim", pod, add.json)
            assert node.cni("DEL", conf, container_id="victim", netns=pod.path).rc == 0
            assert_clean(node)
            tested += 1
        finally:
            drop_node(netns, node, pod)
    assert tested >= 6
    print(f"\nkill points tested (empty node, kill + retried ADD): {tested}")


def test_kill_before_every_plan_step_beside_a_running_pod(netns, tmp_path):
    """A node that already runs a pod: a killed ADD and its recovery never disturb the resident."""
    node = new_node(netns, tmp_path, "populated")
    resident, pod = node.pod(), node.pod()
    conf = make_conf(node.data_dir)
    tested = 0
    try:
        first = node.cni("ADD", conf, container_id="resident", netns=resident.path)
        assert first.rc == 0, first
        resident_link = first.json["interfaces"][1]["name"]
        for step in range(1, MAX_STEPS + 1):
            call = killed_add(node, conf, "victim", pod, step)
            if call.rc == 0:  # the whole plan ran: undo it for the next round's sake
                assert node.cni("DEL", conf, container_id="victim", netns=pod.path).rc == 0
                break
            assert call.rc == -signal.SIGKILL and call.stdout == "", (step, call)
            assert node.cni("DEL", conf, container_id="victim", netns=pod.path).rc == 0
            assert_clean(node, keep_links=[resident_link], keep_leases=1)
            assert_working(node, conf, "resident", resident, first.json)
            add = node.cni("ADD", conf, container_id="victim", netns=pod.path)
            assert add.rc == 0, (step, add)
            assert_working(node, conf, "victim", pod, add.json)
            assert node.cni("DEL", conf, container_id="victim", netns=pod.path).rc == 0
            assert_clean(node, keep_links=[resident_link], keep_leases=1)
            tested += 1
    finally:
        drop_node(netns, node, resident, pod)
    assert tested >= 3
    print(f"\nkill points tested (beside a running pod): {tested} (every step of the plan)")


def test_sigkill_at_random_instants_never_corrupts_the_store(node):
    """Kills that land inside a step or inside the allocator (not only between steps)."""
    rng = random.Random(7)
    conf = make_conf(node.data_dir)
    # calibrate: kill inside the second half of a typical ADD (the first half is interpreter start-up)
    probe = node.pod()
    started = time.monotonic()
    assert node.cni("ADD", conf, container_id="calibrate", netns=probe.path).rc == 0
    duration = time.monotonic() - started
    assert node.cni("DEL", conf, container_id="calibrate", netns=probe.path).rc == 0
    node.factory.delete(probe)
    kills = left_tmp = left_lease = left_veth = 0
    rounds = 24
    for i in range(rounds):
        pod = node.pod()
        environ = {
            "CNI_COMMAND": "ADD",
            "CNI_CONTAINERID": f"rk-{i}",
            "CNI_NETNS": pod.path,
            "CNI_IFNAME": "eth0",
            "CNI_PATH": f"{REFERENCE_CNI_DIR}:/opt/cni/bin",
        }
        proc = subprocess.Popen(
            [NSENTER, f"--net={node.ns.path}", "--", str(plugin_path())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environ,
        )
        proc.stdin.write(json.dumps(conf).encode())
        proc.stdin.close()
        time.sleep(rng.uniform(0.45, 1.0) * duration)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=20)
        proc.stdout.close()
        proc.stderr.close()
        kills += proc.returncode == -signal.SIGKILL
        # a writer killed between its temp file and the link may leave the (unlinked-later) temp
        # file; never an empty or partial lease
        problems = store_anomalies(node.data_dir / NETWORK)
        left_tmp += sum(p.startswith("temp file") for p in problems)
        assert [p for p in problems if not p.startswith("temp file")] == [], (i, problems)
        left_lease += bool(lease_files(node, NETWORK))
        left_veth += bool(node.ns.loxi_links())
        assert node.cni("DEL", conf, container_id=f"rk-{i}", netns=pod.path).rc == 0
        assert node.ns.loxi_links() == [] and lease_files(node, NETWORK) == {}, i
        node.factory.delete(pod)
    # the node still works afterwards
    pod = node.pod()
    add = node.cni("ADD", conf, container_id="after", netns=pod.path)
    assert add.rc == 0, add
    assert_working(node, conf, "after", pod, add.json)
    print(
        f"\nrandom-instant kills: {kills} of {rounds} ADDs killed mid-flight ({left_lease} after IPAM, "
        f"{left_veth} after the veth), recovered by DEL with store intact and nothing leaked, "
        f"{left_tmp} orphaned temp files (reaped after 60 s)"
    )


def test_gc_reclaims_the_allocation_of_a_pod_gone_without_del(node):
    conf = make_conf(node.data_dir, cniVersion="1.1.0")
    survivor, lost = node.pod(), node.pod()
    a = node.cni("ADD", conf, container_id="survivor", netns=survivor.path)
    b = node.cni("ADD", conf, container_id="lost", netns=lost.path)
    assert a.rc == 0 and b.rc == 0, (a, b)
    survivor_ip = a.json["ips"][0]["address"].split("/")[0]
    lost_ip = b.json["ips"][0]["address"].split("/")[0]
    survivor_link = a.json["interfaces"][1]["name"]
    node.factory.delete(lost)  # reboot / missed DEL: the namespace is gone, no DEL ran
    # the kernel takes the veth with the namespace (in its cleanup work queue,
    # a moment after the last reference goes); the allocation is what leaked
    deadline = time.monotonic() + 10
    while node.ns.loxi_links() != [survivor_link] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert node.ns.loxi_links() == [survivor_link]
    leaked_before = sorted(set(lease_files(node, NETWORK)) - {survivor_ip})
    assert leaked_before == [lost_ip]
    # the operator sees it before GC: loxi-plan show lists the allocation as leaked
    from tests.integration.test_loxi_plan import show

    shown = show(node, "--output", "json").json
    assert [(leak["kind"], leak["name"]) for leak in shown["leaks"]] == [("allocation-without-veth", lost_ip)]
    gc_conf = {**conf, "cni.dev/valid-attachments": [{"containerID": "survivor", "ifname": "eth0"}]}
    gc = node.cni("GC", gc_conf)
    assert gc.rc == 0 and gc.stdout == "", gc
    assert lease_files(node, NETWORK) == {survivor_ip: "survivor\r\neth0"}
    assert node.ns.loxi_links() == [survivor_link]
    assert_working(node, conf, "survivor", survivor, a.json)
    # the reclaimed address is handed out again
    again = node.cni("ADD", conf, container_id="newcomer", netns=node.pod().path)
    assert again.rc == 0, again
    print(f"\nleaks found after a missed DEL: {len(leaked_before)} before GC, 0 after")


def test_gc_removes_the_port_and_lease_of_a_pod_the_runtime_forgot(node):
    """The pod's namespace still exists but the runtime no longer lists it: GC takes port and lease."""
    conf = make_conf(node.data_dir, cniVersion="1.1.0")
    keep, forgotten = node.pod(), node.pod()
    a = node.cni("ADD", conf, container_id="keep", netns=keep.path)
    b = node.cni("ADD", conf, container_id="forgotten", netns=forgotten.path)
    assert a.rc == 0 and b.rc == 0, (a, b)
    gc_conf = {**conf, "cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]}
    assert node.cni("GC", gc_conf).rc == 0
    assert node.ns.loxi_links() == [a.json["interfaces"][1]["name"]]
    assert list(lease_files(node, NETWORK)) == [a.json["ips"][0]["address"].split("/")[0]]
    assert "eth0" not in forgotten.links()
    assert_working(node, conf, "keep", keep, a.json)


def test_store_is_atomic_and_private_after_many_adds_and_dels(node):
    conf = make_conf(node.data_dir)
    assert not node.data_dir.exists(), "a fresh store: the plugin creates every directory"
    pods = [node.pod() for _ in range(12)]
    rng = random.Random(3)
    live: set[int] = set()
    operations = 0
    for _ in range(40):
        i = rng.randrange(len(pods))
        if i in live:
            call = node.cni("DEL", conf, container_id=f"atomic-{i}", netns=pods[i].path)
            live.discard(i)
        else:
            call = node.cni("ADD", conf, container_id=f"atomic-{i}", netns=pods[i].path)
            live.add(i)
        assert call.rc == 0, call
        operations += 1
    store = node.data_dir / NETWORK
    assert store_anomalies(store) == []
    leases = lease_files(node, NETWORK)
    assert sorted(leases.values()) == sorted(f"atomic-{i}\r\neth0" for i in live)
    assert len(node.ns.loxi_links()) == len(live)
    for directory in (node.data_dir, store):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    for path in store.iterdir():
        assert stat.S_IMODE(path.lstat().st_mode) == 0o600, path
        assert path.lstat().st_nlink == 1, f"{path}: a temp file's second link was left behind"
    assert {p.name for p in store.iterdir()} - set(leases) == {"lock", "last_reserved_ip.0"}
    print(f"\natomic store: {operations} ADD/DEL, {len(live)} leases, no temp/empty file, dirs 0700, files 0600")


def test_kill_hook_is_inert_without_the_variable(node):
    """The hook only acts when the test suite sets it: an empty value is ignored."""
    pod = node.pod()
    conf = make_conf(node.data_dir)
    call = node.cni("ADD", conf, container_id="inert", netns=pod.path, env=KILL)
    assert call.rc == 0, call
    assert os.environ.get("LOXI_TEST_KILL_BEFORE_STEP") is None


def kernel_has_vlan_filtering(node: Node) -> bool:
    probe = node.ns.ip_run("link", "add", "loxiprobe", "type", "bridge", "vlan_filtering", "1", check=False)
    node.ns.ip_run("link", "del", "loxiprobe", check=False)
    return probe.returncode == 0


def test_failed_add_restores_shared_bridge_attributes(node):
    """A failed ADD changes nothing (README "Errors"), also on a bridge that already has pods.

    Found by test_random_inputs_against_the_executable_change_nothing_when_they_fail: an ADD whose
    bridge step turns promisc on and then fails on VLAN filtering (code 102 on this kernel) leaves the
    shared bridge promiscuous; the opposite (promisc on -> off) too.
    """
    if kernel_has_vlan_filtering(node):
        pytest.skip("this kernel has bridge VLAN filtering: the bridge step does not fail")
    conf = make_conf(node.data_dir)
    resident = node.pod()
    first = node.cni("ADD", conf, container_id="resident", netns=resident.path)
    assert first.rc == 0, first
    assert "PROMISC" not in node.ns.link("hsvlan100")["flags"]
    call = node.cni(
        "ADD", make_conf(node.data_dir, promiscMode=True, vlanID=100), container_id="v", netns=node.pod().path
    )
    assert call.rc == 1 and call.json["code"] == 102, call
    assert "PROMISC" not in node.ns.link("hsvlan100")["flags"], "the failed ADD left the shared bridge promiscuous"
