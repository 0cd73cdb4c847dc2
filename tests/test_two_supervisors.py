"""The dashboard and the MCP worker on ONE pool, in the same test (issue 4's acceptance).

The human side is the real :class:`DashboardApp` driven by Pilot in this process, joined to the
pool exactly as ``orchestrator-tui`` joins it; the agent side is a real ``orchestrator-tui mcp``
subprocess spoken to by the MCP SDK's stdio client. They share nothing but the pool folder
(registry + server record) and the OpenCode server, as two programs on a machine would.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from test_dashboard import SLOW, Rig, inbox_ids, looked_at, row_line, until
from test_mcp_protocol import WORKER, ProcessGuard, text_of

from orchestrator_tui.pool.actions import PoolActions
from orchestrator_tui.pool.discovery import Membership, PoolFolder
from orchestrator_tui.pool.registry import Registry
from orchestrator_tui.pool.servers import load_servers
from orchestrator_tui.pool.service import PoolService, ServerSpec
from orchestrator_tui.tui.app import DashboardApp
from orchestrator_tui.tui.main import _member_directories

pytestmark = pytest.mark.real_opencode

AGENT = types.Implementation(name="test-agent", version="9.9")
PERMISSIONS = {"permission": {"question": "allow", "read": "allow", "edit": "ask", "bash": "ask"}}
#: See tests/test_shared_pool.py: 5 s on a quiet machine (benchmarks/recovery.py), more on busy CI.
RECOVERY_BOUND = 15.0


def external_read_prompt(path: Path) -> str:
    return (
        f'There is a text file at "{path}".\nThe file contains a unique token.\n'
        "Use the `read` tool to read it, then reply with the exact file contents and nothing else."
    )


class Agent:
    """The MCP worker seen through the SDK client: structured results, errors as text."""

    def __init__(self, session: ClientSession, pid: int, guard: ProcessGuard) -> None:
        self.session = session
        self.pid = pid
        self.guard = guard

    async def call(self, name: str, arguments: dict[str, Any], timeout: float = SLOW) -> dict[str, Any]:
        with anyio.fail_after(timeout):
            result = await self.session.call_tool(name, arguments)
        self.guard.track(self.pid)
        if result.is_error:
            return {"error": text_of(result)}
        assert result.structured_content is not None, result
        return dict(result.structured_content)


@asynccontextmanager
async def agent_worker(env: dict[str, str], cwd: Path, log_dir: Path) -> AsyncIterator[Agent]:
    guard = ProcessGuard()
    stderr_path = log_dir / f"worker-{time.monotonic_ns()}.log"
    params = StdioServerParameters(command=str(WORKER), args=["mcp"], env=env, cwd=str(cwd))
    try:
        with stderr_path.open("w") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write):
                # The child may not have exec'd the worker yet (seen under load): look until it has.
                deadline = time.monotonic() + 30
                while not (pids := [p for p in _children(os.getpid()) if "mcp" in p[1]]):
                    assert time.monotonic() < deadline, "the MCP worker never started"
                    await anyio.sleep(0.05)
                pid = pids[-1][0]
                guard.track(pid)
                async with ClientSession(read, write, client_info=AGENT) as session:
                    with anyio.fail_after(30):
                        await session.initialize()
                    yield Agent(session, pid, guard)
    finally:
        guard.cleanup()


def _children(ppid: int) -> list[tuple[int, str]]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == ppid:
            found.append((int(entry), cmdline))
    return sorted(found)


@pytest.fixture
def token_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A file outside the project (reading it asks for ``external_directory``) with a unique token."""
    path = tmp_path_factory.mktemp("outside") / "token.txt"
    token = f"two-supervisors token {time.time_ns()}"
    path.write_text(token)
    return path, token


@pytest.fixture
def pool_env(opencode_env: dict[str, str], model_config: Callable[..., str]) -> dict[str, str]:
    return {**opencode_env, "OPENCODE_CONFIG_CONTENT": model_config(**PERMISSIONS)}


@asynccontextmanager
async def joined_dashboard(project: Path, env: dict[str, str]) -> AsyncIterator[Rig]:
    """The dashboard started in ``project``, joined to the pool exactly as ``orchestrator-tui``
    joins it: following every directory, re-reading its members' directories at each resync,
    with the servers of the pool's ``pool.toml``. Nothing it started outlives the test."""
    registry = Registry.for_pool("default", env)
    membership = Membership.join(registry, "human", "orchestrator-tui dashboard", directory=str(project))
    service = PoolService(
        ServerSpec(cwd=project, env=env, every_directory=True),
        membership=membership,
        directories=_member_directories(registry),
        servers=load_servers(registry.path.parent, env=env),
    )
    actions = PoolActions(service, registry)
    app = DashboardApp(service, actions, registry, bell=False)
    try:
        yield Rig(app=app, service=service, registry=registry, actions=actions, env=env)
    finally:
        await asyncio.wait_for(service.close(), 20)
        record = PoolFolder(registry.path.parent).read_record()
        registry.close()
        if record is not None:  # nothing outlives the test
            with suppress(ProcessLookupError):
                os.killpg(record.pid, signal.SIGKILL)


