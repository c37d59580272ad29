"""loxi-plan's plan and check reports on pure data: text against golden files, JSON against the schemas.

Golden files live in tests/golden/plan/; after an intended change of wording,
regenerate them with LOXI_UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path

import jsonschema
import pytest
from referencing import Registry, Resource

from compiler.diff import diff
from compiler.graph import compile_desired, compile_teardown, host_veth_name
from compiler.model import Address, Attachment, Bridge, ObjectKey, Observed, RouteIntent
from compiler.plan import Plan
from intent.config import load_netconf
from intent.env import CniRequest
from loxi.plan.addresses import HELD, PREVIEW, SOURCE_PREVIEW, SOURCE_STORE, Addresses, LeaseView
from loxi.plan.check import FAIL, PASS, SKIP, CheckReport, compare
from loxi.plan.dryrun import DEL, PlanReport
from loxi.plan.render import check_text, plan_text, show
from schemas import load_schema

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "plan"
POD = "/var/run/netns/pod-1"
NODE = "/var/run/netns/node-1"
STORE = "/var/lib/cni/networks/loxilight_cni"
SEED = {
    "cniVersion": "1.0.0",
    "name": "loxilight_cni",
    "type": "loxi-cni",
    "bridge": "hsvlan100",
    "isGateway": True,
    "mtu": 1500,
    "ipam": {"type": "host-local", "subnet": "10.244.1.0/24", "routes": [{"dst": "10.96.0.0/12"}]},
}
ATTACH = Attachment("loxilight_cni", "c0ffee", "eth0", POD)
VETH = host_veth_name(ATTACH)
ROUTES = (RouteIntent(ipaddress.ip_network("10.96.0.0/12")),)


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("LOXI_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs from the golden file (LOXI_UPDATE_GOLDEN=1 to regenerate)"


def conf_of(**overrides):
    doc = {**SEED, **overrides}
    return load_netconf(json.dumps(doc).encode(), CniRequest(command="ADD"), doc)


def addresses(status: str = PREVIEW) -> Addresses:
    lease = LeaseView("10.244.1.2/24", "10.244.1.1", status)
    source = SOURCE_PREVIEW if status == PREVIEW else SOURCE_STORE
    note = "preview: what host-local would allocate now; nothing is reserved" if status == PREVIEW else ""
    return Addresses("host-local", source, (lease,), ROUTES, note, STORE)


def desired_for(found: Addresses, **overrides):
    return compile_desired(conf_of(**overrides), ATTACH, found.compiler_leases(), found.routes)


def realized(desired) -> dict:
    """A node on which `desired` has been applied exactly."""
    snap = {}
    for obj in desired.objects():
        facts = {}
        if isinstance(obj, Bridge):
            facts["ipv4"] = [str(a.interface) for a in desired.by_kind(Address) if a.link == obj.name]
        snap[obj.key] = Observed(dict(obj.desired()), facts)
    return snap


def report(plan: Plan, found: Addresses, command: str = "ADD", node: str = NODE) -> PlanReport:
    return PlanReport(command, "loxilight_cni", "c0ffee", "eth0", POD, node, VETH, found, plan)


def schema_validator(name: str) -> jsonschema.Draft202012Validator:
    registry = Registry().with_resources(
        (n, Resource.from_contents(load_schema(n))) for n in ("plan.schema.json", "check.schema.json")
    )
    validator = jsonschema.Draft202012Validator(load_schema(name), registry=registry)
    validator.check_schema(load_schema(name))
    return validator


def drifted_snapshot() -> tuple[object, dict]:
    """Applied, then: the veth left its bridge, the bridge has a foreign IPv4 address and a different MTU."""
    found = addresses(HELD)
    desired = desired_for(found, forceAddress=True)
    snap = realized(desired)
    snap[ObjectKey("node", "veth", VETH)].attrs["master"] = None
    bridge = snap[ObjectKey("node", "bridge", "hsvlan100")]
    bridge.attrs["mtu"] = 9000
    bridge.facts["ipv4"].append("192.0.2.7/24")
    return desired, snap


# -- text -----------------------------------------------------------------------


def test_show_writes_values_like_the_plugins_messages():
    assert [show(v) for v in (None, True, False, [], ["100 pvid untagged", "200"], 1500)] == [
        "none",
        "on",
        "off",
        "[]",
        "[100 pvid untagged, 200]",
        "1500",
    ]


def test_add_on_an_empty_node_golden():
    found = addresses()
    plan = diff(desired_for(found), {})
    golden("add_empty_node.txt", plan_text(report(plan, found)))


def test_add_with_nothing_to_do_golden():
    found = addresses(HELD)
    desired = desired_for(found)
    plan = diff(desired, realized(desired))
    assert plan.empty
    text = plan_text(report(plan, found, node=""))
    golden("add_nothing_to_do.txt", text)
    assert text.rstrip().endswith("No changes. The pod's network matches its intent.")


def test_add_with_drift_golden():
    desired, snap = drifted_snapshot()
    text = plan_text(report(diff(desired, snap), addresses(HELD)))
    golden("add_drift.txt", text)
    assert "      ~ master: none → hsvlan100" in text
    assert "  - address 192.0.2.7/24 on hsvlan100 (forceAddress" in text
    assert "mtu" not in text.split("node (")[1], "the bridge MTU is create-only: not a change"


def test_add_with_a_conflict_golden():
    found = addresses()
    desired = desired_for(found)
    snap = {ObjectKey("node", "bridge", "hsvlan100"): Observed({"kind": "veth", "up": True}, {"ipv4": []})}
    text = plan_text(report(diff(desired, snap), found))
    golden("add_conflict.txt", text)
    assert '  ! bridge hsvlan100\n      ! "hsvlan100" already exists but is not a bridge' in text
    assert "Plan: 6 to create" in text, "a refused step is not counted as a creation"
    assert "ADD would be refused: 1 conflict" in text


def test_del_golden():
    conf = conf_of()
    desired = compile_teardown(conf, ATTACH)
    snap = {desired.absent[0].key: Observed({"kind": "veth"})}
    found = Addresses("host-local", SOURCE_STORE, (LeaseView("10.244.1.2/24", None, HELD),), (), "", STORE)
    text = plan_text(report(diff(desired, snap), found, command=DEL))
    golden("del.txt", text)
    assert f"  - veth {VETH} (teardown; its peer eth0 in the pod goes with it)" in text
    assert "IPAM: 1 address to release." in text


def test_check_golden_lists_every_attribute():
    desired, snap = drifted_snapshot()
    rows = compare(desired, snap, diff(desired, snap))
    check = CheckReport("loxilight_cni", "c0ffee", "eth0", POD, NODE, VETH, addresses(HELD), tuple(rows))
    text = check_text(check)
    golden("check_drift.txt", text)
    assert "    [fail] master: desired hsvlan100, observed none" in text
    assert "    [skip] mtu: desired 1500, observed 9000 (applied only when the object is created" in text
    assert "    [pass] hairpin: desired off, observed off" in text
    assert "    [fail] present: should not be (forceAddress: hsvlan100 must carry only 10.244.1.1/24)" in text
    assert check.counts()[FAIL] == 2 and check.drift


# -- check rows -------------------------------------------------------------------


def test_check_rows_cover_every_managed_attribute_of_every_object():
    found = addresses(HELD)
    desired = desired_for(found)
    snap = realized(desired)
    rows = compare(desired, snap, diff(desired, snap))
    assert [r.description for r in rows] == [o.describe() for o in desired.order()]
    for row, obj in zip(rows, desired.order(), strict=True):
        assert [a.attr for a in row.attrs] == list(obj.desired())
        assert all(a.status == PASS for a in row.attrs) and row.status == PASS


def test_check_of_a_missing_object_fails_each_attribute():
    found = addresses(HELD)
    desired = desired_for(found)
    snap = realized(desired)
    del snap[ObjectKey("pod", "route", "10.96.0.0/12 dev eth0")]
    rows = {r.kind + " " + r.name: r for r in compare(desired, snap, diff(desired, snap))}
    route = rows["route 10.96.0.0/12 dev eth0"]
    assert not route.present and route.status == FAIL
    assert [(a.attr, a.status, a.observed) for a in route.attrs] == [("gateway", FAIL, None)]


def test_check_wrong_kind_is_a_problem_and_a_failed_kind():
    found = addresses(HELD)
    desired = desired_for(found)
    snap = realized(desired)
    snap[ObjectKey("node", "bridge", "hsvlan100")] = Observed({"kind": "dummy", "up": True, "promisc": False}, {})
    row = compare(desired, snap, diff(desired, snap))[0]
    assert row.problems == ('"hsvlan100" already exists but is not a bridge',)
    assert {a.attr: a.status for a in row.attrs} == {"kind": FAIL, "up": PASS, "promisc": PASS, "mtu": SKIP}


def test_create_only_difference_is_a_skip_not_a_fail():
    desired, snap = drifted_snapshot()
    bridge = compare(desired, snap, diff(desired, snap))[0]
    assert {a.attr: a.status for a in bridge.attrs}["mtu"] == SKIP


# -- JSON -------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["empty", "drift", "conflict", "del"])
def test_plan_json_follows_the_schema(case):
    found = addresses()
    if case == "empty":
        r = report(diff(desired_for(found), {}), found)
    elif case == "drift":
        desired, snap = drifted_snapshot()
        r = report(diff(desired, snap), addresses(HELD), node="")
    elif case == "conflict":
        snap = {ObjectKey("node", "bridge", "hsvlan100"): Observed({"kind": "veth"}, {"ipv4": []})}
        r = report(diff(desired_for(found), snap), found)
    else:
        desired = compile_teardown(conf_of(), ATTACH)
        r = report(diff(desired, {}), Addresses("", "none"), command=DEL)
    doc = json.loads(json.dumps(r.to_dict()))
    schema_validator("plan.schema.json").validate(doc)
    assert doc["changes_pending"] is (case != "del")


def test_plan_json_content():
    found = addresses()
    doc = report(diff(desired_for(found), {}), found).to_dict()
    assert doc["summary"] == {
        "create": 7,
        "modify": 0,
        "delete": 0,
        "conflicts": 0,
        "ipam_allocate": 1,
        "ipam_release": 0,
    }
    assert doc["ipam"] == [{"op": "allocate", "address": "10.244.1.2/24", "preview": True}]
    assert doc["attachment"]["host_veth"] == VETH
    veth = next(s for s in doc["steps"] if s["kind"] == "veth")
    assert {"attr": "master", "before": None, "after": "hsvlan100"} in veth["changes"]


def test_check_json_follows_the_schema():
    desired, snap = drifted_snapshot()
    rows = compare(desired, snap, diff(desired, snap))
    check = CheckReport("loxilight_cni", "c0ffee", "eth0", POD, "", VETH, addresses(HELD), tuple(rows))
    doc = json.loads(json.dumps(check.to_dict()))
    schema_validator("check.schema.json").validate(doc)
    assert doc["drift"] is True and doc["summary"]["fail"] == 2
    stale = [o for o in doc["objects"] if not o["wanted"]]
    assert [o["name"] for o in stale] == ["192.0.2.7 dev hsvlan100"]


def test_schemas_reject_what_they_should():
    validator = schema_validator("plan.schema.json")
    found = addresses()
    doc = report(diff(desired_for(found), {}), found).to_dict()
    assert validator.is_valid(doc)
    assert not validator.is_valid({**doc, "command": "CHECK"})
    assert not validator.is_valid({**doc, "extra": 1})
    assert not validator.is_valid({**doc, "addresses": {**doc["addresses"], "bogus": 1}})
