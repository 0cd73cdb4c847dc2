"""`orchestrator-tui mcp` at the protocol level: the worker as a subprocess, real clients, real stdio.

Three kinds of client talk to the worker here:

* the official MCP SDK's own stdio client (``mcp.client.stdio.stdio_client`` + ``ClientSession``),
  for everything a real agent does: listing, calling, progress, cancellation, bad input;
* the same SDK client held open for a whole module in a background thread (an anyio blocking
  portal), so that hypothesis can throw hundreds of generated argument objects at ONE long-lived
  worker, which must still answer afterwards;
* hand-written JSON-RPC lines over the worker's pipes, where a test needs the process itself:
  closing its stdin, signalling it, reading every byte it writes to stdout.

Every process a test starts is stopped at teardown, even on failure: the worker (its own process
group) and every process group seen below it (the managed ``opencode serve``). Only groups we saw
as descendants of our own workers are ever signalled.

A note on "gone": PID 1 on these machines reaps orphans only about once a second, so an OpenCode
that died after its parent (the worker) already exited can stay a zombie for a moment; a process
group whose members are all zombies counts as gone (nothing in it can run any more).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import mcp_types as types
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from orchestrator_tui.mcp.server import BANNER
from orchestrator_tui.scripted_model.server import ScriptedModelServer, opencode_config

WORKER = Path(sys.executable).with_name("orchestrator-tui")
TOOLS = (
    "run",
    "list_sessions",
    "get_session_state",
    "list_agents",
    "list_commands",
    "respond_permission",
    "respond_question",
)
SNAPSHOT = Path(__file__).parent / "snapshots" / "tools_list.json"
OPTIONAL_SUFFIX = "Optional; omit or use null."
#: Exact text.
RECURSION_GUARD = (
    "ENV VAR OPENCODE_ORCHESTRATOR_MANAGED is set to 1. This most commonly happens when you're in a nested "
    "orchestration session. Consult a human for assistance or try to accomplish your task without the "
    "orchestration tools."
)
HELLO = "Say exactly 'hello' and nothing else."
#: Generous bound for one tool call that may start OpenCode (first start in a fresh XDG tree ~8 s).
CALL_TIMEOUT = 120.0


# ------------------------------------------------------------------------------------------------
# processes: /proc scanning, and a guard that stops whatever our workers started


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgid: int
    state: str
    start: int  # clock ticks since boot: tells a pid apart from a later process reusing it
    argv: tuple[str, ...]


def _read_proc(pid: int) -> Proc | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    rest = stat[stat.rfind(")") + 2 :].split()
    argv = tuple(part.decode(errors="replace") for part in raw.split(b"\0") if part)
    return Proc(pid, int(rest[1]), int(rest[2]), rest[0], int(rest[19]), argv)


def process_table() -> dict[int, Proc]:
    table: dict[int, Proc] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (proc := _read_proc(int(entry))) is not None:
            table[proc.pid] = proc
    return table


def descendants(pid: int) -> list[Proc]:
    table = process_table()
    found: list[Proc] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for proc in table.values():
            if proc.ppid == parent:
                found.append(proc)
                frontier.append(proc.pid)
    return found


def opencode_servers(worker_pid: int) -> list[Proc]:
    """The managed ``opencode serve`` processes below a worker (leaders of their own groups)."""
    return [
        p
        for p in descendants(worker_pid)
        if "serve" in p.argv and "--hostname" in p.argv and p.state != "Z" and p.pgid == p.pid
    ]


def wait_for_opencode(worker_pid: int, timeout: float = 10.0) -> Proc:
    deadline = time.monotonic() + timeout
    while True:
        servers = opencode_servers(worker_pid)
        if len(servers) == 1:
            return servers[0]
        assert time.monotonic() < deadline, f"expected one opencode serve below worker {worker_pid}, got {servers}"
        time.sleep(0.05)


def group_gone(pgid: int) -> bool:
    """No process of the group can run any more (ESRCH, or only zombies waiting for PID 1)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    return all(p.state == "Z" for p in process_table().values() if p.pgid == pgid)


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


class ProcessGuard:
    """Remembers every process group seen below our workers and kills the survivors at teardown."""

    def __init__(self) -> None:
        self._seen: dict[int, Proc] = {}
        self._lock = threading.Lock()

    def track(self, pid: int) -> None:
        """Remember ``pid`` (one of our workers) and everything currently running below it."""
        procs = [p for p in [_read_proc(pid), *descendants(pid)] if p is not None]
        with self._lock:
            for proc in procs:
                self._seen.setdefault(proc.pid, proc)

    def cleanup(self) -> list[str]:
        """SIGKILL the groups of remembered processes that still run; returns what had to be killed."""
        killed: list[str] = []
        with self._lock:
            seen = list(self._seen.values())
        own_group = os.getpgrp()
        for proc in seen:
            now = _read_proc(proc.pid)
            if now is None or now.start != proc.start or now.state == "Z" or proc.pgid == own_group:
                continue  # gone, or the pid was reused by a process that is not ours
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pgid, signal.SIGKILL)
                killed.append(f"{proc.pid} {' '.join(proc.argv)[:120]}")
        return killed


@pytest.fixture
def guard() -> Iterator[ProcessGuard]:
    g = ProcessGuard()
    yield g
    g.cleanup()


# ------------------------------------------------------------------------------------------------
# environment


