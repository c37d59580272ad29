"""HostLocalStore against a tmp_path dataDir: allocation order, on-disk format, safety, concurrency."""

from __future__ import annotations

import multiprocessing
import os
import stat
import time
from collections.abc import Callable
from ipaddress import ip_address, ip_interface
from pathlib import Path
from typing import Any

import pytest

from applier.ipam import (
    IpamResult,
    is_host_local,
    parse_resolv_conf,
    result_from_document,
)
from applier.ipam.allocator import Allocation, HostLocalStore
from applier.ipam.result import Lease
from applier.ipam.store import TMP_PREFIX
from intent.env import CniRequest
from intent.errors import DELEGATE_FAILED, GENERIC_GO_ERROR, INVALID_ENVIRONMENT, IO_FAILURE, CniError
from intent.ipam_config import load_host_local
from tests.ipam_helpers import ipam_add, ipam_check, ipam_del, ipam_preview

pytestmark = pytest.mark.usefixtures("store_view")  # every test twice: scanned and watched (tests/conftest.py)

V4 = [[{"subnet": "10.88.0.0/29"}]]  # pool 10.88.0.2 .. 10.88.0.6, gateway .1
DUAL = [[{"subnet": "10.88.0.0/29"}], [{"subnet": "fd00::/125"}]]


def netconf(data_dir: Path, ranges: list[Any] = V4, **ipam: Any) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "net1",
        "ipam": {"type": "host-local", "dataDir": str(data_dir), "ranges": ranges, **ipam},
    }


@pytest.fixture
def make(tmp_path: Path) -> Callable[..., HostLocalStore]:
    def build(ranges: list[Any] = V4, cni_args: dict[str, str] | None = None, **ipam: Any) -> HostLocalStore:
        return HostLocalStore(load_host_local(netconf(tmp_path, ranges, **ipam), cni_args or {}))

    return build


def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "net1"


def ips(leases: list[Lease]) -> list[str]:
    return [str(lease.address) for lease in leases]


def snapshot(path: Path) -> dict[str, tuple[bytes, int, int]]:
    if not path.exists():
        return {}
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_mode) for p in path.iterdir()}


# -- round robin ------------------------------------------------------------


def test_round_robin_from_the_first_address_skipping_the_gateway(make: Callable[..., HostLocalStore]) -> None:
    store = make()
    got = [ips(store.allocate(cid, "eth0")) for cid in "abcde"]
    assert got == [["10.88.0.2/29"], ["10.88.0.3/29"], ["10.88.0.4/29"], ["10.88.0.5/29"], ["10.88.0.6/29"]]
    lease = store.find("a", "eth0")[0]
    assert (
        lease.gateway == ip_address("10.88.0.1") and lease.range_set_index == 0 and lease.ip == ip_address("10.88.0.2")
    )


def test_round_robin_continues_after_the_last_reservation(make: Callable[..., HostLocalStore], tmp_path: Path) -> None:
    store = make()
    store.allocate("a", "eth0")
    store.allocate("b", "eth0")
    store.release("a", "eth0")
    assert ips(store.allocate("c", "eth0")) == ["10.88.0.4/29"]  # not the freed .2
    assert (store_dir(tmp_path) / "last_reserved_ip.0").read_text() == "10.88.0.4"


def test_round_robin_wraps_and_skips_the_gateway(make: Callable[..., HostLocalStore]) -> None:
    store = make()
    for cid in "abcde":
        store.allocate(cid, "eth0")
    store.release("b", "eth0")  # frees .3; last reserved is .6, the end of the range
    assert ips(store.allocate("f", "eth0")) == ["10.88.0.3/29"]


def test_gateway_inside_the_range_is_never_handed_out(make: Callable[..., HostLocalStore]) -> None:
    store = make([[{"subnet": "10.88.0.0/29", "gateway": "10.88.0.3"}]])
    got = [ips(store.allocate(cid, "eth0"))[0] for cid in "abcde"]
    assert got == ["10.88.0.1/29", "10.88.0.2/29", "10.88.0.4/29", "10.88.0.5/29", "10.88.0.6/29"]


