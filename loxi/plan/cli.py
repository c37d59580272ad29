"""`loxi-plan`: the operator's window into the compiler, with no side effects.

dry-run, check, graph and show run the plugin's own compile → observe → diff
engine (`loxi.engine`, `compiler`, `applier.observe`) and print what they find;
validate and render work on conf files. Exit status, for scripts and CI:
dry-run 0 = nothing to do, 2 = changes pending; check 0 = all pass, 2 = drift;
validate 0 = valid, 1 = invalid; and 1 for any error, which is always one line
on stderr, never a traceback (set LOXI_PLAN_DEBUG=1 to get one).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TextIO

from loxi.plan.subcommand import add_subcommand

PROG = "loxi-plan"
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2
DEFAULT_CONTAINER_ID = "loxi-plan-preview"


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error; 2 means "changes pending" here, so usage errors exit 1."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{PROG}: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(EXIT_ERROR)


def _sub(subparsers: Any, name: str, help_text: str, example: str) -> argparse.ArgumentParser:
    return add_subcommand(subparsers, name, help_text, f"example:\n  {example}")


def _attachment_args(parser: argparse.ArgumentParser, container_required: bool) -> None:
    parser.add_argument("conf", metavar="CONF", help="a .conf or .conflist (the loxi-cni plugin object is used), or -")
    parser.add_argument("--netns", metavar="PATH", help="the pod's network namespace (CNI_NETNS)")
    if container_required:
        parser.add_argument("--container-id", metavar="ID", required=True, help="CNI_CONTAINERID")
    else:
        parser.add_argument(
            "--container-id",
            metavar="ID",
            default=DEFAULT_CONTAINER_ID,
            help=f"CNI_CONTAINERID (default: {DEFAULT_CONTAINER_ID})",
        )
    parser.add_argument("--ifname", metavar="NAME", default="eth0", help="CNI_IFNAME (default: eth0)")
    parser.add_argument("--node-netns", metavar="PATH", help="observe as if the plugin ran in this namespace")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="See what loxi-cni would do, and check what it did, without changing anything.",
        epilog="exit status: 0 nothing to do / all pass / valid, 2 changes pending / drift, 1 error or invalid",
    )
    subparsers = parser.add_subparsers(dest="subcommand", metavar="COMMAND", required=True)

    dry = _sub(
        subparsers,
        "dry-run",
        "Print the plan ADD (or DEL) would execute now; change nothing. Exit 0 nothing to do, 2 changes pending.",
        "loxi-plan dry-run /etc/cni/net.d/10-loxilight.conflist --netns /var/run/netns/pod1 --container-id c0ffee",
    )
    _attachment_args(dry, container_required=False)
    dry.add_argument("--args", metavar="K=V;...", default="", help="CNI_ARGS, e.g. 'IgnoreUnknown=1;IP=10.244.1.9'")
    dry.add_argument("--command", choices=["ADD", "DEL", "add", "del"], default="ADD", help="ADD (default) or DEL")
    dry.add_argument("--output", choices=["text", "json"], default="text")
    dry.set_defaults(handler=_dry_run)

    check = _sub(
        subparsers,
        "check",
        "Compare every managed attribute of an attachment with its intent. Exit 0 all pass, 2 drift.",
        "loxi-plan check 10-loxilight.conflist --netns /var/run/netns/pod1 --container-id c0ffee",
    )
    _attachment_args(check, container_required=True)
    check.add_argument("--output", choices=["text", "json"], default="text")
    check.set_defaults(handler=_check)

    validate = _sub(
        subparsers,
        "validate",
        "Validate conf files (schema and semantic rules), reporting every problem as file:line:column: path: message.",
        "loxi-plan validate /etc/cni/net.d/ --strict",
    )
    validate.add_argument(
        "paths", metavar="PATH", nargs="+", help="files or directories of .conf/.conflist/.json, or -"
    )
    validate.add_argument("--strict", action="store_true", help="unknown keys are errors, not warnings")
    validate.add_argument("--format", choices=["text", "json"], default="text")
    validate.set_defaults(handler=_validate)

    render = _sub(
        subparsers,
        "render",
        "Render a conflist template for one node, validate it, and write it atomically.",
        "loxi-plan render loxilight --node-pod-cidr 10.244.1.0/24 -o /etc/cni/net.d/10-loxilight.conflist",
    )
    render.add_argument("template", metavar="TEMPLATE", nargs="?", help="a template path, or a shipped template's name")
    render.add_argument("--var", metavar="KEY=VALUE", action="append", default=[], help="a template variable (repeat)")
    render.add_argument("--node-pod-cidr", metavar="CIDR", help="this node's pod CIDR (the variable node_pod_cidr)")
    render.add_argument("-o", "--output", metavar="FILE", help="write here atomically (default: stdout)")
    render.add_argument("--list", action="store_true", help="list the shipped templates, their paths and variables")
    render.set_defaults(handler=_render)

    graph = _sub(
        subparsers,
        "graph",
        "Print the desired-state graph the compiler builds (DOT for Graphviz, or JSON).",
        "loxi-plan graph 10-loxilight.conflist --container-id c0ffee | dot -Tsvg > graph.svg",
    )
    graph.add_argument("conf", metavar="CONF", help="a .conf or .conflist, or -")
    graph.add_argument("--container-id", metavar="ID", default=DEFAULT_CONTAINER_ID)
    graph.add_argument("--ifname", metavar="NAME", default="eth0")
    graph.add_argument("--netns", metavar="PATH", default="", help="only used to label the pod namespace")
    graph.add_argument("--format", choices=["dot", "json"], default="dot")
    graph.set_defaults(handler=_graph)

    show = _sub(
        subparsers,
        "show",
        "Show what loxi-cni manages on this node: networks, bridges, attachments, pool usage, and what is leaked.",
        "loxi-plan show",
    )
    show.add_argument("--node-netns", metavar="PATH", help="inspect this namespace as the node")
    show.add_argument(
        "--cni-conf-dir",
        metavar="DIR",
        help="the runtime's conf directory to read (default: $NETCONFPATH, else /etc/cni/net.d)",
    )
    show.add_argument(
        "--conf", metavar="CONF", action="append", default=[], help="read only this conf, not the conf dir (repeat)"
    )
    show.add_argument(
        "--data-dir",
        metavar="DIR",
        action="append",
        default=[],
        help="also report every network store in this host-local dataDir (repeat)",
    )
    show.add_argument(
        "--agent-socket",
        metavar="PATH",
        help="the loxi-agent to ask for its state (default: $LOXI_AGENT_SOCKET, else /run/loxi/agent.sock)",
    )
    show.add_argument("--output", choices=["text", "json"], default="text")
    show.set_defaults(handler=_show)
    from loxi.install.cli import register as register_install

    register_install(subparsers)
    return parser


# -- helpers --------------------------------------------------------------------


def _request(command: str, args: argparse.Namespace, cni_args: str = "") -> Any:
    from intent.env import CniRequest, parse_cni_args, validate_container_id, validate_ifname

    validate_container_id(args.container_id)
    validate_ifname(args.ifname)
    return CniRequest(
        command=command,
        container_id=args.container_id,
        netns=args.netns or "",
        ifname=args.ifname,
        args=parse_cni_args(cni_args),
    )


def _enter_node(path: str | None) -> str:
    if path:
        from loxi.plan.nodens import enter_node_netns

        enter_node_netns(path)
    return path or ""


def _json(doc: Any, out: TextIO) -> None:
    out.write(json.dumps(doc, indent=2) + "\n")


def _print_report(report: Any, output: str, text: Callable[[Any], str], found: bool, out: TextIO) -> int:
    """dry-run's plan or check's table, as --output asks; the exit status scripts read: 2 when `found`
    (changes pending, drift), else 0. One tail, so the two commands cannot drift apart in either."""
    if output == "json":
        _json(report.to_dict(), out)
    else:
        out.write(text(report))
    return EXIT_CHANGES if found else EXIT_OK


# -- commands -------------------------------------------------------------------


def _dry_run(args: argparse.Namespace, out: TextIO) -> int:
    from loxi.plan.conf import load_conf, netconf_of
    from loxi.plan.dryrun import ADD, plan_add, plan_del
    from loxi.plan.errors import PlanError
    from loxi.plan.render import plan_text

    node = _enter_node(args.node_netns)
    command = args.command.upper()
    request = _request(command, args, args.args)
    if command == ADD and not args.netns:
        raise PlanError("dry-run: --netns (the pod's network namespace) is required for ADD")
    conf = netconf_of(load_conf(args.conf), request)
    report = plan_add(conf, request, node) if command == ADD else plan_del(conf, request, node)
    return _print_report(report, args.output, plan_text, report.changes_pending, out)


def _check(args: argparse.Namespace, out: TextIO) -> int:
    from loxi.plan.check import check_attachment
    from loxi.plan.conf import load_conf, netconf_of
    from loxi.plan.errors import PlanError
    from loxi.plan.render import check_text

    node = _enter_node(args.node_netns)
    request = _request("CHECK", args)
    if not args.netns:
        raise PlanError("check: --netns (the pod's network namespace) is required")
    report = check_attachment(netconf_of(load_conf(args.conf), request), request, node)
    return _print_report(report, args.output, check_text, report.drift, out)


def _validate(args: argparse.Namespace, out: TextIO) -> int:
    from loxi.plan.validate import validate_paths

    reports = validate_paths(args.paths, strict=args.strict)
    errors = sum(r.errors for r in reports)
    warnings = sum(r.warnings for r in reports)
    if args.format == "json":
        _json(
            {"valid": errors == 0, "errors": errors, "warnings": warnings, "files": [r.to_dict() for r in reports]}, out
        )
    else:
        for report in reports:
            for problem in report.problems:
                out.write(problem.format() + "\n")
        verdict = "valid" if errors == 0 else "invalid"
        out.write(f"{len(reports)} file{'s' * (len(reports) != 1)} {verdict}: {errors} error{'s' * (errors != 1)}, ")
        out.write(f"{warnings} warning{'s' * (warnings != 1)}\n")
    return EXIT_OK if errors == 0 else EXIT_ERROR


def _render(args: argparse.Namespace, out: TextIO) -> int:
    from loxi.plan import conftemplate as ct
    from loxi.plan.errors import PlanError

    if args.list:
        for info in ct.list_templates():
            out.write(
                f"{info.name}\n  path: {info.path}\n  {info.description}\n  variables: {', '.join(info.variables)}\n"
            )
        return EXIT_OK
    if not args.template:
        raise PlanError("render: TEMPLATE is required (or --list)")
    template = ct.find_template(args.template)
    variables = dict(ct.parse_var(text) for text in args.var)
    if args.node_pod_cidr:
        variables["node_pod_cidr"] = ct.pod_cidr(args.node_pod_cidr)
    text = ct.render(template, variables)
    report = ct.check_rendered(text, args.output or f"<{template.name} rendered>")
    for problem in report.problems:
        sys.stderr.write(problem.format() + "\n")
    if not report.valid:
        noun = "error" if report.errors == 1 else "errors"
        raise PlanError(f"the rendered conf is invalid ({report.errors} {noun}): nothing written")
    if args.output:
        ct.write_atomic(args.output, text)
    else:
        out.write(text)
    return EXIT_OK


def _graph(args: argparse.Namespace, out: TextIO) -> int:
    from compiler.graph import compile_desired
    from loxi.engine.pipeline import attachment_of
    from loxi.plan.addresses import placeholder
    from loxi.plan.conf import load_conf, netconf_of
    from loxi.plan.graphout import to_dot, to_json

    request = _request("ADD", args)
    conf = netconf_of(load_conf(args.conf), request)
    found = placeholder(conf)
    desired = compile_desired(conf, attachment_of(conf, request), found.compiler_leases(), found.routes)
    if args.format == "dot":
        out.write(to_dot(desired, conf.name, args.netns))
    else:
        attrs = {
            "network": conf.name,
            "container_id": request.container_id,
            "ifname": request.ifname,
            "addresses": found.to_dict(),
        }
        out.write(to_json(desired, attrs))
    return EXIT_OK


def _show(args: argparse.Namespace, out: TextIO) -> int:
    from loxi.agent.protocol import DEFAULT_SOCKET
    from loxi.agent.status import agent_status
    from loxi.plan.confdir import default_conf_dir
    from loxi.plan.gather import take_inventory
    from loxi.plan.render import agent_text, inventory_text

    # The agent is asked before moving into --node-netns: its status socket is a file, in any namespace.
    agent = agent_status(args.agent_socket or os.environ.get("LOXI_AGENT_SOCKET") or DEFAULT_SOCKET)
    node = _enter_node(args.node_netns)
    conf_dir = os.path.normpath(args.cni_conf_dir or default_conf_dir())
    inventory = take_inventory(conf_dir, args.conf, args.data_dir, node)
    if args.output == "json":
        _json({**inventory.to_dict(), "agent": agent}, out)
    else:
        out.write(inventory_text(inventory))
        out.write(agent_text(agent))
    return EXIT_OK


# -- entry point ----------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    from intent.errors import CniError

    if isinstance(exc, CniError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


def run(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Parse, dispatch, and turn every failure into one line on stderr and exit status 1."""
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace, TextIO], int] = args.handler
    try:
        return handler(args, out)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from intent.errors import CniError
        from loxi.plan.errors import PlanError

        if os.environ.get("LOXI_PLAN_DEBUG"):
            raise
        from applier.netlink import NetlinkError

        expected = isinstance(exc, CniError | PlanError | OSError | NetlinkError)
        prefix = "error" if expected else f"internal error: {type(exc).__name__}"
        sys.stderr.write(f"{PROG}: {prefix}: {_one_line(exc)}\n")
        return EXIT_ERROR


def main(argv: list[str] | None = None) -> None:
    code = run(argv)
    sys.stdout.flush()
    sys.exit(code)


if __name__ == "__main__":
    main()
