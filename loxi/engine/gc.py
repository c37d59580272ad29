"""GC (CNI 1.1): collect every attachment of this network that no listed attachment owns.

IPAM releases the leases first (host-local: every lease file no listed
attachment owns; a delegated plugin runs its own GC). Every attachment whose
lease went, and every loxi port on the bridge that names this network in its
alias and is not listed, is then torn down the way DEL tears one down: its
teardown plan (veth, masquerade and spoof-check rules), executed by the
applier under DEL's locks and undone as a whole if a step fails. A pod that
vanished without a DEL (no netns, no veth) so loses its netfilter rules too.
GC goes on past a failure and reports them all together.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from applier.execute import Executor
from applier.ipam import GcOutcome, open_ipam
from applier.netlink.dumps import ports_of
from applier.netns import Namespaces
from compiler.graph import HOST_VETH_PREFIX, alias_names_network, host_veth_name, parse_owner_alias
from compiler.model import NODE_NS, Attachment
from intent.config import NetConf
from intent.env import CniRequest
from intent.errors import INVALID_NETWORK_CONFIG, KERNEL_ERROR, CniError
from loxi.engine.delete import attachment_locked
from loxi.engine.phases import phase
from loxi.engine.pipeline import Wanted, pipeline

Owner = tuple[str, str]  # (container id, ifname)


def valid_attachments(conf: NetConf) -> set[Owner]:
    """GC's keep-list; libcni sends both spellings (cni#1101)."""
    listed = conf.raw.get("cni.dev/valid-attachments")
    if listed is None:
        listed = conf.raw.get("cni.dev/attachments")
    if not isinstance(listed, list):
        raise CniError(INVALID_NETWORK_CONFIG, "GC: cni.dev/valid-attachments must be a list")
    keep = set()
    for entry in listed:
        if not isinstance(entry, dict) or not isinstance(entry.get("containerID"), str):
            raise CniError(INVALID_NETWORK_CONFIG, f"GC: invalid attachment {entry!r}")
        keep.add((entry["containerID"], str(entry.get("ifname", ""))))
    return keep


def release_addresses(conf: NetConf, request: CniRequest, keep: set[Owner]) -> GcOutcome:
    """IPAM's part: host-local releases each lease no listed attachment owns and says whose it
    was; a delegate runs its own GC."""
    ipam = open_ipam(conf.raw, conf.stdin, request)
    return ipam.gc(keep) if ipam is not None else GcOutcome()


@dataclass(frozen=True)
class Stale:
    """One attachment to tear down: known whole (from its lease, or a port alias that names it
    whole), or only as a port whose alias had to cut the container id (then just the port goes)."""

    port: str
    attachment: Attachment
    whole: bool

    def locked(self) -> AbstractContextManager[object]:
        """DEL's attachment lock; a port known only in part has no lock to take (the bridge lock is the executor's)."""
        if not self.whole:
            return nullcontext()
        return attachment_locked(self.attachment.network, self.attachment.container_id, self.attachment.ifname)


def stale_attachments(
    conf: NetConf, namespaces: Namespaces, keep: set[Owner], released: tuple[Owner, ...]
) -> list[Stale]:
    """The attachments whose leases IPAM released, then the unlisted loxi ports of this network."""
    keep_names = {host_veth_name(Attachment(conf.name, cid, ifname, "")) for cid, ifname in keep}
    found: dict[str, Stale] = {}
    for cid, ifname in released:
        attachment = Attachment(conf.name, cid, ifname, "")
        name = host_veth_name(attachment)
        if ifname and name not in keep_names:  # a legacy lease names no ifname: no attachment to find
            found.setdefault(name, Stale(name, attachment, True))
    ipr = namespaces.ipr(NODE_NS)
    bridge = ipr.link_lookup(ifname=conf.bridge)
    for port in ports_of(ipr, bridge[0]) if bridge else ():
        name = port.get("IFLA_IFNAME", "")
        owner = parse_owner_alias(port.get("IFLA_IFALIAS"))
        mine = owner is not None and alias_names_network(owner[0], conf.name)
        if not name.startswith(HOST_VETH_PREFIX) or not mine or name in keep_names or name in found:
            continue
        attachment = Attachment(conf.name, owner[1], owner[2], "")  # type: ignore[index]
        found[name] = Stale(name, attachment, host_veth_name(attachment) == name)
    return list(found.values())


def cmd_gc(conf: NetConf, request: CniRequest) -> list[str]:
    """Release every allocation and remove every loxi attachment of this network that no
    listed attachment owns. Continues past errors and reports them together.
    Returns what it removed (for logs and tests)."""
    keep = valid_attachments(conf)
    with phase("ipam"):
        released = release_addresses(conf, request, keep)
    removed, errors = list(released.removed), list(released.errors)
    with Namespaces() as namespaces:
        for stale in stale_attachments(conf, namespaces, keep, released.released):
            try:
                with stale.locked():
                    wanted = Wanted.removal(conf, stale.attachment, port="" if stale.whole else stale.port)
                    plan = pipeline(namespaces, wanted).plan
                    with phase("apply"):
                        Executor(namespaces).apply(plan, conf.bridge)
            except CniError as exc:
                errors.append(f"tear down {stale.port}: {exc}")
                continue
            removed += [f"{step.obj.kind} {step.obj.name}" for step in plan.steps]
    if errors:
        raise CniError(KERNEL_ERROR, "GC finished with errors", "; ".join(errors))
    return removed
