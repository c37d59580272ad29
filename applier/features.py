"""Which kernel features a conf needs that this node's kernel lacks, asked the only reliable way.

Reading a bridge's vlan_filtering attribute proves nothing (kernels without the
feature report 0 too), so the kernel is asked by making a short-lived bridge of
our own (and a VLAN device on it when the conf puts one on the uplink) over
netlink (pyroute2), and deleting it again. STATUS asks in the node's namespace;
loxi-agent asks once at start, in a throw-away namespace of its own.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from applier.drivers.base import FEATURE_8021Q, FEATURE_VLAN_FILTERING
from applier.netlink import NetlinkError
from intent.config import NetConf

PROBE_PREFIX = "lxprb"


def probe_bridge_name() -> str:
    """`lxprb` + 8 random hex digits: unique per call, not per process, because
    one loxi-agent process serves concurrent STATUS calls (a pid-derived name
    made them collide with EEXIST). 13 characters, so `<probe>.1` fits IFNAMSIZ;
    not `loxi…`, so nothing mistakes it for a pod's host veth."""
    return PROBE_PREFIX + os.urandom(4).hex()


def missing_kernel_features(ipr: Any, conf: NetConf) -> list[str]:
    """The features a VLAN conf (`vlan`/`vlan_trunk`, an uplink in `vlan` mode) needs that the kernel
    refuses (EOPNOTSUPP), probed through `ipr`, a netlink socket of the namespace to ask in."""
    if not (conf.vlan or conf.vlan_trunk):
        return []
    probe = probe_bridge_name()
    missing = []
    try:
        ipr.link("add", ifname=probe, kind="bridge", br_vlan_filtering=1)
    except NetlinkError as exc:
        if exc.code != errno.EOPNOTSUPP:
            raise
        missing.append(FEATURE_VLAN_FILTERING)
        ipr.link("add", ifname=probe, kind="bridge")
    try:
        if conf.uplink and conf.uplink_mode == "vlan":
            try:
                ipr.link("add", ifname=f"{probe}.1", kind="vlan", link=ipr.link_lookup(ifname=probe)[0], vlan_id=1)
            except NetlinkError as exc:
                if exc.code != errno.EOPNOTSUPP:
                    raise
                missing.append(FEATURE_8021Q)
    finally:
        ipr.link("del", index=ipr.link_lookup(ifname=probe)[0])
    return missing
