"""DEL: tear the attachment down (its veth, its netfilter rules), then release its addresses.

Succeeds when everything is already gone, and works whatever state the pod is
in: the host end goes by name, and CNI_IFNAME goes inside CNI_NETNS when that
namespace is there. An address is released only when no interface in the pod
still carries it.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from applier import locks
from applier.execute import Executor
from applier.ipam import Ipam, open_ipam
from applier.netns import Namespaces, open_netns_if_any, same_namespace
from compiler.model import POD_NS, Attachment
from compiler.plan import Plan
from intent.config import NetConf
from intent.env import CniRequest
from intent.errors import CniError
from intent.result import canonical_cidr, parse_prev_result
from loxi.engine.phases import phase
from loxi.engine.pipeline import Wanted, attachment_of, pipeline


def cmd_del(conf: NetConf, request: CniRequest) -> Plan:
    """Remove the pod's veth and release its addresses. Succeeds when everything is already gone.

    The host end goes by name (whatever state the pod is in), and CNI_IFNAME goes
    inside CNI_NETNS when that namespace is there, whatever happened to the host
    end (renamed, moved away, detached: the pod would stay attached). An address
    is released only when no interface in the pod still carries it."""
    ipam = open_ipam(conf.raw, conf.stdin, request)  # its config parsed and checked once, before any lock
    with attachment_locked(conf.name, request.container_id, request.ifname):
        return teardown(conf, request, ipam)


@contextmanager
def attachment_locked(network: str, container_id: str, ifname: str) -> Iterator[None]:
    """DEL's lock on the attachment: removed afterwards (the attachment is gone), and going on
    without it when it cannot be had at all (a DEL that cannot lock still cleans up)."""
    with locks.best_effort(), locks.exclusive(locks.attachment_lock_name(network, container_id, ifname), remove=True):
        yield


def execute_teardown(namespaces: Namespaces, conf: NetConf, attachment: Attachment) -> Plan:
    """The attachment's teardown plan, executed (rolled back as a whole if a step fails)."""
    plan = pipeline(namespaces, Wanted.removal(conf, attachment, pod=namespaces.has(POD_NS))).plan
    with phase("apply"):
        Executor(namespaces).apply(plan, conf.bridge)
    return plan


def teardown(conf: NetConf, request: CniRequest, ipam: Ipam | None = None) -> Plan:
    """DEL's work, for a caller that holds the attachment lock (DEL itself, and the
    agent's reconciler, which takes the lock without waiting and skips a busy attachment):
    the veth, the attachment's netfilter rules, then the addresses. `ipam` is the conf's
    when the caller opened it (DEL); without one it is opened here, after the kernel's part."""
    with Namespaces(request.netns, _pod_fd_for_del(request)) as namespaces:
        plan = execute_teardown(namespaces, conf, attachment_of(conf, request))
        if ipam is None:
            ipam = open_ipam(conf.raw, conf.stdin, request)
        carried = _still_carried(conf, ipam, namespaces)
    if carried:
        print(f"loxi-cni: DEL keeps the lease of {', '.join(carried)}: the pod still carries it", file=sys.stderr)
    elif ipam is not None:
        with phase("ipam"):
            ipam.delete()
    return plan


def _pod_fd_for_del(request: CniRequest) -> int | None:
    """DEL's pod namespace: open when it is there and is not the plugin's own, else None (empty,
    gone, not a namespace: DEL still removes the node side and succeeds). The plugin's own
    namespace is never taken for a pod's, so DEL never deletes the node's CNI_IFNAME."""
    if not request.netns or same_namespace(request.netns):
        return None
    return open_netns_if_any(request.netns)


def _still_carried(conf: NetConf, ipam: Ipam | None, namespaces: Namespaces) -> list[str]:
    """The attachment's addresses some interface in the pod still has after the teardown."""
    if ipam is None or not namespaces.has(POD_NS):
        return []
    # The pod's addresses first: usually none is left but loopback's, and the store need not be read.
    present = [msg for msg in namespaces.ipr(POD_NS).addr("dump", index=0, dump_filter={}) if msg.get("IFA_ADDRESS")]
    if not any(not ipaddress.ip_address(msg.get("IFA_ADDRESS")).is_loopback for msg in present):
        return []
    held = ipam.held()
    if held is not None:
        ips = {str(lease.ip) for lease in held}
    else:  # an IPAM that keeps its store to itself (a delegate): prevResult says what the pod was given
        try:
            ips = {str(ipaddress.ip_interface(canonical_cidr(ip.address)).ip) for ip in _prev_ips(conf)}
        except (CniError, ValueError, TypeError, AttributeError):
            ips = set()
    if not ips:
        return []
    found = []
    for msg in present:
        address = msg.get("IFA_ADDRESS")
        if str(ipaddress.ip_address(address)) in ips:
            found.append(f"{address} (link {msg.get('IFA_LABEL') or msg['index']})")
    return found


def _prev_ips(conf: NetConf) -> list[Any]:
    return list(parse_prev_result(conf.prev_result).ips) if conf.prev_result else []
