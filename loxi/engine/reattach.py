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

from applier.ipam import HostLocalStore, is_host_local
from applier.observe import Observer
from compiler.graph import host_veth_name
from compiler.model import NODE_NS, POD_NS, Attachment
from intent.config import NetConf
from intent.env import CniRequest
from intent.errors import CONFLICT, CniError
from intent.ipam_config import load_host_local


def conf_mismatches(conf: NetConf, request: CniRequest, attachment: Attachment, observer: Observer) -> list[str]:
    """How the running attachment differs from `conf`; empty when it does not run or is the same."""
    veth = observer.link(NODE_NS, host_veth_name(attachment))
    if veth is None:
        return []
    found: list[str] = []
    master = veth.get("IFLA_MASTER")
    bridge = observer.link_name(NODE_NS, master) if master else None
    if bridge is not None and bridge != conf.bridge:
        found.append(f"its port is on bridge {bridge}, the conf names bridge {conf.bridge}")
    if conf.has_ipam and is_host_local(conf.raw):
        config = load_host_local(conf.raw, request.args)
        held = HostLocalStore(config).held_anywhere(request.container_id, request.ifname)
        pod_prefixes = _pod_prefixes(observer, request.ifname)
        for ip, index in held:
            if index < 0:
                found.append(f"it holds {ip}, which is in none of the conf's ranges")
                continue
            want = config.range_sets[index].range_for(ip).subnet.prefixlen  # type: ignore[union-attr]
            have = pod_prefixes.get(str(ip))
            if have is not None and have != want:
                found.append(f"it has {ip}/{have}, the conf's subnet makes it {ip}/{want}")
        covered = {index for _, index in held}
        for index, range_set in enumerate(config.range_sets):
            if held and index not in covered:
                found.append(f"it holds no address in range set {index} ({range_set.text})")
    return found


def _pod_prefixes(observer: Observer, ifname: str) -> dict[str, int]:
    link = observer.link(POD_NS, ifname)
    if link is None:
        return {}
    return {str(msg.get("IFA_ADDRESS")): msg["prefixlen"] for msg in observer.addresses(POD_NS, link["index"])}


def refuse_another_conf(conf: NetConf, request: CniRequest, attachment: Attachment, observer: Observer) -> None:
    found = conf_mismatches(conf, request, attachment, observer)
    if found:
        raise CniError(
            CONFLICT,
            f"attachment ({request.container_id}, {request.ifname}) of network {conf.name} already runs with "
            f"another conf: {'; '.join(found)}; DEL it before an ADD with a new conf",
        )
