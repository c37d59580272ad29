"""applier.drivers: every kind the model has is driven, and a change no driver handles raises.

The kinds are enumerated from `compiler.model` itself, so a kind added without
a driver fails here, not on a node. The executor cases run on pure data where
they fail before any netlink; the rollback case runs in a throw-away network
namespace with real netlink.
"""

from __future__ import annotations

import inspect
import ipaddress
import json
import os
from dataclasses import dataclass
from typing import ClassVar

import pytest

import compiler.model
from applier.drivers import Driver, UnhandledChange, driver_for, registered
from applier.execute import Executor
from applier.netns import Namespaces
from compiler.diff import diff
from compiler.graph import compile_desired, compile_teardown
from compiler.model import (
    POD_NS,
    Address,
    AddressLease,
    Attachment,
    Bridge,
    NetObject,
    PodLink,
    RouteIntent,
    Uplink,
)
from compiler.model.attrs import KIND, PEER, UP
from compiler.plan import CREATE, MODIFY, AttrChange, Plan, Step
from intent.config import load_netconf
from intent.env import CniRequest
from intent.errors import INTERNAL_ERROR, CniError

ATTACH = Attachment("drivers", "c0ffee", "eth0", "/var/run/netns/p1")
LEASES = [
    AddressLease(ipaddress.ip_interface("10.244.1.5/24"), ipaddress.ip_address("10.244.1.1")),
    AddressLease(ipaddress.ip_interface("fd00::5/64"), ipaddress.ip_address("fd00::1")),
]
ROUTES = [RouteIntent(ipaddress.ip_network("10.96.0.0/12"))]


