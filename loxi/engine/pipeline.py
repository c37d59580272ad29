"""The one pipeline: a request's intent → desired graph → observed snapshot → plan.

ADD, CHECK, DEL and GC (in loxi-cni and loxi-agent), `loxi-plan dry-run` and
`loxi-plan check` all describe what they want as a `Wanted` (an attachment set
up with its addresses, or torn down) and get back the same `Planned` triple
from `pipeline`. They differ only in what they do with it: ADD executes the
plan, CHECK reports it as drift, DEL and GC execute a teardown, loxi-plan
prints it. Where the addresses come from (IPAM, prevResult, a preview) and
which locks are held is the caller's business; nothing here changes the node.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from applier.netns import Namespaces, same_namespace
from applier.observe import observe
from applier.observer import Observer
from compiler.diff import diff
from compiler.graph import DesiredState, compile_desired, compile_teardown
from compiler.model import AddressLease, Attachment, HostVeth, RouteIntent, Snapshot
from compiler.networkx_lean import DiGraph
from compiler.plan import Plan
from intent.config import NetConf
from intent.env import CniRequest
from intent.errors import INVALID_NETNS, CniError
from loxi.engine.phases import phase

TYPE_CHECKING = False
if TYPE_CHECKING:
    from applier.ipam import IpamResult


def attachment_of(conf: NetConf, request: CniRequest) -> Attachment:
    return Attachment(conf.name, request.container_id, request.ifname, request.netns)


def leases_from_ipam(ipam: IpamResult | None) -> tuple[list[AddressLease], list[RouteIntent]]:
    if ipam is None:
        return [], []
    leases = [AddressLease(interface=lease.address, gateway=lease.gateway) for lease in ipam.leases]
    routes = [RouteIntent(dst=route.dst, gateway=route.gw) for route in ipam.routes]
    return leases, routes


@dataclass(frozen=True)
class Wanted:
    """What a command asks of one attachment: set up with these addresses, or torn down."""

    conf: NetConf
    attachment: Attachment
    leases: Sequence[AddressLease] = ()
    routes: Sequence[RouteIntent] = ()
    teardown: bool = False
    pod: bool = False  # a teardown with the pod's namespace open: CNI_IFNAME goes too
    port: str = ""  # a teardown of just this host veth: GC found it by an alias that cut the container id

    @classmethod
    def setup(
        cls,
        conf: NetConf,
        request: CniRequest,
        leases: Sequence[AddressLease] = (),
        routes: Sequence[RouteIntent] = (),
    ) -> Wanted:
        return cls(conf, attachment_of(conf, request), leases, routes)

    @classmethod
    def removal(cls, conf: NetConf, attachment: Attachment, pod: bool = False, port: str = "") -> Wanted:
        return cls(conf, attachment, teardown=True, pod=pod, port=port)

    def compile(self) -> DesiredState:
        """The graph: pure, no I/O."""
        if self.port:  # the attachment is known in part: its rules cannot be named, its port can
            veth = HostVeth(host_name=self.port, peer_name=self.attachment.ifname, bridge=self.conf.bridge)
            return DesiredState(DiGraph(), absent=[veth])
        if self.teardown:
            return compile_teardown(self.conf, self.attachment, pod=self.pod)
        return compile_desired(self.conf, self.attachment, self.leases, self.routes)


@dataclass(frozen=True)
class Planned:
    """What must be, what is, and the steps between."""

    desired: DesiredState
    snapshot: Snapshot
    plan: Plan


def pipeline(namespaces: Namespaces, wanted: Wanted, observer: Observer | None = None) -> Planned:
    """Compile, observe exactly what the graph names, diff. Pass an `observer` whose
    cached links the caller read before (nothing changes in between) or reads after."""
    with phase("plan"):
        desired = wanted.compile()
        snapshot = observe(namespaces, desired, observer)
        return Planned(desired, snapshot, diff(desired, snapshot))


@dataclass(frozen=True)
class PodRefusals:
    """How a front end words the refusal of a pod namespace path (`{path}`, `{why}` filled in).

    None lets the applier's own error through: its CniError for a path that is
    no namespace, the PermissionError of one that cannot be opened."""

    node: str  # the path is the node's own namespace
    missing: str
    denied: str | None = None
    invalid: str | None = None


# loxi-cni's wording, the reference's where it has one.
CNI_REFUSALS = PodRefusals(
    node="plugin's netns and netns from CNI_NETNS should not be the same",
    missing="failed to open netns {path!r}: no such file",
    denied="failed to open netns {path!r}: {why}",
)


def open_pod(path: str, refusals: PodRefusals = CNI_REFUSALS, allow_node: bool = False) -> Namespaces:
    """The node (this thread's namespace) and the pod at `path`, or CniError code 8.

    `allow_node`: the node's own namespace may be the pod's (CNI_NETNS_OVERRIDE)."""
    if not allow_node and same_namespace(path):
        raise CniError(INVALID_NETNS, refusals.node.format(path=path))
    try:
        return Namespaces.for_pod(path)
    except FileNotFoundError:
        raise CniError(INVALID_NETNS, refusals.missing.format(path=path)) from None
    except PermissionError as exc:
        if refusals.denied is None:
            raise
        raise CniError(INVALID_NETNS, refusals.denied.format(path=path, why=exc.strerror)) from None
    except CniError:
        if refusals.invalid is None:
            raise
        raise CniError(INVALID_NETNS, refusals.invalid.format(path=path)) from None


def pod_namespaces(request: CniRequest) -> Namespaces:
    """ADD's and CHECK's namespaces: CNI_NETNS must be a namespace other than the plugin's own."""
    override = request.environ.get("CNI_NETNS_OVERRIDE", "").lower() in ("1", "true")
    return open_pod(request.netns, allow_node=override)
