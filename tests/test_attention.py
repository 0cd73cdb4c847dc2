"""Attention that reaches the human: the notify command, desktop notifications, ``status``.

The dashboard tests drive the real :class:`DashboardApp` with Pilot on the real OpenCode 1.18.33
(the scripted model asks for a bash permission: ``BASH echo …`` with ``bash: ask``), with a real
``--notify-command`` (a shell command appending what it reads to a file). ``orchestrator-tui
status`` runs as a real subprocess (``python -m orchestrator_tui status``), next to a dashboard
and a real MCP worker on one pool, and its output and exit status are what is checked.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_dashboard import (
    ASK_BASH,
    SLOW,
    Rig,
    inbox_ids,
    is_idle,
    looked_at,
    make_rig,
    pending_permission,
    start_quietly,
    until,
)
from test_two_supervisors import agent_worker, human, pool_env

from orchestrator_tui.tui.app import DashboardApp
from orchestrator_tui.tui.notify import NotifyCommand, osc_notification, terminal_protocol

__all__ = ["human", "make_rig", "pool_env"]  # fixtures, used by name

# ------------------------------------------------------------------------------------------------
# helpers


def with_app(rig: Rig, **options: Any) -> Rig:
    """The rig's dashboard built again with ``options`` (``notify_command``, ``bell``)."""
    rig.app = DashboardApp(rig.service, rig.actions, rig.registry, **options)
    return rig


def appending_command(out: Path) -> str:
    """A notify command that appends each JSON it reads to ``out`` (one line per request)."""
    return f"cat >> {shlex.quote(str(out))}"


