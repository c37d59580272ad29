"""An ADD for an attachment that already runs must bring the conf it runs with.

The runtime's contract is DEL before an ADD with a new conf. An ADD that finds
the attachment (container id, ifname) running on another bridge, or holding
addresses that are not the conf's (another subnet, range sets added or taken
away, another prefix) would otherwise move the pod's port, hand it a second
address, or fail half-way and take the running pod's lease with it. It is
refused before IPAM runs, so it changes nothing. A retry with the same conf
finds nothing here and stays idempotent.

Costs nothing on a fresh ADD: the host veth is looked up by name (the observer
caches it for the plan that follows) and only when it exists is the store read.
"""

from __future__ import annotations

from applier.ipam import Ipam
from applier.observer import Observer
from compiler.graph import host_veth_name
from compiler.model import NODE_NS, POD_NS, Attachment
from intent.config import NetConf
from intent.env import CniRequest
from intent.errors import CONFLICT, CniError


def conf_mismatches(
    conf: NetConf, request: CniRequest, attachment: Attachment, observer: Observer, ipam: Ipam | None
) -> list[str]:
    """How the running attachment differs from `conf`; empty when it does not run or is the same."""
    veth = observer.link(NODE_NS, host_veth_name(attachment))
    if veth is None:
        return []
    found: list[str] = []
    master = veth.get("IFLA_MASTER")
    bridge = observer.link_name(NODE_NS, master) if master else None
    if bridge is not None and bridge != conf.bridge:
        found.append(f"its port is on bridge {bridge}, the conf names bridge {conf.bridge}")
    held = ipam.held() if ipam is not None else None
    if ipam is not None and held is not None:  # an IPAM whose store says what the attachment holds
        pod_prefixes = _pod_prefixes(observer, request.ifname)
        for lease in held:
            if lease.range_set_index < 0:
                found.append(f"it holds {lease.ip}, which is in none of the conf's ranges")
                continue
            want = lease.address.network.prefixlen  # the prefix of its range's subnet
            have = pod_prefixes.get(str(lease.ip))
            if have is not None and have != want:
                found.append(f"it has {lease.ip}/{have}, the conf's subnet makes it {lease.ip}/{want}")
        covered = {lease.range_set_index for lease in held}
        for index, range_set in enumerate(ipam.range_sets):
            if held and index not in covered:
                found.append(f"it holds no address in range set {index} ({range_set.text})")
    return found


def _pod_prefixes(observer: Observer, ifname: str) -> dict[str, int]:
    link = observer.link(POD_NS, ifname)
    if link is None:
        return {}
    return {str(msg.get("IFA_ADDRESS")): msg["prefixlen"] for msg in observer.addresses(POD_NS, link["index"])}


def refuse_another_conf(
    conf: NetConf, request: CniRequest, attachment: Attachment, observer: Observer, ipam: Ipam | None
) -> None:
    found = conf_mismatches(conf, request, attachment, observer, ipam)
    if found:
        raise CniError(
            CONFLICT,
            f"attachment ({request.container_id}, {request.ifname}) of network {conf.name} already runs with "
            f"another conf: {'; '.join(found)}; DEL it before an ADD with a new conf",
        )
