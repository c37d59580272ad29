"""`loxi-plan install` / `uninstall` as subcommands: their options, help, and what they print.

`register` adds both to loxi-plan's parser (`loxi/plan/cli.py`); `main` runs
them on their own (`python -m loxi.install`). The work is in `loxi.install.node`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from loxi.install.base import (
    DEFAULT_BIN_DIR,
    DEFAULT_CONF_DIR,
    DEFAULT_CONF_NAME,
    INPROCESS_NAME,
    MANIFEST_NAME,
    PLUGIN_NAME,
    PROG,
    InstallError,
)
from loxi.install.launcher import default_shim
from loxi.install.node import install, uninstall
from loxi.install.private import ALLOW_FLAG
from loxi.plan.subcommand import add_subcommand

INSTALL_HELP = "Place the loxi-cni launcher (and the node's conflist) for container runtimes; idempotent."
INSTALL_EXAMPLES = """\
examples:
  loxi-plan install
  loxi-plan install --template loxilight --node-pod-cidr 10.244.1.0/24
  loxi-plan install --cni-bin-dir /opt/cni/bin --cni-conf-dir /etc/cni/net.d \\
      --template /etc/loxi/my.conflist.j2 --node-pod-cidr 10.244.1.0/24 --var vlan_id=0 --conf-name 10-loxi.conflist

exit status: 0 done (every line says created, updated, replaced or unchanged), 1 error (nothing half-written)"""
UNINSTALL_HELP = "Remove exactly what install placed (per its manifest); files changed since are kept, with a warning."
UNINSTALL_EXAMPLES = """\
examples:
  loxi-plan uninstall
  loxi-plan uninstall --cni-bin-dir /opt/cni/bin

exit status: 0 done (files changed since install are kept and named on stderr), 1 error"""


def _add_install(subparsers: Any) -> None:
    parser = add_subcommand(subparsers, "install", INSTALL_HELP, INSTALL_EXAMPLES)
    parser.add_argument("--cni-bin-dir", metavar="DIR", default=DEFAULT_BIN_DIR, help=f"default {DEFAULT_BIN_DIR}")
    parser.add_argument("--cni-conf-dir", metavar="DIR", default=DEFAULT_CONF_DIR, help=f"default {DEFAULT_CONF_DIR}")
    parser.add_argument("--template", metavar="T", help="conflist template: a path or a shipped name (loxilight)")
    parser.add_argument(
        "--node-pod-cidr", metavar="CIDR", help="this node's pod CIDR (template variable node_pod_cidr)"
    )
    parser.add_argument("--var", metavar="KEY=VALUE", action="append", default=[], help="another template variable")
    parser.add_argument("--conf-name", metavar="NAME", default=DEFAULT_CONF_NAME, help=f"default {DEFAULT_CONF_NAME}")
    parser.add_argument("--no-verify", action="store_true", help="do not run the new launcher before placing it")
    parser.add_argument(
        ALLOW_FLAG,
        action="store_true",
        help="bind the launcher to this interpreter, no virtualenv nor loxi runtime: it serves loxi-cni alone",
    )
    parser.add_argument(
        "--shim",
        metavar="PATH",
        default=None,
        help=f"the built shim to place as loxi-cni (default {default_shim()} when built; '' for the Python launcher)",
    )
    parser.set_defaults(handler=main_install)


def _add_uninstall(subparsers: Any) -> None:
    parser = add_subcommand(subparsers, "uninstall", UNINSTALL_HELP, UNINSTALL_EXAMPLES)
    parser.add_argument(
        "--cni-bin-dir",
        metavar="DIR",
        default=DEFAULT_BIN_DIR,
        help=f"where install put the launcher and manifest ({DEFAULT_BIN_DIR})",
    )
    parser.set_defaults(handler=main_uninstall)


def register(subparsers: Any) -> None:
    """Add `install` and `uninstall` to an argparse subparsers object; each sets `handler`."""
    _add_install(subparsers)
    _add_uninstall(subparsers)


def main_install(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        changes = install(
            bin_dir=args.cni_bin_dir,
            conf_dir=args.cni_conf_dir,
            template=args.template,
            node_pod_cidr=args.node_pod_cidr,
            conf_name=args.conf_name,
            variables=args.var,
            verify=not getattr(args, "no_verify", False),
            shim=getattr(args, "shim", None),
            allow_shared=getattr(args, "allow_shared_interpreter", False),
        )
    except (InstallError, OSError) as exc:
        err.write(f"{PROG} install: error: {exc}\n")
        return 1
    for change in changes:
        out.write(change.line() + "\n")
        if change.action.startswith("replaced"):
            err.write(f"{PROG} install: warning: {change.path} was not written by install: replaced\n")
    shim = next((c for c in changes if c.kind == "shim"), None)
    if shim is not None:
        out.write(f"install: {shim.path} is the static shim (to loxi-agent; fallback {INPROCESS_NAME} beside it)\n")
    else:
        out.write(f"install: {os.path.join(os.path.abspath(args.cni_bin_dir), PLUGIN_NAME)} is the Python launcher\n")
    changed = sum(1 for c in changes if c.action != "unchanged")
    out.write("install: unchanged\n" if not changed else f"install: {changed} changed\n")
    return 0


def main_uninstall(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        changes = uninstall(args.cni_bin_dir)
    except (InstallError, OSError) as exc:
        err.write(f"{PROG} uninstall: error: {exc}\n")
        return 1
    if not changes:
        out.write(f"uninstall: nothing installed in {os.path.abspath(args.cni_bin_dir)} (no {MANIFEST_NAME})\n")
        return 0
    for change in changes:
        out.write(change.line() + "\n")
        if change.action.startswith("kept"):
            err.write(f"{PROG} uninstall: warning: {change.path} changed since install: not removed\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description="install / uninstall loxi-cni on this node")
    subparsers = parser.add_subparsers(dest="subcommand", metavar="COMMAND", required=True)
    register(subparsers)
    args = parser.parse_args(argv)
    return args.handler(args)
