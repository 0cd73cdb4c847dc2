"""The official MCP Inspector (npm ``@modelcontextprotocol/inspector``) drives ``orchestrator-tui mcp``.

The Inspector is a third-party MCP client built on the TypeScript SDK; in ``--cli`` mode it starts
the server over stdio, runs one method, prints the JSON result and shuts the server down. The
fixture installs the pinned version into the user cache once (``npm install --prefix``,
atomically), and every later run reuses it. npm missing is a failure, not a skip: the test is
how we know a client we did not write can use the worker.

The Inspector starts the server with a minimal environment (HOME, PATH, ...) plus the ``-e
KEY=VALUE`` pairs it is given, so everything the worker needs is passed with ``-e``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_mcp_protocol import SNAPSHOT, TOOLS, WORKER

from orchestrator_tui.opencode import binary

INSPECTOR_PACKAGE = "@modelcontextprotocol/inspector"
INSPECTOR_VERSION = "2.12.0"
NPM_INSTALL_TIMEOUT = 600
INSPECTOR_TIMEOUT = 180


def _install_dir() -> Path:
    return binary.cache_base() / "orchestrator-tui" / f"inspector-{INSPECTOR_VERSION}"


def _bin_in(prefix: Path) -> Path:
    return prefix / "node_modules" / ".bin" / "mcp-inspector"


def _installed_version(prefix: Path) -> str | None:
    manifest = prefix / "node_modules" / INSPECTOR_PACKAGE / "package.json"
    try:
        return json.loads(manifest.read_text(encoding="utf-8")).get("version")
    except (OSError, ValueError):
        return None


@pytest.fixture(scope="session")
def inspector() -> Path:
    """The pinned Inspector's executable, installed into the user cache on first use."""
    prefix = _install_dir()
    if _bin_in(prefix).exists() and _installed_version(prefix) == INSPECTOR_VERSION:
        return _bin_in(prefix)
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail(
            f"npm is required to install the MCP Inspector ({INSPECTOR_PACKAGE}@{INSPECTOR_VERSION}) for this test; "
            "install Node.js with npm and rerun",
            pytrace=False,
        )
    prefix.parent.mkdir(parents=True, exist_ok=True)
    staging = prefix.with_name(f"{prefix.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        done = subprocess.run(
            [
                npm,
                "install",
                "--prefix",
                str(staging),
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                f"{INSPECTOR_PACKAGE}@{INSPECTOR_VERSION}",
            ],
            capture_output=True,
            text=True,
            timeout=NPM_INSTALL_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 0, f"npm install of the Inspector failed:\n{done.stdout}\n{done.stderr}"
        assert _installed_version(staging) == INSPECTOR_VERSION, "npm installed something else"
        shutil.rmtree(prefix, ignore_errors=True)  # a broken or stale copy
        try:
            staging.rename(prefix)
        except OSError:
            if _installed_version(prefix) != INSPECTOR_VERSION:  # not another run that won the race
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    assert _bin_in(prefix).exists(), f"no mcp-inspector executable in {prefix}"
    return _bin_in(prefix)


# ------------------------------------------------------------------------------------------------
# processes: whatever the Inspector started (the worker, and the worker's OpenCode) is stopped


def _stat(pid: int) -> tuple[int, int, str, int] | None:
    """(ppid, pgid, state, start time) of a live process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = stat[stat.rfind(")") + 2 :].split()
    return int(rest[1]), int(rest[2]), rest[0], int(rest[19])


def _descendants(pid: int) -> dict[int, tuple[int, int, str, int]]:
    table = {int(e): s for e in os.listdir("/proc") if e.isdigit() and (s := _stat(int(e))) is not None}
    found: dict[int, tuple[int, int, str, int]] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, info in table.items():
            if info[0] == parent and child not in found:
                found[child] = info
                frontier.append(child)
    return found


def _alive(pid: int, start: int) -> bool:
    now = _stat(pid)
    return now is not None and now[3] == start and now[2] != "Z"


def run_inspector(inspector: Path, args: list[str], env: dict[str, str], cwd: Path, tmp_path: Path) -> dict[str, Any]:
    """Run the Inspector CLI once; return its JSON output. Everything it started is gone afterwards."""
    inspector_env = dict(os.environ)
    inspector_env.update(  # keep the Inspector's own state out of the user's home
        MCP_CATALOG_PATH=str(tmp_path / "inspector-catalog.json"),
        MCP_STORAGE_DIR=str(tmp_path / "inspector-storage"),
    )
    server_env: list[str] = []
    for key, value in sorted(env.items()):
        if value and os.environ.get(key) != value:  # the Inspector rejects empty values
            server_env += ["-e", f"{key}={value}"]
    argv = [str(inspector), "--cli", *server_env, "--cwd", str(cwd), str(WORKER), "mcp", *args]
    out_path, err_path = tmp_path / "inspector-stdout.txt", tmp_path / "inspector-stderr.txt"
    seen: dict[int, tuple[int, int, str, int]] = {}
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=inspector_env, start_new_session=True
        )
        if (own := _stat(proc.pid)) is not None:
            seen[proc.pid] = own
        deadline = time.monotonic() + INSPECTOR_TIMEOUT
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                seen.update(_descendants(proc.pid))
                time.sleep(0.05)
            timed_out = proc.poll() is None
        finally:
            leftovers = _stop_all(proc, seen)
    stdout = out_path.read_text(errors="replace")
    stderr = err_path.read_text(errors="replace")
    assert not timed_out, f"the Inspector did not finish within {INSPECTOR_TIMEOUT}s:\n{stderr[-3000:]}"
    assert not leftovers, f"processes started by the Inspector run outlived it: {leftovers}\n{stderr[-3000:]}"
    assert proc.returncode == 0, f"Inspector exit code {proc.returncode}:\n{stdout[-2000:]}\n{stderr[-3000:]}"
    try:
        return json.loads(stdout)
    except ValueError as exc:
        raise AssertionError(f"the Inspector did not print JSON ({exc}):\n{stdout[-2000:]}\n{stderr[-3000:]}") from exc


def _stop_all(proc: subprocess.Popen[bytes], seen: dict[int, tuple[int, int, str, int]]) -> list[int]:
    """Kill the Inspector if it still runs; give its descendants 5 s to go, then kill their groups.

    Returns the pids that were still alive after those 5 s (a lifetime bug somewhere)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    own = os.getpgrp()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(p, info[3]) for p, info in seen.items()):
        time.sleep(0.05)
    leftovers = [p for p, info in seen.items() if _alive(p, info[3])]
    for pid in leftovers:
        pgid = seen[pid][1]
        if pgid != own:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
    return leftovers


