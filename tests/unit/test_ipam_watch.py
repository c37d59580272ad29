"""The watched lease store (loxi-agent): the inotify index always says what a fresh scan of the directory says.

Real inotify on a tmp_path store; the other writers are this test writing files the way the
reference host-local binary does (create, then write the content), unlinking them, rewriting one
in place, putting a FIFO or a symlink where a lease was.
"""

from __future__ import annotations

import os
import random
import shutil
import struct
from collections.abc import Callable, Iterator
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest

from applier.ipam import store, watch
from applier.ipam.allocator import HostLocalStore
from applier.ipam.store import TMP_PREFIX, _Dir, _Snapshot
from intent.ipam_config import load_host_local

SUBNET = "10.77.0.0/27"  # pool .2 .. .30


@pytest.fixture
def watcher() -> Iterator[watch.StoreWatcher]:
    found = watch.watch_stores()
    assert found is not None, "inotify is available on every kernel this project supports"
    try:
        yield found
    finally:
        watch.watch_stores(False)


@pytest.fixture
def make(tmp_path: Path) -> Callable[[], HostLocalStore]:
    conf = {
        "cniVersion": "1.0.0",
        "name": "w",
        "ipam": {"type": "host-local", "subnet": SUBNET, "dataDir": str(tmp_path)},
    }
    return lambda: HostLocalStore(load_host_local(conf, {}))


def views(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(what the watcher's index says, what a fresh scan says) of the store at `path`: names, owners, temps."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        directory = _Dir(fd)
        indexed = _Snapshot.of(directory)
        assert indexed.by_owner is not None, "served from the index"
        scanned = _Snapshot.scan(directory)
        return describe(indexed), describe(scanned)
    finally:
        os.close(fd)


def describe(snap: _Snapshot) -> dict[str, Any]:
    owners = {name: snap.owner(key) for key, name in snap.leases.items()}
    held = {owner: [str(ip) for ip in snap.held(owner)] for owner in set(owners.values()) if owner is not None}
    return {"owners": owners, "held": held, "temps": sorted(snap.temps)}


def write_like_the_reference(path: Path, name: str, text: str) -> None:
    """O_EXCL create, then the content in a second write: two events, and an empty file in between."""
    fd = os.open(path / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, text[:3].encode())
        os.write(fd, text[3:].encode())
    finally:
        os.close(fd)


def test_the_index_follows_every_writer_and_scans_once(watcher, make, tmp_path: Path) -> None:
    mine = make().allocate("ctr-a", "eth0")
    path = tmp_path / "w"
    indexed, scanned = views(path)
    assert indexed == scanned and indexed["held"] == {"ctr-a\r\neth0": [str(mine[0].ip)]}
    scans = watcher.scans

    write_like_the_reference(path, "10.77.0.9", "ctr-ref\r\neth0")
    assert make().check("ctr-ref", "eth0")[0].ip == ip_address("10.77.0.9")
    (path / "10.77.0.9").write_text("ctr-moved\r\neth1")  # rewritten in place: no new name, new owner
    assert make().check("ctr-ref", "eth0") is None
    assert [str(lease.ip) for lease in make().check("ctr-moved", "eth1")] == ["10.77.0.9"]
    (path / "10.77.0.9").unlink()
    os.mkfifo(path / "10.77.0.10")  # taken, but by nobody: never handed out, never read
    os.symlink("/etc/passwd", path / "10.77.0.11")
    (path / f"{TMP_PREFIX}999.dead").write_text("ctr-x\r\neth0")
    indexed, scanned = views(path)
    assert indexed == scanned
    assert indexed["owners"]["10.77.0.10"] is None and indexed["owners"]["10.77.0.11"] is None
    assert "10.77.0.9" not in indexed["owners"] and indexed["temps"] == [f"{TMP_PREFIX}999.dead"]
    assert make().allocate("ctr-a", "eth0") == mine  # the retried ADD finds its lease in the index
    make().release("ctr-a", "eth0")
    assert not (path / str(mine[0].ip)).exists()
    assert watcher.scans == scans, "every answer above came from the index, none from a new scan"


def test_random_writers_never_part_the_index_from_the_directory(watcher, make, tmp_path: Path) -> None:
    """Allocations and releases through the store, and foreign creates, rewrites and unlinks, interleaved."""
    rng = random.Random(1907)
    path = tmp_path / "w"
    make().allocate("seed", "eth0")
    attached: list[str] = []
    for step in range(300):
        action = rng.choice(["allocate", "allocate", "release", "foreign", "rewrite", "unlink"])
        names = sorted(n for n in os.listdir(path) if n[0].isdigit() and not n.startswith("last"))
        if action == "allocate" and len(names) < 25:
            cid = f"c{step}"
            make().allocate(cid, "eth0")
            attached.append(cid)
        elif action == "release" and attached:
            make().release(attached.pop(rng.randrange(len(attached))), "eth0")
        elif action == "foreign":
            ip = f"10.77.0.{rng.randrange(2, 31)}"
            if ip not in names:
                write_like_the_reference(path, ip, f"f{step}\r\neth{rng.randrange(2)}")
        elif action == "rewrite" and names:
            (path / rng.choice(names)).write_text(f"r{step}\r\neth0")
        elif action == "unlink" and names:
            (path / rng.choice(names)).unlink()
        if step % 7 == 0:
            indexed, scanned = views(path)
            assert indexed == scanned, f"step {step} ({action})"
    indexed, scanned = views(path)
    assert indexed == scanned and watcher.scans == 1


def test_an_overflowed_queue_or_a_removed_directory_means_a_new_scan(watcher, make, tmp_path: Path) -> None:
    make().allocate("ctr-a", "eth0")
    views(tmp_path / "w")
    assert watcher.scans == 1
    watcher._apply(struct.pack("iIII", -1, watch.IN_Q_OVERFLOW, 0, 0))  # what the kernel queues when it drops events
    assert views(tmp_path / "w")[0]["held"] == {"ctr-a\r\neth0": ["10.77.0.2"]} and watcher.scans == 2
    shutil.rmtree(tmp_path / "w")  # the directory goes, and one is made again at its path
    lease = make().allocate("ctr-b", "eth0")
    assert watcher.scans == 3 and str(lease[0].ip) == "10.77.0.2"
    indexed, scanned = views(tmp_path / "w")
    assert indexed == scanned and indexed["held"] == {"ctr-b\r\neth0": ["10.77.0.2"]}


def test_a_store_that_cannot_be_watched_is_scanned(watcher, make, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(watcher, "_libc", type("NoWatch", (), {"inotify_add_watch": lambda *a: -1})())
    first = make().allocate("ctr-a", "eth0")
    assert make().allocate("ctr-a", "eth0") == first and make().check("ctr-a", "eth0") == first
    make().release("ctr-a", "eth0")
    assert make().check("ctr-a", "eth0") is None and watcher.scans == 0


def test_a_forked_child_scans_and_leaves_the_parents_queue_alone(watcher, make, tmp_path: Path) -> None:
    make().allocate("ctr-a", "eth0")
    views(tmp_path / "w")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no index, and its store calls still answer right
        ok = store._store_index is None and make().check("ctr-a", "eth0") is not None
        os.write(write, b"ok" if ok else b"no")
        os._exit(0)
    os.close(write)
    assert os.read(read, 2) == b"ok"
    os.close(read)
    os.waitpid(pid, 0)
    assert store._store_index is not None and watcher.scans == 1
