"""The host-local allocator: which address of the conf's range sets an attachment gets.

Range iteration in the reference's round-robin order, the requested addresses
(CNI_ARGS IP, args.cni.ips, runtimeConfig.ips) handed to their sets, the
lookups that map a held file back to its range set, and the free counts STATUS
and the agent's metrics read. The files themselves, their lock and their
reservation are `applier.ipam.store`'s. Where we differ from the reference it is
on purpose: a retried ADD for an attachment that already holds an address gets
that address back instead of "duplicate allocation is not allowed".
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import ip_address, ip_interface

from applier.ipam.result import Lease
from applier.ipam.store import (
    LAST_RESERVED_PREFIX,
    LINE_BREAK,
    LeaseStore,
    _Dir,
    _flock,
    _ip_key,
    _key_ip,
    _owner_text,
    _Reserver,
    _Snapshot,
)
from intent.env import validate_container_id, validate_ifname
from intent.errors import GENERIC_GO_ERROR, CniError
from intent.ipam_config import HostLocalConfig, RangeSet
from intent.iptypes import IPAddress


@dataclass(frozen=True)
class Allocation:
    """One lease file as found on disk, for GC and inventory."""

    ip: IPAddress
    container_id: str
    ifname: str  # "" for a legacy file that holds only the container id
    range_set_index: int  # -1 when no configured range set holds the address any more


def _int_or_none(ip: IPAddress | None) -> int | None:
    return None if ip is None else int(ip)


def _round_robin(rset: RangeSet, last: IPAddress | None) -> Iterator[tuple[int, int]]:
    """(range index, address as int) in the reference's order.

    Start after `last` when the set still holds it, else at the first rangeStart;
    wrap from a range's end to the next range's start; skip each range's gateway;
    stop on coming back to the first candidate, so `last` itself is tried last.
    """
    bounds = [(int(r.range_start), int(r.range_end), _int_or_none(r.gateway)) for r in rset.ranges]
    index, cur, first = 0, None, None
    if last is not None:
        for i, rng in enumerate(rset.ranges):
            if rng.contains(last):
                index, cur = i, int(last)
                break
    if cur is None:
        cur = first = bounds[0][0]
        if cur != bounds[0][2]:
            yield 0, cur
    while True:
        start, end, gateway = bounds[index]
        if cur == end:
            index = (index + 1) % len(bounds)
            start, end, gateway = bounds[index]
            cur = start
        else:
            cur += 1
        if first is None:
            first = cur
        elif cur == first:
            return
        if cur != gateway:
            yield index, cur


class HostLocalStore(LeaseStore):
    """Leases of one network in `<dataDir>/<name>/`, handed out from the conf's range sets."""

    def __init__(self, config: HostLocalConfig) -> None:
        super().__init__(config)
        self.reused = False  # set by allocate()
        self.reserved: list[Lease] = []  # set by allocate(): the leases it took now, not found held

    def allocate(self, container_id: str, ifname: str) -> list[Lease]:
        """One lease per range set; everything newly taken is given back if any set fails."""
        # The id and ifname end up inside lease files; a stray CR/LF would forge another owner.
        validate_container_id(container_id)
        validate_ifname(ifname)
        requested = self._assign_requests()
        owner = _owner_text(container_id, ifname)
        leases: list[Lease] = []
        taken_now: list[str] = []
        with self._open(create=True) as directory, self._lock_file(directory, create=True) as lock_fd:
            try:
                for index, rset in enumerate(self.config.range_sets):
                    with _flock(lock_fd, fcntl.LOCK_EX):
                        lease, new_name = self._allocate_set(directory, index, rset, owner, requested[index], True)
                    leases.append(lease)
                    if new_name:
                        taken_now.append(new_name)
            except BaseException:
                with _flock(lock_fd, fcntl.LOCK_EX):
                    for name in taken_now:
                        if (directory.read(name) or "").strip() == owner:
                            directory.unlink(name)
                raise
        # A retried ADD gets back what it already held; the engine must then not
        # release those addresses if the retry fails, as a working pod uses them:
        # a rollback gives back `reserved` only (release_ips), never what was found.
        self.reused = not taken_now
        self.reserved = [lease for lease in leases if str(lease.ip) in taken_now]
        return leases

    def preview(self, container_id: str, ifname: str) -> list[Lease]:
        """What `allocate` would return right now; creates, writes and locks nothing new."""
        requested = self._assign_requests()
        owner = _owner_text(container_id, ifname)
        with self._open(create=False) as directory, self._lock_file(directory, create=False) as lock_fd:
            leases = []
            for index, rset in enumerate(self.config.range_sets):
                with _flock(lock_fd, fcntl.LOCK_SH):
                    lease, _ = self._allocate_set(directory, index, rset, owner, requested[index], write=False)
                leases.append(lease)
            return leases

    def held_leases(self, container_id: str, ifname: str) -> list[Lease]:
        """Every address this attachment holds, as a lease; one in none of the conf's sets has range set -1,
        a full-length prefix and no gateway."""
        leases = []
        for ip in self._read_snapshot().of_attachment(container_id, ifname):
            index = self._set_index(ip)
            if index >= 0:
                leases.append(self._make_lease(ip, index, self.config.range_sets[index]))
            else:
                leases.append(Lease(ip_interface(f"{ip}/{ip.max_prefixlen}"), None, -1))
        return leases

    def find(self, container_id: str, ifname: str) -> list[Lease]:
        """The configured-set leases this attachment holds (legacy `cid`-only files if it has no others)."""
        return self._find(self._read_snapshot(), container_id, ifname)

    def holds(self, container_id: str, ifname: str) -> bool:
        """Reference CHECK: any file in the store naming this attachment, in either form, even outside the sets."""
        return self._holds(self._read_snapshot(), container_id, ifname)

    def check(self, container_id: str, ifname: str) -> list[Lease] | None:
        """`holds` and then `find`, on one read of the store (each reads every lease file): None if not held."""
        snap = self._read_snapshot()
        return self._find(snap, container_id, ifname) if self._holds(snap, container_id, ifname) else None

    def _find(self, snap: _Snapshot, container_id: str, ifname: str) -> list[Lease]:
        leases = []
        for ip in snap.of_attachment(container_id, ifname):
            lease = self._lease_for(ip)
            if lease is not None:
                leases.append(lease)
        return sorted(leases, key=lambda lease: (lease.range_set_index, _ip_key(lease.ip)))

    @staticmethod
    def _holds(snap: _Snapshot, container_id: str, ifname: str) -> bool:
        return bool(snap.held(_owner_text(container_id, ifname)) or snap.held(container_id.strip()))

    def allocations(self) -> list[Allocation]:
        snap = self._read_snapshot()
        out = []
        for key in sorted(snap.leases):
            text = snap.owner(key)
            if text is None:
                continue
            cid, _, ifname = text.partition(LINE_BREAK)
            ip = _key_ip(key)
            out.append(Allocation(ip, cid.strip(), ifname, self._set_index(ip)))
        return out

    def has_free(self, range_set_index: int) -> bool:
        """Cheap STATUS probe: stops at the first free address, reads no file content."""
        rset = self.config.range_sets[range_set_index]
        taken = self._read_snapshot(contents=False).taken(rset.family)
        for rng in rset.ranges:
            gateway = _int_or_none(rng.gateway)
            cur, end = int(rng.range_start), int(rng.range_end)
            # Every step either hits a taken address or the gateway, so this ends after len(taken)+2 steps.
            while cur <= end:
                if cur not in taken and cur != gateway:
                    return True
                cur += 1
        return False

    def free_count(self, range_set_index: int) -> int:
        rset = self.config.range_sets[range_set_index]
        taken = self._read_snapshot(contents=False).taken(rset.family)
        free = 0
        for rng in rset.ranges:
            start, end = int(rng.range_start), int(rng.range_end)
            used = {ip for ip in taken if start <= ip <= end}
            if rng.gateway is not None and start <= int(rng.gateway) <= end:
                used.add(int(rng.gateway))
            free += end - start + 1 - len(used)
        return free

    # -- allocation -------------------------------------------------------

    def _assign_requests(self) -> list[IPAddress | None]:
        """Give each set the first requested IP it contains; leftovers fail before anything is written.

        The reference checks leftovers only after allocating (and then releases);
        the outcome and message are the same, without the wasted writes.
        """
        remaining = list(self.config.requested_ips)
        assigned: list[IPAddress | None] = []
        for rset in self.config.range_sets:
            pick = next((ip for ip in remaining if rset.contains(ip)), None)
            if pick is not None:
                remaining.remove(pick)
            assigned.append(pick)
        if remaining:
            text = " ".join(str(ip) for ip in remaining)
            raise CniError(GENERIC_GO_ERROR, f"failed to allocate all requested IPs: {text}")
        return assigned

    def _allocate_set(
        self,
        directory: _Dir | None,
        index: int,
        rset: RangeSet,
        owner: str,
        requested: IPAddress | None,
        write: bool,
    ) -> tuple[Lease, str | None]:
        """Pick (and, if `write`, reserve) one address of a set; must run under the lock.

        Returns the lease and the file name created, None when the attachment
        already held it (or nothing was written).
        """

        def fail(msg: str) -> CniError:
            return CniError(GENERIC_GO_ERROR, f"failed to allocate for range {index}: {msg}")

        snap = _Snapshot.of(directory)
        cid = owner.partition(LINE_BREAK)[0]
        held = snap.held(owner, rset)
        if held and (requested is None or requested in held):
            return self._make_lease(held[0] if requested is None else requested, index, rset), None
        if held:
            raise fail(f"{held[0]} has been allocated to {cid}, duplicate allocation is not allowed")

        reserver = _Reserver(directory, snap, owner, index) if write else None
        try:
            if requested is not None:
                rng = rset.range_for(requested)
                if rng is None:  # _assign_requests only hands a set addresses it contains
                    raise fail(f"{requested} not in range set {rset.text}")
                if requested == rng.gateway:
                    raise fail(f"requested ip {requested} is subnet's gateway")
                free = not snap.is_taken(_ip_key(requested)) and (reserver is None or reserver.take(requested))
                if not free:
                    raise fail(f"requested IP address {requested} is not available in range set {rset.text}")
                return self._make_lease(requested, index, rset), str(requested) if write else None

            family = type(rset.ranges[0].range_start)
            for _, value in _round_robin(rset, self._last_reserved(directory, index)):
                if snap.is_taken((rset.family, value)):
                    continue
                ip = family(value)
                if reserver is None or reserver.take(ip):
                    return self._make_lease(ip, index, rset), str(ip) if write else None
            raise fail(f"no IP addresses available in range set: {rset.text}")
        finally:
            if reserver is not None:
                reserver.close()

    def _last_reserved(self, directory: _Dir | None, index: int) -> IPAddress | None:
        text = directory.read(f"{LAST_RESERVED_PREFIX}{index}", 64) if directory else None
        try:
            return ip_address(text.strip()) if text else None
        except ValueError:
            return None  # like the reference: lose round robin once, never fail on it

    def _make_lease(self, ip: IPAddress, index: int, rset: RangeSet) -> Lease:
        rng = rset.range_for(ip)
        assert rng is not None
        return Lease(ip_interface(f"{ip}/{rng.subnet.prefixlen}"), rng.gateway, index)

    def _lease_for(self, ip: IPAddress) -> Lease | None:
        index = self._set_index(ip)
        return None if index < 0 else self._make_lease(ip, index, self.config.range_sets[index])

    def _set_index(self, ip: IPAddress) -> int:
        return next((i for i, rset in enumerate(self.config.range_sets) if rset.contains(ip)), -1)
