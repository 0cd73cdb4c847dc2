"""The fast handshake must be indistinguishable from the SDK's own answers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator_tui.mcp import prelude


async def test_shipped_handshake_matches_the_sdk() -> None:
    recorded = await prelude.record_handshake()
    shipped = json.loads(prelude.HANDSHAKE_FILE.read_text(encoding="utf-8"))
    assert shipped == recorded, (
        "orchestrator_tui/mcp/handshake.json is stale: regenerate it with `python -m orchestrator_tui.mcp.prelude`"
    )


def _exchange(messages: list[dict[str, object]], env: dict[str, str], cwd: Path) -> list[dict[str, object]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator_tui", "mcp"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
    )
    try:
        payload = b"".join(json.dumps(m).encode() + b"\n" for m in messages)
        out, err = proc.communicate(payload, timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize("version", ["2024-11-05", "2025-06-18", "2025-11-25"])
def test_every_request_is_answered_exactly_once_and_like_the_sdk(
    version: str, tmp_path: Path, opencode_env: dict[str, str]
) -> None:
    shipped = json.loads(prelude.HANDSHAKE_FILE.read_text(encoding="utf-8"))
    replies = _exchange(
        [
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
            },
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
            {"jsonrpc": "2.0", "id": "p", "method": "ping"},
            {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "nope", "arguments": {}}},
        ],
        opencode_env,
        tmp_path,
    )
    assert [r["id"] for r in replies] == [1, 2, "p", 3], replies
    assert replies[0]["result"] == shipped["initialize"][version]
    assert replies[0]["result"]["protocolVersion"] == version
    assert replies[1]["result"] == shipped["tools/list"]
    assert replies[2]["result"] == {}
    assert replies[3]["result"]["isError"] is True
    assert replies[3]["result"]["content"][0]["text"] == "invalid input: Unknown tool: nope"


def test_unknown_protocol_version_is_left_to_the_sdk(tmp_path: Path, opencode_env: dict[str, str]) -> None:
    replies = _exchange(
        [
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "1999-01-01",
                    "capabilities": {},
                    "clientInfo": {"name": "t", "version": "1"},
                },
            },
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        ],
        opencode_env,
        tmp_path,
    )
    assert [r["id"] for r in replies] == [1, 2]
    assert replies[0]["result"]["protocolVersion"] in json.loads(prelude.HANDSHAKE_FILE.read_text())["initialize"]
    assert len(replies[1]["result"]["tools"]) == 6


def test_modern_era_discovery_is_answered_once_and_like_the_sdk(tmp_path: Path, opencode_env: dict[str, str]) -> None:
    """MCP 2026-07-28 clients (the SDK 2.x Client's default) open with server/discover, no initialize."""
    shipped = json.loads(prelude.HANDSHAKE_FILE.read_text(encoding="utf-8"))
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    replies = _exchange(
        [
            {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta}},
            {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"_meta": meta}},
            {
                "jsonrpc": "2.0",
                "id": 3,
                "method": "tools/call",
                "params": {"name": "nope", "arguments": {}, "_meta": meta},
            },
        ],
        opencode_env,
        tmp_path,
    )
    assert [r["id"] for r in replies] == [1, 2, 3], replies
    assert replies[0]["result"] == shipped["modern"]["2026-07-28"]["server/discover"]
    assert replies[1]["result"] == shipped["modern"]["2026-07-28"]["tools/list"]
    assert len(replies[1]["result"]["tools"]) == 6
    assert replies[2]["result"]["content"][0]["text"] == "invalid input: Unknown tool: nope"