@pytest.fixture
def call_inspector(
    inspector: Path, opencode_env: dict[str, str], model_config: Callable[..., str], project_dir: Path, tmp_path: Path
) -> Callable[..., dict[str, Any]]:
    """Run the Inspector against the worker in the test project, with the scripted model."""
    env = dict(opencode_env, OPENCODE_CONFIG_CONTENT=model_config())

    def call(*args: str) -> dict[str, Any]:
        return run_inspector(inspector, list(args), env, project_dir, tmp_path)

    return call


# ------------------------------------------------------------------------------------------------


def test_inspector_lists_the_six_tools(call_inspector: Callable[..., dict[str, Any]]) -> None:
    # --strict: exit 6 on any error-severity schema portability problem (warnings are allowed: the
    # nullable-first type arrays are the contract).
    listing = call_inspector("--method", "tools/list", "--strict")
    tools = listing["tools"]
    assert {t["name"] for t in tools} == set(TOOLS)
    stored = {t["name"]: _as_javascript_sees_it(t) for t in json.loads(SNAPSHOT.read_text(encoding="utf-8"))["tools"]}
    for tool in tools:
        assert tool["title"] == tool["name"]
        assert _as_javascript_sees_it(tool) == stored[tool["name"]]


def _as_javascript_sees_it(value: Any) -> Any:
    """Integers beyond 2**53 as the IEEE doubles JavaScript parses them into (``limit``'s u64 maximum)."""
    if isinstance(value, dict):
        return {k: _as_javascript_sees_it(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_javascript_sees_it(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
        return float(value)
    return value


@pytest.mark.real_opencode
def test_inspector_calls_list_commands(call_inspector: Callable[..., dict[str, Any]]) -> None:
    result = call_inspector("--method", "tools/call", "--tool-name", "list_commands")
    assert result.get("isError") is False, result
    assert result["content"][0]["type"] == "text"
    assert result["content"][0]["text"].startswith("Available commands:\n")
    commands = result["structuredContent"]["commands"]
    assert commands and all(isinstance(c["name"], str) for c in commands)


@pytest.mark.real_opencode
def test_inspector_runs_a_prompt(call_inspector: Callable[..., dict[str, Any]]) -> None:
    result = call_inspector(
        "--method", "tools/call", "--tool-name", "run", "--tool-arg", "message=Say exactly 'hello' and nothing else."
    )
    assert result.get("isError") is False, result
    out = result["structuredContent"]
    assert out == {"session_id": out["session_id"], "status": "completed", "response": "hello"}
    assert result["content"][0]["text"].endswith("--- Response ---\nhello")
