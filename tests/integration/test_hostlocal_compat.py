"""HostLocalStore and the reference host-local binary sharing one store, in both directions.

Also drives the reference through `run_ipam_plugin`, which covers the delegate
path end to end. Nothing here touches a network namespace or a link: host-local
only ever reads and writes its dataDir.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest

import applier.ipam.delegate as delegate
from applier.ipam import result_from_document
from applier.ipam.allocator import HostLocalStore
from applier.ipam.delegate import run_ipam_plugin
from intent.env import CniRequest
from intent.errors import DELEGATE_FAILED, GENERIC_GO_ERROR, INVALID_NETWORK_CONFIG, CniError
from intent.ipam_config import load_host_local
from tests.ipam_helpers import ipam_add, ipam_check, ipam_del

CNI_DIR = "/usr/lib/cni"
REFERENCE = Path(CNI_DIR) / "host-local"
V4 = [[{"subnet": "10.88.0.0/29"}]]  # pool .2 .. .6, gateway .1
DUAL = [[{"subnet": "10.88.0.0/29"}], [{"subnet": "fd00::/125"}]]


@pytest.fixture(scope="module")
def reference() -> Path:
    """The Debian package may still be installing when the suite starts."""
    deadline = time.monotonic() + 180
    while not os.access(REFERENCE, os.X_OK):
        if time.monotonic() > deadline:
            pytest.skip(f"{REFERENCE} not installed (Debian package containernetworking-plugins)")
        time.sleep(2)
    return REFERENCE


def netconf(data_dir: Path, ranges: list[Any], version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
    return {
        "cniVersion": version,
        "name": "compat",
        "ipam": {"type": "host-local", "dataDir": str(data_dir), "ranges": ranges},
        **extra,
    }


def env(command: str, cid: str, ifname: str = "eth0", cni_args: str = "") -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": cid,
        "CNI_NETNS": "/proc/self/ns/net",
        "CNI_IFNAME": ifname,
        "CNI_ARGS": cni_args,
        "CNI_PATH": CNI_DIR,
    }


def run_reference(command: str, cid: str, conf: dict[str, Any], **kw: str) -> tuple[int, dict[str, Any] | None]:
    proc = subprocess.run(
        [str(REFERENCE)], input=json.dumps(conf).encode(), env=env(command, cid, **kw), capture_output=True, timeout=30
    )
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else None


def ref_add(cid: str, conf: dict[str, Any], **kw: str) -> list[str]:
    rc, out = run_reference("ADD", cid, conf, **kw)
    assert rc == 0 and out is not None, out
    return [ip["address"] for ip in out["ips"]]


def ours(conf: dict[str, Any], cni_args: dict[str, str] | None = None) -> HostLocalStore:
    return HostLocalStore(load_host_local(conf, cni_args or {}))


def addresses(store: HostLocalStore, cid: str) -> list[str]:
    return [str(lease.address) for lease in store.allocate(cid, "eth0")]


def check_conf(conf: dict[str, Any], address: str) -> dict[str, Any]:
    return {**conf, "prevResult": {"cniVersion": conf["cniVersion"], "ips": [{"address": address}]}}


@pytest.mark.usefixtures("store_view")
def test_reference_sees_our_allocations(reference: Path, tmp_path: Path) -> None:
    conf = netconf(tmp_path, DUAL)
    store = ours(conf)
    assert addresses(store, "ours") == ["10.88.0.2/29", "fd00::2/125"]
    # The reference skips our files and continues from our last_reserved_ip.N.
    assert ref_add("theirs", conf) == ["10.88.0.3/29", "fd00::3/125"]
    assert run_reference("CHECK", "ours", check_conf(conf, "10.88.0.2/29")) == (0, None)
    # Its DEL releases our files.
    assert run_reference("DEL", "ours", conf) == (0, None)
    assert not (tmp_path / "compat" / "10.88.0.2").exists() and not (tmp_path / "compat" / "fd00::2").exists()
    rc, out = run_reference("CHECK", "ours", check_conf(conf, "10.88.0.2/29"))
    assert rc != 0 and out == {"code": 999, "msg": "host-local: Failed to find address added by container ours"}


@pytest.mark.usefixtures("store_view")
def test_we_see_the_references_allocations(reference: Path, tmp_path: Path) -> None:
    conf = netconf(tmp_path, DUAL)
    store = ours(conf)
    assert ref_add("theirs", conf) == ["10.88.0.2/29", "fd00::2/125"]
    found = store.find("theirs", "eth0")
    assert [str(lease.address) for lease in found] == ["10.88.0.2/29", "fd00::2/125"]
    assert [str(lease.gateway) for lease in found] == ["10.88.0.1", "fd00::1"]
    assert store.holds("theirs", "eth0")
    # A retried ADD of the same attachment gets the reference's lease back instead of an error.
    assert store.allocate("theirs", "eth0") == found
    assert addresses(store, "ours") == ["10.88.0.3/29", "fd00::3/125"]
    request = CniRequest("CHECK", "theirs", "/proc/self/ns/net", "eth0")
    assert list(ipam_check(conf, b"", request).leases) == found
    ipam_del(conf, b"", request)
    assert store.find("theirs", "eth0") == [] and not (tmp_path / "compat" / "10.88.0.2").exists()
    rc, out = run_reference("CHECK", "theirs", check_conf(conf, "10.88.0.2/29"))
    assert rc != 0 and out is not None and out["msg"].endswith("container theirs")


@pytest.mark.usefixtures("store_view")
def test_round_robin_is_shared_and_exhaustion_matches(reference: Path, tmp_path: Path) -> None:
    conf = netconf(tmp_path, V4)
    store = ours(conf)
    got = []
    for i in range(5):
        got += addresses(store, f"o{i}") if i % 2 == 0 else ref_add(f"r{i}", conf)
    assert got == ["10.88.0.2/29", "10.88.0.3/29", "10.88.0.4/29", "10.88.0.5/29", "10.88.0.6/29"]

    rc, out = run_reference("ADD", "late", conf)
    with pytest.raises(CniError) as info:
        store.allocate("late", "eth0")
    assert rc != 0 and out == {"code": info.value.code, "msg": info.value.msg}
    assert info.value.code == GENERIC_GO_ERROR

    # Free .3 (the reference's) from our side and .2 (ours) from theirs.
    store.release("r1", "eth0")
    assert run_reference("DEL", "o0", conf) == (0, None)
    assert ref_add("n1", conf) == ["10.88.0.2/29"]  # after .6 it wraps, skipping the gateway
    assert addresses(store, "n2") == ["10.88.0.3/29"]  # and we continue from its reservation
    assert (tmp_path / "compat" / "last_reserved_ip.0").read_text() == "10.88.0.3"


@pytest.mark.usefixtures("store_view")
def test_requested_ips_and_idempotent_retry_across_plugins(reference: Path, tmp_path: Path) -> None:
    conf = netconf(tmp_path, V4)
    assert ref_add("theirs", conf, cni_args="IP=10.88.0.5") == ["10.88.0.5/29"]
    with pytest.raises(CniError, match=r"requested IP address 10\.88\.0\.5 is not available"):
        ours(conf, {"IP": "10.88.0.5"}).allocate("ours", "eth0")
    assert addresses(ours(conf, {"IP": "10.88.0.5"}), "theirs") == ["10.88.0.5/29"]
    assert addresses(ours(conf), "ours") == ["10.88.0.6/29"]  # round robin after the requested one
    rc, out = run_reference("ADD", "x", conf, cni_args="IP=10.88.0.6")
    assert rc != 0 and out is not None
    assert out["msg"] == (
        "failed to allocate for range 0: requested IP address 10.88.0.6 is not available in range set "
        "10.88.0.1-10.88.0.6"
    )


def _ours_in_child(conf: dict[str, Any], cid: str) -> None:
    ours(conf).allocate(cid, "eth0")


@pytest.mark.usefixtures("store_view")
def test_concurrent_adds_from_both_plugins_share_the_lock(reference: Path, tmp_path: Path) -> None:
    import multiprocessing

    conf = netconf(tmp_path, [[{"subnet": "10.89.0.0/24"}]])
    ctx = multiprocessing.get_context("fork")
    theirs = [
        subprocess.Popen(
            [str(REFERENCE)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env("ADD", f"r{i}"),
        )
        for i in range(10)
    ]
    mine = [ctx.Process(target=_ours_in_child, args=(conf, f"o{i}")) for i in range(10)]
    for proc in mine:
        proc.start()
    for proc in theirs:
        proc.communicate(json.dumps(conf).encode(), timeout=30)
        assert proc.returncode == 0
    for proc in mine:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    allocations = ours(conf).allocations()
    assert len(allocations) == 20
    assert sorted(int(a.ip) - int(ip_address("10.89.0.0")) for a in allocations) == list(range(2, 22))
    assert {a.container_id for a in allocations} == {f"r{i}" for i in range(10)} | {f"o{i}" for i in range(10)}


# -- the delegate path, driven with the reference binary and with fakes ----------------


def delegate_request(cid: str, path: tuple[str, ...] = (CNI_DIR,), **kw: str) -> CniRequest:
    return CniRequest("ADD", cid, "/proc/self/ns/net", "eth0", path=path, environ=env("ADD", cid, **kw))


@pytest.mark.parametrize("version", ["0.2.0", "0.3.1", "1.0.0"])
def test_delegating_to_the_reference_in_every_result_version(reference: Path, tmp_path: Path, version: str) -> None:
    conf = netconf(tmp_path, DUAL, version=version)
    doc = run_ipam_plugin("host-local", "ADD", json.dumps(conf).encode(), delegate_request("d1"))
    assert doc is not None
    result = result_from_document(doc, "host-local")
    assert [str(lease.address) for lease in result.leases] == ["10.88.0.2/29", "fd00::2/125"]
    assert ours(conf).find("d1", "eth0") == list(result.leases)
    assert run_ipam_plugin("host-local", "DEL", json.dumps(conf).encode(), delegate_request("d1")) is None
    assert ours(conf).find("d1", "eth0") == []


def test_delegate_passes_the_references_error_through(reference: Path, tmp_path: Path) -> None:
    conf = netconf(tmp_path, V4)
    for cid in "abcde":
        ours(conf).allocate(cid, "eth0")
    with pytest.raises(CniError) as info:
        ipam_add({**conf, "ipam": {**conf["ipam"], "type": "host-local-ref"}}, b"", delegate_request("x"))
    assert info.value.code == DELEGATE_FAILED
    assert info.value.msg == f'failed to find plugin "host-local-ref" in path [{CNI_DIR}]'
    with pytest.raises(CniError) as info:
        run_ipam_plugin("host-local", "ADD", json.dumps(conf).encode(), delegate_request("x"))
    assert (info.value.code, info.value.msg) == (
        999,
        "failed to allocate for range 0: no IP addresses available in range set: 10.88.0.1-10.88.0.6",
    )


def fake_plugin(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_delegate_environment_stdin_and_lookup_order(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (first / "fake").mkdir()  # not a regular file: skipped like Go's FindInPath
    fake_plugin(
        second,
        "fake",
        'read -r line\nprintf \'{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.9/16"}],'
        '"dns":{"domain":"%s-%s-%s"}}\' "$CNI_COMMAND" "$CNI_IFNAME" "$line"\n',
    )
    request = CniRequest("ADD", "c1", "/x", "eth9", path=(str(first), str(second)), environ={"CNI_COMMAND": "ADD"})
    result = ipam_add({"ipam": {"type": "fake"}}, b"stdin-text\n", request)
    assert [str(lease.address) for lease in result.leases] == ["10.1.0.9/16"]
    assert result.dns == {"domain": "ADD-eth9-stdin-text"}
    doc = run_ipam_plugin("fake", "CHECK", b"x\n", request)
    assert doc is not None and doc["dns"]["domain"] == "CHECK-eth9-x"


@pytest.mark.parametrize(
    ("body", "code", "msg", "details"),
    [
        ("echo 'boom' >&2\nexit 3\n", DELEGATE_FAILED, "fake DEL failed", "boom"),
        ("echo 'not json'\nexit 1\n", DELEGATE_FAILED, "fake DEL failed", "not json"),
        ("exit 2\n", DELEGATE_FAILED, "fake DEL failed", "exit status 2"),
        ('echo \'{"code":11,"msg":"busy","details":"try later"}\'\nexit 1\n', 11, "busy", "try later"),
        ("echo '[1'\n", DELEGATE_FAILED, "fake DEL returned invalid JSON", None),
    ],
)
def test_delegate_failures(tmp_path: Path, body: str, code: int, msg: str, details: str | None) -> None:
    fake_plugin(tmp_path, "fake", body)
    request = CniRequest("DEL", "c1", "", "eth0", path=(str(tmp_path),))
    with pytest.raises(CniError) as info:
        run_ipam_plugin("fake", "DEL", b"{}", request)
    assert (info.value.code, info.value.msg) == (code, msg)
    if details is not None:
        assert info.value.details == details


def test_delegate_empty_output_and_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_plugin(tmp_path, "quiet", "exit 0\n")
    fake_plugin(tmp_path, "slow", "exec sleep 5\n")
    request = CniRequest("DEL", "c1", "", "eth0", path=(str(tmp_path),))
    assert run_ipam_plugin("quiet", "DEL", b"", request) is None
    ipam_del({"ipam": {"type": "quiet"}}, b"", request)
    with pytest.raises(CniError) as info:
        ipam_add({"ipam": {"type": "quiet"}}, b"", request)
    assert info.value.code == DELEGATE_FAILED
    monkeypatch.setattr(delegate, "TIMEOUT_SECONDS", 0.2)
    with pytest.raises(CniError) as info:
        run_ipam_plugin("slow", "ADD", b"", request)
    assert info.value.code == DELEGATE_FAILED and "timed out" in info.value.details


@pytest.mark.parametrize("name", ["../host-local", "/usr/lib/cni/host-local", "", ".", ".."])
def test_delegate_type_must_be_a_plain_name(name: str) -> None:
    with pytest.raises(CniError) as info:
        run_ipam_plugin(name, "ADD", b"", CniRequest("ADD", path=(CNI_DIR,)))
    assert info.value.code == INVALID_NETWORK_CONFIG