@pytest.fixture
def worker_env(opencode_env: dict[str, str], model_config: Callable[..., str]) -> dict[str, str]:
    """The worker's environment: isolated OpenCode storage + the scripted model (passed through)."""
    return dict(opencode_env, OPENCODE_CONFIG_CONTENT=model_config())


# ------------------------------------------------------------------------------------------------
# client 1: the SDK's stdio client


@dataclass
class SdkWorker:
    session: ClientSession
    pid: int
    stderr_path: Path
    guard: ProcessGuard

    async def call(self, name: str, arguments: Any = None, timeout: float = CALL_TIMEOUT, **kw: Any) -> Any:
        with anyio.fail_after(timeout):
            result = await self.session.call_tool(name, arguments, **kw)
        self.guard.track(self.pid)
        return result

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


def _children_named(name: str) -> set[int]:
    me = os.getpid()
    return {p.pid for p in process_table().values() if p.ppid == me and any(name in a for a in p.argv)}


@asynccontextmanager
async def sdk_worker(env: dict[str, str], cwd: Path, log_dir: Path, guard: ProcessGuard) -> AsyncIterator[SdkWorker]:
    """``orchestrator-tui mcp`` started and spoken to by the SDK's own stdio client."""
    before = _children_named("orchestrator-tui")
    stderr_path = log_dir / f"worker-stderr-{time.monotonic_ns()}.log"
    params = StdioServerParameters(command=str(WORKER), args=["mcp"], env=env, cwd=str(cwd))
    with stderr_path.open("w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            # The child may not have exec'd the worker yet (seen under load): look until it has.
            for _ in range(600):  # up to 30 s
                if new := _children_named("orchestrator-tui") - before:
                    break
                await anyio.sleep(0.05)
            assert len(new) == 1, f"expected exactly one new worker process, found {new}"
            pid = new.pop()
            guard.track(pid)
            async with ClientSession(read, write) as session:
                with anyio.fail_after(30):
                    await session.initialize()
                worker = SdkWorker(session, pid, stderr_path, guard)
                try:
                    yield worker
                finally:
                    guard.track(pid)  # remember OpenCode before the worker goes away


def text_of(result: types.CallToolResult) -> str:
    assert len(result.content) == 1, result
    content = result.content[0]
    assert isinstance(content, types.TextContent), result
    return content.text


# ------------------------------------------------------------------------------------------------
# client 2: raw JSON-RPC lines over the worker's pipes


class RawWorker:
    """The worker as a plain child process; every stdout line is kept for inspection."""

    def __init__(self, env: dict[str, str], cwd: Path, stderr_path: Path, argv: list[str] | None = None) -> None:
        self.stderr_path = stderr_path
        self._stderr = stderr_path.open("wb")
        self.proc = subprocess.Popen(
            argv or [str(WORKER), "mcp"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            cwd=cwd,
            start_new_session=True,  # as MCP clients (and the SDK's stdio client) start servers
        )
        self.pid = self.proc.pid
        self.stdout_lines: list[bytes] = []
        self.notifications: list[dict[str, Any]] = []
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self._ids = iter(range(1, 1_000_000))
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout_lines.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        self.proc.stdin.flush()

    def request(self, method: str, params: dict[str, Any] | None = None, timeout: float = CALL_TIMEOUT) -> Any:
        rid = next(self._ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no answer to {method} within {timeout}s; stderr tail:\n{self.stderr()[-3000:]}"
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            assert line is not None, f"worker closed stdout while waiting for {method}:\n{self.stderr()[-3000:]}"
            reply = json.loads(line)
            if reply.get("id") == rid and "method" not in reply:
                assert "result" in reply, f"{method} got a JSON-RPC error: {reply}"
                return reply["result"]
            self.notifications.append(reply)

    def initialize(self) -> dict[str, Any]:
        result = self.request(
            "initialize",
            {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw-test", "version": "1"}},
            timeout=30,
        )
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return result

    def call(self, name: str, arguments: Any = None, timeout: float = CALL_TIMEOUT) -> dict[str, Any]:
        params: dict[str, Any] = {"name": name}
        if arguments is not None:
            params["arguments"] = arguments
        return self.request("tools/call", params, timeout)

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            self.proc.wait(10)
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError, ValueError):
                stream.close()  # type: ignore[union-attr]
        self._stderr.close()


@pytest.fixture
def raw_worker(
    worker_env: dict[str, str], project_dir: Path, tmp_path: Path, guard: ProcessGuard
) -> Iterator[Callable[..., RawWorker]]:
    made: list[RawWorker] = []

    def start(env: dict[str, str] | None = None, argv: list[str] | None = None) -> RawWorker:
        worker = RawWorker(env or worker_env, project_dir, tmp_path / f"raw-stderr-{len(made)}.log", argv)
        made.append(worker)
        guard.track(worker.pid)
        return worker

    yield start
    for worker in made:
        if worker.proc.poll() is None:
            guard.track(worker.pid)
        worker.stop()


# ================================================================================================
# tools/list


def _listing_view(tools: list[dict[str, Any]]) -> dict[str, Any]:
    return {"tools": sorted(tools, key=lambda tool: tool["name"])}  # listing order is unspecified


def test_tools_list_matches_the_stored_snapshot_and_spec(raw_worker: Callable[..., RawWorker]) -> None:
    """The whole listing, byte for byte as the worker serves it, before and after the SDK takes over."""
    worker = raw_worker()
    worker.initialize()
    early = worker.request("tools/list")  # while the prelude may still be answering
    worker.call("nope")  # any tools/call is served by the SDK, so the next listing is the SDK's
    late = worker.request("tools/list")
    assert early == late

    tools = late["tools"]
    assert sorted(t["name"] for t in tools) == sorted(TOOLS)
    for tool in tools:
        assert tool["title"] == tool["name"]
        assert tool["description"].strip()
        assert tool["inputSchema"]["type"] == "object"
        assert tool["outputSchema"]["type"] == "object"
        _check_input_schema_conventions(tool["name"], tool["inputSchema"])

    current = _listing_view(tools)
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(json.dumps(current, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
    stored = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    assert current == stored, "tools/list changed; if deliberate, rerun with UPDATE_SNAPSHOTS=1 and review the diff"


def _check_input_schema_conventions(name: str, schema: dict[str, Any]) -> None:
    """Optional fields are nullable with "null" first and say "Optional; omit or use null."."""
    assert schema.get("$schema") == "https://json-schema.org/draft/2020-12/schema", name
    required = set(schema.get("required", []))
    for field_name, prop in schema["properties"].items():
        where = f"{name}.{field_name}"
        if field_name in required:
            assert prop["type"] == "string", where
            assert OPTIONAL_SUFFIX not in prop.get("description", ""), where
        elif field_name == "answers":  # non-required but not nullable (defaults to [])
            assert prop["type"] == "array" and prop["default"] == [], where
        else:
            assert isinstance(prop["type"], list) and prop["type"][0] == "null" and len(prop["type"]) == 2, where
            description = prop["description"]
            assert description.endswith("\n\n" + OPTIONAL_SUFFIX) or description == OPTIONAL_SUFFIX, where
    expected_required = {
        "run": set(),
        "list_sessions": set(),
        "get_session_state": {"session_id"},
        "list_agents": set(),
        "list_commands": set(),
        "respond_permission": {"session_id", "reply"},
        "respond_question": {"session_id", "action"},
    }[name]
    assert required == expected_required, name


async def test_sdk_client_sees_the_seven_tools(
    worker_env: dict[str, str], project_dir: Path, tmp_path: Path, guard: ProcessGuard
) -> None:
    async with sdk_worker(worker_env, project_dir, tmp_path, guard) as worker:
        assert worker.session.server_info is not None
        listing = await worker.session.list_tools()
        assert sorted(t.name for t in listing.tools) == sorted(TOOLS)
        stored = {t["name"]: t for t in json.loads(SNAPSHOT.read_text(encoding="utf-8"))["tools"]}
        for tool in listing.tools:
            assert tool.title == tool.name
            assert tool.description
            assert tool.input_schema == stored[tool.name]["inputSchema"]
            assert tool.output_schema == stored[tool.name]["outputSchema"]
        # Nothing has been started by listing (the OpenCode server is started lazily).
        assert opencode_servers(worker.pid) == []


# ================================================================================================
# real calls


@pytest.mark.real_opencode
async def test_list_commands_run_and_session_state(
    worker_env: dict[str, str], project_dir: Path, tmp_path: Path, guard: ProcessGuard
) -> None:
    async with sdk_worker(worker_env, project_dir, tmp_path, guard) as worker:
        listed = await worker.call("list_commands", {})
        assert listed.is_error is False, text_of(listed)
        assert text_of(listed).startswith("Available commands:\n")
        assert text_of(listed).endswith("\nUse orchestrator_run(command=<name>, message=<args>) to execute\n")
        assert isinstance(listed.structured_content, dict)
        commands = listed.structured_content["commands"]
        assert isinstance(commands, list) and commands
        assert all(isinstance(c["name"], str) for c in commands)

        ran = await worker.call("run", {"message": HELLO})
        assert ran.is_error is False, text_of(ran)
        out = ran.structured_content
        assert out is not None
        sid = out["session_id"]
        assert out == {"session_id": sid, "status": "completed", "response": "hello"}
        text = text_of(ran)
        assert text.splitlines()[0] == f"✓ session completed {sid}"
        assert text.endswith("--- Response ---\nhello")

        state = await worker.call("get_session_state", {"session_id": sid})
        assert state.is_error is False, text_of(state)
        assert state.structured_content is not None
        assert state.structured_content["session_id"] == sid
        assert state.structured_content["launched_by_you"] is True
        assert "  Launched by you: true\n" in text_of(state)


@pytest.mark.real_opencode
async def test_run_reports_progress_before_the_result(
    worker_env: dict[str, str], project_dir: Path, tmp_path: Path, guard: ProcessGuard
) -> None:
    async with sdk_worker(worker_env, project_dir, tmp_path, guard) as worker:
        seen: list[tuple[float, float, str | None]] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append((anyio.current_time(), progress, message))

        result = await worker.call("run", {"message": "SLOW 30 100"}, progress_callback=on_progress)
        answered_at = anyio.current_time()
        assert result.is_error is False, text_of(result)
        assert result.structured_content is not None and result.structured_content["status"] == "completed"

        early = [(t, p, m) for t, p, m in seen if t < answered_at]
        assert early, f"no progress notification arrived before the result: {seen}"
        messages = [m for _, _, m in early]
        assert any(m and re.match(r"session (busy|retry|idle)\b", m) for m in messages), messages
        values = [p for _, p, _ in seen]
        assert values == sorted(values), f"progress must increase: {values}"


@pytest.mark.real_opencode
async def test_cancelled_run_leaves_the_worker_serving(
    worker_env: dict[str, str], project_dir: Path, tmp_path: Path, guard: ProcessGuard
) -> None:
    """The SDK client cancels by abandoning the awaiting task; it then sends notifications/cancelled."""
    log_dir = tmp_path / "calllog"
    env = dict(worker_env, OPENCODE_ORCHESTRATOR_LOG_DIR=str(log_dir))
    env.pop("AGENTIC_LOGGING_DISABLED", None)
    async with sdk_worker(env, project_dir, tmp_path, guard) as worker:
        assert (await worker.call("list_commands", {})).is_error is False  # OpenCode up before the clock starts
        started = anyio.current_time()
        with anyio.move_on_after(1.0) as scope:
            await worker.session.call_tool("run", {"message": "HANG"})
        assert scope.cancelled_caught, "a HANG run must not finish by itself"
        assert anyio.current_time() - started < 5

        with anyio.fail_after(5):
            after = await worker.session.call_tool("list_commands", {})
        assert after.is_error is False, text_of(after)

        # The worker itself saw the cancellation: its call log records the run as cancelled.
        def cancelled_record() -> dict[str, Any] | None:
            for path in log_dir.glob("tool_logs_*.jsonl"):
                for line in path.read_text().splitlines():
                    record = json.loads(line)
                    if record["tool"] == "run":
                        return record
            return None

        record = None
        for _ in range(200):  # up to 10 s
            if (record := cancelled_record()) is not None:
                break
            await anyio.sleep(0.05)
        assert record is not None, "the worker never logged the cancelled run"
        assert record["success"] is False
        assert record["error"] == "cancelled"
        assert record["failure_kind"] == "cancelled"
        assert record["request"]["message"] == "HANG"


# ================================================================================================
# bad input: always a tool error that says what is wrong, never a protocol error or a crash

NOT_FOUND_STATE = "invalid input: Session '{sid}' not found. Use list_sessions to discover available sessions."
NOT_FOUND_RUN = (
    "invalid input: Session '{sid}' not found. Use list_sessions to discover sessions, "
    "or omit session_id to create a new session."
)

#: (tool, arguments, words the error text must contain). ``None`` arguments = no ``arguments`` at all.
MALFORMED: list[tuple[str, Any, tuple[str, ...]]] = [
    ("nope", {}, ("invalid input: Unknown tool: nope",)),
    ("", {}, ("invalid input: Unknown tool: ",)),
    ("orchestrator_run", {"message": "hi"}, ("Unknown tool: orchestrator_run",)),
    # run
    ("run", {}, ("Either session_id", "is required")),
    ("run", None, ("Either session_id", "is required")),
    ("run", {"command": "review"}, ("message is required when command is specified",)),
    ("run", {"message": ""}, ("message cannot be empty or whitespace-only",)),
    ("run", {"message": " \n\t "}, ("message cannot be empty or whitespace-only",)),
    ("run", {"message": 42}, ("invalid type", "`message`")),
    ("run", {"message": ["a"]}, ("invalid type", "`message`")),
    ("run", {"session_id": 5}, ("invalid type", "`session_id`", "expected a string")),
    ("run", {"session_id": {"id": "ses_x"}}, ("invalid type", "`session_id`")),
    ("run", {"command": False, "message": "x"}, ("invalid type", "`command`")),
    ("run", {"message": "x", "wait_for_activity": "yes"}, ("invalid type", "`wait_for_activity`")),
    ("run", {"session_id": "ses_nope", "message": "hi"}, (NOT_FOUND_RUN.format(sid="ses_nope"),)),
    ("run", {"session_id": "garbage"}, (NOT_FOUND_RUN.format(sid="garbage"),)),
    ("run", {"session_id": ""}, (NOT_FOUND_RUN.format(sid=""),)),
    ("run", {"command": "___no_such_command___", "message": "x"}, ("___no_such_command___",)),
    (
        "run",
        {"command": "review", "message": "x", "agent": "plan"},
        ("invalid input: agent cannot be provided when command is specified",),
    ),
    ("run", {"message": "x", "agent": ""}, ("invalid input: agent cannot be empty or whitespace-only",)),
    ("run", {"message": "x", "agent": " \t "}, ("invalid input: agent cannot be empty or whitespace-only",)),
    ("run", {"message": "x", "agent": 3}, ("invalid type", "`agent`")),
    ("run", {"message": "x", "agent": "___no_such_agent___"}, ("Agent '___no_such_agent___' not found",)),
    # list_sessions
    ("list_sessions", {"limit": -1}, ("`limit`", "non-negative integer")),
    ("list_sessions", {"limit": "ten"}, ("invalid type", "`limit`")),
    ("list_sessions", {"limit": 1.5}, ("invalid type", "`limit`", "non-negative integer")),
    ("list_sessions", {"limit": 2**70}, ("invalid value", "`limit`", "no larger than")),
    ("list_sessions", {"limit": [1]}, ("invalid type", "`limit`")),
    # get_session_state
    ("get_session_state", {}, ("missing field `session_id`",)),
    ("get_session_state", None, ("missing field `session_id`",)),
    ("get_session_state", {"session_id": None}, ("`session_id`",)),
    ("get_session_state", {"session_id": 7}, ("invalid type", "`session_id`")),
    ("get_session_state", {"session_id": "ses_nope"}, (NOT_FOUND_STATE.format(sid="ses_nope"),)),
    ("get_session_state", {"session_id": "garbage"}, (NOT_FOUND_STATE.format(sid="garbage"),)),
    ("get_session_state", {"session_id": ""}, (NOT_FOUND_STATE.format(sid=""),)),
    ("get_session_state", {"session_id": "ses_../../etc/passwd"}, ("not found",)),
    # respond_permission
    ("respond_permission", {}, ("missing field `session_id`", "missing field `reply`")),
    ("respond_permission", {"session_id": "ses_nope"}, ("missing field `reply`", "`once`", "`reject`")),
    (
        "respond_permission",
        {"session_id": "ses_nope", "reply": "maybe"},
        ("unknown variant `maybe`, expected one of `once`, `always`, `reject`",),
    ),
    ("respond_permission", {"session_id": "ses_nope", "reply": "ONCE"}, ("unknown variant `ONCE`",)),
    ("respond_permission", {"session_id": "ses_nope", "reply": ""}, ("unknown variant ``",)),
    ("respond_permission", {"session_id": "ses_nope", "reply": 1}, ("invalid type", "`reply`")),
    ("respond_permission", {"session_id": ["x"], "reply": "once"}, ("invalid type", "`session_id`")),
    (
        "respond_permission",
        {"session_id": "ses_nope", "reply": "once", "message": 3},
        ("invalid type", "`message`"),
    ),
    ("respond_permission", {"session_id": "ses_nope", "reply": "once"}, ("No pending permission found",)),
    ("respond_permission", {"session_id": "", "reply": "reject"}, ("No pending permission found",)),
    (
        "respond_permission",
        {"session_id": "garbage", "reply": "always", "permission_request_id": "per_nope"},
        ("No pending permission found with id 'per_nope'",),
    ),
    # respond_question
    ("respond_question", {}, ("missing field `session_id`", "missing field `action`")),
    ("respond_question", {"session_id": "ses_nope"}, ("missing field `action`",)),
    (
        "respond_question",
        {"session_id": "ses_nope", "action": "answer"},
        ("unknown variant `answer`, expected one of `reply`, `reject`",),
    ),
    ("respond_question", {"session_id": "ses_nope", "action": None}, ("`action`",)),
    (
        "respond_question",
        {"session_id": "ses_nope", "action": "reply", "answers": "yes"},
        ("invalid type", "`answers`"),
    ),
    (
        "respond_question",
        {"session_id": "ses_nope", "action": "reply", "answers": [["a", 1]]},
        ("`answers[0][1]`",),
    ),
    ("respond_question", {"session_id": "ses_nope", "action": "reject"}, ("No pending question found",)),
    (
        "respond_question",
        {"session_id": "", "action": "reply", "answers": [["x"]], "question_request_id": "que_nope"},
        ("No pending question found with id 'que_nope'",),
    ),
]


def _malformed_id(case: tuple[str, Any, tuple[str, ...]]) -> str:
    tool, args, _ = case
    return f"{tool or '<empty>'}:{json.dumps(args)[:60]}"


@pytest.mark.real_opencode
@pytest.mark.parametrize("case", MALFORMED, ids=[_malformed_id(c) for c in MALFORMED])
def test_malformed_input_is_a_tool_error_that_says_what_is_wrong(
    case: tuple[str, Any, tuple[str, ...]], shared_worker: SharedWorker
) -> None:
    tool, arguments, words = case
    result = shared_worker.call(tool, arguments)
    assert result.is_error is True, f"{tool}({arguments}) did not fail: {result}"
    assert result.structured_content is None
    text = text_of(result)
    assert text.startswith(("invalid input: ", "internal error: ")), text
    for word in words:
        assert word in text, f"{word!r} not in {text!r}"
    assert "unexpected failure" not in text, text
    shared_worker.assert_alive()


@pytest.mark.real_opencode
def test_non_object_arguments_are_refused_without_killing_the_worker(raw_worker: Callable[..., RawWorker]) -> None:
    """Arguments that are not even a JSON object: an error answer (tool or JSON-RPC), never silence."""
    worker = raw_worker()
    worker.initialize()
    for rid, arguments in enumerate(([1, 2], "run", 3, True)):
        worker.send(
            {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {"name": "run", "arguments": arguments}}
        )
        reply = _next_reply(worker, rid)
        if "result" in reply:
            assert reply["result"]["isError"] is True, reply
        else:
            assert reply["error"]["code"] == -32602, reply  # invalid params, per JSON-RPC
    worker.send({"jsonrpc": "2.0", "id": "x", "method": "tools/call"})  # no params at all
    assert _next_reply(worker, "x")["error"]["code"] == -32602
    worker.send({"jsonrpc": "2.0", "id": "y", "method": "no/such/method"})
    assert _next_reply(worker, "y")["error"]["code"] == -32601
    # Garbage lines on the wire are survivable too.
    assert worker.proc.stdin is not None
    worker.proc.stdin.write(b'this is not json\n{"jsonrpc": "2.0", "id": \n[]\n')
    worker.proc.stdin.flush()
    listed = worker.call("list_commands", {})
    assert listed["isError"] is False, listed
    assert worker.proc.poll() is None


def _next_reply(worker: RawWorker, rid: Any, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = worker._lines.get(timeout=0.2)
        except queue.Empty:
            continue
        assert line is not None, worker.stderr()[-3000:]
        reply = json.loads(line)
        if reply.get("id") == rid and "method" not in reply:
            return reply
    raise AssertionError(f"no reply to id {rid!r}")


# ================================================================================================
# one long-lived worker for many calls (malformed cases + hypothesis), held by a blocking portal


class SharedWorker:
    """An SDK client session to one worker subprocess, usable from synchronous tests."""

    def __init__(self, portal: anyio.from_thread.BlockingPortal, worker: SdkWorker, guard: ProcessGuard) -> None:
        self.portal = portal
        self.worker = worker
        self.guard = guard
        self.pid = worker.pid
        self.real_session: str | None = None

    def call(self, name: str, arguments: Any, timeout: float = CALL_TIMEOUT) -> types.CallToolResult:
        async def go() -> types.CallToolResult:
            with anyio.fail_after(timeout):
                return await self.worker.session.call_tool(name, arguments)

        return self.portal.call(go)

    def list_tools(self) -> types.ListToolsResult:
        async def go() -> types.ListToolsResult:
            with anyio.fail_after(30):
                return await self.worker.session.list_tools()

        return self.portal.call(go)

    def assert_alive(self) -> None:
        proc = _read_proc(self.pid)
        assert proc is not None and proc.state != "Z", "the shared worker died"


@pytest.fixture(scope="module")
def shared_worker(
    tmp_path_factory: pytest.TempPathFactory,
    xdg_root: Path,
    opencode_binary: str,
    scripted_model: ScriptedModelServer,
) -> Iterator[SharedWorker]:
    root = tmp_path_factory.mktemp("shared-worker")
    project = root / "project"
    project.mkdir()
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    env = dict(os.environ)
    for var in ("OPENCODE_ORCHESTRATOR_MANAGED", "OPENCODE_BINARY_ARGS", "OPENCODE_CONFIG_CONTENT"):
        env.pop(var, None)
    env.update(  # the same isolation as conftest's opencode_env, for a whole module
        XDG_DATA_HOME=str(xdg_root / "data"),
        XDG_CONFIG_HOME=str(xdg_root / "config"),
        XDG_CACHE_HOME=str(xdg_root / "cache"),
        XDG_STATE_HOME=str(xdg_root / "state"),
        OPENCODE_BINARY=opencode_binary,
        ORCHESTRATOR_TUI_STATE_DIR=str(root / "state"),
        AGENTIC_LOGGING_DISABLED="1",
        OPENCODE_DISABLE_MODELS_FETCH="1",
        OPENCODE_CONFIG_CONTENT=json.dumps(opencode_config(scripted_model.base_url)),
        ORCHESTRATOR_TUI_LOG="WARNING",
    )
    guard = ProcessGuard()
    try:
        with anyio.from_thread.start_blocking_portal() as portal:
            cm = portal.wrap_async_context_manager(sdk_worker(env, project, root, guard))
            with cm as worker:
                shared = SharedWorker(portal, worker, guard)
                yield shared
    finally:
        guard.cleanup()


# ================================================================================================
# property-based: generated arguments for every tool, against the one shared worker

_DIRECTIVE = re.compile(
    r"\b(?:READ|BASH|EDIT|WRITE|ASKMULTI|ASK|CALL|ECHO|FAST|SLOW|HANG|ERROR500|ERROR400|STREAM)\b|\bread\b",
    re.IGNORECASE,
)
REAL_COMMANDS = {"init", "review", "customize-opencode"}
REAL = "<the real session id>"  # replaced by the id of a real session before sending


def _harmless(text: str) -> bool:
    """No scripted-model directive (a HANG/SLOW/BASH turn would be real long or real work)."""
    return not _DIRECTIVE.search(text) and text.strip() not in REAL_COMMANDS


TEXT = st.text(max_size=40).filter(_harmless)
LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=2**64 - 2, max_value=2**64 + 2),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)
JUNK = st.recursive(
    LEAF,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=12,
)
SESSION_ID = st.one_of(
    st.just(REAL),
    st.sampled_from(["ses_nope", "garbage", "", "ses", "ses_", "SES_1", "ses_" + "x" * 300, "ses_../../x"]),
    TEXT.map(lambda s: "ses_" + s),
    TEXT,
)
MESSAGE = st.one_of(st.sampled_from(["Say exactly 'hi' and nothing else.", "   ", "", "\n"]), TEXT)
COMMAND = st.one_of(st.sampled_from(["", "___nope___", "research"]), TEXT)
REQUEST_ID = st.one_of(st.sampled_from(["per_nope", "que_nope", ""]), TEXT)


def _field(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """About half plausible values, the rest null or junk of any JSON type."""
    return st.one_of(valid, st.none() | JUNK)


def _shaped(
    fields: dict[str, st.SearchStrategy[Any]], usual: tuple[str, ...] = ()
) -> st.SearchStrategy[dict[str, Any]]:
    """Objects that look like the tool's input, plus maybe unknown keys (which must be ignored).

    Either any subset of the fields, or the ``usual`` ones (the required fields, or what a real
    call has) always present: without that, most draws would lack them and test little but
    "missing field".
    """
    any_subset = st.fixed_dictionaries({}, optional={k: _field(v) for k, v in fields.items()})
    usual_present = st.fixed_dictionaries(
        {k: _field(fields[k]) for k in usual}, optional={k: _field(v) for k, v in fields.items() if k not in usual}
    )
    extra = st.dictionaries(TEXT, JUNK, max_size=2)
    return st.builds(lambda known, junk: {**junk, **known}, st.one_of(usual_present, any_subset), extra)


REPLY = st.sampled_from(["once", "always", "reject", "maybe", "ONCE", ""])
ACTION = st.sampled_from(["reply", "reject", "answer", ""])
ANSWERS = st.lists(st.lists(TEXT, max_size=3), max_size=3)
ARGUMENTS: dict[str, st.SearchStrategy[Any]] = {
    "run": _shaped(
        {
            "session_id": SESSION_ID,
            "command": COMMAND,
            "agent": st.one_of(st.sampled_from(["build", "plan", " ", ""]), TEXT),
            "message": MESSAGE,
            "wait_for_activity": st.booleans(),
        },
        usual=("message",),
    ),
    "list_sessions": _shaped({"limit": st.integers(min_value=-3, max_value=30)}, usual=("limit",)),
    "get_session_state": _shaped({"session_id": SESSION_ID}, usual=("session_id",)),
    "list_agents": _shaped({}),
    "list_commands": _shaped({}),
    "respond_permission": _shaped(
        {"session_id": SESSION_ID, "permission_request_id": REQUEST_ID, "reply": REPLY, "message": MESSAGE},
        usual=("session_id", "reply"),
    ),
    "respond_question": _shaped(
        {"session_id": SESSION_ID, "question_request_id": REQUEST_ID, "action": ACTION, "answers": ANSWERS},
        usual=("session_id", "action"),
    ),
}
ARGUMENTS = {  # two thirds shaped like the tool's input, one third arbitrary objects
    name: st.one_of(shaped, shaped, st.dictionaries(TEXT, JUNK, max_size=5)) for name, shaped in ARGUMENTS.items()
}
FUZZ_EXAMPLES = int(os.environ.get("ORCHESTRATOR_TUI_FUZZ_EXAMPLES", "200"))


def _substitute(value: Any, real: str) -> Any:
    if value == REAL:
        return real
    if isinstance(value, dict):
        return {k: _substitute(v, real) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, real) for v in value]
    return value


@pytest.mark.real_opencode
@pytest.mark.timeout(900)
@pytest.mark.parametrize("tool", TOOLS)
def test_generated_arguments_never_break_the_worker(tool: str, shared_worker: SharedWorker) -> None:
    if shared_worker.real_session is None:
        made = shared_worker.call("run", {"message": "Say exactly 'seed' and nothing else."})
        assert made.is_error is False, text_of(made)
        assert made.structured_content is not None
        shared_worker.real_session = made.structured_content["session_id"]
    real = shared_worker.real_session
    outcomes: dict[str, int] = {}
    internal: dict[str, Any] = {}

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )
    @given(arguments=ARGUMENTS[tool])
    def check(arguments: Any) -> None:
        arguments = _substitute(arguments, real)
        # The SDK client validates structuredContent against the tool's outputSchema itself.
        result = shared_worker.call(tool, arguments)
        text = text_of(result)
        if result.is_error:
            assert result.structured_content is None, result
            assert text.startswith(("invalid input: ", "internal error: ")) or text == "cancelled", text
            assert "unexpected failure" not in text, f"{tool}({arguments!r}) hit a bug: {text}"
            kind = text.split(":", 1)[0]
            if kind == "internal error":
                internal.setdefault(text[:200], arguments)
        else:
            assert isinstance(result.structured_content, dict), result
            kind = "ok"
        outcomes[kind] = outcomes.get(kind, 0) + 1

    check()
    print(f"{tool}: {outcomes}; internal errors: {list(internal)}")
    # After all that, the same worker still lists its tools and does real work.
    shared_worker.assert_alive()
    assert sorted(t.name for t in shared_worker.list_tools().tools) == sorted(TOOLS)
    listed = shared_worker.call("list_commands", {})
    assert listed.is_error is False and text_of(listed).startswith("Available commands:"), listed


# ================================================================================================
# lifetime: the managed OpenCode lives exactly as long as the worker


def _started_worker(raw_worker: Callable[..., RawWorker]) -> tuple[RawWorker, Proc]:
    worker = raw_worker()
    worker.initialize()
    listed = worker.call("list_commands", {})
    assert listed["isError"] is False, listed
    opencode = wait_for_opencode(worker.pid)
    return worker, opencode


def _assert_all_gone(worker: RawWorker, opencode: Proc, since: float, budget: float = 2.0) -> None:
    gone = wait_until(lambda: worker.proc.poll() is not None and group_gone(opencode.pgid), budget + 3)
    took = time.monotonic() - since
    assert gone, (
        f"after {took:.1f}s: worker rc={worker.proc.poll()}, opencode group {opencode.pgid} "
        f"gone={group_gone(opencode.pgid)}\n{worker.stderr()[-3000:]}"
    )
    assert took <= budget, f"worker and OpenCode took {took:.2f}s to go (budget {budget}s)"
    print(f"worker and OpenCode gone after {took:.2f}s")


@pytest.mark.real_opencode
def test_stdin_eof_stops_the_worker_and_opencode(raw_worker: Callable[..., RawWorker]) -> None:
    worker, opencode = _started_worker(raw_worker)
    started = time.monotonic()
    worker.close_stdin()
    _assert_all_gone(worker, opencode, started)
    assert worker.proc.returncode == 0, worker.stderr()[-3000:]


@pytest.mark.real_opencode
def test_sigterm_stops_the_worker_and_opencode(raw_worker: Callable[..., RawWorker]) -> None:
    worker, opencode = _started_worker(raw_worker)
    started = time.monotonic()
    os.kill(worker.pid, signal.SIGTERM)
    _assert_all_gone(worker, opencode, started)


@pytest.mark.real_opencode
def test_sigterm_during_a_running_call_stops_everything(raw_worker: Callable[..., RawWorker]) -> None:
    worker, opencode = _started_worker(raw_worker)
    worker.send(
        {
            "jsonrpc": "2.0",
            "id": "hang",
            "method": "tools/call",
            "params": {"name": "run", "arguments": {"message": "HANG"}},
        }
    )
    time.sleep(1.0)
    started = time.monotonic()
    os.kill(worker.pid, signal.SIGTERM)
    _assert_all_gone(worker, opencode, started)


@pytest.mark.real_opencode
def test_killed_opencode_is_rebuilt_for_the_next_call(
    raw_worker: Callable[..., RawWorker], guard: ProcessGuard
) -> None:
    worker, opencode = _started_worker(raw_worker)
    os.killpg(opencode.pgid, signal.SIGKILL)
    assert wait_until(lambda: group_gone(opencode.pgid), 5)

    listed = worker.call("list_commands", {})
    assert listed["isError"] is False, listed
    ran = worker.call("run", {"message": HELLO})
    assert ran["isError"] is False, ran
    assert ran["structuredContent"]["response"] == "hello"
    guard.track(worker.pid)
    rebuilt = wait_for_opencode(worker.pid)
    assert rebuilt.pid != opencode.pid


# ================================================================================================
# startup


@pytest.mark.real_opencode
def test_stdout_carries_only_json_rpc(raw_worker: Callable[..., RawWorker]) -> None:
    worker, _ = _started_worker(raw_worker)
    worker.call("run", {"message": HELLO})
    worker.request("ping")
    worker.close_stdin()
    assert wait_until(lambda: worker.proc.poll() is not None, 10)
    worker._reader.join(5)
    assert worker.stdout_lines, "the worker wrote nothing"
    for line in worker.stdout_lines:
        message = json.loads(line)  # every line is one JSON-RPC message, nothing else
        assert isinstance(message, dict) and message.get("jsonrpc") == "2.0", line
    stderr = worker.stderr()
    assert BANNER in stderr
    assert BANNER.encode() not in b"".join(worker.stdout_lines)


def test_recursion_guard_refuses_to_start_opencode(
    raw_worker: Callable[..., RawWorker], worker_env: dict[str, str]
) -> None:
    worker = raw_worker(env=dict(worker_env, OPENCODE_ORCHESTRATOR_MANAGED="1"))
    worker.initialize()
    for tool, arguments in (("list_commands", {}), ("run", {"message": HELLO}), ("list_sessions", {})):
        result = worker.call(tool, arguments)
        assert result["isError"] is True, result
        assert result["content"] == [{"type": "text", "text": "internal error: " + RECURSION_GUARD}]
        assert "structuredContent" not in result
    assert descendants(worker.pid) == [], "nothing may be spawned under the recursion guard"


# ================================================================================================
# the worker never imports Textual

_NO_TEXTUAL = """
import sys, asyncio
import orchestrator_tui.mcp.server as m
import orchestrator_tui.mcp.prelude, orchestrator_tui.mcp.recorder
import orchestrator_tui.orchestrator.{mods}
import orchestrator_tui.pool.handle, orchestrator_tui.pool.service, orchestrator_tui.pool.state
import orchestrator_tui.pool.registry
import orchestrator_tui.opencode.client, orchestrator_tui.opencode.events, orchestrator_tui.opencode.process
import orchestrator_tui.opencode.binary, orchestrator_tui.opencode.models
server = m.build_server(None)
server.create_initialization_options()
asyncio.run(orchestrator_tui.mcp.recorder.record_handshake())
leaked = sorted(n for n in sys.modules if n == "textual" or n.startswith("textual."))
assert not leaked, leaked
print("ok")
"""


def test_worker_modules_never_import_textual() -> None:
    mods = ", orchestrator_tui.orchestrator.".join(
        ["tools", "types", "render", "parsing", "schema", "specs", "run", "errors", "config", "calllog", "tokens"]
    )
    code = _NO_TEXTUAL.format(mods=mods)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


@pytest.mark.real_opencode
def test_running_worker_never_imports_textual(raw_worker: Callable[..., RawWorker]) -> None:
    """Watch the live worker's imports (``-X importtime``) while it serves real calls."""
    worker = raw_worker(argv=[sys.executable, "-X", "importtime", "-m", "orchestrator_tui", "mcp"])
    worker.initialize()
    worker.request("tools/list")
    assert worker.call("list_commands", {})["isError"] is False
    assert worker.call("run", {"message": HELLO})["isError"] is False
    worker.close_stdin()
    assert wait_until(lambda: worker.proc.poll() is not None, 10)
    imported = [line.rsplit("|", 1)[-1].strip() for line in worker.stderr().splitlines() if "import time:" in line]
    assert any(name == "mcp" or name.startswith("mcp.") for name in imported), "importtime output missing"
    assert not [n for n in imported if n == "textual" or n.startswith("textual.")]
