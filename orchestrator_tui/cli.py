"""Command line entry point.

Sub-commands are imported lazily so that `orchestrator-tui mcp` never pays for (or even
imports) Textual, and `orchestrator-tui opencode install` needs nothing but the stdlib.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orchestrator-tui",
        description="Supervise a pool of OpenCode sessions: an MCP server for agents, a dashboard for humans.",
    )
    from orchestrator_tui import __version__

    parser.add_argument("--version", action="version", version=f"orchestrator-tui {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    mcp = sub.add_parser(
        "mcp",
        help="run the MCP server (stdio) with the seven orchestrator tools",
        description="Serve the orchestrator tools over MCP stdio. Add this command to your MCP client.",
    )
    pool_help = "the pool to join (default: $ORCHESTRATOR_TUI_POOL, else 'default'); front ends of one pool share it"
    mcp.add_argument("--pool", metavar="NAME", type=_pool_arg, help=pool_help)
    server_help = (
        "also follow this OpenCode server (repeatable; NAME=URL names it); servers for every front end of "
        "the pool, and any that need a password, go in the pool's pool.toml as [[server]] tables"
    )
    mcp.add_argument("--server", metavar="URL", action="append", default=[], help=server_help)
    mcp.add_argument(
        "--attach",
        metavar="URL",
        help="use an existing OpenCode server instead of starting one "
        "(env ORCHESTRATOR_TUI_ATTACH; password from OPENCODE_SERVER_PASSWORD)",
    )

    for name, helptext in (
        ("dashboard", "the dashboard (the default command)"),
        ("demo", "the dashboard on a scripted model: sessions start, stream, call tools and ask you things"),
    ):
        dash = sub.add_parser(name, help=helptext, description=helptext)
        if name == "dashboard":
            dash.add_argument(
                "--attach", metavar="URL", help="use an existing OpenCode server (env ORCHESTRATOR_TUI_ATTACH)"
            )
            dash.add_argument("--pool", metavar="NAME", type=_pool_arg, help=pool_help)
            dash.add_argument("--server", metavar="URL", action="append", default=[], help=server_help)
        dash.add_argument("--no-bell", action="store_true", help="no terminal bell when a request starts waiting")
        dash.add_argument(
            "--project",
            metavar="PATH",
            type=_project_arg,
            help="open showing only this project's sessions and requests (f in the dashboard shows every project)",
        )
        dash.add_argument(
            "--notify-command",
            metavar="CMD",
            help="when a request starts waiting for you, run `/bin/sh -c CMD` with a JSON description of it on "
            "stdin (one run per request, one at a time, stopped after 10 s; see the README)",
        )

    status = sub.add_parser(
        "status",
        help="one line for a status bar: requests waiting, busy sessions, servers",
        description="Print what the pool's running front ends (dashboards, MCP workers) see, in one line such as "
        "'3 waiting · 5 busy · 2 servers', for a tmux status bar or a shell prompt. It reads the small files the "
        "front ends keep in the pool folder: it never starts or contacts an OpenCode server, and answers within "
        "tens of milliseconds.",
        epilog="exit status: 0 nothing waiting, 1 something waiting, 2 no front end running (nothing is known); "
        "a usage error also exits with 2",
    )
    status.add_argument("--json", action="store_true", help="print one JSON object: the counts and the ids")
    status.add_argument(
        "--pool",
        metavar="NAME",
        type=_pool_arg,
        help="the pool to report on (default: $ORCHESTRATOR_TUI_POOL, else 'default')",
    )

    model = sub.add_parser(
        "scripted-model",
        help="run the scripted OpenAI-compatible model server used by tests and the demo",
    )
    model.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")

    oc = sub.add_parser("opencode", help="manage the pinned OpenCode binary")
    oc_sub = oc.add_subparsers(dest="opencode_command", metavar="ACTION", required=True)
    oc_sub.add_parser("install", help="install the pinned OpenCode into the user cache if it is not there")
    oc_sub.add_parser("path", help="print the OpenCode binary that would be used")
    return parser


def _pool_arg(value: str) -> str:
    from orchestrator_tui.pool.names import pool_name

    try:
        return pool_name(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _status(pool: str | None, *, as_json: bool) -> int:
    """`orchestrator-tui status`: read the front ends' status files (pool/status.py), print, exit.

    Kept to the standard library: a status bar runs this every few seconds."""
    import json

    from orchestrator_tui.pool.names import PoolStateError, pool_name, state_root
    from orchestrator_tui.pool.status import read_status

    try:
        name = pool_name(pool)
    except PoolStateError as exc:  # an invalid $ORCHESTRATOR_TUI_POOL
        print(f"orchestrator-tui: {exc}", file=sys.stderr)
        return 2
    status = read_status(state_root() / name)
    print(json.dumps({"pool": name, **status.to_json()}) if as_json else status.line())
    return status.exit_code()


#: The collector's thresholds in the dashboard process (CPython's default: 700, 10, 10).
DASHBOARD_GC_THRESHOLDS = (50_000, 10, 10)


def tune_dashboard_collector() -> None:
    """Make the cyclic garbage collector's pauses rare and short in the dashboard process.

    The collector runs on the event loop, so its pauses are what the person at the keyboard
    feels. Traced in the dashboard with 10,000 sessions at 1,000 events/s (`benchmarks.pty_keys
    --trace`): with CPython's default thresholds every object that lived a few milliseconds
    (an event between the stream and the next coalesced refresh) reached the oldest generation,
    so a full collection ran every 0.5-0.7 s, each 75-200 ms and growing with the pool; every
    slow key press sat behind one. A young generation of 50,000 objects lets those die young:
    4-5 full collections in the same run, at most 56 ms, and key → screen p99 went from
    134-173 ms to 57-60 ms, at the same CPU and memory.

    The freeze puts the modules, classes and functions of Textual, Rich and pydantic out of the
    collector's reach: they live as long as the process, yet a full collection would walk them
    all. Full collections are now rare, but each still pauses the loop: with 10,000 sessions one
    takes 40-51 ms after the freeze and 82-86 ms without it (measured the same day).

    Both are process-wide, so they are done once, here where the dashboard process starts, never
    from the app; the freeze comes before the pool fills, since objects that die later
    (rows, views of a previous connection) must not be caught by it.
    """
    import gc

    import orchestrator_tui.tui.app  # noqa: F401  (imported for its side effect: everything it loads)

    gc.freeze()
    gc.set_threshold(*DASHBOARD_GC_THRESHOLDS)


def _project_arg(value: str) -> Path:
    """``--project PATH``: an existing directory, absolute (sessions say their directory so)."""
    path = Path(value).expanduser()
    if not path.is_dir():
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a directory; give the project's folder (for example --project .)"
        )
    return path.resolve()


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command == "mcp":
        # Take hold of stdin/stdout and start answering the handshake before the heavy imports.
        from orchestrator_tui.mcp.prelude import Wire

        wire = Wire.open()
        from orchestrator_tui.mcp.server import main as mcp_main

        return mcp_main(attach=args.attach, wire=wire, pool=args.pool, servers=args.server)
    if args.command in (None, "dashboard", "demo"):
        from orchestrator_tui.pool.registry import PoolStateError
        from orchestrator_tui.pool.servers import ServerConfigError
        from orchestrator_tui.tui.main import run_dashboard

        tune_dashboard_collector()
        try:
            return run_dashboard(
                attach=getattr(args, "attach", None),
                demo=args.command == "demo",
                bell=not getattr(args, "no_bell", False),
                pool=getattr(args, "pool", None),
                project=getattr(args, "project", None),
                servers=getattr(args, "server", []),
                notify_command=getattr(args, "notify_command", None),
            )
        except PoolStateError as exc:  # the dashboard shows these itself; this is the last resort, no traceback
            print(f"orchestrator-tui: {exc}", file=sys.stderr)
            return 1
        except ServerConfigError as exc:
            print(f"orchestrator-tui: {exc}", file=sys.stderr)
            return 2
    if args.command == "status":
        return _status(args.pool, as_json=args.json)
    if args.command == "scripted-model":
        from orchestrator_tui.scripted_model.server import main as model_main

        return model_main(port=args.port)
    if args.command == "opencode":
        from orchestrator_tui.opencode import binary

        return binary.cli(args.opencode_command)
    parser.print_help()  # pragma: no cover - every command is handled above
    return 2


if __name__ == "__main__":
    sys.exit(main())
