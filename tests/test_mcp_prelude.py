"""The fast handshake must be indistinguishable from the SDK's own answers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrator_tui.mcp import prelude, recorder


async def test_shipped_handshake_matches_the_sdk() -> None:
    recorded = await recorder.record_handshake()
    shipped = json.loads(prelude.HANDSHAKE_FILE.read_text(encoding="utf-8"))
    assert shipped == recorded, (
        "orchestrator_tui/mcp/handshake.json is stale: regenerate it with `python -m orchestrator_tui.mcp.recorder`"
    )


def _exchange(messages: list[dict[str, object]], env: dict[str, str], cwd: Path) -> list[dict[str, object]]:
    return _run_worker([sys.executable, "-m", "orchestrator_tui", "mcp"], messages, env, cwd)[0]


def _run_worker(
    argv: list[str], messages: list[dict[str, object]], env: dict[str, str], cwd: Path
) -> tuple[list[dict[str, object]], str]:
    """Feed the worker ``messages`` and close its stdin; its replies and its log (stderr)."""
    proc = subprocess.Popen(
        argv,
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
    return [json.loads(line) for line in lines], err.decode()


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
    assert len(replies[1]["result"]["tools"]) == 7


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
    assert len(replies[1]["result"]["tools"]) == 7
    assert replies[2]["result"]["content"][0]["text"] == "invalid input: Unknown tool: nope"


# ------------------------------------------------------------------------------------------------
# The recorded answers are used only with the SDK version that gave them.

#: The real worker, with its handshake file replaced by ``argv[1]`` (the shipped one stays untouched).
_WORKER_WITH_HANDSHAKE = (
    "import sys; from pathlib import Path; from orchestrator_tui.mcp import prelude; "
    "prelude.HANDSHAKE_FILE = Path(sys.argv[1]); "
    "from orchestrator_tui.cli import main; sys.exit(main(['mcp']))"
)
_HANDSHAKE = [
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    },
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
    {"jsonrpc": "2.0", "id": "p", "method": "ping"},
]


def _worker_on(handshake: dict[str, Any], tmp_path: Path, env: dict[str, str]) -> tuple[list[dict[str, Any]], str]:
    path = tmp_path / "handshake.json"
    path.write_text(json.dumps(handshake), encoding="utf-8")
    return _run_worker([sys.executable, "-c", _WORKER_WITH_HANDSHAKE, str(path)], _HANDSHAKE, env, tmp_path)


def _doctored(sdk_version: object) -> dict[str, Any]:
    """The shipped answers, recorded with ``sdk_version``, with answers the SDK would never give."""
    handshake = json.loads(prelude.HANDSHAKE_FILE.read_text(encoding="utf-8"))
    handshake[prelude.SDK_VERSION_KEY] = sdk_version
    handshake["initialize"]["2025-06-18"]["serverInfo"]["title"] = "doctored"
    handshake["tools/list"] = {"tools": []}
    return handshake


def test_installed_sdk_version_is_read_without_importing_the_sdk() -> None:
    from importlib.metadata import version

    code = (
        "import sys; from orchestrator_tui.mcp import prelude; "
        "print(prelude.installed_sdk_version()); print('mcp' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.split() == [version("mcp"), "False"]


def test_answers_recorded_with_another_sdk_are_left_to_the_sdk(tmp_path: Path, opencode_env: dict[str, str]) -> None:
    shipped = json.loads(prelude.HANDSHAKE_FILE.read_text(encoding="utf-8"))
    replies, log = _worker_on(_doctored("0.0.1"), tmp_path, opencode_env)
    # Every request answered once, by the SDK itself: none of the doctored answers reached the client.
    assert [r["id"] for r in replies] == [1, 2, "p"], replies
    assert replies[0]["result"] == shipped["initialize"]["2025-06-18"]
    assert replies[1]["result"] == shipped["tools/list"]
    assert replies[2]["result"] == {}
    said = [line for line in log.splitlines() if "handshake" in line]
    assert len(said) == 1, log
    assert "WARNING" in said[0] and "recorded with mcp 0.0.1" in said[0]
    assert "python -m orchestrator_tui.mcp.recorder" in said[0]


def test_an_unreadable_handshake_file_is_left_to_the_sdk(tmp_path: Path, opencode_env: dict[str, str]) -> None:
    shipped = json.loads(prelude.HANDSHAKE_FILE.read_text(encoding="utf-8"))
    handshake = _doctored("ignored")
    del handshake[prelude.SDK_VERSION_KEY]  # a file from before versions were recorded
    replies, log = _worker_on(handshake, tmp_path, opencode_env)
    assert [r["result"] for r in replies] == [shipped["initialize"]["2025-06-18"], shipped["tools/list"], {}]
    said = [line for line in log.splitlines() if "handshake" in line]
    assert len(said) == 1 and "cannot be used" in said[0], log


def test_answers_of_the_installed_sdk_are_served_and_a_differing_sdk_answer_is_logged(
    tmp_path: Path, opencode_env: dict[str, str]
) -> None:
    shipped = json.loads(prelude.HANDSHAKE_FILE.read_text(encoding="utf-8"))
    handshake = _doctored(shipped[prelude.SDK_VERSION_KEY])
    handshake["tools/list"] = shipped["tools/list"]  # only `initialize` differs from the SDK's answer
    replies, log = _worker_on(handshake, tmp_path, opencode_env)
    # The fast path answered (the client has the recorded answer, once) ...
    assert [r["id"] for r in replies] == [1, 2, "p"], replies
    assert replies[0]["result"]["serverInfo"]["title"] == "doctored"
    assert replies[1]["result"] == shipped["tools/list"]
    # ... and the SDK's own, different answer was not dropped silently.
    warnings = [line for line in log.splitlines() if "differently from the recorded handshake" in line]
    assert len(warnings) == 1, log
    assert "WARNING" in warnings[0] and "initialize (id 1)" in warnings[0]
    assert '"title":"orchestrator-tui"' in warnings[0]
    assert "recorded with mcp" not in log