def json_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def status(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m orchestrator_tui status ARGS``, as a status bar runs it."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator_tui", "status", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


async def status_async(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The same from a test whose event loop runs the dashboard (which must go on meanwhile)."""
    return await asyncio.to_thread(status, env, *args)


# ------------------------------------------------------------------------------------------------
# desktop notifications through the terminal: the bytes


HOSTILE = "evil\x1b]0;owned\x07title\x1b\\ \x9d8;;x\x9c\u202e bell\x07 \x1b[8m;hidden"


@pytest.mark.parametrize("protocol", ["osc9", "osc777", "osc99"])
@pytest.mark.parametrize("tmux", [False, True], ids=["plain", "tmux"])
def test_a_hostile_title_cannot_break_out_of_the_notification(protocol: Any, tmux: bool) -> None:
    sequence = osc_notification(protocol, "orchestrator-tui", f"{HOSTILE}: Run command: {HOSTILE}", tmux=tmux)
    if tmux:
        assert sequence.startswith("\x1bPtmux;\x1b\x1b]") and sequence.endswith("\x1b\\")
        inner = sequence[len("\x1bPtmux;") : -2].replace("\x1b\x1b", "\x1b")
    else:
        inner = sequence
    opener = {"osc9": "\x1b]9;", "osc777": "\x1b]777;notify;", "osc99": "\x1b]99;;"}[protocol]
    closer = "\x1b\\" if protocol == "osc99" else "\x07"
    assert inner.startswith(opener) and inner.endswith(closer)
    payload = inner[len(opener) : -len(closer)]
    # Nothing from the title can end the sequence or start another one: no ESC, BEL, C1 control
    # (0x9c is ST, 0x9d OSC for terminals that read 8-bit controls), nor any other control.
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in payload), repr(payload)
    assert "\u202e" not in payload
    assert "\\x1b]0;owned\\x07" in payload, "the hostile bytes are shown as escapes, not dropped silently"
    assert len(payload) <= 200, "kept short"
    if protocol == "osc777":
        title, _, body = payload.partition(";")
        assert title == "orchestrator-tui" and body.startswith("evil")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"TERM_PROGRAM": "iTerm.app"}, "osc9"),
        ({"LC_TERMINAL": "iTerm2", "TERM": "tmux-256color", "TMUX": "/tmp/t,1,0"}, "osc9"),
        ({"TERM_PROGRAM": "WezTerm"}, "osc777"),
        ({"GHOSTTY_RESOURCES_DIR": "/usr/share/ghostty", "TERM": "xterm-ghostty"}, "osc777"),
        ({"TERM": "foot"}, "osc777"),
        ({"WT_SESSION": "0c5e"}, "osc777"),
        ({"VTE_VERSION": "7600", "TERM": "xterm-256color"}, "osc777"),
        ({"KITTY_WINDOW_ID": "1", "TERM": "xterm-kitty"}, "osc99"),
        ({"TERM": "xterm-256color"}, None),
        ({"TERM": "linux"}, None),
        ({"TERM_PROGRAM": "WezTerm", "ORCHESTRATOR_TUI_DESKTOP_NOTIFY": "off"}, None),
        ({"TERM": "xterm-256color", "ORCHESTRATOR_TUI_DESKTOP_NOTIFY": "osc9"}, "osc9"),
    ],
)
def test_the_sequence_is_the_one_the_terminal_reads(env: dict[str, str], expected: str | None) -> None:
    assert terminal_protocol(env) == expected


# ------------------------------------------------------------------------------------------------
# the notify command: bursts are serialized, every request's JSON arrives


async def test_a_burst_runs_the_command_one_request_at_a_time(tmp_path: Path) -> None:
    out, overlaps = tmp_path / "out.jsonl", tmp_path / "overlaps"
    lock = tmp_path / "running"
    # mkdir is atomic: it fails when another run is still inside.
    command = (
        f"mkdir {shlex.quote(str(lock))} || echo overlap >> {shlex.quote(str(overlaps))}; "
        f"cat >> {shlex.quote(str(out))}; sleep 0.05; rmdir {shlex.quote(str(lock))}"
    )
    runner = NotifyCommand(command)
    try:
        for n in range(8):
            runner.submit({"request_id": f"per_{n}", "title": "x\x1b]0;y\x07"})
        deadline = asyncio.get_running_loop().time() + SLOW
        while runner.succeeded + runner.failed < 8:
            assert asyncio.get_running_loop().time() < deadline, "the runs did not finish"
            await asyncio.sleep(0.05)
    finally:
        await runner.stop()
    assert runner.failed == 0
    assert [line["request_id"] for line in json_lines(out)] == [f"per_{n}" for n in range(8)]
    assert json_lines(out)[0]["title"] == "x\x1b]0;y\x07", "the exact text, JSON-escaped"
    assert "\x1b" not in out.read_text(), "no raw control character on the command's stdin"
    assert not overlaps.exists(), "two runs overlapped"


# ------------------------------------------------------------------------------------------------
# the dashboard calls the human for a real permission


async def test_a_waiting_permission_runs_the_notify_command_and_notifies_the_desktop(
    make_rig: Callable[..., Rig], tmp_path: Path, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TERM_PROGRAM", "WezTerm")  # a terminal that reads OSC 777
    monkeypatch.delenv("TMUX", raising=False)
    monkeypatch.delenv("ORCHESTRATOR_TUI_DESKTOP_NOTIFY", raising=False)
    out = tmp_path / "notified.jsonl"
    rig = with_app(make_rig(**ASK_BASH), notify_command=appending_command(out))
    app = rig.app
    async with rig.running() as pilot:
        sid = await start_quietly(rig, "BASH echo hi", title="needs \x1b]0;a yes")
        request = await until(pilot, lambda: pending_permission(app, sid), "the bash permission")
        (payload,) = await until(pilot, lambda: json_lines(out), "the notify command's JSON")
        assert payload["kind"] == "permission"
        assert (payload["request_id"], payload["session_id"]) == (request.id, sid)
        assert payload["session_title"] == "needs \x1b]0;a yes", "the exact title, as data"
        assert payload["permission"] == "bash" and payload["patterns"] == ["echo hi"]
        assert payload["directory"] == str(project_dir)
        assert payload["server"].startswith("http://127.0.0.1:")
        assert payload["summary"] == "needs \\x1b]0;a yes: Run command: echo hi"
        assert payload["time"].endswith("+00:00")

        # The bell rang once, the notice is on screen, the desktop notification went out as OSC 777.
        notes = [n for n in rig.notes if n.title == "Waiting for you"]
        assert [n.message for n in notes] == ["needs \\x1b]0;a yes: Run command"]
        assert len(rig.bells) == 1
        assert list(app.attention_sent) == [
            "\x1b]777;notify;orchestrator-tui: waiting for you;needs \\x1b]0;a yes: Run command: echo hi\x07"
        ]

        # Answered: the session completes; nothing more was notified.
        app.inbox.select(request.id)
        await looked_at(pilot, app, request.id)
        await pilot.press("o")
        await until(pilot, lambda: is_idle(app, sid), "the session to finish")
        assert len(json_lines(out)) == 1 and len(rig.bells) == 1 and app.attention_calls == 1
        assert rig.problems() == []


async def test_a_failing_or_hanging_notify_command_never_blocks_answering(
    make_rig: Callable[..., Rig], tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    # Hangs on the first request (until stopped), fails on the others.
    command = (
        f"echo $$ >> {shlex.quote(str(pids))}; "
        f"if [ $(wc -l < {shlex.quote(str(pids))}) -eq 1 ]; then sleep 600; fi; "
        "echo 'no luck' >&2; exit 3"
    )
    rig = with_app(make_rig(**ASK_BASH), notify_command=command, bell=False)
    app = rig.app
    assert app.notify_command is not None
    app.notify_command.timeout = 2.0
    async with rig.running() as pilot:
        sid = await start_quietly(rig, "BASH echo first", title="first")
        first = await until(pilot, lambda: pending_permission(app, sid), "the first permission")
        await until(pilot, lambda: pids.exists(), "the notify command to start (and hang)")
        hanging = int(pids.read_text().split()[0])

        # While the command hangs, the human answers: the dashboard does not wait for it.
        app.inbox.select(first.id)
        await looked_at(pilot, app, first.id)
        await pilot.press("o")
        await until(pilot, lambda: is_idle(app, sid), "the first session to finish")

        # The hanging run is stopped (its process group killed) and said so, once.
        note = await until(
            pilot,
            lambda: next((n for n in rig.notes if n.title == "Notify command failed"), None),
            "the failure notice",
        )
        assert "was still running after 2 s and was stopped" in note.message
        await until(pilot, lambda: not Path(f"/proc/{hanging}").exists(), "the hanging command to be gone")

        # A failing command: logged, not said again; the request is answered all the same.
        sid2 = await start_quietly(rig, "BASH echo second", title="second")
        second = await until(pilot, lambda: pending_permission(app, sid2), "the second permission")
        await until(pilot, lambda: app.notify_command.failed == 2, "the second run to fail")  # type: ignore[union-attr]
        app.inbox.select(second.id)
        await looked_at(pilot, app, second.id)
        await pilot.press("o")
        await until(pilot, lambda: is_idle(app, sid2), "the second session to finish")
        assert len([n for n in rig.notes if n.title == "Notify command failed"]) == 1


async def test_a_request_a_rule_answers_calls_nobody(make_rig: Callable[..., Rig], tmp_path: Path) -> None:
    out = tmp_path / "notified.jsonl"
    rig = with_app(make_rig(**ASK_BASH), notify_command=appending_command(out))
    app = rig.app
    rig.registry.add_rule("bash", "echo *", "once", "human")
    async with rig.running() as pilot:
        ruled = await start_quietly(rig, "BASH echo ruled", title="a rule answers me")
        await until(pilot, lambda: is_idle(app, ruled), "the rule to answer and the session to finish")
        # Then one that no rule covers: the human is called for it, and for it only. (Timers fire
        # in order: by the time its call is made, the first request's moment has passed.)
        waiting = await start_quietly(rig, "BASH ls", title="nobody answers me")
        request = await until(pilot, lambda: pending_permission(app, waiting), "the second permission")
        await until(pilot, lambda: json_lines(out), "the notify command's JSON")
        assert [p["request_id"] for p in json_lines(out)] == [request.id]
        assert [n.message for n in rig.notes if n.title == "Waiting for you"] == ["nobody answers me: Run command"]
        assert len(rig.bells) == 1 and app.attention_calls == 1


# ------------------------------------------------------------------------------------------------
# orchestrator-tui status


def test_status_with_no_front_end_says_so(opencode_env: dict[str, str], tmp_path: Path) -> None:
    done = status(opencode_env)
    assert (done.returncode, done.stdout, done.stderr) == (2, "no front end running\n", "")
    data = json.loads(status(opencode_env, "--json").stdout)
    assert data["running"] is False and data["front_ends"] == [] and data["waiting"] == 0

    # A front end that died without cleaning up (kill -9) left its file: ignored, and removed.
    folder = Path(opencode_env["ORCHESTRATOR_TUI_STATE_DIR"]) / "default" / "status"
    folder.mkdir(parents=True, mode=0o700)
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = folder / f"{dead.pid}.json"
    stale.write_text(json.dumps({"format": 1, "pid": dead.pid, "permissions": ["per_stale"], "kind": "human"}))
    done = status(opencode_env)
    assert (done.returncode, done.stdout) == (2, "no front end running\n")
    assert not stale.exists()

    # Usage errors are argparse's.
    assert status(opencode_env, "--pool", "../x").returncode == 2


def test_status_loads_nothing_heavy(opencode_env: dict[str, str]) -> None:
    """A status bar runs it every few seconds: no httpx, pydantic, Textual or MCP SDK."""
    code = (
        "import sys\n"
        "from orchestrator_tui.cli import main\n"
        "main(['status'])\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'httpx', 'pydantic', 'textual', 'mcp', 'rich'}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=opencode_env, capture_output=True, text=True, timeout=30)
    assert done.stdout.splitlines()[-1] == "[]", done.stdout + done.stderr


async def test_status_counts_what_the_front_ends_of_the_pool_see(
    human: Rig, pool_env: dict[str, str], project_dir: Path, tmp_path: Path
) -> None:
    app = human.app
    async with human.running() as pilot, agent_worker(pool_env, project_dir, tmp_path) as agent:

        async def shows(line: str, code: int, front_ends: int) -> dict[str, Any]:
            async def current() -> tuple[str, int, dict[str, Any]]:
                plain, as_json = await status_async(pool_env), await status_async(pool_env, "--json")
                return plain.stdout.strip(), plain.returncode, json.loads(as_json.stdout)

            deadline = asyncio.get_running_loop().time() + SLOW
            while True:
                seen = await current()
                if seen[:2] == (line, code) and len(seen[2]["front_ends"]) == front_ends:
                    return seen[2]
                assert asyncio.get_running_loop().time() < deadline, f"status showed {seen}, not {line!r} ({code})"
                await pilot.pause(0.2)

        # Both front ends run; the worker has made no call yet, so only the dashboard has a server.
        data = await shows("0 waiting · 0 busy · 1 server", 0, 2)
        assert sorted(f["kind"] for f in data["front_ends"]) == ["agent", "human"]

        # The agent's run stops at a permission: both front ends see it, it counts once.
        out = await agent.call("run", {"message": "BASH echo counted-once"})
        assert out["status"] == "permission_required", out
        rid, sid = out["permission_request_id"], out["session_id"]
        await until(pilot, lambda: rid in inbox_ids(app), "the permission in the inbox")
        data = await shows("1 waiting · 1 busy · 1 server", 1, 2)
        assert data["waiting_ids"] == data["permission_ids"] == [rid] and data["busy_ids"] == [sid]
        assert all(f["server"] == data["front_ends"][0]["server"] for f in data["front_ends"]), "one server"

        # The human answers it: nothing waits any more.
        app.inbox.select(rid)
        await looked_at(pilot, app, rid)
        await pilot.press("o")
        await shows("0 waiting · 0 busy · 1 server", 0, 2)
    # Both front ends ended cleanly: their files are gone with them.
    done = await status_async(pool_env)
    assert (done.returncode, done.stdout) == (2, "no front end running\n")
    assert list((Path(pool_env["ORCHESTRATOR_TUI_STATE_DIR"]) / "default" / "status").glob("*.json")) == []
