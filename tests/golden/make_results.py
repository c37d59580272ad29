"""Golden RESULTS (tests/golden/results/): what loxi-cni and loxi-plan print, captured before issue #18.

Issue #18 restructures the product code with its behaviour unchanged ("golden plans and results
byte-identical"). These files pin the behaviour of the code as it was before the restructuring,
commit 622ad9e, so tests/integration/test_golden_results.py can check the restructured code byte
for byte: every case's CNI calls (exit status and stdout exactly as printed) and loxi-plan's text
and JSON output.

How they were made (as root, from /work/main; never regenerate them from a restructured tree):

    git worktree add /tmp/golden-base 622ad9e
    .venv/bin/python tests/golden/make_results.py /tmp/golden-base
    git worktree remove --force /tmp/golden-base

The generator renders, with the worktree's own `render_launcher` (loxi/install/commands.py), a
launcher as `loxi-plan install` writes one (`#!<venv python> -IS`, sys.path = the worktree, then
the venv's site-packages: /work/main's editable install is not on it) and a loxi-plan launcher
the same way (`loxi.plan.cli:main`), checks that they import the worktree's modules, and runs
every case through the worktree's tests/conftest.py Node (nsenter into a fresh node namespace,
only the CNI variables in the environment, the conf on stdin, in-process: LOXI_AGENT_SOCKET='').

The cases are defined here, once, and run by both the generator and the test. What legitimately
varies between runs is normalized in one place, `normalize()`; nothing else is.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
BASE_COMMIT = "622ad9e"
NETWORK = "loxilight_cni"


# -- normalization -----------------------------------------------------------------------

MAC_RE = re.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}(?![0-9A-Fa-f:])")
TIMESTAMP_RE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?")


def normalize(text: str, run: CaseRun) -> str:
    """The one place where output is normalized; only what legitimately varies between runs:

    - namespace paths and names (the node's and each pod's are uuid-named): `<NODE>`, `<POD1>`, ...
      (numbered in the order the case made them); paths first, then bare names;
    - temp dirs (the node's IPAM dataDir, the conf files' directory): `<DATA>`, `<TMP>`;
    - container ids: the cases use fixed ids (so the host veth names, hashes of them, are fixed
      too); any random id a case registers would become `<CID1>`, ...;
    - MAC addresses (the kernel picks the veth ends' MACs at random): `<MAC1>`, `<MAC2>`, ...
      numbered by first appearance, so "the same MAC twice" is still checked;
    - timestamps (ISO 8601): `<TIME>`.
    """
    for placeholder, value in run.replacements():
        text = text.replace(value, placeholder)
    macs: dict[str, str] = {}

    def mac(match: re.Match[str]) -> str:
        key = match.group(0).lower()
        if key not in macs:
            macs[key] = f"<MAC{len(macs) + 1}>"
        return macs[key]

    text = MAC_RE.sub(mac, text)
    return TIMESTAMP_RE.sub("<TIME>", text)


# -- what a case runs against -------------------------------------------------------------


@dataclass
class Call:
    rc: int
    stdout: str


@dataclass
class Backend:
    """How a case reaches the plugin: the generator's (622ad9e worktree) or the test's (current checkout)."""

    new_node: Callable[[], Any]  # -> a tests/conftest.py Node: .ns, .data_dir, .cni(...), .pod()
    plan_argv: list[str]  # loxi-plan, as executed
    cni_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. plugin=<launcher>

    def plan(self, *args: str) -> Call:
        proc = subprocess.run(
            [*self.plan_argv, *args],
            capture_output=True,
            text=True,
            timeout=120,
            env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LOXI_SCHEMA_CACHE_DIR": ""},
            cwd="/",
        )
        return Call(proc.returncode, proc.stdout)


class CaseRun:
    """One case: a fresh node, its pods, and the transcript of every call, normalized."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.node = backend.new_node()
        self.pods: list[Any] = []
        self.cids: list[str] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="loxi-golden-"))
        self.out: list[str] = []
        # A new namespace may inherit forwarding from the host (devconf_inherit_init_net): pin it.
        self.node.ns.exec("sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward", check=True)

    def replacements(self) -> list[tuple[str, str]]:
        pairs = [("<NODE>", self.node.ns.path)]
        pairs += [(f"<POD{i}>", pod.path) for i, pod in enumerate(self.pods, 1)]
        pairs += [("<DATA>", str(self.node.data_dir)), ("<TMP>", str(self.tmp))]
        pairs += [("<NODE>", self.node.ns.name)]
        pairs += [(f"<POD{i}>", pod.name) for i, pod in enumerate(self.pods, 1)]
        pairs += [(f"<CID{i}>", cid) for i, cid in enumerate(self.cids, 1)]
        return pairs

    def pod(self) -> Any:
        pod = self.node.pod()
        self.pods.append(pod)
        return pod

    def conf(self, **overrides: Any) -> dict:
        return seed_conf(self.node.data_dir, **overrides)

    def cni(
        self,
        label: str,
        command: str,
        conf: dict | bytes,
        *,
        cid: str = "",
        pod: Any = None,
        netns: str | None = None,
        ifname: str = "eth0",
        args: str = "",
    ) -> Call:
        path = netns if netns is not None else (pod.path if pod is not None else "")
        got = self.node.cni(
            command, conf, container_id=cid, netns=path, ifname=ifname, args=args, **self.backend.cni_kwargs
        )
        call = Call(got.rc, got.stdout)
        where = path if path else "<none>"
        self.record(
            f"{label}: CNI_COMMAND={command} CNI_CONTAINERID={cid} CNI_NETNS={where} CNI_IFNAME={ifname} "
            f"CNI_ARGS={args}",
            call,
        )
        return call

    def plan(self, label: str, *args: str) -> Call:
        call = self.backend.plan(*args)
        self.record(f"{label}: loxi-plan {' '.join(args)}", call)
        return call

    def record(self, header: str, call: Call) -> None:
        # stdout verbatim; its end is marked so that "", "\n" and a missing final newline differ
        if not call.stdout:
            body = "<empty stdout>\n"
        elif call.stdout.endswith("\n"):
            body = call.stdout
        else:
            body = call.stdout + "\n<no newline at end of stdout>\n"
        self.out.append(f"### {header}\nexit {call.rc}\n{body}")

    def text(self) -> str:
        return normalize("".join(self.out), self)

    def write_conf(self, name: str, conf: dict) -> Path:
        path = self.tmp / name
        path.write_text(json.dumps(conf, indent=2))
        return path

    def close(self) -> None:
        for pod in self.pods:
            self.node.factory.delete(pod)
        self.node.factory.delete(self.node.ns)
        for path in sorted(self.tmp.rglob("*"), reverse=True):
            path.unlink() if not path.is_dir() else path.rmdir()
        self.tmp.rmdir()


