"""Property-based tests (hypothesis) of the in-process entry point `loxi.plugin.cni.run`.

Generated confs (subsets of the known keys, each with a well-typed or a junk
value, plus junk keys), environments (random CNI_* values) and CNI_ARGS strings
are fed to `run(environ, stdin, stdout, stderr)`. Whatever the input:

* the exit status is 0 or 1;
* stdout is exactly one JSON document, or empty (a bare call without CNI_COMMAND);
* on 1 that document is a CNI error: an int `code`, a str `msg`, a str `details` if any;
* never a traceback on stdout, and never code 110 (loxi-cni's "this is a bug").

No kernel and no store is touched: only VERSION, CHECK and ADD run, with a
CNI_NETNS that does not exist. loxi.engine.add opens the pod namespace before it
calls IPAM (`with locks.exclusive(lock), pod_namespaces(request)` comes before
`ipam.add()`), and CHECK opens it before IPAM or any observation, so a missing
namespace ends both with code 8 before anything outside the lock dir is opened.
DEL, GC and STATUS only run with CNI_PATH missing, which read_request refuses
(code 4) before anything else. The lock dir is redirected to a temp dir, and
every example checks that nothing but lock files appeared there and that the
store dirs it could name were never created.
"""

from __future__ import annotations

import functools
import io
import json
import os
import string
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from intent.env import COMMANDS
from intent.versions import SUPPORTED_VERSIONS
from loxi.plugin.cni import run

