"""The installed launcher is a working loxi-cni: run as a runtime runs it, in a throw-away node namespace."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Node, make_conf, needs_root


def install_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loxi.install", *args], capture_output=True, text=True, timeout=180, check=False
    )


@pytest.fixture(scope="module")
def launcher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bin_dir = tmp_path_factory.mktemp("cni-bin")
    proc = install_cli("install", "--cni-bin-dir", str(bin_dir), "--shim", "")  # the Python launcher as loxi-cni
    assert proc.returncode == 0, proc.stderr
    assert "is the Python launcher" in proc.stdout
    return bin_dir / "loxi-cni"


def test_install_cli_is_idempotent_and_uninstall_cleans(tmp_path: Path) -> None:
    args = ("--cni-bin-dir", str(tmp_path / "bin"), "--cni-conf-dir", str(tmp_path / "net.d"), "--shim", "")
    tmpl = ("--template", "loxilight", "--node-pod-cidr", "10.244.7.0/24")
    first = install_cli("install", *args, *tmpl)
    assert first.returncode == 0, first.stderr
    assert "launcher" in first.stdout and "created" in first.stdout
    second = install_cli("install", *args, *tmpl)
    assert second.returncode == 0 and second.stdout.strip().endswith("install: unchanged"), second.stdout
    bad = install_cli("install", *args, "--template", "loxilight", "--node-pod-cidr", "nonsense")
    assert bad.returncode == 1 and "--node-pod-cidr" in bad.stderr and bad.stdout == ""
    gone = install_cli("uninstall", "--cni-bin-dir", str(tmp_path / "bin"))
    assert gone.returncode == 0 and gone.stdout.count("removed") == 2, gone.stdout
    assert sorted(p.name for p in (tmp_path / "bin").iterdir()) == []


def test_install_places_the_shim_when_built(tmp_path: Path) -> None:
    """With a built shim, loxi-cni is the shim and the in-process launcher is beside it; without, as before."""
    from tests.conftest import shim_bin_dir

    shim = shim_bin_dir() / "loxi-cni"
    bin_dir = tmp_path / "bin"
    first = install_cli("install", "--cni-bin-dir", str(bin_dir), "--shim", str(shim))
    assert first.returncode == 0, first.stderr
    assert (
        f"shim {bin_dir}/loxi-cni: created" in first.stdout and f"{bin_dir}/loxi-cni is the static shim" in first.stdout
    )
    assert (bin_dir / "loxi-cni").read_bytes() == shim.read_bytes()
    assert "main_in_process()" in (bin_dir / "loxi-cni-inprocess").read_text()
    proc = subprocess.run(
        [str(bin_dir / "loxi-cni")],
        env={"CNI_COMMAND": "ADD", "LOXI_AGENT_SOCKET": ""},
        input=b"{}",
        capture_output=True,
        timeout=60,
        cwd="/",
    )
    assert proc.returncode == 1 and json.loads(proc.stdout)["code"] == 4  # in-process, through the launcher
    again = install_cli("install", "--cni-bin-dir", str(bin_dir), "--shim", str(shim))
    assert again.stdout.strip().endswith("install: unchanged"), again.stdout
    back = install_cli("install", "--cni-bin-dir", str(bin_dir), "--shim", "")
    assert f"launcher {bin_dir}/loxi-cni-inprocess: removed" in back.stdout and "is the Python launcher" in back.stdout
    assert sorted(p.name for p in bin_dir.iterdir()) == [".loxi-cni.manifest.json", "loxi-cni"]
    install_cli("install", "--cni-bin-dir", str(bin_dir), "--shim", str(shim))
    gone = install_cli("uninstall", "--cni-bin-dir", str(bin_dir))
    assert gone.returncode == 0 and gone.stdout.count("removed") == 2, gone.stdout
    assert list(bin_dir.iterdir()) == []


def test_launcher_answers_version_with_an_empty_environment(launcher: Path) -> None:
    proc = subprocess.run([str(launcher)], env={"CNI_COMMAND": "VERSION"}, capture_output=True, timeout=30, cwd="/")
    assert proc.returncode == 0 and "1.0.0" in json.loads(proc.stdout)["supportedVersions"]
    assert launcher.read_text().startswith(f"#!{sys.executable} -IS\n")


@needs_root
def test_launcher_add_del_in_a_node_namespace(node: Node, launcher: Path) -> None:
    conf = make_conf(node.data_dir, bridge="lxinst0")
    pod = node.pod()
    add = node.cni("ADD", conf, container_id="inst1", netns=pod.path, plugin=launcher)
    assert add.rc == 0, add
    assert add.json["ips"][0]["address"].startswith("10.244.1.")
    assert pod.addresses("eth0") == [add.json["ips"][0]["address"]]
    delete = node.cni("DEL", conf, container_id="inst1", netns="", plugin=launcher)
    assert delete.rc == 0 and delete.stdout == "", delete
    assert node.ns.loxi_links() == [] and node.store_files("loxilight_cni") == []


HOOKED = """\
import sys
sys.path.extend({paths!r})
import loxi.plugin.cni
from loxi import engine
from loxi.plugin import cnilog
if not hasattr(loxi.plugin.cni.run, "__wrapped__"):  # the hook lines, until loxi/plugin/cni.py has them
    loxi.plugin.cni.run = cnilog.logged(loxi.plugin.cni.run)
    for name in ("cmd_del", "cmd_check"):
        setattr(engine, name, (lambda f: lambda *a: cnilog.note_plan(f(*a)))(getattr(engine, name)))
    add = engine.cmd_add
    engine.cmd_add = lambda *a: (lambda o: (cnilog.note_plan(o.plan), o)[1])(add(*a))
loxi.plugin.cni.main_in_process()
"""


@needs_root
def test_structured_log_lines_one_per_command(node: Node, tmp_path: Path) -> None:
    from loxi.install.launcher import import_paths

    hooked = tmp_path / "loxi-cni"
    hooked.write_text(f"#!{sys.executable} -IS\n" + HOOKED.format(paths=import_paths()))
    hooked.chmod(0o755)
    log = tmp_path / "log" / "cni.log"
    conf = make_conf(node.data_dir, bridge="lxinst1", logFile=str(log))
    pod = node.pod()
    add = node.cni("ADD", conf, container_id="logged1", netns=pod.path, plugin=hooked)
    assert add.rc == 0, add
    json.loads(add.stdout)  # stdout is still exactly one JSON document
    assert node.cni("DEL", conf, container_id="logged1", netns="", plugin=hooked).rc == 0
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [x["command"] for x in lines] == ["ADD", "DEL"]
    assert lines[0]["containerID"] == "logged1" and lines[0]["network"] == "loxilight_cni"
    assert lines[0]["rc"] == 0 and lines[0]["plan"].endswith("to delete") and lines[0]["ips"]
    assert lines[1]["netns"] == "" and lines[1]["durationMs"] > 0