def seed_conf(data_dir: Path, **overrides: Any) -> dict:
    """The blog post's conf (../shared/seed/000_20ce2d808fe5d2ca.txt, /etc/cni/net.d/01-loxilight.conf)
    as written there, cniVersion 0.2.0 included, with its empty subnet and route filled in with the
    node's pod CIDR and the service CIDR, and without `vlanID` (this host kernel has no 802.1Q)."""
    from tests.conftest import make_conf  # the suite's seed conf, but in the post's cniVersion

    return make_conf(data_dir, **{"cniVersion": "0.2.0", **overrides})


def with_prev(conf: dict, add: Call) -> dict:
    return {**conf, "prevResult": json.loads(add.stdout)}


# -- the cases -----------------------------------------------------------------------------


def case_seed_0_2_0(r: CaseRun) -> None:
    """The blog post's conf as written (0.2.0): ADD, CHECK (not in 0.2.0), DEL, DEL again."""
    conf = r.conf()
    pod = r.pod()
    r.cni("ADD", "ADD", conf, cid="golden-seed", pod=pod)
    r.cni("CHECK", "CHECK", conf, cid="golden-seed", pod=pod)
    r.cni("DEL", "DEL", conf, cid="golden-seed", pod=pod)
    r.cni("DEL again", "DEL", conf, cid="golden-seed", pod=pod)