EXAMPLES = Counter()
# Codes an ADD/CHECK that fails before the kernel may give (README "Errors"); 110 is a bug.
# 999: what Go's LoadArgs refuses in CNI_ARGS (a plain Go error there, as in the reference).
EARLY_CODES = {1, 2, 4, 6, 7, 8, 999}
MISSING_NETNS_ROOT = "/nonexistent-loxi-property-test"
PROFILE = settings(
    max_examples=300,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module", autouse=True)
def private_lock_dir(tmp_path_factory) -> Iterator[Path]:
    """ADD takes the attachment lock (a file) before it opens the namespace: keep those files in a temp dir."""
    assert not os.path.exists(MISSING_NETNS_ROOT)
    locks = tmp_path_factory.mktemp("locks")
    saved = os.environ.get("LOXI_LOCK_DIR")
    os.environ["LOXI_LOCK_DIR"] = str(locks)
    try:
        yield locks
    finally:
        if saved is None:
            os.environ.pop("LOXI_LOCK_DIR", None)
        else:
            os.environ["LOXI_LOCK_DIR"] = saved
        total = sum(EXAMPLES.values())
        print(f"\ngenerated inputs tried (in-process): {total} {dict(sorted(EXAMPLES.items()))}")


@pytest.fixture(scope="module")
def store_root(tmp_path_factory) -> Path:
    """The only absolute dataDir a generated conf may name; it must never be created."""
    return tmp_path_factory.mktemp("stores") / "never"


# -- strategies -----------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
ifname_like = st.text(alphabet=string.ascii_letters + string.digits + "._-:/ \t\n\0é", min_size=0, max_size=18)
ids = st.one_of(
    st.from_regex(r"\A[a-zA-Z0-9][a-zA-Z0-9_.\-]{0,40}\Z"),
    st.text(max_size=40),
    st.sampled_from(["..", ".", "../../etc", "/etc/passwd", "a/b", "a\nb", "x" * 1025]),
)
cidr4 = st.builds(lambda a, b, p: f"10.{a}.{b}.0/{p}", st.integers(0, 255), st.integers(0, 255), st.integers(8, 32))
ip4 = st.builds(lambda a, b, c: f"10.{a}.{b}.{c}", st.integers(0, 255), st.integers(0, 255), st.integers(0, 255))
junk_ip = st.sampled_from(["", "10.1.1", "10.1.1.1/33", "fe80::1%eth0", "::", "256.0.0.1", "x", "10.1.1.1\n"])
macs = st.one_of(
    st.from_regex(r"\A[0-9a-f]{2}(:[0-9a-f]{2}){5}\Z"),
    st.sampled_from(["01:00:5e:00:00:01", "zz:zz:zz:zz:zz:zz", "02:00:00:00:00", ""]),
)
routes = st.lists(
    st.fixed_dictionaries({"dst": cidr4 | junk_ip}, optional={"gw": ip4 | junk_ip, "mtu": json_values}),
    max_size=3,
)


def data_dirs(root: Path):
    """A dataDir under the never-created root, or one the plugin must refuse, or no string at all."""
    return st.one_of(
        st.builds(lambda s: f"{root}/{s}", st.text(alphabet=string.ascii_letters, max_size=8)),
        st.sampled_from(["relative", "./x", f"{root}/../x", f"{root}/a\0b", f"{root}/a\nb", "/..", ""]),
        json_values,
    )


def ipam_confs(root: Path):
    legacy = st.fixed_dictionaries(
        {},
        optional={
            "type": st.sampled_from(["host-local", "static", "dhcp", "../../bin/sh", "", "nope\0"]) | json_values,
            "subnet": cidr4 | junk_ip | json_values,
            "rangeStart": ip4 | junk_ip,
            "rangeEnd": ip4 | junk_ip,
            "gateway": ip4 | junk_ip,
            "dataDir": data_dirs(root),
            "routes": routes | json_values,
            "ranges": st.lists(
                st.lists(st.fixed_dictionaries({"subnet": cidr4 | junk_ip}, optional={"gateway": ip4}), max_size=2),
                max_size=2,
            )
            | json_values,
            "resolvConf": st.sampled_from(["/nonexistent-resolv.conf", "", "\0"]) | json_values,
            "dns": json_values,
        },
    )
    return legacy | json_values


def known_keys(root: Path) -> dict:
    """Every documented conf key with a strategy for a plausible value; junk is mixed in per key."""
    return {
        "cniVersion": st.sampled_from([*SUPPORTED_VERSIONS, "", "0.5.0", "1.0", "v1.0.0", "1.0.0\0"]),
        "name": ids,
        "type": st.just("loxi-cni") | st.text(max_size=10),
        "bridge": ifname_like,
        "isGateway": st.booleans(),
        "isDefaultGateway": st.booleans(),
        "forceAddress": st.booleans(),
        "mtu": st.integers(-10, 70000),
        "hairpinMode": st.booleans(),
        "promiscMode": st.booleans(),
        "vlanID": st.integers(-1, 5000),
        "vlan": st.integers(-1, 5000),
        "preserveDefaultVlan": st.booleans(),
        "portIsolation": st.booleans(),
        "enabledad": st.booleans(),
        "ipMasq": st.booleans(),
        "macspoofchk": st.booleans(),
        "disableContainerInterface": st.booleans(),
        "vlanTrunk": st.lists(
            st.fixed_dictionaries(
                {}, optional={"id": st.integers(-1, 5000), "minID": st.integers(0, 5000), "maxID": st.integers(0, 5000)}
            ),
            max_size=3,
        ),
        "mac": macs,
        "uplink": ifname_like,
        "uplinkMode": st.sampled_from(["vlan", "trunk", "bond"]),
        "ipam": ipam_confs(root),
        "dns": st.fixed_dictionaries(
            {}, optional={"nameservers": st.lists(ip4 | junk_ip, max_size=2), "domain": st.text(max_size=5)}
        ),
        "runtimeConfig": st.fixed_dictionaries(
            {}, optional={"mac": macs, "ips": st.lists(ip4 | junk_ip | json_values, max_size=2)}
        ),
        "args": st.fixed_dictionaries(
            {}, optional={"cni": st.fixed_dictionaries({}, optional={"mac": macs, "ips": st.lists(ip4, max_size=2)})}
        ),
        "prevResult": json_values
        | st.fixed_dictionaries(
            {"cniVersion": st.sampled_from(SUPPORTED_VERSIONS)},
            optional={"interfaces": json_values, "ips": json_values, "routes": json_values},
        ),
        "cni.dev/valid-attachments": json_values,
    }


@functools.lru_cache(maxsize=4)
def cached_known_keys(root: Path) -> dict:
    return known_keys(root)


PREV_RESULT = {
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "eth0", "sandbox": f"{MISSING_NETNS_ROOT}/ns"}],
    "ips": [{"address": "10.250.0.2/24", "interface": 0}],
}


