"""`orchestrator-tui mcp`: the seven tools over MCP stdio, on the official SDK's low-level server.

The low-level ``Server`` is used rather than ``MCPServer`` because the contract fixes details
the decorator API would choose for us: the exact input schemas (nullable-first types, the
"Optional; omit or use null." suffixes), the ``invalid input: …`` texts for bad arguments,
and the text content beside ``structuredContent``.

Lifetime rules: stdout carries JSON-RPC only (diagnostics go to stderr). The worker ends when
its MCP host goes: stdin EOF, SIGTERM, SIGINT, SIGHUP, or its parent changing (polled each
second: a host's child that inherited our stdin pipe would otherwise hide the EOF). However the
worker ends, ``kill -9`` included, no ``opencode serve`` is orphaned: the server's keeper
(:mod:`orchestrator_tui.opencode.keeper`) stops it once no front end of its pool is alive. This
module never imports Textual.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from orchestrator_tui import __version__
from orchestrator_tui.mcp.prelude import AsyncWireIn, AsyncWireOut, Wire
from orchestrator_tui.orchestrator.errors import ToolError
from orchestrator_tui.orchestrator.render import render_text
from orchestrator_tui.orchestrator.specs import TOOL_SPECS
from orchestrator_tui.orchestrator.tools import ClientInfo, Orchestrator
from orchestrator_tui.safetext import visible

log = logging.getLogger("orchestrator_tui.mcp")

SERVER_NAME = "orchestrator-tui"
BANNER = f"{SERVER_NAME} mcp {__version__} started (6 tools; the OpenCode server starts on the first tool call)"
#: Seconds between two looks at our parent (the MCP host).
HOST_POLL = 1.0


def _tool_listing() -> list[Any]:
    import mcp_types as types

    from orchestrator_tui.orchestrator.schema import input_schema, output_schema

    return [
        types.Tool(
            name=spec.name,
            title=spec.name,
            description=spec.description,
            input_schema=input_schema(spec.input_model),
            output_schema=output_schema(spec.output_model),
        )
        for spec in TOOL_SPECS.values()
    ]


def build_server(orchestrator: Orchestrator | None) -> Any:
    """The MCP server object for one orchestrator (also used in-process by tests)."""
    import mcp_types as types
    from mcp.server.lowlevel import Server

    tools = _tool_listing()

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools)

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        assert orchestrator is not None, "this server was built for listing only"
        _remember_client(orchestrator, ctx)
        session = ctx.session
        ticks = 0

        async def progress(message: str) -> None:
            nonlocal ticks
            ticks += 1
            # Progress names sessions by title: model text, shown by the host as it is.
            await session.report_progress(float(ticks), None, visible(message))

        try:
            output, _ = await orchestrator.call(params.name, params.arguments or {}, progress)
        except ToolError as exc:
            # Errors quote OpenCode's and the model's words: escapes for controls, like the results.
            text = visible(str(exc), multiline=True)
            return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must surface as a tool error, never kill the worker
            log.exception("tool %s failed unexpectedly", params.name)
            text = visible(f"internal error: unexpected failure in {params.name}: {type(exc).__name__}: {exc}")
            return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=render_text(output))],
            structured_content=output.to_json(),  # type: ignore[attr-defined]
        )

    return Server(
        SERVER_NAME,
        version=__version__,
        title=SERVER_NAME,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


def _remember_client(orchestrator: Orchestrator, ctx: Any) -> None:
    if orchestrator.client_info.name is not None:
        return
    try:
        params = ctx.session.client_params
        info = params.client_info if params is not None else None
    except Exception:
        info = None
    if info is not None:
        orchestrator.remember_client(ClientInfo(getattr(info, "name", None), getattr(info, "version", None)))


async def serve_stdio(orchestrator: Orchestrator, wire: Wire) -> None:
    from mcp.server.stdio import stdio_server

    server = build_server(orchestrator)
    async with stdio_server(stdin=AsyncWireIn(wire), stdout=AsyncWireOut(wire)) as (  # type: ignore[arg-type]
        read_stream,
        write_stream,
    ):
        wire.hand_over()
        await server.run(read_stream, write_stream, server.create_initialization_options())


async def _amain(attach: str | None, wire: Wire, pool: str | None, given_servers: Sequence[str] = ()) -> None:
    from orchestrator_tui.pool.discovery import Membership, join_pool
    from orchestrator_tui.pool.policy import ApprovalPolicy, load_policy, policy_path
    from orchestrator_tui.pool.registry import PoolStateError, Registry
    from orchestrator_tui.pool.rules import RuleEngine
    from orchestrator_tui.pool.servers import ServerConfigError, load_servers
    from orchestrator_tui.pool.service import PoolService, ServerSpec
    from orchestrator_tui.pool.status import StatusFile

    membership: Membership | None = None
    registry: Registry | None = None
    rule_engine = None
    spec = ServerSpec.from_env(attach_url=attach)
    try:
        registry = Registry.for_pool(pool)
        # The worker's directory: its sessions run there, and dashboards re-read it on a resync.
        membership = join_pool(registry, "agent", directory=str(spec.cwd))
    except PoolStateError as exc:
        # Fail closed: without the pool's state there is no policy, no rules and no dashboard
        # to reach, so every permission needs a human. The worker still runs (on a private
        # server) and tells the agent, in each refusal, what is wrong and how to fix it.
        registry = None
        policy = ApprovalPolicy.closed(str(exc))
        print(f"orchestrator-tui: {exc} Until then every permission needs a human.", file=sys.stderr)
    else:
        policy = load_policy(policy_path(membership.folder.path))
        for warning in policy.warnings:
            print(f"orchestrator-tui: {warning}", file=sys.stderr)
    try:
        servers = load_servers(membership.folder.path if membership is not None else None, given_servers)
    except ServerConfigError:
        if membership is not None:
            membership.leave()
        if registry is not None:
            registry.close()
        raise
    service = PoolService(spec, membership=membership, servers=servers)
    if registry is not None:
        # The pool's standing rules apply to requests of every session, whichever front end runs.
        rule_engine = RuleEngine(service, registry, channel="mcp")
    orchestrator = Orchestrator(
        service,
        registry=registry,
        origin="agent",
        member_id=membership.member_id if membership is not None else None,
        policy=policy,
    )
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    assert main_task is not None

    def on_signal(signum: int) -> None:
        log.info("received signal %d; shutting down", signum)
        main_task.cancel()

    async def note_client() -> None:
        # The wire reads the client's name from its first request; record it for the members list.
        for _ in range(600):
            if wire.client_info is not None:
                if orchestrator.client_info.name is None:
                    orchestrator.remember_client(ClientInfo(*wire.client_info))
                return
            await asyncio.sleep(0.05)

    async def watch_host(host: int) -> None:
        while True:
            await asyncio.sleep(HOST_POLL)
            if os.getppid() != host:
                break
        log.info("the MCP host (pid %d) is gone; shutting down", host)
        main_task.cancel()

    noter = loop.create_task(note_client())
    host = os.getppid()
    watcher = loop.create_task(watch_host(host)) if host > 1 else None
    if rule_engine is not None:
        rule_engine.start()
    # What this worker's pool waits for, for `orchestrator-tui status` (none while failing closed).
    status_file = StatusFile(membership.folder.path, service, "agent") if membership is not None else None
    if status_file is not None:
        status_file.start()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # non-Unix
            loop.add_signal_handler(sig, on_signal, sig)
    try:
        await serve_stdio(orchestrator, wire)
    except asyncio.CancelledError:
        pass
    finally:
        noter.cancel()
        if watcher is not None:
            watcher.cancel()
        if status_file is not None:
            status_file.close()
        if rule_engine is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(rule_engine.stop(), 2.0)
        # Stopping the managed server must happen whatever ended us; never hang on it.
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(orchestrator.close()), 5.0)
        if registry is not None:
            registry.close()


def main(
    attach: str | None = None, wire: Wire | None = None, pool: str | None = None, servers: Sequence[str] = ()
) -> int:
    """Run the worker. ``wire`` is opened by the CLI before anything heavy is imported."""
    wire = wire or Wire.open()
    logging.basicConfig(
        level=os.environ.get("ORCHESTRATOR_TUI_LOG", "INFO").upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # One line per HTTP request is noise in an MCP host's log; ORCHESTRATOR_TUI_LOG=DEBUG shows them.
    if logging.getLogger().level > logging.DEBUG:
        logging.getLogger("httpx").setLevel(logging.WARNING)
    print(BANNER, file=sys.stderr, flush=True)
    if wire.notice is not None:
        log.warning("%s", wire.notice)
    from orchestrator_tui.pool.servers import ServerConfigError

    try:
        asyncio.run(_amain(attach, wire, pool, servers))
    except KeyboardInterrupt:
        pass
    except ServerConfigError as exc:
        print(f"orchestrator-tui: {exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        wire.end_input()
    return 0