def case_seed_1_0_0(r: CaseRun) -> None:
    """The seed conf in 1.0.0: ADD, ADD again (idempotent), CHECK with prevResult, a second pod,
    DEL, DEL again, DEL with no CNI_NETNS, CHECK after DEL."""
    conf = r.conf(cniVersion="1.0.0")
    pod, other = r.pod(), r.pod()
    add = r.cni("ADD", "ADD", conf, cid="golden-a", pod=pod)
    r.cni("ADD again", "ADD", conf, cid="golden-a", pod=pod)
    r.cni("CHECK", "CHECK", with_prev(conf, add), cid="golden-a", pod=pod)
    r.cni("ADD second pod", "ADD", conf, cid="golden-b", pod=other)
    r.cni("DEL", "DEL", conf, cid="golden-a", pod=pod)
    r.cni("DEL again", "DEL", conf, cid="golden-a", pod=pod)
    r.cni("CHECK after DEL", "CHECK", with_prev(conf, add), cid="golden-a", pod=pod)
    r.cni("DEL second pod without CNI_NETNS", "DEL", conf, cid="golden-b", netns="")


def case_seed_1_1_0(r: CaseRun) -> None:
    conf = r.conf(cniVersion="1.1.0")
    pod = r.pod()
    add = r.cni("ADD", "ADD", conf, cid="golden-11", pod=pod)
    r.cni("CHECK", "CHECK", with_prev(conf, add), cid="golden-11", pod=pod)
    r.cni("DEL", "DEL", conf, cid="golden-11", pod=pod)


def case_seed_0_4_0(r: CaseRun) -> None:
    conf = r.conf(cniVersion="0.4.0")
    pod = r.pod()
    add = r.cni("ADD", "ADD", conf, cid="golden-04", pod=pod)
    r.cni("CHECK", "CHECK", with_prev(conf, add), cid="golden-04", pod=pod)
    r.cni("DEL", "DEL", conf, cid="golden-04", pod=pod)


def case_default_gateway(r: CaseRun) -> None:
    conf = r.conf(cniVersion="1.0.0", isDefaultGateway=True)
    pod = r.pod()
    add = r.cni("ADD", "ADD", conf, cid="golden-dgw", pod=pod)
    r.cni("CHECK", "CHECK", with_prev(conf, add), cid="golden-dgw", pod=pod)
    r.cni("DEL", "DEL", conf, cid="golden-dgw", pod=pod)
    legacy = r.conf(isDefaultGateway=True)
    add = r.cni("ADD (0.2.0)", "ADD", legacy, cid="golden-dgw-020", pod=pod)
    r.cni("DEL (0.2.0)", "DEL", legacy, cid="golden-dgw-020", pod=pod)


def case_ipam_routes(r: CaseRun) -> None:
    ipam = r.conf()["ipam"]
    routes = [{"dst": "10.96.0.0/12"}, {"dst": "10.100.0.0/16", "gw": "10.244.1.254"}, {"dst": "10.200.7.0/24"}]
    conf = r.conf(cniVersion="1.0.0", ipam={**ipam, "routes": routes, "rangeStart": "10.244.1.10"})
    pod = r.pod()
    add = r.cni("ADD", "ADD", conf, cid="golden-routes", pod=pod)
    r.cni("CHECK", "CHECK", with_prev(conf, add), cid="golden-routes", pod=pod)
    r.cni("DEL", "DEL", conf, cid="golden-routes", pod=pod)


def case_dual_stack(r: CaseRun) -> None:
    ipam = {
        "type": "host-local",
        "ranges": [[{"subnet": "10.244.1.0/24"}], [{"subnet": "fd00:10:244:1::/64"}]],
        "routes": [{"dst": "10.96.0.0/12"}, {"dst": "fd00:10:96::/112"}],
        "dataDir": str(r.node.data_dir),
    }
    conf = r.conf(cniVersion="1.0.0", ipam=ipam)
    pod = r.pod()
    add = r.cni("ADD", "ADD", conf, cid="golden-dual", pod=pod)
    r.cni("CHECK", "CHECK", with_prev(conf, add), cid="golden-dual", pod=pod)
    r.cni("DEL", "DEL", conf, cid="golden-dual", pod=pod)
    dgw = r.conf(cniVersion="1.0.0", ipam=ipam, isDefaultGateway=True)
    add = r.cni("ADD isDefaultGateway", "ADD", dgw, cid="golden-dual-dgw", pod=pod)
    r.cni("CHECK isDefaultGateway", "CHECK", with_prev(dgw, add), cid="golden-dual-dgw", pod=pod)
    r.cni("DEL isDefaultGateway", "DEL", dgw, cid="golden-dual-dgw", pod=pod)