def test_moves_to_the_next_range_of_the_set(make: Callable[..., HostLocalStore]) -> None:
    store = make([[{"subnet": "10.88.0.0/30"}, {"subnet": "10.88.1.0/30"}]])
    assert [ips(store.allocate(c, "eth0"))[0] for c in "ab"] == ["10.88.0.2/30", "10.88.1.2/30"]
    store.release("a", "eth0")
    assert ips(store.allocate("c", "eth0")) == ["10.88.0.2/30"]  # wrapped from the last range to the first


def test_stale_or_foreign_last_reserved_restarts_at_range_start(
    make: Callable[..., HostLocalStore], tmp_path: Path
) -> None:
    store = make()
    store.allocate("a", "eth0")
    last = store_dir(tmp_path) / "last_reserved_ip.0"
    last.write_text("192.168.0.1")  # e.g. the ranges changed since
    assert ips(store.allocate("b", "eth0")) == ["10.88.0.3/29"]
    last.write_text("garbage")
    assert ips(store.allocate("c", "eth0")) == ["10.88.0.4/29"]


def test_exhaustion_is_999_with_the_reference_message(make: Callable[..., HostLocalStore]) -> None:
    store = make()
    for cid in "abcde":
        store.allocate(cid, "eth0")
    with pytest.raises(CniError) as info:
        store.allocate("f", "eth0")
    assert info.value.code == GENERIC_GO_ERROR == 999
    assert (
        info.value.msg == "failed to allocate for range 0: no IP addresses available in range set: 10.88.0.1-10.88.0.6"
    )
    assert not store.has_free(0) and store.free_count(0) == 0


def test_exhaustion_message_lists_every_range_of_the_set(make: Callable[..., HostLocalStore]) -> None:
    store = make([[{"subnet": "10.88.0.0/30"}, {"subnet": "10.88.1.0/30"}], [{"subnet": "10.99.0.0/24"}]])
    store.allocate("a", "eth0")
    store.allocate("b", "eth0")
    with pytest.raises(CniError) as info:
        store.allocate("c", "eth0")
    assert info.value.msg == (
        "failed to allocate for range 0: no IP addresses available in range set: "
        "10.88.0.1-10.88.0.2,10.88.1.1-10.88.1.2"
    )


def test_big_v4_pool_default_text(make: Callable[..., HostLocalStore]) -> None:
    store = make([[{"subnet": "10.88.0.0/16"}]])
    assert store.config.range_sets[0].text == "10.88.0.1-10.88.255.254"
    assert store.has_free(0) and store.free_count(0) == 65533


# -- idempotency, dual stack, rollback -----------------------------------------


def test_re_allocating_returns_the_same_lease_and_writes_nothing(
    make: Callable[..., HostLocalStore], tmp_path: Path
) -> None:
    store = make(DUAL)
    first = store.allocate("a", "eth0")
    before = snapshot(store_dir(tmp_path))
    assert store.allocate("a", "eth0") == first
    assert snapshot(store_dir(tmp_path)) == before
    # Another interface of the same container is another attachment.
    assert ips(store.allocate("a", "net1")) == ["10.88.0.3/29", "fd00::3/125"]


def test_dual_stack_gives_one_lease_per_set(make: Callable[..., HostLocalStore]) -> None:
    leases = make(DUAL).allocate("a", "eth0")
    assert ips(leases) == ["10.88.0.2/29", "fd00::2/125"]
    assert [lease.range_set_index for lease in leases] == [0, 1]
    assert [str(lease.gateway) for lease in leases] == ["10.88.0.1", "fd00::1"]


