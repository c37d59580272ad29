"""`loxi-plan` against real network namespaces: the installed console script, run as an operator runs it.

Each test gets a fresh node namespace (`--node-netns`) and IPAM directory from
tests/conftest.py; the plugin itself is run through `node.cni` to attach pods,
and assertions read the kernel with `ip -j` and the store from disk. Golden
files (tests/golden/plan/) have the random namespace paths replaced by
<NODE>, <POD> and <DATA>; regenerate with LOXI_UPDATE_GOLDEN=1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import jsonschema
from referencing import Registry, Resource

from applier import locks
from compiler.graph import host_veth_name
from compiler.model import Attachment
from schemas import load_schema
from tests.conftest import make_conf

LOXI_PLAN = Path(sys.prefix) / "bin" / "loxi-plan"
GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "plan"
CID = "0123456789abcdef"
NETWORK = "loxilight_cni"
VETH = host_veth_name(Attachment(NETWORK, CID, "eth0", ""))


@dataclass
class Run:
    rc: int
    out: str
    err: str

    @property
    def json(self):
        return json.loads(self.out)

    def __str__(self) -> str:
        return f"rc={self.rc}\nstdout={self.out}\nstderr={self.err}"


def loxi_plan(*args: str, env: dict[str, str] | None = None) -> Run:
    environ = {**os.environ, **(env or {})}
    proc = subprocess.run([str(LOXI_PLAN), *args], capture_output=True, text=True, timeout=60, env=environ)
    return Run(proc.returncode, proc.stdout, proc.stderr)


def write_conf(node, **overrides) -> Path:
    path = node.data_dir.parent / "10-loxilight.conf"
    path.write_text(json.dumps(make_conf(node.data_dir, **overrides), indent=2))
    return path


def dry_run(node, conf: Path, pod=None, *extra: str) -> Run:
    args = ["dry-run", str(conf), "--container-id", CID, "--node-netns", node.ns.path]
    if pod is not None:
        args += ["--netns", pod.path]
    return loxi_plan(*args, *extra)


def check(node, conf: Path, pod, *extra: str) -> Run:
    return loxi_plan(
        "check", str(conf), "--container-id", CID, "--netns", pod.path, "--node-netns", node.ns.path, *extra
    )


def show(node, *extra: str, conf_dir: Path | None = None) -> Run:
    """`show` with the test's store, reading `conf_dir` (an empty directory by default) as the runtime's."""
    return show_as_operator(node, "--data-dir", str(node.data_dir), *extra, conf_dir=conf_dir)


def show_as_operator(node, *extra: str, conf_dir: Path | None = None) -> Run:
    """`show` with no option but the node's namespace: the conf dir comes from NETCONFPATH, as for cnitool."""
    if conf_dir is None:
        conf_dir = node.data_dir.parent / "no-confs"
        conf_dir.mkdir(exist_ok=True)
    return loxi_plan("show", "--node-netns", node.ns.path, *extra, env={"NETCONFPATH": str(conf_dir)})