def base_conf(root: Path, prev: bool = False) -> dict:
    """A valid conf: mutations start from here so most examples get deep into load_netconf."""
    conf = {
        "cniVersion": "1.0.0",
        "name": "props",
        "type": "loxi-cni",
        "bridge": "br-props",
        "isGateway": True,
        "ipam": {"type": "host-local", "subnet": "10.250.0.0/24", "dataDir": str(root)},
    }
    if prev:
        conf["prevResult"] = PREV_RESULT
    return conf


@st.composite
def confs(draw, root: Path, prev: bool = False) -> dict:
    """The valid base with up to five keys removed, set to a plausible value, or set to junk; plus junk keys."""
    keys = cached_known_keys(root)
    conf = base_conf(root, prev)
    for key in draw(st.lists(st.sampled_from(sorted(keys)), unique=True, max_size=5)):
        action = draw(st.integers(0, 9))
        if action == 0:
            conf.pop(key, None)
        elif action == 1:
            conf[key] = draw(json_values)
        else:
            conf[key] = draw(keys[key])
    for key, value in draw(st.dictionaries(st.text(max_size=12), json_values, max_size=2)).items():
        conf.setdefault(key, value)
    return conf


@st.composite
def stdins(draw, root: Path, prev: bool = False) -> bytes:
    """Mostly a generated conf; sometimes broken JSON, a non-object, invalid UTF-8, nothing."""
    kind = draw(st.integers(0, 19))
    if kind <= 16:
        return json.dumps(draw(confs(root, prev))).encode()
    if kind == 17:
        return json.dumps(draw(json_values)).encode()
    if kind == 18:
        text = json.dumps(draw(confs(root))).encode()
        return text[: draw(st.integers(0, len(text)))]
    return draw(st.binary(max_size=64))


cni_arg_keys = st.sampled_from(["IgnoreUnknown", "IP", "MAC", "K8S_POD_NAME", "K8S_POD_NAMESPACE", "FOO", ""])
cni_arg_values = st.one_of(
    st.sampled_from(["1", "true", "0", "false", "TRUE", "maybe", ""]),
    ip4,
    junk_ip,
    macs,
    st.text(alphabet=string.printable + "\0é", max_size=12),
)


@st.composite
def cni_args(draw) -> str:
    if draw(st.booleans()):
        return draw(st.text(alphabet="=;" + string.ascii_letters + "\0 \n", max_size=30))
    pairs = draw(st.lists(st.tuples(cni_arg_keys, cni_arg_values), max_size=4))
    separator = draw(st.sampled_from([";", ";", ";;", ","]))
    return separator.join(f"{k}={v}" for k, v in pairs)


def netns_values() -> st.SearchStrategy[str]:
    """Never a path that exists: a missing absolute path, a relative one, empty, or one with a NUL."""
    name = st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=1, max_size=12)
    missing = st.builds(lambda s: f"{MISSING_NETNS_ROOT}/{s}", name)
    others = st.one_of(
        st.builds(lambda s: f"relative-{s}", name),
        st.just(""),
        st.builds(lambda s: f"{MISSING_NETNS_ROOT}/{s}\0", name),
    )
    return st.integers(0, 9).flatmap(lambda i: missing if i else others)


