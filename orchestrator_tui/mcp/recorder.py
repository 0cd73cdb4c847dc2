"""Recording the handshake the prelude answers: what the installed MCP SDK says, exactly.

The prelude (:mod:`orchestrator_tui.mcp.prelude`) answers ``initialize``, ``tools/list`` and the
2026-07-28 discovery before the SDK has finished importing, from :data:`HANDSHAKE_FILE`. This
module fills that file by asking the real SDK server, built exactly as the worker builds it, each
of those requests in every protocol version the SDK speaks, and writes down which SDK version
answered, so the prelude serves the answers only while that version is installed. It lives apart
from the prelude because it needs the server, which needs the prelude.

Regenerate after any change to the tools, the server's name or version, or the SDK:
``python -m orchestrator_tui.mcp.recorder``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from orchestrator_tui.mcp.prelude import (
    HANDSHAKE_FILE,
    PROTOCOL_VERSION_KEY,
    SDK_VERSION_KEY,
    installed_sdk_version,
)
from orchestrator_tui.mcp.server import build_server


async def record_handshake() -> dict[str, Any]:
    """Ask the real SDK server what it answers to each handshake the prelude may take over."""
    import anyio
    from mcp.shared.message import SessionMessage
    from mcp_types import jsonrpc_message_adapter
    from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

    server = build_server(None)
    answers: dict[str, Any] = {SDK_VERSION_KEY: installed_sdk_version(), "initialize": {}, "tools/list": None}

    async def exchange(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        send_in, read_in = anyio.create_memory_object_stream[Any](32)
        send_out, read_out = anyio.create_memory_object_stream[Any](32)
        replies: list[dict[str, Any]] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.run, read_in, send_out, server.create_initialization_options())
            for request in requests:
                await send_in.send(SessionMessage(jsonrpc_message_adapter.validate_python(request)))
                if "id" in request:
                    reply = await read_out.receive()
                    # Serialized as the SDK's stdio transport writes it.
                    replies.append(json.loads(reply.message.model_dump_json(by_alias=True, exclude_unset=True)))
            await send_in.aclose()
            tg.cancel_scope.cancel()
        return replies

    for version in HANDSHAKE_PROTOCOL_VERSIONS:
        init = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "rec", "version": "0"}},
        }
        replies = await exchange(
            [
                init,
                {"jsonrpc": "2.0", "method": "notifications/initialized"},
                {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
            ]
        )
        answers["initialize"][version] = replies[0]["result"]
        answers["tools/list"] = replies[1]["result"]
    answers["modern"] = {}
    for version in MODERN_PROTOCOL_VERSIONS:
        meta = {
            PROTOCOL_VERSION_KEY: version,
            "io.modelcontextprotocol/clientInfo": {"name": "rec", "version": "0"},
            "io.modelcontextprotocol/clientCapabilities": {},
        }
        replies = await exchange(
            [
                {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta}},
                {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"_meta": meta}},
            ]
        )
        answers["modern"][version] = {"server/discover": replies[0]["result"], "tools/list": replies[1]["result"]}
    return answers


def main() -> int:
    """Regenerate :data:`HANDSHAKE_FILE` from the installed SDK and the current tool catalogue."""
    import asyncio

    answers = asyncio.run(record_handshake())
    HANDSHAKE_FILE.write_text(
        json.dumps(answers, indent=1, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8"
    )
    print(f"wrote {HANDSHAKE_FILE} (mcp {answers[SDK_VERSION_KEY]})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