def normalized(text: str, node, pod=None) -> str:
    text = text.replace(node.ns.path, "<NODE>").replace(str(node.data_dir), "<DATA>")
    return text.replace(pod.path, "<POD>") if pod is not None else text


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("LOXI_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs from the golden file (LOXI_UPDATE_GOLDEN=1 to regenerate)"


def validator(name: str) -> jsonschema.Draft202012Validator:
    registry = Registry().with_resources(
        (n, Resource.from_contents(load_schema(n))) for n in ("plan.schema.json", "check.schema.json")
    )
    return jsonschema.Draft202012Validator(load_schema(name), registry=registry)


def attach(node, conf: Path, pod, cid: str = CID):
    call = node.cni("ADD", json.loads(conf.read_text()), container_id=cid, netns=pod.path)
    assert call.rc == 0, call
    return call.json


def _kernel_made(dst: str) -> bool:
    """IPv6 link-local and multicast entries the kernel adds by itself, on its own schedule (after DAD)."""
    return dst.startswith(("fe80", "ff00"))


def kernel_state(ns) -> dict:
    """What loxi-plan could change in a namespace, without the counters, timers and DAD flags the kernel moves."""
    links = {}
    for link in ns.ip("-d", "link", "show"):
        info = link.get("linkinfo", {})
        port = info.get("info_slave_data", {})
        links[link["ifname"]] = {
            "kind": info.get("info_kind"),
            "master": link.get("master"),
            "mtu": link["mtu"],
            "flags": sorted(set(link["flags"]) - {"LOWER_UP", "NO-CARRIER", "M-DOWN"}),
            "mac": link.get("address"),
            "alias": link.get("ifalias"),
            "port": {key: port.get(key) for key in ("hairpin", "isolated", "learning", "flood")},
        }
    addresses = sorted(
        (entry["ifname"], a["family"], a["local"], a["prefixlen"])
        for entry in ns.ip("addr", "show")
        for a in entry.get("addr_info", [])
        if not _kernel_made(a["local"])
    )
    routes = sorted(
        json.dumps(
            {k: r.get(k) for k in ("table", "type", "dst", "dev", "gateway", "protocol", "scope")}, sort_keys=True
        )
        for family in ("-4", "-6")
        for r in ns.ip(family, "route", "show", "table", "all")
        if not _kernel_made(r.get("dst", ""))
    )
    return {"links": links, "addresses": addresses, "routes": routes, "forwarding": ns.sysctl("net/ipv4/ip_forward")}


def state(node, *pods) -> dict:
    """All a dry-run could touch: each namespace's links, addresses, routes and forwarding; the IPAM files."""
    snap: dict = {ns.name: kernel_state(ns) for ns in (node.ns, *pods)}
    files = {}
    if node.data_dir.exists():
        for path in sorted(node.data_dir.rglob("*")):
            info = path.stat()
            content = path.read_bytes() if path.is_file() else None
            files[str(path)] = (oct(info.st_mode), info.st_mtime_ns, content)
    snap["ipam"] = files
    return snap


# -- dry-run -------------------------------------------------------------------------


def test_dry_run_on_an_empty_node(node):
    conf = write_conf(node)
    pod = node.pod()
    # A new namespace may inherit forwarding from the host (devconf_inherit_init_net): pin it.
    node.ns.exec("sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward", check=True)
    run = dry_run(node, conf, pod)
    assert run.rc == 2, run
    golden("dry_run_empty_node.txt", normalized(run.out, node, pod))
    assert f"  host veth:  {VETH}" in run.out
    assert "  addresses:  10.244.1.2/24 (preview, gateway 10.244.1.1)" in run.out
    assert "Plan: 6 to create, 1 to modify, 0 to delete." in run.out, "ip_forward is 0 in a fresh namespace"


def test_dry_run_json_follows_the_schema(node):
    conf = write_conf(node)
    pod = node.pod()
    run = dry_run(node, conf, pod, "--output", "json")
    assert run.rc == 2, run
    doc = run.json
    validator("plan.schema.json").validate(doc)
    assert doc["attachment"] == {
        "network": NETWORK,
        "container_id": CID,
        "ifname": "eth0",
        "netns": pod.path,
        "host_veth": VETH,
    }
    assert doc["node_netns"] == node.ns.path
    assert doc["addresses"]["source"] == "preview"
    assert doc["ipam"] == [{"op": "allocate", "address": "10.244.1.2/24", "preview": True}]
    assert [(s["op"], s["kind"]) for s in doc["steps"]][:2] == [("create", "bridge"), ("create", "address")]


def test_dry_run_changes_nothing(node):
    """Not the kernel (node and pod), not the IPAM store: on an empty node, then on one with a pod."""
    conf = write_conf(node)
    pod = node.pod()
    commands = [
        ["dry-run", str(conf), "--netns", pod.path, "--container-id", "new-pod"],
        ["dry-run", str(conf), "--netns", pod.path, "--container-id", "new-pod", "--output", "json"],
        ["dry-run", str(conf), "--container-id", CID, "--command", "DEL"],
        ["check", str(conf), "--netns", pod.path, "--container-id", CID],
        ["graph", str(conf)],
        ["show", "--data-dir", str(node.data_dir), "--conf", str(conf)],
    ]
    before = state(node, pod)
    for argv in commands:
        assert loxi_plan(*argv, *(["--node-netns", node.ns.path] if argv[0] != "graph" else [])).rc in (0, 2)
    assert state(node, pod) == before
    assert not node.data_dir.exists(), "not even the store directory is created"

    other = node.pod()
    attach(node, conf, other, cid="other-pod")
    before = state(node, pod, other)
    for argv in commands:
        assert loxi_plan(*argv, *(["--node-netns", node.ns.path] if argv[0] != "graph" else [])).rc in (0, 2)
    assert state(node, pod, other) == before
    assert node.store_files(NETWORK) == ["10.244.1.2"]


def test_after_add_dry_run_for_the_same_pod_has_nothing_to_do(node):
    conf = write_conf(node)
    pod = node.pod()
    attach(node, conf, pod)
    run = dry_run(node, conf, pod)
    assert run.rc == 0, run
    golden("dry_run_after_add.txt", normalized(run.out, node, pod))
    assert run.out.rstrip().endswith("No changes. The pod's network matches its intent.")
    assert "10.244.1.2/24 (held, gateway 10.244.1.1)" in run.out
    doc = dry_run(node, conf, pod, "--output", "json").json
    assert doc["changes_pending"] is False and doc["steps"] == [] and doc["addresses"]["source"] == "store"
    other = dry_run(node, conf, node.pod(), "--container-id", "second-pod")
    assert other.rc == 2 and "10.244.1.3/24 (preview" in other.out, "the next pod gets the next address"


def test_drift_shows_as_a_modification(node):
    conf = write_conf(node)
    pod = node.pod()
    attach(node, conf, pod)
    node.ns.ip_run("link", "set", VETH, "nomaster")
    run = dry_run(node, conf, pod)
    assert run.rc == 2, run
    golden("dry_run_drift.txt", normalized(run.out, node, pod))
    assert f"  ~ veth {VETH}\n      ~ master: none → hsvlan100\n" in run.out
    assert "Plan: 0 to create, 1 to modify, 0 to delete." in run.out


def test_conflist_and_cni_args(node):
    conflist = node.data_dir.parent / "10-loxilight.conflist"
    plugin = make_conf(node.data_dir)
    doc = {"cniVersion": "1.0.0", "name": NETWORK, "plugins": [{**plugin, "cniVersion": None, "name": None}]}
    doc["plugins"].append({"type": "portmap", "capabilities": {"portMappings": True}})
    conflist.write_text(json.dumps(doc))
    pod = node.pod()
    run = dry_run(node, conflist, pod, "--args", "IgnoreUnknown=1;K8S_POD_NAME=p;IP=10.244.1.77")
    assert run.rc == 2, run
    assert "  addresses:  10.244.1.77/24 (preview, gateway 10.244.1.1)" in run.out


def test_delegated_ipam_is_not_previewed(node):
    conf = write_conf(node, ipam={"type": "static", "addresses": [{"address": "10.244.1.77/24"}]})
    run = dry_run(node, conf, node.pod())
    assert run.rc == 2, run
    assert (
        "  addresses:  none\n              addresses come from the 'static' IPAM plugin; they cannot be previewed"
        in run.out
    )
    assert "+ veth " in run.out and "ipam static" not in run.out


def test_del_plan(node):
    conf = write_conf(node)
    pod = node.pod()
    attach(node, conf, pod)
    run = dry_run(node, conf, None, "--command", "DEL")
    assert run.rc == 2, run
    golden("dry_run_del.txt", normalized(run.out, node))
    assert f"  - veth {VETH} (teardown; its peer eth0 in the pod goes with it)" in run.out
    assert f"  - lease 10.244.1.2/24 of {CID}/eth0" in run.out
    assert node.cni("DEL", json.loads(conf.read_text()), container_id=CID, netns=pod.path).rc == 0
    run = dry_run(node, conf, None, "--command", "DEL")
    assert run.rc == 0, run
    assert run.out.rstrip().endswith("No changes. Nothing of this attachment is left to remove.")


# -- check --------------------------------------------------------------------------


def test_check_passes_then_fails_per_attribute(node):
    conf = write_conf(node)
    pod = node.pod()
    attach(node, conf, pod)
    run = check(node, conf, pod)
    assert run.rc == 0, run
    golden("check_pass.txt", normalized(run.out, node, pod))
    assert "[fail]" not in run.out and "    [pass] master: desired hsvlan100, observed hsvlan100" in run.out

    node.ns.ip_run("link", "set", VETH, "nomaster")
    pod.ip_run("link", "set", "eth0", "mtu", "1400")
    run = check(node, conf, pod)
    assert run.rc == 2, run
    assert "    [fail] master: desired hsvlan100, observed none" in run.out
    assert "    [fail] mtu: desired 1500, observed 1400" in run.out
    assert "    [pass] hairpin: desired off, observed off" in run.out
    assert "Check: " in run.out and ", 2 fail, 0 skip." in run.out
    doc = check(node, conf, pod, "--output", "json").json
    validator("check.schema.json").validate(doc)
    assert doc["drift"] is True and doc["summary"]["fail"] == 2
    failed = [(o["name"], a["attr"]) for o in doc["objects"] for a in o["attributes"] if a["status"] == "fail"]
    assert failed == [(VETH, "master"), ("eth0", "mtu")]

    assert attach(node, conf, pod)  # ADD repairs the drift
    assert check(node, conf, pod).rc == 0


def test_check_of_an_attachment_that_was_never_made(node):
    conf = write_conf(node)
    run = check(node, conf, node.pod())
    assert run.rc == 2, run
    assert "  [fail] the host-local store holds no address for this attachment" in run.out
    assert "    [fail] present: missing" in run.out


# -- show ---------------------------------------------------------------------------


UNIQUE_SUBNET = "10.213.77.0/24"  # the address scan must not meet another test's pod on 10.244.1.x


def conf_dir_with(node, **overrides) -> tuple[Path, Path]:
    """A runtime's conf dir holding the test's conf (its dataDir is the test's, not the default)."""
    directory = node.data_dir.parent / "net.d"
    directory.mkdir(exist_ok=True)
    (directory / "README").write_text("not a conf")
    (directory / "87-other.conflist").write_text(json.dumps({"name": "other", "plugins": [{"type": "bridge"}]}))
    path = directory / "10-loxilight.conf"
    path.write_text(json.dumps(make_conf(node.data_dir, **overrides), indent=2))
    return directory, path


def the_attachment(doc: dict, cid: str = CID) -> dict:
    (row,) = [a for a in doc["attachments"] if a["container_id"] == cid]
    return row


def unique_attachment() -> tuple[str, str]:
    """A container id of the test's own, and its host veth."""
    cid = f"show-{uuid.uuid4().hex[:12]}"
    return cid, host_veth_name(Attachment(NETWORK, cid, "eth0", ""))


def test_show_lists_the_attachment_then_what_is_leaked_and_what_is_unaccounted(node):
    ipam = {**make_conf(node.data_dir)["ipam"], "subnet": "10.213.78.0/24"}
    conf = write_conf(node, ipam=ipam)
    pod = node.pod()
    cid, host = unique_attachment()  # its own lock: other suites run pods of CID at the same time
    attach(node, conf, pod, cid=cid)
    run = show(node, "--conf", str(conf))
    assert run.rc == 0, run
    assert "  hsvlan100 (up): 1 loxi port, 1 port in all" in run.out
    assert f"  [attached] {NETWORK} {cid}/eth0  {host} on hsvlan100  netns {pod.path} (eth0 10.213.78.2/24)" in run.out
    assert "    pool 0 (10.213.78.1-10.213.78.254): 1 of 253 used, 252 free" in run.out
    assert "Nothing looks leaked." in run.out and "unaccounted" not in run.out

    node.ns.ip_run("link", "del", host)
    node.ns.ip_run("link", "add", "loxi0000stray00", "type", "veth", "peer", "name", "stray-peer")
    run = show(node)
    assert run.rc == 0, run
    assert f"  [leaked] {NETWORK} {cid}/eth0  {host} MISSING  lease 10.213.78.2" in run.out
    assert "leaked (1):" in run.out
    assert (
        f"{NETWORK}: {cid}/eth0 holds 10.213.78.2 in {node.data_dir}/{NETWORK}, but its host veth {host} does not"
        " exist and no network namespace on the node holds the address"
    ) in run.out
    assert "unaccounted, not leaked (1):" in run.out
    assert "veth loxi0000stray00 (its peer is in the node's own namespace): it carries no loxi-cni owner" in run.out
    doc = show(node, "--output", "json").json
    assert [leak["kind"] for leak in doc["leaks"]] == ["allocation-without-veth"]
    assert [item["kind"] for item in doc["unaccounted"]] == ["veth-without-owner"]
    assert the_attachment(doc, cid)["veth_exists"] is False

    # The same allocation, while an interface in some namespace still carries its address: not provably dead.
    pod.ip_run("link", "add", "eth9", "type", "veth", "peer", "name", "eth9-peer")  # no dummy module here
    pod.ip_run("addr", "add", "10.213.78.2/24", "dev", "eth9")
    doc = show(node, "--output", "json").json
    row = the_attachment(doc, cid)
    assert (row["state"], row["kind"]) == ("unaccounted", "address-in-use") and doc["leaks"] == []
    assert row["detail"].endswith(f"its host veth {host} does not exist, but 10.213.78.2 is on eth9 in {pod.path}")


def test_show_reads_the_runtimes_conf_dir_and_finds_a_store_that_is_not_the_default(node):
    """The operator's report: a pod on a conf whose dataDir is not /var/lib/cni/networks, found without a flag."""
    conf_dir, conf = conf_dir_with(node)
    pod = node.pod()
    attach(node, conf, pod)
    assert node.ns.link(VETH)["ifalias"] == f"loxi-cni {NETWORK} {CID} eth0"
    assert node.store_files(NETWORK) == ["10.244.1.2"]
    run = show_as_operator(node, conf_dir=conf_dir)
    assert run.rc == 0, run
    assert "Nothing looks leaked." in run.out and "\nleaked (" not in run.out and "unaccounted" not in run.out
    assert f"  confs: {conf_dir} (2 files)" in run.out
    assert (
        f"  {NETWORK} (from {conf}): bridge hsvlan100, host-local store {node.data_dir}/{NETWORK} (1 allocation)"
        in run.out
    )
    assert "    pool 0 (10.244.1.1-10.244.1.254): 1 of 253 used, 252 free" in run.out
    assert (
        f"  [attached] {NETWORK} {CID}/eth0  {VETH} on hsvlan100  netns {pod.path} (eth0 10.244.1.2/24)"
        "  lease 10.244.1.2\n"
    ) in run.out
    doc = show_as_operator(node, "--output", "json", conf_dir=conf_dir).json
    row = the_attachment(doc)
    assert (row["state"], row["kind"], row["host_veth"], row["bridge"]) == ("attached", "live", VETH, "hsvlan100")
    assert (row["netns"], row["pod_ifname"], row["addresses"], row["lease"]) == (
        pod.path,
        "eth0",
        ["10.244.1.2/24"],
        ["10.244.1.2"],
    )
    assert doc["leaks"] == [] and doc["unaccounted"] == [] and doc["summary"]["attached"] == 1
    assert doc["networks"][0]["store_dir"] == f"{node.data_dir}/{NETWORK}"
    explicit = loxi_plan("show", "--node-netns", node.ns.path, "--cni-conf-dir", str(conf_dir), "--output", "json")
    assert explicit.rc == 0 and explicit.json["attachments"] == doc["attachments"]


def test_show_calls_a_live_pod_whose_conf_was_removed_unaccounted_and_says_where_it_looked(node):
    conf_dir, conf = conf_dir_with(node)
    pod = node.pod()
    attach(node, conf, pod)
    conf.unlink()
    assert pod.addresses("eth0") == ["10.244.1.2/24"] and node.store_files(NETWORK) == ["10.244.1.2"]
    run = show_as_operator(node, conf_dir=conf_dir)
    assert run.rc == 0, run
    assert "Nothing looks leaked." in run.out and "\nleaked (" not in run.out, "a live pod is never leaked"
    assert f"  [unaccounted] {NETWORK} {CID}/eth0  {VETH} on hsvlan100  netns {pod.path}" in run.out
    hint = (
        f"veth {VETH} on hsvlan100 of {NETWORK} {CID}/eth0 (its peer is in {pod.path}): no conf in {conf_dir}"
        f" defines network {NETWORK}, and no allocation in /var/lib/cni/networks/{NETWORK} names it;"
        " its conf (or the ipam.dataDir in it) may be elsewhere: try --conf or --data-dir"
    )
    assert f"unaccounted, not leaked (1):\n  {hint}\n" in run.out
    doc = show_as_operator(node, "--output", "json", conf_dir=conf_dir).json
    row = the_attachment(doc)
    assert (row["state"], row["kind"], row["netns"], row["addresses"]) == (
        "unaccounted",
        "veth-without-allocation",
        pod.path,
        ["10.244.1.2/24"],
    )
    assert doc["leaks"] == [] and [item["detail"] for item in doc["unaccounted"]] == [hint]
    # --data-dir extends the search: the store is found, the pod is attached again
    found = show_as_operator(node, "--data-dir", str(node.data_dir), "--output", "json", conf_dir=conf_dir).json
    assert the_attachment(found)["state"] == "attached" and found["unaccounted"] == []


def test_show_calls_an_allocation_leaked_once_its_pod_namespace_was_deleted_without_del(node, netns):
    ipam = {**make_conf(node.data_dir)["ipam"], "subnet": UNIQUE_SUBNET}
    conf_dir, conf = conf_dir_with(node, ipam=ipam)
    pod = node.pod()
    cid, host = unique_attachment()  # its own lock: other suites run pods of CID at the same time
    attach(node, conf, pod, cid=cid)
    netns.delete(pod)  # the runtime lost the pod: no DEL
    for _ in range(200):  # the kernel destroys the namespace, and the veth pair with it, asynchronously
        if host not in node.ns.links():
            break
        time.sleep(0.05)
    assert host not in node.ns.links()
    assert node.store_files(NETWORK) == ["10.213.77.2"]
    run = show_as_operator(node, conf_dir=conf_dir)
    assert run.rc == 0, run
    detail = (
        f"{NETWORK}: {cid}/eth0 holds 10.213.77.2 in {node.data_dir}/{NETWORK}, but its host veth {host} does not"
        " exist and no network namespace on the node holds the address"
    )
    assert f"leaked (1):\n  {detail}\n" in run.out and "Nothing looks leaked." not in run.out
    assert f"  [leaked] {NETWORK} {cid}/eth0  {host} MISSING  lease 10.213.77.2" in run.out
    doc = show_as_operator(node, "--output", "json", conf_dir=conf_dir).json
    row = the_attachment(doc, cid)
    assert (row["state"], row["kind"], row["veth_exists"], row["lease"]) == (
        "leaked",
        "allocation-without-veth",
        False,
        ["10.213.77.2"],
    )
    assert doc["leaks"] == [{"kind": "allocation-without-veth", "name": "10.213.77.2", "detail": detail}]
    assert doc["summary"] == {"attached": 0, "unaccounted": 0, "leaked": 1, "busy": 0}
    with locks.exclusive(locks.attachment_lock_name(NETWORK, cid, "eth0")):  # as an ADD or DEL of it would
        held = show_as_operator(node, "--output", "json", conf_dir=conf_dir).json
    assert (the_attachment(held, cid)["state"], held["leaks"]) == ("busy", [])
    assert node.cni("DEL", json.loads(conf.read_text()), container_id=cid, netns="").rc == 0
    assert show_as_operator(node, "--output", "json", conf_dir=conf_dir).json["attachments"] == []


# -- errors ----------------------------------------------------------------------


def test_errors_are_one_line_with_exit_1(node, netns):
    conf = write_conf(node)
    gone = node.pod()
    path = gone.path
    netns.delete(gone)
    for run in (
        dry_run(node, conf, None, "--netns", path),
        loxi_plan("dry-run", str(conf), "--netns", node.ns.path, "--node-netns", node.ns.path),
        loxi_plan("show", "--node-netns", "/proc/self/status"),
    ):
        assert run.rc == 1, run
        assert run.err.count("\n") == 1 and run.err.startswith("loxi-plan: error: ") and run.out == ""
    assert dry_run(node, conf, None, "--netns", path).err == f"loxi-plan: error: --netns {path}: no such namespace\n"


def test_node_netns_is_where_the_node_is_observed(node):
    """After ADD (which turned forwarding on in the node namespace only), the plan is empty only when
    loxi-plan reads links and /proc/sys/net in --node-netns; without it, the veth is not found."""
    conf = write_conf(node)
    pod = node.pod()
    attach(node, conf, pod)
    assert node.ns.sysctl("net/ipv4/ip_forward") == "1"
    assert dry_run(node, conf, pod).rc == 0
    assert check(node, conf, pod).rc == 0
    assert f"{VETH} on hsvlan100" in show(node).out
    elsewhere = loxi_plan("show", "--data-dir", str(node.data_dir))  # reads this process's namespace, changes nothing
    assert elsewhere.rc == 0 and f"{VETH} MISSING" in elsewhere.out


def test_dry_run_says_when_add_would_fail_for_want_of_an_address(node):
    conf = write_conf(node, ipam={**make_conf(node.data_dir)["ipam"], "subnet": "10.244.9.0/30"})
    attach(node, conf, node.pod(), cid="first")
    run = dry_run(node, conf, node.pod())
    assert run.rc == 1, run
    assert run.err == (
        "loxi-plan: error: ADD would fail: failed to allocate for range 0: "
        "no IP addresses available in range set: 10.244.9.1-10.244.9.2\n"
    )