@st.composite
def environments(draw, commands, keep_command: bool = True) -> dict[str, str]:
    def mostly(good: str, hostile: st.SearchStrategy[str]) -> str:
        return good if draw(st.integers(0, 9)) else draw(hostile)

    env = {
        "CNI_COMMAND": draw(commands),
        "CNI_CONTAINERID": mostly("0123abcd", ids),
        "CNI_NETNS": draw(netns_values()),
        "CNI_IFNAME": mostly("eth0", ifname_like),
        "CNI_ARGS": mostly("IgnoreUnknown=1;K8S_POD_NAME=p;K8S_POD_NAMESPACE=default", cni_args()),
        "CNI_PATH": mostly("/usr/lib/cni:/opt/cni/bin", st.sampled_from(["/nonexistent", ""])),
    }
    # some variables are left out altogether, as a broken runtime would
    droppable = sorted(var for var in env if var != "CNI_COMMAND" or not keep_command)
    if not draw(st.integers(0, 4)):
        for var in draw(st.lists(st.sampled_from(droppable), unique=True, max_size=3)):
            del env[var]
    return env


junk_commands = st.one_of(
    st.sampled_from(["add", "Del", "DELETE", "VERSION ", " ADD", "ADD\0", "version"]),
    st.text(max_size=8).filter(lambda c: c not in COMMANDS),
)

# -- the properties ---------------------------------------------------------------


def call(environ: dict[str, str], stdin: bytes) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = run(environ, io.BytesIO(stdin), out, err)
    return rc, out.getvalue(), err.getvalue()


def check_outcome(environ: dict[str, str], stdin: bytes, rc: int, stdout: str, stderr: str) -> dict | None:
    context = f"environ={environ!r}\nstdin={stdin[:400]!r}\nstdout={stdout[:400]}\nstderr={stderr[-800:]}"
    assert rc in (0, 1), context
    assert "Traceback" not in stdout, context
    if rc == 0 and not stdout:
        assert not environ.get("CNI_COMMAND") or environ.get("CNI_COMMAND") in ("DEL", "GC", "STATUS"), context
        return None
    doc = json.loads(stdout)  # exactly one document: trailing data would raise
    assert isinstance(doc, dict), context
    if rc == 1:
        assert isinstance(doc.get("code"), int) and not isinstance(doc["code"], bool), context
        assert isinstance(doc.get("msg"), str) and doc["msg"], context
        assert isinstance(doc.get("details", ""), str), context
        assert set(doc) <= {"cniVersion", "code", "msg", "details"}, context
        assert doc["code"] != 110, f"internal error (a bug in loxi-cni)\n{context}"
    return doc


def assert_nothing_written(locks: Path, store_root: Path) -> None:
    assert not store_root.exists() and not store_root.parent.joinpath("..", "x").resolve().exists()
    stray = [p.name for p in locks.iterdir() if not (p.name.startswith("attach-") and p.name.endswith(".lock"))]
    assert stray == [], stray


@PROFILE
@given(data=st.data())
def test_version_always_answers_one_document(data):
    environ = data.draw(environments(st.just("VERSION")))
    stdin = data.draw(stdins(Path("/nonexistent-loxi-store")))
    rc, stdout, stderr = call(environ, stdin)
    doc = check_outcome(environ, stdin, rc, stdout, stderr)
    assert rc == 0 and doc == {"cniVersion": "1.1.0", "supportedVersions": list(SUPPORTED_VERSIONS)}
    EXAMPLES["VERSION"] += 1


@settings(PROFILE, max_examples=1400)
@given(data=st.data())
def test_add_with_any_conf_env_and_args_fails_cleanly_before_the_kernel(data, private_lock_dir, store_root):
    environ = data.draw(environments(st.just("ADD")))
    stdin = data.draw(stdins(store_root))
    rc, stdout, stderr = call(environ, stdin)
    doc = check_outcome(environ, stdin, rc, stdout, stderr)
    assert rc == 1 and doc is not None, "an ADD without a namespace cannot succeed"
    assert doc["code"] in EARLY_CODES, doc
    assert_nothing_written(private_lock_dir, store_root)
    EXAMPLES[f"ADD code {doc['code']}"] += 1