def model_kinds() -> list[type[NetObject]]:
    """Every concrete kind in compiler.model (its package and submodules), found by walking NetObject."""
    found: set[type[NetObject]] = set()
    todo = list(NetObject.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__.startswith("compiler.model") and not inspect.isabstract(cls):
            found.add(cls)
    exported = {obj for obj in vars(compiler.model).values() if isinstance(obj, type) and issubclass(obj, NetObject)}
    assert found <= exported, "every kind is exported by compiler.model"
    return sorted(found, key=lambda cls: cls.__name__)


def conf_of(**overrides):
    doc = {
        "cniVersion": "1.0.0",
        "name": "drivers",
        "type": "loxi-cni",
        "bridge": "br-drv",
        "isGateway": True,
        "isDefaultGateway": True,
        "ipam": {"type": "host-local", "subnet": "10.244.1.0/24"},
        **overrides,
    }
    return load_netconf(json.dumps(doc).encode(), CniRequest(command="ADD"))


RICH_CONFS = [
    {"mtu": 1400, "hairpinMode": True, "portIsolation": True, "mac": "02:00:00:00:00:05"},
    {"vlan": 100, "uplink": "eth1", "ipMasq": True, "macspoofchk": True, "forceAddress": True},
    {"vlan": 100, "vlanTrunk": [{"minID": 200, "maxID": 210}], "uplink": "eth1", "uplinkMode": "trunk"},
    {"ipMasq": True, "ipMasqBackend": "iptables", "promiscMode": True},
]


def compiled_objects() -> list[NetObject]:
    objects = []
    for overrides in RICH_CONFS:
        conf = conf_of(**overrides)
        objects += compile_desired(conf, ATTACH, LEASES, ROUTES).objects()
        objects += compile_teardown(conf, ATTACH, pod=True).absent
    return objects


def test_the_model_has_the_kinds_the_applier_knows():
    assert len(model_kinds()) >= 11


@pytest.mark.parametrize("kind", model_kinds(), ids=lambda cls: cls.__name__)
def test_every_model_kind_has_a_registered_driver(kind):
    driver = driver_for(kind)
    assert isinstance(driver, Driver)
    assert kind in type(driver).kinds
    assert registered()[kind] is driver


@pytest.mark.parametrize("kind", model_kinds(), ids=lambda cls: cls.__name__)
def test_every_attribute_a_modify_can_name_has_a_setter(kind):
    """ADD sets what CHECK compares: no managed attribute lacks its setter."""
    changeable = set(kind.attributes) - {KIND, PEER} - set(kind.immutable) - set(kind.create_only)
    assert changeable <= set(driver_for(kind).setters), kind.__name__
    if kind.creatable:
        assert type(driver_for(kind)).create is not Driver.create, f"{kind.__name__} cannot be created"


def test_every_kind_a_plan_can_hold_appears_in_the_compiled_graphs_and_declares_its_attributes():
    objects = compiled_objects()
    assert {type(obj) for obj in objects} == set(model_kinds())
    for obj in objects:
        assert set(obj.desired()) <= set(obj.attributes), obj.describe()


def test_every_step_of_an_empty_node_s_plan_has_a_driver_that_carries_it_out():
    for overrides in RICH_CONFS:
        plan = diff(compile_desired(conf_of(**overrides), ATTACH, LEASES, ROUTES), {})
        for step in plan.steps:
            if step.conflict:
                continue  # refused before the executor runs
            driver = driver_for(type(step.obj))
            assert step.op == CREATE and type(driver).create is not Driver.create, step.describe()


@dataclass(frozen=True)
class Unknown(NetObject):
    """A kind the applier has never heard of (as if added to the model without a driver)."""

    kind: ClassVar[str] = "unknown"
    label: str = "x"

    @property
    def ns(self) -> str:
        return POD_NS

    @property
    def name(self) -> str:
        return self.label


def test_a_kind_without_a_driver_has_none_registered():
    with pytest.raises(UnhandledChange, match="Unknown"):
        driver_for(Unknown)


@pytest.fixture
def executor(tmp_path, monkeypatch):
    monkeypatch.setenv("LOXI_LOCK_DIR", str(tmp_path / "locks"))
    with Namespaces() as namespaces:
        yield Executor(namespaces)


def run_failing(executor: Executor, *steps: Step) -> CniError:
    with pytest.raises(CniError) as caught:
        executor.apply(Plan(tuple(steps)), "br-drv")
    return caught.value


def test_a_step_of_an_unknown_kind_raises_an_internal_error(executor):
    err = run_failing(executor, Step(CREATE, Unknown()))
    assert err.code == INTERNAL_ERROR
    assert "Unknown" in err.msg
    assert executor.report.done == []


def test_an_attribute_no_setter_knows_raises_before_anything_is_changed(executor):
    """Checked before the first change of the step runs: `up` of a bridge that does not exist is never tried."""
    changes = (AttrChange(UP, False, True), AttrChange("colour", None, "red"))
    step = Step(MODIFY, Bridge(bridge="br-drv-absent"), changes)
    err = run_failing(executor, step)
    assert err.code == INTERNAL_ERROR
    assert "'colour'" in err.msg


def test_an_operation_a_driver_lacks_raises(executor):
    assert run_failing(executor, Step(CREATE, Uplink(ifname="eth-none"))).code == INTERNAL_ERROR
    assert run_failing(executor, Step("rename", PodLink(ifname="eth0", peer_name="x"))).code == INTERNAL_ERROR


@pytest.fixture
def pod_with_link(netns, tmp_path, monkeypatch):
    """A throw-away namespace with a down veth end `d0`, and Namespaces whose pod is it."""
    monkeypatch.setenv("LOXI_LOCK_DIR", str(tmp_path / "locks"))
    pod = netns("pod")
    pod.ip_run("link", "add", "d0", "type", "veth", "peer", "name", "d1")
    with Namespaces(pod.path, os.open(pod.path, os.O_RDONLY | os.O_CLOEXEC)) as namespaces:
        yield pod, namespaces


ADDRESS = Address(link="d0", interface=ipaddress.ip_interface("10.9.9.9/24"), namespace=POD_NS)
LINK = PodLink(ifname="d0", peer_name="none")


def test_a_plan_with_an_unhandled_change_is_refused_before_its_first_step(pod_with_link):
    """Real netlink: step 1 would add an address, step 2 names an attribute no driver
    has; the run fails with code 110 and neither the address nor step 2's known
    change (`up`) reached the kernel."""
    pod, namespaces = pod_with_link
    changes = (AttrChange(UP, False, True), AttrChange("colour", None, "red"))
    plan = Plan((Step(CREATE, ADDRESS), Step(MODIFY, LINK, changes)))
    with pytest.raises(CniError) as caught:
        Executor(namespaces).apply(plan, "br-drv")
    assert caught.value.code == INTERNAL_ERROR
    assert "'colour'" in caught.value.msg
    assert pod.addresses("d0") == []
    assert "UP" not in pod.link("d0")["flags"]


def test_a_step_the_kernel_refuses_rolls_back_the_steps_before_it(pod_with_link):
    """Real netlink, the drivers' undo: the address of step 1 is removed again when step 2 fails."""
    pod, namespaces = pod_with_link
    missing = PodLink(ifname="d9", peer_name="none")
    executor = Executor(namespaces)
    with pytest.raises(CniError) as caught:
        executor.apply(Plan((Step(CREATE, ADDRESS), Step(CREATE, missing))), "br-drv")
    assert caught.value.code != INTERNAL_ERROR
    assert [step.obj for step in executor.report.done] == [ADDRESS]
    assert pod.addresses("d0") == []
