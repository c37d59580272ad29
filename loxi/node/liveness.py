"""Which of loxi-cni's traces on a node are live, which are provably dead, and which nobody can account for.

loxi-cni leaves two traces of an attachment (network, container id, ifname):
its allocations in a host-local store, and its host veth, named after the
attachment and labelled with it (the link's alias, `compiler.graph.owner_alias`).
A report that calls a running pod's veth "leaked" invites an operator, or a
reconciler, to cut a working pod off the network. So "leaked" is kept for what
is provably dead, and what is merely unexplained is "unaccounted", saying where
it was looked for:

- a host veth whose peer is gone (no peer, or its namespace is dying) is
  leaked: nothing can reach the pod through it;
- a host veth whose peer exists is a live attachment: attached when an
  allocation names it (or its network's IPAM is not host-local, so there is
  no store to look in), unaccounted when none does (its conf, and the
  `ipam.dataDir` in it, may be somewhere this report did not read);
- an allocation whose attachment has no host veth is leaked only when no ADD
  or DEL of that attachment is in flight (its lock is free) and no network
  namespace on the node holds its address. loxi-cni records an attachment's
  namespace nowhere but in the veth pair, and a pair goes with its pod's
  namespace; so an address that no namespace carries any more is the proof
  that the pod's namespace is gone, or at least that nothing uses the address.
  An ADD in flight holds the allocation before its veth exists: busy, not
  leaked. An address still on some interface: unaccounted.

Pure: the facts are read elsewhere (`loxi.node.facts`) and passed in, so the
rules are tested on plain data, and `loxi-plan show` and the agent's
reconciler cannot disagree about them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from compiler.graph import host_veth_name
from compiler.model import Attachment
from intent.iptypes import IPAddress

Owner = tuple[str, str, str]  # (network, container id, ifname); ifname "" for a legacy lease file

ATTACHED = "attached"
UNACCOUNTED = "unaccounted"
LEAKED = "leaked"
BUSY = "busy"

# Why a verdict was reached (the `kind` of a verdict).
LIVE = "live"  # a veth with a live peer and an allocation naming it
DELEGATED_IPAM = "delegated-ipam"  # a veth with a live peer on a network whose IPAM keeps no store here
VETH_WITHOUT_PEER = "veth-without-peer"
VETH_WITHOUT_ALLOCATION = "veth-without-allocation"
VETH_WITHOUT_OWNER = "veth-without-owner"
ALLOCATION_WITHOUT_VETH = "allocation-without-veth"
ADDRESS_IN_USE = "address-in-use"
IN_FLIGHT = "in-flight"

CONF_HINT = "its conf (or the ipam.dataDir in it) may be elsewhere: try --conf or --data-dir"


@dataclass(frozen=True)
class VethTrace:
    """A loxi host veth as the node's kernel shows it."""

    name: str
    owner: Owner | None  # from its alias; None when it carries none
    peer_alive: bool
    peer_index: int | None = None
    peer_nsid: int | None = None  # None: the peer is in the node's namespace
    peer_netns: str | None = None  # a path to the peer's namespace, when one was found
    bridge: str | None = None
    up: bool = True


@dataclass(frozen=True)
class AllocationTrace:
    """One lease file of a host-local store."""

    network: str
    store_dir: str
    ip: IPAddress
    container_id: str
    ifname: str  # "" for a legacy file that names only the container

    @property
    def owner(self) -> Owner:
        return (self.network, self.container_id, self.ifname)


@dataclass(frozen=True)
class Evidence:
    """What else was established about the node, for the verdicts that need it."""

    stores_read: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # network → store dirs looked in
    delegated: Mapping[str, str] = field(default_factory=dict)  # network → its IPAM type, not host-local
    busy: frozenset[Owner] = frozenset()  # attachments whose lock an ADD or DEL holds now
    addresses_in_use: Mapping[IPAddress, str] = field(default_factory=dict)  # address → where it is
    defined: frozenset[str] = frozenset()  # the networks the confs read define
    conf_source: str = ""  # where the confs were read ("/etc/cni/net.d", "--conf"), for the hints


@dataclass(frozen=True)
class Verdict:
    state: str  # ATTACHED, UNACCOUNTED, LEAKED or BUSY
    kind: str
    owner: Owner | None
    veth: VethTrace | None
    allocations: tuple[AllocationTrace, ...]
    detail: str

    @property
    def expected_veth(self) -> str | None:
        """The host veth's name: the one found, else the one the attachment's name hashes to."""
        if self.veth is not None:
            return self.veth.name
        if self.owner is not None and self.owner[2]:
            return expected_veth(self.owner)
        return None


def expected_veth(owner: Owner) -> str:
    network, container_id, ifname = owner
    return host_veth_name(Attachment(network, container_id, ifname, ""))


def _owner_text(owner: Owner) -> str:
    network, container_id, ifname = owner
    return f"{network} {container_id}/{ifname or '(no ifname)'}"


def _ips(allocations: Iterable[AllocationTrace]) -> str:
    return ", ".join(str(a.ip) for a in allocations)


def _stores(allocations: Sequence[AllocationTrace]) -> str:
    return ", ".join(dict.fromkeys(a.store_dir for a in allocations))


def _veth_text(veth: VethTrace) -> str:
    where = f" on {veth.bridge}" if veth.bridge else ""
    return f"veth {veth.name}{where}"


def _peer_text(veth: VethTrace) -> str:
    if veth.peer_netns:
        return f"its peer is in {veth.peer_netns}"
    if veth.peer_nsid is None:
        return "its peer is in the node's own namespace"
    return f"its peer is in namespace nsid {veth.peer_nsid} (no path to it found)"


