"""Command line entry point.

Sub-commands are imported lazily so that `orchestrator-tui mcp` never pays for (or even
imports) Textual, and `orchestrator-tui opencode install` needs nothing but the stdlib.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


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
        help="run the MCP server (stdio) with the six orchestrator tools",
        description="Serve the orchestrator tools over MCP stdio. Add this command to your MCP client.",
    )
    pool_help = "the pool to join (default: $ORCHESTRATOR_TUI_POOL, else 'default'); front ends of one pool share it"
    mcp.add_argument("--pool", metavar="NAME", type=_pool_arg, help=pool_help)
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
        dash.add_argument("--no-bell", action="store_true", help="no terminal bell when a request starts waiting")

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
    from orchestrator_tui.pool.registry import pool_name

    try:
        return pool_name(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def freeze_dashboard_imports() -> None:
    """Load the dashboard's code, then put every object alive so far out of the collector's reach.

    The modules, classes and functions of Textual, Rich and pydantic live as long as the process,
    yet a full (generation 2) collection walks them all, and it runs on the event loop, so it is a
    pause the person at the keyboard feels. Measured in the dashboard under load (10,000
    sessions, 1,000 events/s, on a loaded 2-core machine): the full collections during the load
    took 200-270 ms each with this freeze and 280-530 ms without it. Called once, here where the
    dashboard process starts, never from the app: a freeze is process-wide and cannot be undone
    for what it caught, so objects that die later (rows, views of a previous connection) must not
    be caught by it.
    """
    import gc

    import orchestrator_tui.tui.app  # noqa: F401  (imported for its side effect: everything it loads)

    gc.freeze()


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command == "mcp":
        # Take hold of stdin/stdout and start answering the handshake before the heavy imports.
        from orchestrator_tui.mcp.prelude import Wire

        wire = Wire.open()
        from orchestrator_tui.mcp.server import main as mcp_main

        return mcp_main(attach=args.attach, wire=wire, pool=args.pool)
    if args.command in (None, "dashboard", "demo"):
        from orchestrator_tui.pool.registry import PoolStateError
        from orchestrator_tui.tui.main import run_dashboard

        freeze_dashboard_imports()
        try:
            return run_dashboard(
                attach=getattr(args, "attach", None),
                demo=args.command == "demo",
                bell=not getattr(args, "no_bell", False),
                pool=getattr(args, "pool", None),
            )
        except PoolStateError as exc:  # the dashboard shows these itself; this is the last resort, no traceback
            print(f"orchestrator-tui: {exc}", file=sys.stderr)
            return 1
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