@settings(PROFILE, max_examples=500)
@given(data=st.data())
def test_check_with_any_conf_env_and_args_fails_cleanly_before_the_kernel(data, private_lock_dir, store_root):
    environ = data.draw(environments(st.just("CHECK")))
    stdin = data.draw(stdins(store_root, prev=True))
    rc, stdout, stderr = call(environ, stdin)
    doc = check_outcome(environ, stdin, rc, stdout, stderr)
    assert rc == 1 and doc is not None and doc["code"] in EARLY_CODES, doc
    assert_nothing_written(private_lock_dir, store_root)
    EXAMPLES[f"CHECK code {doc['code']}"] += 1


@settings(PROFILE, max_examples=400)
@given(data=st.data())
def test_unknown_commands_and_commands_without_cni_path_are_refused_with_code_4(data, private_lock_dir, store_root):
    commands = st.one_of(junk_commands, st.sampled_from(["DEL", "GC", "STATUS", "ADD", "CHECK"]))
    environ = data.draw(environments(commands, keep_command=False))
    environ.pop("CNI_PATH", None)  # DEL, GC and STATUS must stop at the environment, before the kernel
    stdin = data.draw(stdins(store_root))
    rc, stdout, stderr = call(environ, stdin)
    doc = check_outcome(environ, stdin, rc, stdout, stderr)
    if not environ.get("CNI_COMMAND"):
        assert rc == 0 and doc is None and "CNI protocol versions supported" in stderr
    else:
        assert rc == 1 and doc is not None and doc["code"] == 4, doc
    assert_nothing_written(private_lock_dir, store_root)
    EXAMPLES["junk command / no CNI_PATH"] += 1


@settings(PROFILE, max_examples=500)
@given(args=cni_args(), ifname=ifname_like, cid=ids)
def test_cni_args_and_names_never_escape_the_environment_check(args, ifname, cid, private_lock_dir, store_root):
    """A valid conf, random CNI_ARGS / ifname / container id: refused with 4 (999 for what Go's LoadArgs
    refuses, as the reference), or reaches the netns (8)."""
    conf = {
        "cniVersion": "1.0.0",
        "name": "props",
        "type": "loxi-cni",
        "bridge": "br-props",
        "ipam": {"type": "host-local", "subnet": "10.250.0.0/24", "dataDir": str(store_root)},
    }
    environ = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": cid,
        "CNI_NETNS": f"{MISSING_NETNS_ROOT}/ns",
        "CNI_IFNAME": ifname,
        "CNI_ARGS": args,
        "CNI_PATH": "/usr/lib/cni",
    }
    stdin = json.dumps(conf).encode()
    rc, stdout, stderr = call(environ, stdin)
    doc = check_outcome(environ, stdin, rc, stdout, stderr)
    assert rc == 1 and doc is not None and doc["code"] in (4, 7, 8, 999), doc
    assert_nothing_written(private_lock_dir, store_root)
    EXAMPLES[f"CNI_ARGS code {doc['code']}"] += 1


@pytest.mark.parametrize("mac", ["01:00:5e:00:00:01", "03:00:00:00:00:00"])
def test_a_multicast_mac_in_cni_args_is_an_environment_error(mac, store_root):
    """README "Errors": 4 is for invalid CNI_ARGS (named); a malformed MAC there already gets 4."""
    environ = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "mac",
        "CNI_NETNS": f"{MISSING_NETNS_ROOT}/ns",
        "CNI_IFNAME": "eth0",
        "CNI_ARGS": f"MAC={mac}",
        "CNI_PATH": "/usr/lib/cni",
    }
    malformed = call({**environ, "CNI_ARGS": "MAC=zz:zz:zz:zz:zz:zz"}, json.dumps(base_conf(store_root)).encode())
    assert json.loads(malformed[1])["code"] == 4
    rc, stdout, _ = call(environ, json.dumps(base_conf(store_root)).encode())
    assert rc == 1 and json.loads(stdout)["code"] == 4, stdout