def _match(
    veths: Sequence[VethTrace], allocations: Sequence[AllocationTrace]
) -> tuple[list[tuple[VethTrace, Owner | None, tuple[AllocationTrace, ...]]], list[AllocationTrace]]:
    """Each veth with its owner (the allocation its name hashes from, else its alias) and its allocations; and the
    allocations no veth claims."""
    by_owner: dict[Owner, list[AllocationTrace]] = {}
    for allocation in allocations:
        by_owner.setdefault(allocation.owner, []).append(allocation)
    by_name = {expected_veth(owner): owner for owner in by_owner if owner[2]}
    claimed: set[int] = set()
    matched = []
    for veth in veths:
        # The name hashes the whole attachment; an alias may carry a long container id cut short.
        owner = by_name.get(veth.name) or veth.owner
        mine: list[AllocationTrace] = []
        if owner is not None:
            mine = list(by_owner.get(owner, ()))
            # A legacy lease file names only the container: it belongs to that container's veth.
            mine += by_owner.get((owner[0], owner[1], ""), ())
        claimed.update(id(a) for a in mine)
        matched.append((veth, owner, tuple(mine)))
    matched.sort(key=lambda m: (m[1] is None, m[1] or ("", "", ""), m[0].name))  # by attachment, ownerless last
    return matched, [a for a in allocations if id(a) not in claimed]


def unclaimed(veths: Sequence[VethTrace], allocations: Sequence[AllocationTrace]) -> list[AllocationTrace]:
    """The allocations whose attachment has no host veth: the ones `classify` needs more evidence for."""
    return _match(veths, allocations)[1]


def _veth_verdict(
    veth: VethTrace, owner: Owner | None, mine: tuple[AllocationTrace, ...], evidence: Evidence
) -> Verdict:
    if not veth.peer_alive:
        held = f"; {_owner_text(owner)} holds {_ips(mine)} in {_stores(mine)}" if owner and mine else ""
        of = f" of {_owner_text(owner)}" if owner else ""
        return Verdict(LEAKED, VETH_WITHOUT_PEER, owner, veth, mine, f"{_veth_text(veth)}{of}: its peer is gone{held}")
    if owner is not None and mine:
        return Verdict(ATTACHED, LIVE, owner, veth, mine, f"{_veth_text(veth)}: {_owner_text(owner)}")
    if owner is not None and owner[0] in evidence.delegated:
        detail = f"{_veth_text(veth)}: {_owner_text(owner)}, addresses from the {evidence.delegated[owner[0]]!r} IPAM"
        return Verdict(ATTACHED, DELEGATED_IPAM, owner, veth, mine, detail)
    if owner is not None:
        network = owner[0]
        stores = evidence.stores_read.get(network, ())
        where = f"no allocation in {', '.join(stores)} names it" if stores else "no store of it was looked in"
        if network not in evidence.defined:
            confs = f"in {evidence.conf_source} " if evidence.conf_source else ""
            where = f"no conf {confs}defines network {network}, and {where}"
        detail = f"{_veth_text(veth)} of {_owner_text(owner)} ({_peer_text(veth)}): {where}; {CONF_HINT}"
        return Verdict(UNACCOUNTED, VETH_WITHOUT_ALLOCATION, owner, veth, mine, detail)
    detail = (
        f"{_veth_text(veth)} ({_peer_text(veth)}): it carries no loxi-cni owner alias and no allocation "
        f"in the stores read matches its name; {CONF_HINT}"
    )
    return Verdict(UNACCOUNTED, VETH_WITHOUT_OWNER, None, veth, mine, detail)


def _allocation_verdict(owner: Owner, mine: tuple[AllocationTrace, ...], evidence: Evidence) -> Verdict:
    veth = expected_veth(owner) if owner[2] else None
    head = f"{owner[0]}: {owner[1]}/{owner[2] or '(no ifname)'} holds {_ips(mine)} in {_stores(mine)}"
    missing = f"its host veth {veth} does not exist" if veth else "no veth of the container exists (legacy lease)"
    if owner in evidence.busy:
        detail = f"{head}; {missing}, but an ADD or DEL of it is in progress (its lock is held)"
        return Verdict(BUSY, IN_FLIGHT, owner, None, mine, detail)
    in_use = [(a.ip, evidence.addresses_in_use[a.ip]) for a in mine if a.ip in evidence.addresses_in_use]
    if in_use:
        where = "; ".join(f"{ip} is on {place}" for ip, place in in_use)
        return Verdict(UNACCOUNTED, ADDRESS_IN_USE, owner, None, mine, f"{head}; {missing}, but {where}")
    detail = f"{head}, but {missing} and no network namespace on the node holds the address"
    return Verdict(LEAKED, ALLOCATION_WITHOUT_VETH, owner, None, mine, detail)


def classify(
    veths: Sequence[VethTrace], allocations: Sequence[AllocationTrace], evidence: Evidence | None = None
) -> list[Verdict]:
    """One verdict per loxi host veth (by attachment, ownerless last), then one per attachment that has allocations
    and no veth (in the order of `allocations`)."""
    evidence = evidence or Evidence()
    matched, rest = _match(veths, allocations)
    verdicts = [_veth_verdict(veth, owner, mine, evidence) for veth, owner, mine in matched]
    orphans: dict[Owner, list[AllocationTrace]] = {}
    for allocation in rest:
        orphans.setdefault(allocation.owner, []).append(allocation)
    verdicts += [_allocation_verdict(owner, tuple(mine), evidence) for owner, mine in orphans.items()]
    return verdicts
