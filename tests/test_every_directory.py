"""One pool across directories: a dashboard started in project A supervises an agent in project B.

Both front ends share one pool (and so one OpenCode server, started by whichever came first),
as two programs on one machine would: the dashboard is the real :class:`DashboardApp` driven by
Pilot, joined as ``orchestrator-tui`` joins; the agent is a real ``orchestrator-tui mcp``
subprocess started in B, spoken to by the MCP SDK's client. A and B are separate git projects
(each with a commit, so OpenCode gives each its own project id).
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from test_dashboard import SLOW, inbox_ids, looked_at, row_line, until
from test_two_supervisors import agent_worker, joined_dashboard

from orchestrator_tui.pool.discovery import PoolFolder

pytestmark = pytest.mark.real_opencode

PERMISSIONS = {"permission": {"bash": "ask", "external_directory": "ask"}}
#: bash is the human's; an agent's call may wait for a human ten minutes, as by default.
HUMAN_BASH = '[[rule]]\npermission = "bash"\nanswer = "human"\n'


def git_project(path: Path) -> Path:
    path.mkdir()
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    author = ["-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run(["git", "-C", str(path), *author, "commit", "-q", "--allow-empty", "-m", path.name], check=True)
    return path.resolve()


@pytest.fixture
def projects(tmp_path: Path) -> tuple[Path, Path]:
    """Projects A and B; only B has the command `only-b` (in its own .opencode/command/)."""
    a, b = git_project(tmp_path / "alpha"), git_project(tmp_path / "beta")
    commands = b / ".opencode" / "command"
    commands.mkdir(parents=True)
    (commands / "only-b.md").write_text("---\ndescription: exists only in beta\n---\nSay exactly 'beta command ran'\n")
    return a, b


@pytest.fixture
def pool_env(opencode_env: dict[str, str], model_config: Callable[..., str]) -> dict[str, str]:
    return {**opencode_env, "OPENCODE_CONFIG_CONTENT": model_config(**PERMISSIONS)}


@pytest.mark.usefixtures("both_backends")
async def test_the_dashboard_in_one_project_supervises_an_agent_in_another(
    projects: tuple[Path, Path], pool_env: dict[str, str], tmp_path: Path
) -> None:
    a, b = projects
    async with joined_dashboard(a, pool_env) as human, human.running() as pilot:
        app = human.app
        (PoolFolder(human.registry.path.parent).path / "policy.toml").write_text(HUMAN_BASH)
        async with agent_worker(pool_env, b, tmp_path) as agent:
            # B's own command runs: the worker's sessions run in B, with B's .opencode/command/,
            # although the pool's server was started in A.
            out = await agent.call("run", {"command": "only-b", "message": "go"})
            assert out.get("status") == "completed" and out["response"] == "beta command ran", out
            sid = out["session_id"]
            assert "only-b" not in {c.name for c in await human.actions.commands()}  # not A's
            assert "only-b" in {c.name for c in await human.actions.commands(sid)}  # the session's own

            # The session shows in A's dashboard, with its project.
            await until(pilot, lambda: sid in app.session_list.rows, "B's session on A's dashboard")
            assert app.session_list.rows[sid].project == str(b)
            await until(pilot, lambda: "beta" in row_line(app, sid), "the Project column naming beta")
            # A resync re-reads B's instance (the worker's directory), and never a non-path.
            directories = human.service.primary.resync_directories()
            assert str(b) in directories and all(d.startswith("/") for d in directories), directories

            # B's permission shows in A's inbox, and `o` there completes B's run.
            progress: list[str] = []

            async def on_progress(value: float, total: float | None, message: str | None) -> None:
                progress.append(message or "")

            call = asyncio.create_task(
                agent.session.call_tool("run", {"message": "BASH echo from-beta"}, progress_callback=on_progress)
            )
            rid = await until(
                pilot, lambda: next((r for r in inbox_ids(app) if r in app.pool.permissions), None), "B's request"
            )
            await until(pilot, lambda: any("waiting for a human" in p for p in progress), "the agent waiting")
            app.inbox.select(rid)
            await looked_at(pilot, app, rid)
            await pilot.press("o")
            result = await asyncio.wait_for(call, SLOW)
            assert not result.is_error and result.structured_content is not None, result
            assert result.structured_content["status"] == "completed", result.structured_content
            assert result.structured_content["response"] == "Command output:\nfrom-beta"
            (decision,) = human.registry.decisions(request_id=rid)
            assert (decision.decided_by, decision.channel) == ("human", "dashboard")

            # Filtered to A only, the dashboard does not show B's requests: the agent is told at
            # once (well within the policy's ten-minute wait) that no human sees its request.
            app.set_project(str(a))
            await pilot.pause()
            out = await agent.call("run", {"message": "BASH echo unseen"}, timeout=30)
            assert out["status"] == "permission_required", out
            assert any("No human sees it" in w for w in out["warnings"]), out["warnings"]
            unseen = out["permission_request_id"]
            await until(pilot, lambda: unseen in app.pool.permissions, "the request in the pool")
            assert unseen not in inbox_ids(app)

            # Every project again (f): the request shows, and the agent's next call waits for the human.
            await pilot.press("f")
            await until(pilot, lambda: unseen in inbox_ids(app), "B's request back in the inbox")
            progress.clear()
            call = asyncio.create_task(
                agent.session.call_tool(
                    "run", {"session_id": out["session_id"], "wait_for_activity": True}, progress_callback=on_progress
                )
            )
            await until(pilot, lambda: any("waiting for a human" in p for p in progress), "the agent waiting again")
            # The dashboard that showed it goes away: the wait ends at once, with the same warning.
            assert human.service.membership is not None
            human.registry.remove_member(human.service.membership.member_id)
            result = await asyncio.wait_for(call, 30)
            assert result.structured_content is not None, result
            assert result.structured_content["status"] == "permission_required", result.structured_content
            warnings = result.structured_content["warnings"]
            assert any("A human must answer this bash request" in w for w in warnings), warnings
