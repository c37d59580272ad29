"""STATUS (CNI 1.1): could an ADD succeed now, and are the pods already attached still connected?

Exit 0 when an ADD could succeed; code 50 when it could not (a kernel feature
the conf needs, the uplink, a name taken by something that is no bridge, a
pool without a free address); 51 when attached pods may have lost connectivity
(their bridge is down). It reads and probes; it changes nothing that stays.
"""

from __future__ import annotations

from applier.features import missing_kernel_features
from applier.ipam import open_ipam
from applier.netlink.dumps import ports_of
from applier.netns import Namespaces
from compiler.model import NODE_NS
from intent.config import NetConf
from intent.env import CniRequest
from intent.errors import NOT_AVAILABLE, NOT_AVAILABLE_LIMITED, CniError


def cmd_status(conf: NetConf, request: CniRequest) -> None:
    """Exit 0 when an ADD could succeed now; 50 when it could not; 51 when pods
    already attached may have lost connectivity (their bridge is down)."""
    with Namespaces() as namespaces:
        ipr = namespaces.ipr(NODE_NS)
        missing = missing_kernel_features(ipr, conf)
        if missing:
            raise CniError(NOT_AVAILABLE, f"the kernel lacks {' and '.join(missing)}, needed by the VLAN setting")
        if conf.uplink and not ipr.link_lookup(ifname=conf.uplink):
            raise CniError(NOT_AVAILABLE, f"uplink {conf.uplink} does not exist in the node namespace")
        found = ipr.link_lookup(ifname=conf.bridge)
        if found:
            link = ipr.link("get", index=found[0])[0]
            kind = (link.get("IFLA_LINKINFO") or {}).get("IFLA_INFO_KIND")
            if kind != "bridge":
                raise CniError(NOT_AVAILABLE, f'"{conf.bridge}" already exists but is not a bridge')
            if not link["flags"] & 1 and ports_of(ipr, found[0]):
                raise CniError(
                    NOT_AVAILABLE_LIMITED, f"bridge {conf.bridge} is down: attached pods have no connectivity"
                )
    check_pool(conf, request)


def check_pool(conf: NetConf, request: CniRequest) -> None:
    """IPAM's part: host-local needs a free address in every range set; a delegate answers its own STATUS."""
    ipam = open_ipam(conf.raw, conf.stdin, request)
    if ipam is not None:
        ipam.status()