def case_ipmasq(r: CaseRun) -> None:
    conf = r.conf(cniVersion="1.0.0", ipMasq=True)
    pod = r.pod()
    add = r.cni("ADD", "ADD", conf, cid="golden-masq", pod=pod)
    r.cni("CHECK", "CHECK", with_prev(conf, add), cid="golden-masq", pod=pod)
    r.cni("DEL", "DEL", conf, cid="golden-masq", pod=pod)


def case_mtu_hairpin_promisc(r: CaseRun) -> None:
    pod = r.pod()
    hairpin = r.conf(cniVersion="1.0.0", bridge="lxhair0", mtu=9000, hairpinMode=True)
    add = r.cni("ADD mtu 9000 hairpinMode", "ADD", hairpin, cid="golden-hairpin", pod=pod)
    r.cni("CHECK mtu 9000 hairpinMode", "CHECK", with_prev(hairpin, add), cid="golden-hairpin", pod=pod)
    r.cni("DEL mtu 9000 hairpinMode", "DEL", hairpin, cid="golden-hairpin", pod=pod)
    promisc = r.conf(cniVersion="1.0.0", bridge="lxprom0", mtu=1400, promiscMode=True)
    add = r.cni("ADD mtu 1400 promiscMode", "ADD", promisc, cid="golden-promisc", pod=pod)
    r.cni("CHECK mtu 1400 promiscMode", "CHECK", with_prev(promisc, add), cid="golden-promisc", pod=pod)
    r.cni("DEL mtu 1400 promiscMode", "DEL", promisc, cid="golden-promisc", pod=pod)
    both = r.conf(cniVersion="1.0.0", bridge="lxboth0", hairpinMode=True, promiscMode=True)
    r.cni("ADD hairpinMode and promiscMode", "ADD", both, cid="golden-both", pod=pod)


def case_version(r: CaseRun) -> None:
    r.cni("VERSION empty conf", "VERSION", {})
    r.cni("VERSION 1.1.0", "VERSION", r.conf(cniVersion="1.1.0"))
    r.cni("VERSION 0.2.0", "VERSION", r.conf())


def case_status_gc(r: CaseRun) -> None:
    conf = r.conf(cniVersion="1.1.0")
    r.cni("STATUS", "STATUS", conf)
    r.cni("STATUS 1.0.0", "STATUS", r.conf(cniVersion="1.0.0"))
    keep, drop = r.pod(), r.pod()
    r.cni("ADD kept", "ADD", conf, cid="golden-keep", pod=keep)
    r.cni("ADD dropped", "ADD", conf, cid="golden-drop", pod=drop)
    valid = {**conf, "cni.dev/valid-attachments": [{"containerID": "golden-keep", "ifname": "eth0"}]}
    r.cni("GC", "GC", valid)
    r.cni("GC again", "GC", valid)
    r.cni("GC 1.0.0", "GC", {**valid, "cniVersion": "1.0.0"})
    r.cni("ADD after GC (the dropped lease is free)", "ADD", conf, cid="golden-new", pod=drop, ifname="eth1")
    r.cni("STATUS with pods", "STATUS", conf)
    r.cni("DEL kept", "DEL", conf, cid="golden-keep", pod=keep)
    r.cni("DEL new", "DEL", conf, cid="golden-new", pod=drop, ifname="eth1")
    r.cni("GC nothing valid", "GC", {**conf, "cni.dev/valid-attachments": []})


