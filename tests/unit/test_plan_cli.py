"""loxi-plan's command line: help with an example everywhere, one-line errors, exit codes, conf loading."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from intent.errors import CniError
from loxi.plan.cli import build_parser, run
from loxi.plan.conf import load_conf, plugin_object

COMMANDS = ("dry-run", "check", "validate", "render", "graph", "show")


def loxi_plan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "loxi.plan.cli", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command):
    proc = loxi_plan(command, "--help")
    assert proc.returncode == 0
    assert "example:\n  loxi-plan " + command in proc.stdout


def test_usage_errors_are_one_line_and_exit_1():
    proc = loxi_plan("dry-run")
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("loxi-plan: error: the following arguments")
    proc = loxi_plan("frobnicate")
    assert proc.returncode == 1 and "invalid choice" in proc.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["graph", "/nonexistent.conf"], "loxi-plan: error: /nonexistent.conf: No such file or directory"),
        (["dry-run", "CONF", "--container-id", "../x"], "loxi-plan: error: invalid characters in containerID: ../x"),
        (["dry-run", "CONF", "--ifname", "a/b", "--netns", "/x"], "interface name contains / or : or whitespace"),
        (["dry-run", "CONF"], "loxi-plan: error: dry-run: --netns (the pod's network namespace) is required for ADD"),
        (
            ["dry-run", "CONF", "--netns", "/nonexistent/ns"],
            "loxi-plan: error: --netns /nonexistent/ns: no such namespace",
        ),
        (["dry-run", "CONF", "--netns", "relative"], "not an absolute path to a network namespace"),
        (["dry-run", "CONF", "--args", "Bogus=1", "--netns", "/x"], "ARGS: unknown args"),
        (
            ["check", "CONF", "--container-id", "c", "--netns", "/x", "--node-netns", "/nonexistent"],
            "--node-netns /nonexistent: no such namespace",
        ),
        (["render"], "loxi-plan: error: render: TEMPLATE is required (or --list)"),
    ],
)
def test_errors_are_one_clear_line(tmp_path, capsys, argv, message):
    conf = tmp_path / "c.conf"
    conf.write_text(json.dumps({"cniVersion": "1.0.0", "name": "n", "type": "loxi-cni", "bridge": "br0"}))
    argv = [str(conf) if a == "CONF" else a for a in argv]
    assert run(argv) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_conf_the_plugin_refuses_is_an_error(tmp_path, capsys):
    conf = tmp_path / "c.conf"
    conf.write_text(json.dumps({"cniVersion": "1.0.0", "name": "n", "type": "loxi-cni", "mtu": "big"}))
    assert run(["graph", str(conf)]) == 1
    assert capsys.readouterr().err == "loxi-plan: error: invalid network config: mtu: 'big' is not of type 'integer'\n"


def test_parser_knows_every_command():
    parser = build_parser()
    minimal = {"check": ["x", "--container-id", "c"], "show": [], "render": [], "validate": ["x"]}
    for command in COMMANDS:
        assert parser.parse_args([command, *minimal.get(command, ["x"])]).handler


def test_conflist_gives_the_loxi_plugin_with_name_and_version_injected(tmp_path):
    doc = {
        "cniVersion": "0.4.0",
        "cniVersions": ["1.0.0", "9.9.9"],
        "name": "pods",
        "plugins": [{"type": "portmap"}, {"type": "loxi-cni", "bridge": "br0", "name": "ignored"}],
    }
    path = tmp_path / "l.conflist"
    path.write_text(json.dumps(doc))
    loaded = load_conf(str(path))
    assert loaded.plugin_index == 1
    assert loaded.doc == {"type": "loxi-cni", "bridge": "br0", "name": "pods", "cniVersion": "1.0.0"}
    assert json.loads(loaded.stdin) == loaded.doc
    single, index = plugin_object({"type": "loxi-cni", "name": "x"}, "c.conf")
    assert index is None and single["name"] == "x"
    with pytest.raises(CniError, match="no plugin of type 'loxi-cni'"):
        plugin_object({"name": "n", "plugins": [{"type": "bridge"}]}, "l.conflist")