@pytest.fixture
async def human(pool_env: dict[str, str], project_dir: Path) -> AsyncIterator[Rig]:
    async with joined_dashboard(project_dir, pool_env) as rig:
        yield rig


async def test_agent_and_human_supervise_one_pool(
    human: Rig, pool_env: dict[str, str], project_dir: Path, tmp_path: Path, token_file: tuple[Path, str]
) -> None:
    app = human.app
    path, token = token_file
    async with human.running() as pilot, agent_worker(pool_env, project_dir, tmp_path) as agent:
        # 0. The worker is listed as a member of the pool from its `initialize` on, before any call.
        def workers() -> list[tuple[str | None, str | None]]:
            return [(m.client_name, m.client_version) for m in human.registry.members() if m.kind == "agent"]

        await until(pilot, lambda: workers() == [("test-agent", "9.9")], "the worker in the pool's members", 10)

        # 1. The agent's session shows up on the dashboard, flagged with the agent's client name.
        out = await agent.call("run", {"message": "Say exactly 'from-agent'"})
        assert out["status"] == "completed" and out["response"] == "from-agent", out
        sid = out["session_id"]
        await until(pilot, lambda: sid in app.session_list.rows, "the agent's session on the dashboard")
        await until(pilot, lambda: "test-agent" in row_line(app, sid), "the agent's client name on its row")
        launch = human.registry.launches([sid])[sid]
        assert (launch.origin, launch.client_name, launch.client_version) == ("agent", "test-agent", "9.9")

        # 2. The human approves the agent's permission with `o`; the agent's resumed run completes.
        out = await agent.call("run", {"message": external_read_prompt(path)})
        assert out["status"] == "permission_required" and out["permission_type"] == "external_directory", out
        rid, sid2 = out["permission_request_id"], out["session_id"]
        await until(pilot, lambda: rid in inbox_ids(app), "the agent's permission in the inbox")
        app.inbox.select(rid)
        await looked_at(pilot, app, rid)
        await pilot.press("o")
        for _ in range(5):
            out = await agent.call("run", {"session_id": sid2, "wait_for_activity": True})
            if out["status"] != "permission_required":
                break
            await until(pilot, lambda o=out: o["permission_request_id"] in inbox_ids(app), "the next permission")
            app.inbox.select(out["permission_request_id"])
            await looked_at(pilot, app, out["permission_request_id"])
            await pilot.press("o")
        assert out["status"] == "completed" and token in (out["response"] or ""), out
        (decision,) = human.registry.decisions(request_id=rid)
        assert (decision.decided_by, decision.channel, decision.decision) == ("human", "dashboard", "once")

        # 3. The agent approves a permission itself: it disappears from the dashboard at once.
        out = await agent.call("run", {"message": "BASH echo agent-approved"})
        assert out["status"] == "permission_required", out
        rid3 = out["permission_request_id"]
        await until(pilot, lambda: rid3 in inbox_ids(app), "the bash permission in the inbox")
        done = await agent.call(
            "respond_permission", {"session_id": out["session_id"], "permission_request_id": rid3, "reply": "once"}
        )
        assert done["status"] == "completed", done
        await until(pilot, lambda: rid3 not in inbox_ids(app), "the answered permission leaving the inbox", 5)
        (decision,) = human.registry.decisions(request_id=rid3)
        assert (decision.decided_by, decision.channel, decision.client_name) == ("agent", "mcp", "test-agent")

        # 4. The pool's server dies under both: one restarts it, both work again, the agent's next
        #    call succeeds on the same new server.
        record = PoolFolder(human.registry.path.parent).read_record()
        assert record is not None
        os.killpg(record.pid, signal.SIGKILL)
        killed = time.monotonic()

        def recovered() -> bool:
            current = human.service.handle.current
            return current is not None and current.pid != record.pid and app.pool.connection_state == "connected"

        await until(pilot, recovered, "the dashboard on a new server", RECOVERY_BOUND)
        listed = await agent.call("list_sessions", {})
        took = time.monotonic() - killed
        print(f"dashboard and agent working again {took:.2f} s after the kill")
        assert "error" not in listed and sid in {s["id"] for s in listed["sessions"]}, listed
        assert took < RECOVERY_BOUND
        new = PoolFolder(human.registry.path.parent).read_record()
        assert new is not None and new.pid == human.service.handle.current.pid
        assert json.dumps(listed)  # structured, as the agent relies on