def test_failure_in_a_later_set_releases_what_this_call_took(
    make: Callable[..., HostLocalStore], tmp_path: Path
) -> None:
    small_v6 = [[{"subnet": "10.88.0.0/29"}], [{"subnet": "fd00::/126"}]]  # v6 pool: fd00::2, fd00::3
    store = make(small_v6)
    store.allocate("a", "eth0")
    store.allocate("b", "eth0")
    with pytest.raises(CniError) as info:
        store.allocate("c", "eth0")
    assert info.value.msg.startswith("failed to allocate for range 1: no IP addresses available")
    assert not (store_dir(tmp_path) / "10.88.0.4").exists()
    assert store.find("c", "eth0") == []


def test_rollback_keeps_leases_held_before_the_call(make: Callable[..., HostLocalStore], tmp_path: Path) -> None:
    make().allocate("a", "eth0")  # v4 only
    exhausted_v6 = make([V4[0], [{"subnet": "fd00::/126"}]])
    exhausted_v6.allocate("x", "eth0")
    exhausted_v6.allocate("y", "eth0")
    with pytest.raises(CniError):
        exhausted_v6.allocate("a", "eth0")
    assert (store_dir(tmp_path) / "10.88.0.2").read_bytes() == b"a\r\neth0"


# -- requested IPs ----------------------------------------------------------


def test_requested_ip_is_reserved_and_updates_last_reserved(
    make: Callable[..., HostLocalStore], tmp_path: Path
) -> None:
    store = make(cni_args={"IP": "10.88.0.5"})
    assert ips(store.allocate("a", "eth0")) == ["10.88.0.5/29"]
    assert (store_dir(tmp_path) / "last_reserved_ip.0").read_text() == "10.88.0.5"
    assert store.allocate("a", "eth0")[0].ip == ip_address("10.88.0.5")  # idempotent
    assert ips(make().allocate("b", "eth0")) == ["10.88.0.6/29"]


def test_requested_ips_per_family(make: Callable[..., HostLocalStore]) -> None:
    store = make(DUAL, cni_args={"IP": "fd00::6,10.88.0.4"})
    assert ips(store.allocate("a", "eth0")) == ["10.88.0.4/29", "fd00::6/125"]


@pytest.mark.parametrize(
    ("ip", "msg"),
    [
        ("10.88.0.1", "failed to allocate for range 0: requested ip 10.88.0.1 is subnet's gateway"),
        (
            "10.88.0.2",
            "failed to allocate for range 0: requested IP address 10.88.0.2 is not available in range set "
            "10.88.0.1-10.88.0.6",
        ),
        ("10.99.0.5", "failed to allocate all requested IPs: 10.99.0.5"),
    ],
)
def test_requested_ip_errors(make: Callable[..., HostLocalStore], ip: str, msg: str) -> None:
    make().allocate("owner", "eth0")  # holds 10.88.0.2
    with pytest.raises(CniError) as info:
        make(cni_args={"IP": ip}).allocate("a", "eth0")
    assert (info.value.code, info.value.msg) == (GENERIC_GO_ERROR, msg)


def test_unfulfillable_request_writes_nothing(make: Callable[..., HostLocalStore], tmp_path: Path) -> None:
    with pytest.raises(CniError):
        make(cni_args={"IP": "10.88.0.3,10.88.0.4"}).allocate("a", "eth0")  # two for one set
    assert not tmp_path.joinpath("net1").exists()


def test_requesting_another_ip_while_holding_one_is_a_duplicate(make: Callable[..., HostLocalStore]) -> None:
    make().allocate("a", "eth0")
    with pytest.raises(CniError) as info:
        make(cni_args={"IP": "10.88.0.5"}).allocate("a", "eth0")
    assert info.value.msg == (
        "failed to allocate for range 0: 10.88.0.2 has been allocated to a, duplicate allocation is not allowed"
    )


# -- release / find / holds / allocations -----------------------------------------