def case_errors(r: CaseRun) -> None:
    conf = r.conf(cniVersion="1.0.0")
    pod = r.pod()
    r.cni("invalid JSON", "ADD", b'{"cniVersion": "1.0.0", "name": ', cid="golden-err", pod=pod)
    r.cni("invalid JSON DEL", "DEL", b"not json", cid="golden-err", pod=pod)
    r.cni("missing CNI_NETNS", "ADD", conf, cid="golden-err", netns="")
    r.cni("unknown CNI_ARGS key", "ADD", conf, cid="golden-err", pod=pod, args="FOO=bar")
    r.cni("unknown CNI_ARGS key, IgnoreUnknown", "ADD", conf, cid="golden-err", pod=pod, args="IgnoreUnknown=1;FOO=bar")
    r.cni("DEL after IgnoreUnknown", "DEL", conf, cid="golden-err", pod=pod)
    r.cni("bad key type: mtu string", "ADD", r.conf(cniVersion="1.0.0", mtu="1500"), cid="golden-err", pod=pod)
    r.cni(
        "bad key type: isGateway string", "ADD", r.conf(cniVersion="1.0.0", isGateway="true"), cid="golden-err", pod=pod
    )
    r.cni(
        "bad key type: ipam.routes object",
        "ADD",
        r.conf(cniVersion="1.0.0", ipam={**conf["ipam"], "routes": {"dst": "10.96.0.0/12"}}),
        cid="golden-err",
        pod=pod,
    )
    r.cni("missing name", "ADD", r.conf(cniVersion="1.0.0", name=None), cid="golden-err", pod=pod)
    r.cni("unknown cniVersion", "ADD", r.conf(cniVersion="9.9.9"), cid="golden-err", pod=pod)
    r.cni("unknown command", "FROB", conf, cid="golden-err", pod=pod)
    r.cni("missing CNI_CONTAINERID", "ADD", conf, cid="", pod=pod)
    r.cni("CNI_NETNS not a namespace", "ADD", conf, cid="golden-err", netns="/nonexistent/golden-netns")
    # a network of its own (bridge, store) whose /30 holds one address besides the gateway
    small = r.conf(
        cniVersion="1.0.0", name="golden_small", bridge="lxsmall0", ipam={**conf["ipam"], "subnet": "10.244.9.0/30"}
    )
    first, second = r.pod(), r.pod()
    r.cni("ADD in a /30 (one free address)", "ADD", small, cid="golden-small-1", pod=first)
    r.cni("subnet exhausted", "ADD", small, cid="golden-small-2", pod=second)
    r.cni("DEL exhausted", "DEL", small, cid="golden-small-2", pod=second)
    r.cni("DEL first", "DEL", small, cid="golden-small-1", pod=first)
    other = r.conf(cniVersion="1.0.0", bridge="lxother0")
    r.cni("ADD", "ADD", conf, cid="golden-conflict", pod=first)
    r.cni("ADD with another conf (another bridge)", "ADD", other, cid="golden-conflict", pod=first)
    r.cni("DEL conflict", "DEL", conf, cid="golden-conflict", pod=first)


PLAN_CID = "0123456789abcdef"


def case_loxi_plan(r: CaseRun) -> None:
    """loxi-plan dry-run / check, text and JSON, for one attachment before and after ADD, then DEL's plan."""
    conf = r.conf(cniVersion="1.0.0")
    path = r.write_conf("10-loxilight.conf", conf)
    pod = r.pod()
    common = ["--container-id", PLAN_CID, "--node-netns", r.node.ns.path]
    for when in ("before ADD", "after ADD"):
        if when == "after ADD":
            r.cni("ADD", "ADD", conf, cid=PLAN_CID, pod=pod)
        r.plan(f"dry-run {when}", "dry-run", str(path), "--netns", pod.path, *common)
        r.plan(f"dry-run json {when}", "dry-run", str(path), "--netns", pod.path, *common, "--output", "json")
        r.plan(f"check {when}", "check", str(path), "--netns", pod.path, *common)
        r.plan(f"check json {when}", "check", str(path), "--netns", pod.path, *common, "--output", "json")
    r.plan("dry-run DEL", "dry-run", str(path), *common, "--command", "DEL")
    r.plan("dry-run DEL json", "dry-run", str(path), *common, "--command", "DEL", "--output", "json")
    r.cni("DEL", "DEL", conf, cid=PLAN_CID, pod=pod)
    r.plan("dry-run DEL after DEL", "dry-run", str(path), *common, "--command", "DEL")


CASES: dict[str, Callable[[CaseRun], None]] = {
    "add_seed_0.2.0": case_seed_0_2_0,
    "add_check_del_0.4.0": case_seed_0_4_0,
    "add_check_del_1.0.0": case_seed_1_0_0,
    "add_check_del_1.1.0": case_seed_1_1_0,
    "add_default_gateway": case_default_gateway,
    "add_ipam_routes": case_ipam_routes,
    "add_dual_stack": case_dual_stack,
    "add_ipmasq": case_ipmasq,
    "add_mtu_hairpin_promisc": case_mtu_hairpin_promisc,
    "version": case_version,
    "status_gc": case_status_gc,
    "errors": case_errors,
    "loxi_plan": case_loxi_plan,
}