async def test_human_and_agent_race_for_the_same_permission_fifty_times(
    human: Rig, pool_env: dict[str, str], project_dir: Path, tmp_path: Path
) -> None:
    """Both sides answer each of 50 requests at the same moment: exactly one wins every time."""
    app = human.app
    rounds = 50
    async with human.running() as pilot, agent_worker(pool_env, project_dir, tmp_path) as agent:
        sessions: list[str] = []
        for batch in range(0, rounds, 10):  # the human starts them (ten at a time): the agent only answers
            made = await asyncio.gather(
                *(human.actions.new_session(f"race {n}\nBASH echo race-{n}") for n in range(batch, batch + 10))
            )
            sessions += [session.id for session in made]
        await until(
            pilot,
            lambda: {r.sessionID for r in app.pool.permissions.values()} >= set(sessions),
            "50 pending bash permissions",
            120,
        )
        requests = {r.sessionID: r for r in app.pool.permissions.values() if r.sessionID in sessions}

        async def human_answers(rid: str, delay: float) -> str | None:
            # The agent's answer travels through stdio and a GET /permission before it claims;
            # the human's is in-process. Sweeping the human's start over 0-150 ms makes the two
            # arrive together somewhere in the sweep, so both sides win some rounds.
            await asyncio.sleep(delay)
            try:
                await human.actions.reply_permission(rid, "once")
            except Exception as exc:
                return str(exc)
            return None

        async def agent_answers(sid: str, rid: str) -> str | None:
            out = await agent.call(
                "respond_permission", {"session_id": sid, "permission_request_id": rid, "reply": "once"}, 120
            )
            return out.get("error")

        human_wins = agent_wins = 0
        for n, sid in enumerate(sessions):
            rid = requests[sid].id
            human_error, agent_error = await asyncio.gather(human_answers(rid, n * 0.003), agent_answers(sid, rid))
            assert (human_error is None) != (agent_error is None), (rid, human_error, agent_error)
            loser = human_error or agent_error
            assert loser is not None and "already answered by" in loser, loser
            if human_error is None:
                human_wins += 1
                assert "already answered by human" in loser, loser
            else:
                agent_wins += 1
                assert "already answered by agent (test-agent)" in loser, loser
            decisions = human.registry.decisions(request_id=rid)
            assert len(decisions) == 1, decisions
            assert decisions[0].decided_by == ("human" if human_error is None else "agent")
        print(f"human won {human_wins}, agent won {agent_wins} of {rounds}")
        assert human_wins and agent_wins, "the sweep must produce real races, won by either side"

        # Exactly one reply reached OpenCode each time: every session ran its command once and
        # finished; nothing is left waiting.
        client = (await human.service.acquire()).client
        for sid in sessions:
            runs = [p for m in await client.messages(sid) for p in m.parts if p.type == "tool" and p.tool == "bash"]
            assert len(runs) == 1 and runs[0].state is not None and runs[0].state.status == "completed", runs
        await until(pilot, lambda: not set(sessions) & {r.sessionID for r in app.pool.permissions.values()}, "")


async def test_policy_reserves_a_permission_for_the_human(
    human: Rig, pool_env: dict[str, str], project_dir: Path, tmp_path: Path
) -> None:
    """bash is the human's: the agent is refused while no dashboard is attached; with one
    attached, its run waits (sending progress) and completes once the human approves."""
    policy = PoolFolder(human.registry.path.parent).path / "policy.toml"
    policy.write_text('[[rule]]\npermission = "bash"\nanswer = "human"\n')
    app = human.app
    async with agent_worker(pool_env, project_dir, tmp_path) as agent:
        # No dashboard attached yet (the fixture's app is not running): refused, clearly.
        human.registry.remove_member(human.service.membership.member_id)  # type: ignore[union-attr]
        out = await agent.call("run", {"message": "BASH echo reserved-1"})
        assert out["status"] == "permission_required", out
        assert any("human" in w and "orchestrator-tui" in w for w in out["warnings"]), out
        refused = await agent.call(
            "respond_permission",
            {"session_id": out["session_id"], "permission_request_id": out["permission_request_id"], "reply": "once"},
        )
        assert "error" in refused and "human" in refused["error"] and str(policy) in refused["error"], refused

        # The dashboard attaches: the agent's run now waits for the human and completes.
        human.service.membership.member_id = human.registry.register_member("human", "dashboard")  # type: ignore[union-attr]
        async with human.running() as pilot:
            progress: list[str] = []

            async def on_progress(value: float, total: float | None, message: str | None) -> None:
                progress.append(message or "")

            call = asyncio.create_task(
                agent.session.call_tool("run", {"message": "BASH echo reserved-2"}, progress_callback=on_progress)
            )
            await until(
                pilot,
                lambda: any(
                    r.permission == "bash" and r.sessionID != out["session_id"] for r in app.pool.permissions.values()
                ),
                "the reserved request",
            )
            await until(pilot, lambda: any("waiting for a human" in p for p in progress), "progress while waiting")
            assert not call.done(), "the agent's run must wait for the human"
            rid = next(
                r.id
                for r in app.pool.permissions.values()
                if r.permission == "bash" and r.sessionID != out["session_id"]
            )
            # The first session's request is pending too: highlight this one only once the
            # (coalesced) inbox lists it, or `o` would answer the other.
            await until(pilot, lambda: rid in inbox_ids(app), "the reserved request in the inbox")
            app.inbox.select(rid)
            await until(pilot, lambda: app.inbox.highlighted_id == rid, "the reserved request highlighted")
            await looked_at(pilot, app, rid)
            await pilot.press("o")
            result = await asyncio.wait_for(call, SLOW)
            assert not result.is_error, result
            assert result.structured_content["status"] == "completed", result.structured_content
            (decision,) = human.registry.decisions(request_id=rid)
            assert decision.decided_by == "human"