def test_release_matches_cid_and_ifname_only(make: Callable[..., HostLocalStore], tmp_path: Path) -> None:
    store = make(DUAL)
    store.allocate("a", "eth0")
    store.allocate("a", "net1")
    store.allocate("b", "eth0")
    store.release("a", "eth0")
    assert sorted(p.name for p in store_dir(tmp_path).iterdir() if p.name[0].isalnum() and p.name != "lock") == [
        "10.88.0.3",
        "10.88.0.4",
        "fd00::3",
        "fd00::4",
        "last_reserved_ip.0",
        "last_reserved_ip.1",
    ]
    store.release("a", "eth0")  # idempotent
    store.release("nobody", "eth0")
    assert store.find("a", "eth0") == [] and len(store.find("a", "net1")) == 2


def test_legacy_cid_only_files_are_released_and_found(make: Callable[..., HostLocalStore], tmp_path: Path) -> None:
    store = make()
    store.allocate("other", "eth0")
    (store_dir(tmp_path) / "10.88.0.5").write_bytes(b"a")
    (store_dir(tmp_path) / "10.88.0.6").write_bytes(b"a\n")
    assert ips(store.find("a", "eth0")) == ["10.88.0.5/29", "10.88.0.6/29"]
    assert store.holds("a", "eth0")
    allocs = store.allocations()
    assert Allocation(ip_address("10.88.0.5"), "a", "", 0) in allocs
    store.release("a", "eth0")
    assert not (store_dir(tmp_path) / "10.88.0.5").exists() and not (store_dir(tmp_path) / "10.88.0.6").exists()
    assert (store_dir(tmp_path) / "10.88.0.2").exists()


def test_legacy_files_stay_when_the_full_form_matched(make: Callable[..., HostLocalStore], tmp_path: Path) -> None:
    store = make()
    store.allocate("a", "eth0")
    (store_dir(tmp_path) / "10.88.0.6").write_bytes(b"a")
    store.release("a", "eth0")
    assert (store_dir(tmp_path) / "10.88.0.6").exists()
    store.release("a", "eth0")  # second DEL: no full match left, so the legacy file goes
    assert not (store_dir(tmp_path) / "10.88.0.6").exists()


def test_release_without_a_store_creates_nothing(make: Callable[..., HostLocalStore], tmp_path: Path) -> None:
    make().release("a", "eth0")
    assert list(tmp_path.iterdir()) == []


def test_allocations_and_holds_outside_the_configured_sets(make: Callable[..., HostLocalStore], tmp_path: Path) -> None:
    make([[{"subnet": "10.77.0.0/24"}]]).allocate("old", "eth0")
    store = make()
    store.allocate("a", "eth0")
    assert store.allocations() == [
        Allocation(ip_address("10.77.0.2"), "old", "eth0", -1),
        Allocation(ip_address("10.88.0.2"), "a", "eth0", 0),
    ]
    assert store.find("old", "eth0") == []  # no configured subnet to give it a prefix
    assert store.holds("old", "eth0") and not store.holds("nobody", "eth0")
    # check() is holds() then find() on one read of the store
    assert store.check("old", "eth0") == [] and store.check("nobody", "eth0") is None
    assert ips(store.check("a", "eth0")) == ["10.88.0.2/29"]


def test_non_lease_files_are_ignored(make: Callable[..., HostLocalStore], tmp_path: Path) -> None:
    store = make()
    store.allocate("a", "eth0")
    d = store_dir(tmp_path)
    for name in ("foo", "10.88.0.999", "010.88.0.3", "FD00::3", "a\r\neth0", f"{TMP_PREFIX}1.abc"):
        (d / name).write_bytes(b"a\r\neth0")
    (d / "10.88.0.7").mkdir()
    assert [a.ip for a in store.allocations()] == [ip_address("10.88.0.2")]
    store.release("a", "eth0")
    assert (d / "foo").exists() and (d / "a\r\neth0").exists() and not (d / "10.88.0.2").exists()


# -- preview --------------------------------------------------------------------


def test_preview_predicts_allocate_and_writes_nothing(make: Callable[..., HostLocalStore], tmp_path: Path) -> None:
    store = make(DUAL)
    store.allocate("a", "eth0")
    store.allocate("b", "eth0")
    store.release("a", "eth0")
    before = snapshot(store_dir(tmp_path))
    preview = store.preview("c", "eth0")
    assert snapshot(store_dir(tmp_path)) == before
    assert preview == store.allocate("c", "eth0")
    assert store.preview("c", "eth0") == store.find("c", "eth0")  # an existing lease previews as itself


