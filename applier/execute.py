"""Execute a plan step by step, and undo this run's steps if one fails.

Every operation is idempotent (create if missing, set only what differs), and
every successful step pushes its inverse on an undo stack. On failure the stack
runs in reverse, so a failed ADD leaves the node as it found it. Shared objects
(bridge, gateway address, forwarding) are undone only while no other pod's
port is on the bridge, checked under the bridge lock.

What a step does to the kernel is its kind's driver's (`applier.drivers`,
looked up by the step's model class); here are the loop, the locks, the
rollback's order and the mapping of failures to CNI errors. A step no driver
handles is an internal error (code 110), never skipped.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from applier import locks
from applier.drivers import FEATURE_8021Q as FEATURE_8021Q
from applier.drivers import FEATURE_VLAN_FILTERING as FEATURE_VLAN_FILTERING
from applier.drivers import UnhandledChange, driver_for
from applier.drivers.netfilter import NetfilterError
from applier.netlink import NetlinkError
from applier.netlink.dumps import ports_of
from applier.netns import Namespaces
from compiler.graph import HOST_VETH_PREFIX
from compiler.model import NODE_NS, NetObject
from compiler.plan import Plan, Step
from intent.errors import INTERNAL_ERROR, KERNEL_ERROR, KERNEL_FEATURE_MISSING, CniError

# A test hook: the test suite sets it to kill the plugin right before step N.
KILL_BEFORE_STEP_ENV = "LOXI_TEST_KILL_BEFORE_STEP"


@dataclass
class Undo:
    description: str
    action: Callable[[], None]
    shared_bridge: str = ""  # undo only while no pod's port is on this bridge


@dataclass(frozen=True)
class LinkFacts:
    """What this run gave a link it created: the result reports it without re-reading the kernel."""

    mac: str
    mtu: int = 0


@dataclass
class ExecutionReport:
    done: list[Step] = field(default_factory=list)
    created_bridge: bool = False
    created_links: dict[tuple[str, str], LinkFacts] = field(default_factory=dict)


class Executor:
    """One run of one plan; what the drivers may use while a step runs (`applier.drivers.Applying`)."""

    def __init__(self, namespaces: Namespaces, enable_dad: bool = False) -> None:
        self.ns = namespaces
        self.enable_dad = enable_dad
        self.undo: list[Undo] = []
        self.report = ExecutionReport()

    # -- for the drivers ---------------------------------------------------------

    def ipr(self, ns: str) -> Any:
        return self.ns.ipr(ns)

    def index(self, ns: str, name: str) -> int:
        return self.ns.link_index(ns, name)

    def delete_link(self, ns: str, name: str) -> None:
        try:
            self.ns.ipr(ns).delete_link(self.ns.link_index(ns, name))
        except NetlinkError as exc:
            if exc.code != errno.ENODEV:
                raise
        finally:
            self.ns.forget_index(ns, name)

    def push(self, description: str, action: Callable[[], None], obj: NetObject | None = None) -> None:
        """The inverse of what a step just did; a shared object's is guarded by its bridge."""
        shared = obj.guard_bridge if obj is not None and obj.shared else ""
        self.undo.append(Undo(description, action, shared))

    def created_bridge(self) -> None:
        self.report.created_bridge = True

    def created_link(self, ns: str, name: str, mac: str, mtu: int) -> None:
        self.report.created_links[(ns, name)] = LinkFacts(mac, mtu)

    # -- run -------------------------------------------------------------------

    def _bridge_has_pods(self, bridge: str) -> bool:
        """Does any pod use the bridge? Its uplink VLAN device is not a pod."""
        try:
            index = self.index(NODE_NS, bridge)
        except NetlinkError:
            return False
        ports = ports_of(self.ipr(NODE_NS), index)
        return any(port.get("IFLA_IFNAME", "").startswith(HOST_VETH_PREFIX) for port in ports)

    def apply(self, plan: Plan, bridge: str) -> ExecutionReport:
        """Run the plan; on any failure roll back and raise a CniError.

        Every step is first checked against its kind's driver: a plan with a step
        no driver can carry out is refused (code 110) before anything changes."""
        for step in plan.steps:
            try:
                driver_for(type(step.obj)).check(step)
            except UnhandledChange as exc:
                raise _as_cni_error(step, exc) from None
        kill_before = os.environ.get(KILL_BEFORE_STEP_ENV)
        with ExitStack() as held:
            bridge_locked = False
            for number, step in enumerate(plan.steps, start=1):
                if kill_before and int(kill_before) == number:
                    os.kill(os.getpid(), 9)
                if step.ns == NODE_NS and not bridge_locked:
                    held.enter_context(locks.exclusive(locks.bridge_lock_name(bridge)))
                    bridge_locked = True
                elif step.ns != NODE_NS and bridge_locked:
                    held.close()
                    bridge_locked = False
                undo_mark = len(self.undo)
                try:
                    driver_for(type(step.obj)).apply(self, step)
                except Exception as exc:
                    # A step is atomic: what it changed before failing is put back now,
                    # still under the bridge lock, whoever else uses the bridge.
                    self._undo_from(undo_mark)
                    held.close()
                    self.rollback()
                    raise _as_cni_error(step, exc) from None
                self.report.done.append(step)
        return self.report

    def _undo_from(self, mark: int) -> None:
        while len(self.undo) > mark:
            undo = self.undo.pop()
            try:
                undo.action()
            except Exception as exc:
                print(f"loxi-cni: rollback of {undo.description} failed: {exc}", file=sys.stderr)

    def rollback(self) -> None:
        while self.undo:
            undo = self.undo.pop()
            try:
                if undo.shared_bridge:
                    with locks.exclusive(locks.bridge_lock_name(undo.shared_bridge)):
                        if not self._bridge_has_pods(undo.shared_bridge):
                            undo.action()
                else:
                    undo.action()
            except Exception as exc:  # keep undoing the rest; report on stderr
                print(f"loxi-cni: rollback of {undo.description} failed: {exc}", file=sys.stderr)


def execute(plan: Plan, namespaces: Namespaces, bridge: str, enable_dad: bool = False) -> ExecutionReport:
    """Run `plan` (ADD's, DEL's or GC's teardown) with the bridge lock and rollback: `Executor.apply`."""
    return Executor(namespaces, enable_dad=enable_dad).apply(plan, bridge)


def _as_cni_error(step: Step, exc: Exception) -> CniError:
    if isinstance(exc, CniError):
        return exc
    if isinstance(exc, UnhandledChange):
        return CniError(INTERNAL_ERROR, f"internal error: {exc}", f"step {step.describe()}: no driver handles it")
    if isinstance(exc, NetfilterError):
        return CniError(KERNEL_ERROR, f"{step.describe()}: netfilter refused", str(exc))
    if isinstance(exc, NetlinkError | OSError):
        code = exc.code if isinstance(exc, NetlinkError) else exc.errno
        name = errno.errorcode.get(code or 0, str(code))
        feature = driver_for(type(step.obj)).feature if code == errno.EOPNOTSUPP else ""
        if feature:
            return CniError(
                KERNEL_FEATURE_MISSING,
                f"the kernel lacks {feature}, needed by the VLAN setting",
                f"step {step.describe()}: {name}",
            )
        text = exc.args[1] if len(exc.args) > 1 else str(exc)
        return CniError(KERNEL_ERROR, f"{step.describe()}: {name}", str(text))
    return CniError(KERNEL_ERROR, f"{step.describe()}: {type(exc).__name__}", str(exc))
