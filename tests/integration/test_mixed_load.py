"""Mixed load: ADD, CHECK and DEL for ten pod slots interleaved at random by a thread pool.

Each slot has its own pod namespace and an expected state (detached, or attached
with a known result). Operations on one slot are serialised, as a runtime
serialises the calls for one container; different slots run concurrently. At
the end the node must hold exactly what the surviving attachments need, every
survivor passes CHECK, and GC with exactly the survivors changes nothing.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from tests.conftest import make_conf
from tests.snapshots import kernel_state, lease_files, store_anomalies

SLOTS = 10
WORKERS = 4
LOAD_SECONDS = 30.0
NETWORK = "loxilight_cni"


class Slot:
    def __init__(self, index: int, pod, prefix: str) -> None:
        self.index = index
        self.pod = pod
        self.prefix = prefix
        self.lock = threading.Lock()
        self.generation = 0
        self.result: dict | None = None  # the ADD result while attached

    @property
    def container_id(self) -> str:
        return f"{self.prefix}-s{self.index}-g{self.generation}"


def test_random_add_check_del_on_ten_slots_leaves_exactly_the_survivors(node):
    conf = make_conf(node.data_dir, cniVersion="1.1.0", isDefaultGateway=True)
    prefix = uuid.uuid4().hex[:6]
    slots = [Slot(i, node.pod(), prefix) for i in range(SLOTS)]
    counts: Counter[str] = Counter()
    failures: list[str] = []
    deadline = time.monotonic() + LOAD_SECONDS

    def operate(slot: Slot, rng: random.Random) -> None:
        cid, pod = slot.container_id, slot.pod
        if slot.result is None:
            op = rng.choice(["ADD", "ADD", "ADD", "DEL"])  # a DEL of a never-added container must succeed too
        else:
            op = rng.choice(["CHECK", "CHECK", "DEL", "DEL", "ADD"])  # ADD again = a runtime's retry
        if op == "CHECK":
            call = node.cni("CHECK", {**conf, "prevResult": slot.result}, container_id=cid, netns=pod.path)
        else:
            call = node.cni(op, conf, container_id=cid, netns=pod.path)
        counts[op] += 1
        if call.rc != 0:
            failures.append(f"{op} {cid}: {call}")
            return
        if op == "ADD":
            if slot.result is not None and call.json["ips"] != slot.result["ips"]:
                failures.append(f"retried ADD {cid} changed address: {slot.result['ips']} -> {call.json['ips']}")
            slot.result = call.json
        elif op == "DEL":
            slot.result = None
            slot.generation += 1  # the next ADD is a new container in the same pod slot

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < deadline and not failures:
            slot = rng.choice(slots)
            if not slot.lock.acquire(blocking=False):
                continue
            try:
                operate(slot, rng)
            finally:
                slot.lock.release()

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        for future in [pool.submit(worker, seed) for seed in range(WORKERS)]:
            future.result()
    assert not failures, failures[:3]

    survivors = [s for s in slots if s.result is not None]
    expected_links = sorted(s.result["interfaces"][1]["name"] for s in survivors)
    expected_leases = {s.result["ips"][0]["address"].split("/")[0]: f"{s.container_id}\r\neth0" for s in survivors}
    assert node.ns.loxi_links() == expected_links, "leaked or missing host veths"
    assert lease_files(node, NETWORK) == expected_leases, "leaked or missing allocations"
    assert store_anomalies(node.data_dir / NETWORK) == []
    assert node.ns.addresses("hsvlan100") == ["10.244.1.1/24"]
    ports = {name for name, link in node.ns.links().items() if link.get("master") == "hsvlan100"}
    assert sorted(ports) == expected_links
    for slot in slots:
        links = slot.pod.links()
        if slot.result is None:
            assert "eth0" not in links, f"slot {slot.index}: a detached pod still has eth0"
            continue
        assert slot.pod.addresses("eth0") == [slot.result["ips"][0]["address"]]
        check = node.cni(
            "CHECK", {**conf, "prevResult": slot.result}, container_id=slot.container_id, netns=slot.pod.path
        )
        assert check.rc == 0, check

    before = (lease_files(node, NETWORK), kernel_state(node.ns), [kernel_state(s.pod) for s in slots])
    keep = [{"containerID": s.container_id, "ifname": "eth0"} for s in survivors]
    gc = node.cni("GC", {**conf, "cni.dev/valid-attachments": keep})
    assert gc.rc == 0 and gc.stdout == "", gc
    after = (lease_files(node, NETWORK), kernel_state(node.ns), [kernel_state(s.pod) for s in slots])
    assert after == before, "GC with exactly the survivors changed something"
    total = sum(counts.values())
    print(
        f"\nmixed load: {total} operations in {LOAD_SECONDS:.0f} s on {SLOTS} slots ({dict(counts)}), "
        f"{len(survivors)} survivors, leaks found: 0, GC with the survivors changed nothing"
    )