def test_preview_on_a_missing_store_creates_nothing(make: Callable[..., HostLocalStore], tmp_path: Path) -> None:
    assert ips(make(DUAL).preview("a", "eth0")) == ["10.88.0.2/29", "fd00::2/125"]
    assert ips(make(cni_args={"IP": "10.88.0.6"}).preview("a", "eth0")) == ["10.88.0.6/29"]
    assert list(tmp_path.iterdir()) == []


def test_preview_raises_what_allocate_would(make: Callable[..., HostLocalStore], tmp_path: Path) -> None:
    store = make()
    for cid in "abcde":
        store.allocate(cid, "eth0")
    before = snapshot(store_dir(tmp_path))
    with pytest.raises(CniError) as info:
        store.preview("f", "eth0")
    assert info.value.msg.endswith("no IP addresses available in range set: 10.88.0.1-10.88.0.6")
    with pytest.raises(CniError, match="is subnet's gateway"):
        make(cni_args={"IP": "10.88.0.1"}).preview("f", "eth0")
    assert snapshot(store_dir(tmp_path)) == before


# -- on-disk format, modes, atomicity, symlinks ---------------------------------------


def test_file_format_and_modes(make: Callable[..., HostLocalStore], tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        make(DUAL).allocate("padded", "eth0")
    finally:
        os.umask(old)
    d = store_dir(tmp_path)
    assert (d / "10.88.0.2").read_bytes() == b"padded\r\neth0"
    assert (d / "fd00::2").read_bytes() == b"padded\r\neth0"
    assert (d / "last_reserved_ip.1").read_bytes() == b"fd00::2"
    assert (d / "lock").read_bytes() == b""
    assert stat.S_IMODE(tmp_path.stat().st_mode) != 0 and stat.S_IMODE(d.stat().st_mode) == 0o700
    for name in ("10.88.0.2", "fd00::2", "last_reserved_ip.0", "lock"):
        assert stat.S_IMODE((d / name).stat().st_mode) == 0o600, name
    assert not [p for p in d.iterdir() if p.name.startswith(TMP_PREFIX)]


def test_new_data_dir_is_0700_and_an_existing_store_keeps_its_mode(tmp_path: Path) -> None:
    data_dir = tmp_path / "new"
    HostLocalStore(load_host_local(netconf(data_dir), {})).allocate("a", "eth0")
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    (tmp_path / "old" / "net1").mkdir(parents=True)
    (tmp_path / "old" / "net1").chmod(0o755)
    HostLocalStore(load_host_local(netconf(tmp_path / "old"), {})).allocate("a", "eth0")
    assert stat.S_IMODE((tmp_path / "old" / "net1").stat().st_mode) == 0o755


def test_stale_temp_files_are_ignored_and_old_ones_swept(make: Callable[..., HostLocalStore], tmp_path: Path) -> None:
    store = make()
    store.allocate("x", "eth0")
    d = store_dir(tmp_path)
    fresh, old = d / f"{TMP_PREFIX}999.fresh", d / f"{TMP_PREFIX}999.old"
    fresh.write_bytes(b"a\r\neth0")
    old.write_bytes(b"a\r\neth0")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    assert store.find("a", "eth0") == []
    assert ips(store.allocate("a", "eth0")) == ["10.88.0.3/29"]
    assert fresh.exists() and not old.exists()


def test_a_failed_link_leaves_no_partial_state(
    make: Callable[..., HostLocalStore], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make(DUAL)
    real_link = os.link

    def failing_link(src: str, dst: str, **kw: Any) -> None:
        if ":" in dst:
            raise OSError(28, "No space left on device")
        real_link(src, dst, **kw)

    monkeypatch.setattr(os, "link", failing_link)
    with pytest.raises(CniError) as info:
        store.allocate("a", "eth0")
    assert info.value.code == IO_FAILURE and "No space left on device" in info.value.msg
    names = sorted(p.name for p in store_dir(tmp_path).iterdir())
    assert names == ["last_reserved_ip.0", "lock"]  # the v4 lease was rolled back, no temp left


def test_symlinked_store_dir_is_refused(make: Callable[..., HostLocalStore], tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    store_dir(tmp_path).symlink_to(elsewhere)
    with pytest.raises(CniError) as info:
        make().allocate("a", "eth0")
    assert info.value.code == IO_FAILURE and "symlink" in info.value.msg
    assert list(elsewhere.iterdir()) == []


def test_symlinked_lease_is_never_followed(make: Callable[..., HostLocalStore], tmp_path: Path) -> None:
    store = make()
    store.allocate("x", "eth0")
    victim = tmp_path / "victim"
    victim.write_bytes(b"a\r\neth0")
    (store_dir(tmp_path) / "10.88.0.3").symlink_to(victim)
    (store_dir(tmp_path) / "last_reserved_ip.0").unlink()
    (store_dir(tmp_path) / "last_reserved_ip.0").symlink_to(victim)
    assert ips(store.allocate("a", "eth0")) == ["10.88.0.4/29"]  # the link counts as taken
    store.release("a", "eth0")
    assert victim.read_bytes() == b"a\r\neth0"
    assert not (store_dir(tmp_path) / "last_reserved_ip.0").is_symlink()


def test_allocate_refuses_ids_that_could_forge_lease_content(make: Callable[..., HostLocalStore]) -> None:
    for cid, ifname in (("a\r\nb", "eth0"), ("a", "eth0\r\nx"), ("a", "")):
        with pytest.raises(CniError) as info:
            make().allocate(cid, ifname)
        assert info.value.code == INVALID_ENVIRONMENT


# -- concurrency ---------------------------------------------------------------


def _allocate_in_child(data_dir: str, cid: str, barrier: Any, out: Any) -> None:
    store = HostLocalStore(load_host_local(netconf(Path(data_dir), [[{"subnet": "10.90.0.0/24"}]]), {}))
    barrier.wait()
    out.put((cid, str(store.allocate(cid, "eth0")[0].address)))


def test_twenty_processes_get_twenty_distinct_addresses(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(20), ctx.Queue()
    procs = [ctx.Process(target=_allocate_in_child, args=(str(tmp_path), f"c{i}", barrier, out)) for i in range(20)]
    for proc in procs:
        proc.start()
    results = dict(out.get(timeout=30) for _ in procs)
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    assert len(set(results.values())) == 20
    assert sorted(results.values(), key=lambda s: ip_interface(s)) == [f"10.90.0.{i}/24" for i in range(2, 22)]
    for cid, address in results.items():
        assert (store_dir(tmp_path) / address.split("/")[0]).read_bytes() == f"{cid}\r\neth0".encode()


# -- the facade ----------------------------------------------------------------


def request(cid: str = "ctr1", ifname: str = "eth0", **args: str) -> CniRequest:
    return CniRequest(command="ADD", container_id=cid, netns="/proc/self/ns/net", ifname=ifname, args=args)


def test_facade_add_check_preview_del(tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(
        "# comment\n; another\nnameserver 10.0.0.53\nnameserver fd00::53\ndomain example.org\n"
        "search a.example b.example\noptions ndots:5 edns0\nsortlist 1.2.3.4\nnameserver\n"
    )
    conf = netconf(tmp_path, DUAL, resolvConf=str(resolv), routes=[{"dst": "0.0.0.0/0"}])
    assert is_host_local(conf) and not is_host_local({"ipam": {"type": "dhcp"}}) and not is_host_local({})
    preview = ipam_preview(conf, request())
    assert preview is not None and not store_dir(tmp_path).exists()
    added = ipam_add(conf, b"", request())
    assert added == preview
    assert ips(list(added.leases)) == ["10.88.0.2/29", "fd00::2/125"]
    assert [r.to_dict() for r in added.routes] == [{"dst": "0.0.0.0/0"}]
    assert added.dns == {
        "nameservers": ["10.0.0.53", "fd00::53"],
        "domain": "example.org",
        "search": ["a.example", "b.example"],
        "options": ["ndots:5", "edns0"],
    }
    assert ipam_check(conf, b"", request()) == added
    with pytest.raises(CniError) as info:
        ipam_check(conf, b"", request("other"))
    assert (info.value.code, info.value.msg) == (999, "host-local: Failed to find address added by container other")
    ipam_del(conf, b"", request(IP="not-an-ip"))  # a bad request must not block cleanup
    ipam_del(conf, b"", request())
    assert sorted(p.name for p in store_dir(tmp_path).iterdir()) == ["last_reserved_ip.0", "last_reserved_ip.1", "lock"]
    assert ipam_preview({"name": "n", "ipam": {"type": "dhcp"}}, request()) is None


def test_facade_missing_resolv_conf_allocates_nothing(tmp_path: Path) -> None:
    conf = netconf(tmp_path, resolvConf=str(tmp_path / "missing"))
    with pytest.raises(CniError) as info:
        ipam_add(conf, b"", request())
    assert info.value.code == IO_FAILURE and "ipam.resolvConf" in info.value.msg
    assert not store_dir(tmp_path).exists()


def test_parse_resolv_conf_empty() -> None:
    assert parse_resolv_conf("") == {}
    assert parse_resolv_conf("domain a\ndomain b\n") == {"domain": "b"}


@pytest.mark.parametrize(
    ("doc", "want"),
    [
        (
            {
                "cniVersion": "1.0.0",
                "ips": [{"address": "10.1.0.5/16", "gateway": "10.1.0.1", "interface": 0}, {"address": "fd00::5/64"}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1", "priority": 5}],
                "dns": {"nameservers": ["1.1.1.1"], "search": []},
            },
            (
                ["10.1.0.5/16", "fd00::5/64"],
                ["10.1.0.1", "None"],
                [{"dst": "0.0.0.0/0", "gw": "10.1.0.1", "priority": 5}],
            ),
        ),
        (
            {
                "cniVersion": "0.2.0",
                "ip4": {"ip": "10.1.0.5/16", "gateway": "10.1.0.1", "routes": [{"dst": "0.0.0.0/0"}]},
                "ip6": {"ip": "fd00::5/64", "routes": [{"dst": "::/0", "gw": "fd00::1"}]},
                "dns": {},
            },
            (
                ["10.1.0.5/16", "fd00::5/64"],
                ["10.1.0.1", "None"],
                [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "fd00::1"}],
            ),
        ),
        (
            {"cniVersion": "0.3.0", "ip": [{"version": "4", "address": "10.1.0.5/16"}]},
            (["10.1.0.5/16"], ["None"], []),
        ),
    ],
)
def test_delegated_results_of_every_version(doc: dict[str, Any], want: tuple[list[str], list[str], list[Any]]) -> None:
    result = result_from_document(doc, "static")
    assert isinstance(result, IpamResult)
    assert [str(lease.address) for lease in result.leases] == want[0]
    assert [str(lease.gateway) for lease in result.leases] == want[1]
    assert [lease.range_set_index for lease in result.leases] == list(range(len(want[0])))
    assert [route.to_dict() for route in result.routes] == want[2]


@pytest.mark.parametrize(
    "doc",
    [
        {"ips": [{"address": "10.1.0.5"}]},
        {"ips": ["10.1.0.5/16"]},
        {"ip4": {"ip": "x/16"}},
        {"routes": [{"gw": "1.1.1.1"}]},
    ],
)
def test_invalid_delegated_results(doc: dict[str, Any]) -> None:
    with pytest.raises(CniError) as info:
        result_from_document(doc, "static")
    assert info.value.code == DELEGATE_FAILED and info.value.msg == "static returned an invalid result"