def run_case(name: str, backend: Backend) -> str:
    """Run one case in fresh throw-away namespaces (removed in the finally); its normalized transcript."""
    r = CaseRun(backend)
    try:
        CASES[name](r)
        return r.text()
    finally:
        r.close()


def golden_path(name: str) -> Path:
    return RESULTS / f"{name}.txt"


# -- the generator -------------------------------------------------------------------------


def _render(worktree: Path, site: str, entry: str | None, out: Path) -> None:
    """A launcher rendered by the worktree's own loxi.install.commands.render_launcher."""
    code = (
        "import sys, json\n"
        f"sys.path[:0] = [{str(worktree)!r}, {site!r}]\n"
        "from loxi.install import commands\n"
        f"text = commands.render_launcher(paths=[{str(worktree)!r}, {site!r}])\n"
        f"entry = {entry!r}\n"
        "if entry is not None:\n"
        "    text = text.replace(commands.ENTRY, entry)\n"
        "    assert entry in text\n"
        "sys.stdout.write(text)\n"
    )
    text = subprocess.run([sys.executable, "-IS", "-c", code], check=True, capture_output=True, text=True).stdout
    out.write_text(text)
    out.chmod(0o755)


def _verify(launcher: Path, worktree: Path, module: str) -> None:
    """Run the launcher's interpreter and path, importing `module`: its __file__ must be in the worktree."""
    lines = launcher.read_text().splitlines()
    python = lines[0][2:].split()[0]
    path_line = next(line for line in lines if line.startswith("sys.path.extend("))
    files = ", ".join(f"{m}.__file__" for m in (module, "compiler", "applier", "intent"))
    code = f"import sys\n{path_line}\nimport {module}, compiler, applier, intent\nprint({files})"
    shown = subprocess.run([python, "-IS", "-c", code], check=True, capture_output=True, text=True, cwd="/").stdout
    print(f"{launcher.name}: imports {shown.strip()}")
    for file in shown.split():
        assert file.startswith(str(worktree) + "/"), f"{file} is not the worktree's"


def main(argv: list[str]) -> int:
    worktree = Path(argv[1] if len(argv) > 1 else "/tmp/golden-base").resolve()
    head = subprocess.run(
        ["git", "-C", str(worktree), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert head.startswith(BASE_COMMIT), f"{worktree} is at {head}, not {BASE_COMMIT}"
    site = next(p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix))
    # The harness (Node, NetnsFactory) is the worktree's tests/conftest.py too.
    sys.path.insert(0, str(worktree))
    for mod in [m for m in sys.modules if m == "tests" or m.startswith("tests.")]:
        del sys.modules[mod]
    from tests import conftest

    assert conftest.__file__.startswith(str(worktree) + "/"), conftest.__file__
    bindir = Path(tempfile.mkdtemp(prefix="loxi-golden-bin-"))
    try:
        plugin, plan = bindir / "loxi-cni", bindir / "loxi-plan"
        _render(worktree, site, None, plugin)
        _render(worktree, site, "from loxi.plan.cli import main\n\nmain()", plan)
        _verify(plugin, worktree, "loxi.plugin.entry")
        _verify(plan, worktree, "loxi.plan.cli")
        factory = conftest.NetnsFactory()

        data_dirs: list[Path] = []

        def new_node() -> Any:
            data_dirs.append(Path(tempfile.mkdtemp(prefix="loxi-golden-node-")))
            return conftest.Node(factory("node"), data_dirs[-1] / "ipam", factory, "")

        backend = Backend(new_node=new_node, plan_argv=[str(plan)], cni_kwargs={"plugin": plugin})
        RESULTS.mkdir(parents=True, exist_ok=True)
        only = set(argv[2:])
        try:
            for name in CASES:
                if only and name not in only:
                    continue
                text = run_case(name, backend)
                header = f"# golden results: {name}, generated by tests/golden/make_results.py from {head}\n"
                golden_path(name).write_text(header + text)
                print(f"wrote {golden_path(name)}")
        finally:
            factory.cleanup()
            for data in data_dirs:
                shutil.rmtree(data, ignore_errors=True)
    finally:
        for path in bindir.iterdir():
            path.unlink()
        bindir.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
