"""Secrets and trust: every attack on the pool's password and on what a front end runs or signals,
reproduced and shown refused.

* The pool password never reaches what a session runs (bash, MCP servers), while the server still
  requires it; the managed server gets an allow-listed environment, not the front end's secrets.
* A binary from the project runs only with the explicit opt-in.
* A pool folder, ``server.json``, lock or registry that someone else could have written is refused
  with a clear error and fix.
* A pid from ``server.json`` is signalled only when it provably is the pool's server: an unrelated
  process (pid reuse), another user's process, an old record are never signalled.
* Attaching to an OpenCode outside the supported versions fails at once, naming the range.
* Nothing that holds the password shows it in a repr or in Textual's crash screen.

Tests marked ``real_opencode`` run the pinned OpenCode with the scripted model; file modes,
reprs and the identity checks are unit tests (the real server adds nothing there).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fake_opencode import FakeOpenCode

from orchestrator_tui.opencode import binary
from orchestrator_tui.opencode.binary import ATTACH_VERSIONS, PINNED_VERSION, PROJECT_BINARY_ENV
from orchestrator_tui.opencode.client import OpenCodeClient
from orchestrator_tui.opencode.keeper import pid_alive
from orchestrator_tui.opencode.process import ChildEnvironment, child_environment
from orchestrator_tui.opencode.secret import Secret
from orchestrator_tui.orchestrator import types as t
from orchestrator_tui.pool.discovery import (
    Membership,
    PoolFolder,
    ProcessIdentity,
    ServerRecord,
    stop_recorded_server,
)
from orchestrator_tui.pool.handle import ServerUnavailable, Snapshot
from orchestrator_tui.pool.registry import PoolStateError, Registry, UnsafePoolPath, pool_dir
from orchestrator_tui.pool.service import PoolService, ServerSpec, start_managed, start_shared

PASSWORD = "pool-password-Zq8xW3vN1kE5rT7y"


# ------------------------------------------------------------------------------------------------
# helpers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bash_outputs(messages: list[Any]) -> list[str]:
    return [
        part.state.output or ""
        for message in messages
        for part in message.parts
        if part.type == "tool" and part.tool == "bash" and part.state is not None
    ]


@contextlib.contextmanager
def decoy(*, as_nobody: bool = False) -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated process whose command line says "opencode serve", leading a group of its own:
    exactly what the old substring check took for the pool's server."""
    argv = ["/bin/sh", "-c", "sleep 120; :", "opencode", "serve", "--hostname", "127.0.0.1"]
    if as_nobody:
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
    proc = subprocess.Popen(argv, start_new_session=True, cwd="/")
    try:
        deadline = time.monotonic() + 5
        # Until the shell runs (setpriv has changed the user and exec'ed it).
        while Path(f"/proc/{proc.pid}/comm").read_text().strip() != "sh":
            assert time.monotonic() < deadline, "the decoy did not start"
            time.sleep(0.01)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def still_running(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is None and Path(f"/proc/{proc.pid}").exists()


def record_for(pid: int, url: str, **fields: Any) -> ServerRecord:
    values: dict[str, Any] = {
        "url": url,
        "username": "opencode",
        "password": Secret(PASSWORD),
        "pid": pid,
        "version": PINNED_VERSION,
        "cwd": "/",
        "started_at": time.time(),
        "started_by": os.getpid(),
    }
    values.update(fields)
    return ServerRecord(**values)


def forged_record(pid: int, port: int) -> ServerRecord:
    """A record with the pid's true executable and start time: only the port can give it away."""
    identity = ProcessIdentity.of(pid)
    assert identity is not None
    return record_for(pid, f"http://127.0.0.1:{port}", exe=identity.exe, start_time=identity.start_time)


# ------------------------------------------------------------------------------------------------
# item 11: the password and the environment of the managed server (real OpenCode)


@pytest.mark.real_opencode
async def test_session_commands_never_see_the_password_nor_unrelated_secrets(
    make_orchestrator: Callable[..., Any], opencode_env: dict[str, str], tmp_path: Path, scripted_model: Any
) -> None:
    mcp_env = tmp_path / "mcp.env"
    env = {
        **opencode_env,
        "MY_UNRELATED_TOKEN": "unrelated-secret-8d1f",  # a front-end secret: must stay out
        "GITHUB_TOKEN": "ghp_unrelated",  # likewise (a code host's token, no model provider's)
        "ANTHROPIC_API_KEY": "sk-ant-test-key",  # provider key: OpenCode needs it
        "NO_PROXY": "127.0.0.1,localhost",  # proxy settings reach it too
        "LC_ALL": "C.UTF-8",
        "ORCHESTRATOR_TUI_PASS_ENV": "MY_TOOL_*",  # the user's escape hatch
        "MY_TOOL_HOME": "/opt/my-tool",
    }
    orch = make_orchestrator(
        env=env,
        permission={"bash": "allow"},
        # An MCP server is spawned by the server too: it must not inherit the password either.
        mcp={"probe": {"type": "local", "command": ["sh", "-c", f'env > "{mcp_env}"']}},
    )
    first = await asyncio.wait_for(orch.run(t.RunInput(message="BASH env")), 120)
    sid = first.output.session_id
    await asyncio.wait_for(
        orch.run(t.RunInput(session_id=sid, message='BASH echo "pw=[$OPENCODE_SERVER_PASSWORD]"')), 120
    )
    snapshot = await orch.acquire()
    assert snapshot.managed is not None
    password = snapshot.managed.password.reveal()
    env_output, echo_output = bash_outputs(await snapshot.client.messages(sid))

    assert "pw=[]" in echo_output, echo_output
    for seen in (env_output, echo_output, mcp_env.read_text()):
        assert password not in seen
        assert "OPENCODE_SERVER_PASSWORD" not in seen
        assert "unrelated-secret-8d1f" not in seen and "MY_UNRELATED_TOKEN" not in seen
        assert "ghp_unrelated" not in seen
    # The model (a remote provider, in real life) never saw it either.
    assert not any(password in json.dumps(request) for request in scripted_model.requests)
    # What OpenCode needs still reaches it, and what its sessions run.
    shown = dict(line.split("=", 1) for line in env_output.splitlines() if "=" in line)
    for name in ("HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        assert shown.get(name) == env[name], name
    assert env["PATH"] in shown["PATH"]
    assert "plugin" in json.loads(shown["OPENCODE_CONFIG_CONTENT"])
    assert shown["ANTHROPIC_API_KEY"] == "sk-ant-test-key"
    assert shown["NO_PROXY"] == "127.0.0.1,localhost"
    assert shown["LC_ALL"] == "C.UTF-8"
    assert shown["MY_TOOL_HOME"] == "/opt/my-tool"
    assert shown["OPENCODE_ORCHESTRATOR_MANAGED"] == "1"  # the recursion guard still works
    # The server still requires the password, and still takes it from our own client.
    async with httpx.AsyncClient(base_url=snapshot.base_url, timeout=10) as client:
        assert (await client.get("/global/health")).status_code == 401
        assert (await client.get("/session", params={"directory": str(orch.service.spec.cwd)})).status_code == 401
        assert (await client.get("/global/health", auth=("opencode", password))).status_code == 200
    assert (await snapshot.client.health()).healthy
    assert len(await snapshot.client.list_sessions()) >= 1


def test_allow_list_rule() -> None:
    source = {
        "PATH": "/bin",
        "HOME": "/h",
        "LC_TIME": "C",
        "XDG_STATE_HOME": "/s",
        "OPENCODE_DISABLE_MODELS_FETCH": "1",
        "npm_config_registry": "https://registry.example",
        "HTTPS_PROXY": "http://proxy:3128",
        "NODE_EXTRA_CA_CERTS": "/ca.pem",
        "OPENAI_API_KEY": "k",
        "OPENAI_BASE_URL": "https://llm.example",
        "AWS_PROFILE": "dev",
        "GOOGLE_APPLICATION_CREDENTIALS": "/g.json",
        "HF_TOKEN": "hf",
        "MY_UNRELATED_TOKEN": "x",
        "GITHUB_TOKEN": "x",
        "SSH_AUTH_SOCK": "/tmp/agent",
        "ORCHESTRATOR_TUI_STATE_DIR": "/st",
        "OPENCODE_SERVER_PASSWORD": "the attach password of the front end",
    }
    env = child_environment(source, password=Secret(PASSWORD), config_content=None)
    passed = set(source) - {"MY_UNRELATED_TOKEN", "GITHUB_TOKEN", "SSH_AUTH_SOCK", "ORCHESTRATOR_TUI_STATE_DIR"}
    assert passed <= set(env)
    assert not {"MY_UNRELATED_TOKEN", "GITHUB_TOKEN", "SSH_AUTH_SOCK", "ORCHESTRATOR_TUI_STATE_DIR"} & set(env)
    assert env["OPENCODE_SERVER_PASSWORD"] == PASSWORD  # ours, never the front end's
    opened = child_environment(
        {**source, "ORCHESTRATOR_TUI_PASS_ENV": "SSH_AUTH_SOCK, GITHUB_*"},
        password=Secret(PASSWORD),
        config_content=None,
    )
    assert opened["SSH_AUTH_SOCK"] == "/tmp/agent" and opened["GITHUB_TOKEN"] == "x"
    assert "MY_UNRELATED_TOKEN" not in opened


def test_config_content_gets_the_env_guard_plugin_or_a_clear_error() -> None:
    from orchestrator_tui.opencode.process import ENV_GUARD_PLUGIN, ServerStartError

    guard = ENV_GUARD_PLUGIN.resolve().as_uri()
    env = child_environment({"OPENCODE_CONFIG_CONTENT": '{"plugin": ["x"]}'}, password=Secret("p"), config_content=None)
    assert json.loads(env["OPENCODE_CONFIG_CONTENT"]) == {"plugin": ["x", guard]}
    env = child_environment({}, password=Secret("p"), config_content=None)
    assert json.loads(env["OPENCODE_CONFIG_CONTENT"]) == {"plugin": [guard]}
    with pytest.raises(ServerStartError) as err:
        child_environment({}, password=Secret("p"), config_content='{"a": 1, // comment\n}')
    assert "OPENCODE_CONFIG_CONTENT cannot be used" in str(err.value) and "Fix:" in str(err.value)
    assert ENV_GUARD_PLUGIN.is_file()


# ------------------------------------------------------------------------------------------------
# item 12: the project's binary only with the opt-in (real OpenCode)


@pytest.mark.real_opencode
@pytest.mark.parametrize("opt_in", [False, True], ids=["without-opt-in", "with-opt-in"])
async def test_project_binary_runs_only_with_the_opt_in(
    opt_in: bool,
    opencode_env: dict[str, str],
    opencode_binary: str,
    project_dir: Path,
    model_config: Callable[..., str],
    tmp_path: Path,
) -> None:
    ran = tmp_path / "project-binary-ran"
    local = binary.repo_local_binary_path(project_dir)
    local.parent.mkdir(parents=True)
    # What a hostile repository would ship: it runs with our rights and gets the server's password.
    local.write_text(f'#!/bin/sh\necho "$OPENCODE_SERVER_PASSWORD" > "{ran}"\nexec "{opencode_binary}" "$@"\n')
    local.chmod(0o755)
    env = {k: v for k, v in opencode_env.items() if k != "OPENCODE_BINARY"}
    env["ORCHESTRATOR_TUI_CACHE_DIR"] = str(Path(opencode_binary).parents[5])  # where the pinned copy is
    assert binary.cached_binary_path(env=env) == Path(opencode_binary)
    if opt_in:
        env[PROJECT_BINARY_ENV] = "1"
    snapshot = await start_managed(ServerSpec(cwd=project_dir, env=env, config_content=model_config()))
    try:
        assert snapshot.managed is not None
        assert snapshot.version == PINNED_VERSION
        if opt_in:
            assert snapshot.managed.launcher.binary == str(local.resolve())
            assert ran.read_text().strip() == snapshot.managed.password.reveal()
        else:
            assert snapshot.managed.launcher.binary == opencode_binary
            assert not ran.exists(), "the project's binary ran without the opt-in"
    finally:
        await snapshot.close()


def test_project_binary_opt_in_values(tmp_path: Path) -> None:
    local = binary.repo_local_binary_path(tmp_path)
    local.parent.mkdir(parents=True)
    local.write_text("#!/bin/sh\n")
    local.chmod(0o755)
    cache = tmp_path / "cache"
    cached = binary.cached_binary_path(cache)
    cached.parent.mkdir(parents=True)
    cached.write_text("#!/bin/sh\n")
    cached.chmod(0o755)
    env = {"ORCHESTRATOR_TUI_CACHE_DIR": str(cache), "PATH": "/nowhere"}
    for value in ("", "0", "no", "off", " "):
        assert binary.resolve_launcher(tmp_path, {**env, PROJECT_BINARY_ENV: value}, install=False).binary == str(
            cached
        )
    for value in ("1", "true", " YES ", "on"):
        launcher = binary.resolve_launcher(tmp_path, {**env, PROJECT_BINARY_ENV: value}, install=False)
        assert launcher.binary == str(local.resolve())


# ------------------------------------------------------------------------------------------------
# item 12: pool folder, server.json, lock and registry must be ours and private


def test_pool_folder_that_others_can_write_or_that_is_a_link_is_refused(tmp_path: Path) -> None:
    env = {"ORCHESTRATOR_TUI_STATE_DIR": str(tmp_path / "state")}
    folder = pool_dir("default", env)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700

    folder.chmod(0o770)
    with pytest.raises(UnsafePoolPath) as err:
        pool_dir("default", env)
    text = str(err.value)
    assert str(folder) in text and "0770" in text and "writable by other users" in text
    assert f"Fix: chmod 700 {folder}" in text
    assert stat.S_IMODE(folder.stat().st_mode) == 0o770  # refused, never "repaired" and trusted
    with pytest.raises(UnsafePoolPath):
        PoolFolder(folder)
    with pytest.raises(UnsafePoolPath):
        Registry(folder / "registry.sqlite3")
    folder.chmod(0o700)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    linked = tmp_path / "state" / "linked"
    linked.symlink_to(elsewhere)
    with pytest.raises(UnsafePoolPath) as err:
        pool_dir("linked", env)
    assert "symbolic link" in str(err.value) and str(linked) in str(err.value)

    (tmp_path / "state").chmod(0o777)  # the state root is checked as well
    try:
        with pytest.raises(UnsafePoolPath) as err:
            pool_dir("default", env)
        assert str(tmp_path / "state") in str(err.value)
    finally:
        (tmp_path / "state").chmod(0o755)


def test_foreign_owner_is_refused(tmp_path: Path) -> None:
    from orchestrator_tui.pool.registry import check_private_file

    folder = pool_dir("default", {"ORCHESTRATOR_TUI_STATE_DIR": str(tmp_path / "state")})
    record = folder / "server.json"
    PoolFolder(folder).write_record(record_for(1, "http://127.0.0.1:1"))
    st = os.lstat(record)
    foreign = os.stat_result((st.st_mode, 0, 0, 1, os.geteuid() + 1, 0, st.st_size, 0, 0, 0))
    with pytest.raises(UnsafePoolPath) as err:
        check_private_file(record, foreign)
    assert f"belongs to uid {os.geteuid() + 1}, not to you" in str(err.value) and "Fix: remove it" in str(err.value)
    if os.geteuid() == 0:  # root can make the real thing: a record and a folder of another user
        os.chown(record, 65534, 65534)
        with pytest.raises(UnsafePoolPath, match="belongs to uid 65534"):
            PoolFolder(folder).read_record()
        os.chown(folder, 65534, 65534)
        with pytest.raises(UnsafePoolPath, match="belongs to uid 65534"):
            PoolFolder(folder)


def test_server_record_that_is_a_link_or_readable_by_others_is_refused(tmp_path: Path) -> None:
    folder = PoolFolder(pool_dir("default", {"ORCHESTRATOR_TUI_STATE_DIR": str(tmp_path / "state")}))
    planted = tmp_path / "planted.json"
    planted.write_text(json.dumps(record_for(1, "http://127.0.0.1:1").to_json()))
    planted.chmod(0o600)
    folder.record_path.symlink_to(planted)
    with pytest.raises(UnsafePoolPath) as err:
        folder.read_record()
    assert "symbolic link" in str(err.value) and f"rm {folder.record_path}" in str(err.value)
    folder.record_path.unlink()

    folder.write_record(record_for(1, "http://127.0.0.1:1"))
    assert stat.S_IMODE(folder.record_path.stat().st_mode) == 0o600
    folder.record_path.chmod(0o644)
    with pytest.raises(UnsafePoolPath) as err:
        folder.read_record()
    assert "0644" in str(err.value) and "readable or writable by other users" in str(err.value)
    folder.record_path.chmod(0o600)
    assert folder.read_record() is not None

    # The temporary file of the atomic write is never followed either.
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    folder.record_path.with_suffix(".tmp").symlink_to(victim)
    folder.write_record(record_for(2, "http://127.0.0.1:2"))
    assert victim.read_text() == "untouched"
    assert folder.read_record().pid == 2  # type: ignore[union-attr]

    folder.record_path.unlink()
    (folder.path / "server.lock").unlink(missing_ok=True)
    (folder.path / "server.lock").symlink_to(victim)

    async def take_lock() -> None:
        async with folder.lock():
            pass

    with pytest.raises(UnsafePoolPath, match="symbolic link"):
        asyncio.run(take_lock())


def test_registry_file_planted_as_a_link_is_refused(tmp_path: Path) -> None:
    folder = pool_dir("default", {"ORCHESTRATOR_TUI_STATE_DIR": str(tmp_path / "state")})
    target = tmp_path / "elsewhere.sqlite3"
    (folder / "registry.sqlite3").symlink_to(target)
    with pytest.raises(UnsafePoolPath, match="symbolic link"):
        Registry(folder / "registry.sqlite3")
    assert not target.exists()


async def test_front_end_refuses_an_unsafe_record_before_starting_anything(tmp_path: Path) -> None:
    env = {"ORCHESTRATOR_TUI_STATE_DIR": str(tmp_path / "state")}
    registry = Registry.for_pool("default", env)
    folder = PoolFolder(registry.path.parent)
    folder.write_record(record_for(1, "http://127.0.0.1:1"))
    folder.record_path.chmod(0o664)
    spec = ServerSpec(cwd=tmp_path, env={"OPENCODE_BINARY": str(tmp_path / "no-opencode-here")})
    service = PoolService(spec, membership=Membership.join(registry, "agent"))
    try:
        with pytest.raises(ServerUnavailable) as err:
            await service.acquire()
        # Refused before anything else happens (no attempt to start or reach any server).
        assert str(err.value).startswith(f"refusing to use {folder.record_path}"), err.value
        assert "readable or writable by other users" in str(err.value) and "Fix:" in str(err.value)
    finally:
        registry.close()


def test_an_unsafe_pool_folder_is_a_pool_state_error_with_its_fix(tmp_path: Path) -> None:
    """Every front end fails closed on it and shows it (tests/test_gate.py runs the dashboard so)."""
    state = tmp_path / "state"
    (state / "default").mkdir(parents=True)
    (state / "default").chmod(0o777)
    with pytest.raises(PoolStateError) as err:
        Registry.for_pool("default", {"ORCHESTRATOR_TUI_STATE_DIR": str(state)})
    assert isinstance(err.value, UnsafePoolPath)
    assert str(err.value).startswith(f"refusing to use {state / 'default'}")
    assert f"Fix: chmod 700 {state / 'default'}" in str(err.value)


# ------------------------------------------------------------------------------------------------
# faults item 3 / item 12: a pid from server.json is signalled only when provably the server


def test_an_unrelated_process_is_not_the_pools_server(scripted_model: Any) -> None:
    with decoy() as proc:
        port = free_port()
        old = record_for(proc.pid, f"http://127.0.0.1:{port}")  # no identity: an old record
        stale = forged_record(proc.pid, port)
        stale = record_for(proc.pid, stale.url, exe=stale.exe, start_time=(stale.start_time or 0) + 1)
        not_listening = forged_record(proc.pid, port)
        someone_elses_port = forged_record(proc.pid, urlsplit(scripted_model.base_url).port or 0)
        wrong_exe = record_for(proc.pid, not_listening.url, exe="/usr/bin/opencode", start_time=stale.start_time)
        for record in (old, stale, not_listening, someone_elses_port, wrong_exe):
            assert not record.alive(), record
            assert asyncio.run(stop_recorded_server(record, grace=0.2)) is False
        assert still_running(proc)


@contextlib.contextmanager
def another_users_process() -> Iterator[int]:
    """As root: a decoy run as nobody (root could signal it). Otherwise pid 1, root's init."""
    if os.geteuid() == 0:
        assert shutil.which("setpriv"), "setpriv (util-linux) runs the decoy as nobody"
        with decoy(as_nobody=True) as proc:
            yield proc.pid
            assert still_running(proc)
    else:
        yield 1


def test_another_users_process_is_not_ours() -> None:
    with another_users_process() as pid:
        owner = os.stat(f"/proc/{pid}").st_uid
        assert owner != os.geteuid()
        assert not pid_alive(pid)
        assert ProcessIdentity.of(pid) is None
        exe = "/bin/sh" if owner == 65534 else "/sbin/init"
        record = record_for(pid, f"http://127.0.0.1:{free_port()}", exe=exe, start_time=1)
        assert not record.alive()
        assert asyncio.run(stop_recorded_server(record, grace=0.2)) is False


@pytest.mark.real_opencode
async def test_pool_with_a_record_naming_an_unrelated_process_never_signals_it(
    opencode_env: dict[str, str], model_config: Callable[..., str], project_dir: Path
) -> None:
    """The whole front-end flow: join a pool whose record names a decoy, start (the record is
    replaced, the decoy left alone), leave as the last one out (our server stopped, the decoy not)."""
    env = {**opencode_env, "OPENCODE_CONFIG_CONTENT": model_config()}
    for kind in ("old record", "forged identity"):
        with decoy() as proc:
            registry = Registry.for_pool("default", env)
            folder = PoolFolder(registry.path.parent)
            port = free_port()
            if kind == "old record":
                folder.write_record(record_for(proc.pid, f"http://127.0.0.1:{port}"))
            else:
                folder.write_record(forged_record(proc.pid, port))
            service = PoolService(ServerSpec(cwd=project_dir, env=env), membership=Membership.join(registry, "agent"))
            try:
                snapshot = await service.acquire()
                assert snapshot.pid != proc.pid
                record = folder.read_record()
                assert record is not None and record.pid == snapshot.pid and record.alive()
                assert still_running(proc)
            finally:
                await service.close()
                registry.close()
            # The last one out lets go of alive.lock: the keeper stops our server and clears its record.
            for _ in range(500):
                if not pid_alive(snapshot.pid or 0) and folder.read_record() is None:
                    break
                await asyncio.sleep(0.02)
            assert not pid_alive(snapshot.pid or 0), "the last one out stops the (provable) server"
            assert folder.read_record() is None
            assert still_running(proc), f"{kind}: the unrelated process was signalled"


@pytest.mark.real_opencode
async def test_record_of_a_running_server_proves_itself(
    opencode_env: dict[str, str], model_config: Callable[..., str], project_dir: Path
) -> None:
    env = {**opencode_env, "OPENCODE_CONFIG_CONTENT": model_config()}
    registry = Registry.for_pool("default", env)
    folder = PoolFolder(registry.path.parent)
    alive = folder.hold_alive()  # a front end of the pool: its server lives while we hold this
    snapshot = await start_shared(ServerSpec(cwd=project_dir, env=env), folder)
    try:
        record = folder.read_record()
        assert record is not None and record.exe is not None and record.start_time is not None
        assert record.exe == os.path.realpath(snapshot.managed.launcher.binary)  # type: ignore[union-attr]  # noqa: ASYNC240
        assert record.alive()
        url = f"http://127.0.0.1:{free_port()}"
        other_port = record_for(record.pid, url, exe=record.exe, start_time=record.start_time)
        assert not other_port.alive()  # the group does not listen there
    finally:
        await snapshot.close()
        os.close(alive)
        registry.close()
    assert not record.alive()


# ------------------------------------------------------------------------------------------------
# item 12: the version on attach


FAKE_HEALTH_SERVER = """
import http.server, json, sys
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"healthy": True, "version": sys.argv[1]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Health)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


@pytest.mark.parametrize("version", ["1.19.0", "1.180.1", "2.0.0", "1.16.2", "1.14.41"])
async def test_attach_to_an_unsupported_version_fails_at_once_naming_the_range(
    version: str, tmp_path: Path
) -> None:
    async with FakeOpenCode() as fake:
        fake.get("/global/health", {"healthy": True, "version": version})
        service = PoolService(ServerSpec(cwd=tmp_path, attach_url=fake.url))
        try:
            with pytest.raises(ServerUnavailable) as err:
                await asyncio.wait_for(service.acquire(), 10)
        finally:
            await service.close()
    text = str(err.value)
    assert f"reports version {version}" in text and f"OpenCode {ATTACH_VERSIONS}" in text
    assert ATTACH_VERSIONS == "1.15.x, 1.17.x or 1.18.x" and PINNED_VERSION in text and "Fix:" in text


@pytest.mark.parametrize("version", ["1.18.7", "1.17.19", "1.15.0"])
async def test_attach_to_a_release_of_a_supported_line_is_accepted(version: str, tmp_path: Path) -> None:
    async with FakeOpenCode() as fake:
        fake.get("/global/health", {"healthy": True, "version": version})
        service = PoolService(ServerSpec(cwd=tmp_path, attach_url=fake.url))
        try:
            assert (await service.acquire()).version == version
        finally:
            await service.close()


async def test_a_pool_server_of_an_unsupported_version_is_down_naming_the_range(tmp_path: Path) -> None:
    """A ``[[server]]`` of pool.toml running OpenCode 1.14: refused when attaching (shown as that
    server's state, with the range and its own fix), while the pool's own server works on."""
    from orchestrator_tui.pool.servers import AttachedServer

    async with FakeOpenCode() as own, FakeOpenCode() as old:
        own.get("/global/health", {"healthy": True, "version": PINNED_VERSION})
        old.get("/global/health", {"healthy": True, "version": "1.14.41"})
        service = PoolService(ServerSpec(cwd=tmp_path, attach_url=own.url), servers=[AttachedServer("lab", old.url)])
        try:
            assert (await asyncio.wait_for(service.acquire(), 10)).version == PINNED_VERSION
            for _ in range(200):
                if service.pool.servers.get("lab", ("", ""))[0] == "down":
                    break
                await asyncio.sleep(0.05)
            state, detail = service.pool.servers["lab"]
        finally:
            await service.close()
    assert state == "down", detail
    assert "reports version 1.14.41" in detail and f"OpenCode {ATTACH_VERSIONS}" in detail, detail
    assert "take server 'lab' out of pool.toml" in detail, detail
    # Nothing else was asked: its health (and, once, which route family it speaks: a read).
    assert {r.path for r in old.requests} <= {"/global/health", "/api/health"}, "nothing else was asked"


def test_attach_version_range() -> None:
    for good in ("1.18.33", "v1.18.0", "1.17.19", "1.17.0", "1.15.13", "1.15.0"):
        assert binary.attach_version_supported(good), good
    bad_ones = (None, "", "1.18", "1.18.x", "1.180.0", "1.19.0", "test", "1.18.33-beta", "1.16.0", "1.14.41", "1.150.1")
    for bad in bad_ones:
        assert not binary.attach_version_supported(bad), bad


async def test_pool_record_naming_an_unsupported_version_fails_at_once(tmp_path: Path) -> None:
    """A pool's record proves itself (ours, leading its group, listening on its port), but the
    server reports 1.19.0: we do not use it, do not kill it, and say why."""
    proc = subprocess.Popen(  # noqa: ASYNC220 (test setup: a server in a process group of its own)
        [sys.executable, "-c", FAKE_HEALTH_SERVER, "1.19.0"], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        folder = PoolFolder(pool_dir("default", {"ORCHESTRATOR_TUI_STATE_DIR": str(tmp_path / "state")}))
        folder.write_record(forged_record(proc.pid, port))
        assert folder.read_record().alive()  # type: ignore[union-attr]
        started = time.monotonic()
        with pytest.raises(ServerUnavailable) as err:
            await start_shared(ServerSpec(cwd=tmp_path, env={"OPENCODE_BINARY": "/nonexistent"}), folder)
        assert time.monotonic() - started < 5
        text = str(err.value)
        assert "reports version 1.19.0" in text and f"OpenCode {ATTACH_VERSIONS}" in text and f"kill {proc.pid}" in text
        assert proc.poll() is None, "the server of another version must not be signalled"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


# ------------------------------------------------------------------------------------------------
# item 13: reprs and Textual's crash screen


def render_crash_screen(holders: dict[str, Any]) -> str:
    """What Textual's crash screen shows when a frame holding all of these fails: a Rich traceback
    with every frame's locals (App._handle_exception), here with no limit on string lengths."""
    from rich.console import Console
    from rich.traceback import Traceback

    def crash(**locals_: Any) -> None:
        raise RuntimeError("boom")

    try:
        crash(**holders)
    except RuntimeError:
        traceback = Traceback(show_locals=True, width=200, locals_max_length=50, locals_max_string=10_000)
    console = Console(record=True, width=200, file=io.StringIO())
    console.print(traceback)
    return console.export_text()


async def test_nothing_that_holds_the_password_shows_it(tmp_path: Path) -> None:
    from orchestrator_tui.opencode.binary import Launcher
    from orchestrator_tui.opencode.process import ManagedServer

    ready = 'echo "opencode server listening on http://127.0.0.1:$5"; exec sleep 30'
    server = await ManagedServer.start(launcher=Launcher("sh", ("-c", ready, "x")), cwd=tmp_path, env={})
    try:
        password = server.password.reveal()
        record = record_for(server.pid, server.base_url, password=server.password)
        spec = ServerSpec(
            cwd=tmp_path,
            attach_url=server.base_url,
            password=password,
            env={"OPENCODE_SERVER_PASSWORD": password},
            config_content=json.dumps({"provider": {"x": {"options": {"apiKey": password}}}}),
        )
        client = OpenCodeClient(server.base_url, auth=server.auth)
        snapshot = Snapshot(client=client, managed=server)
        child_env = child_environment({}, password=server.password, config_content=None)
        holders: dict[str, Any] = {
            "secret": server.password,
            "record": record,
            "spec": spec,
            "server": server,
            "client": client,
            "snapshot": snapshot,
            "child_env": child_env,
        }
        for name, holder in holders.items():
            assert password not in repr(holder), name
            assert password not in str(holder), name
            assert password not in f"{holder}", name
        assert isinstance(child_env, ChildEnvironment) and child_env["OPENCODE_SERVER_PASSWORD"] == password
        assert json.loads(json.dumps(record.to_json()))["password"] == password  # only in the file

        assert password in render_crash_screen({"plain": password})  # the screen does show plain values
        rendered = render_crash_screen(holders)
        assert "boom" in rendered and "spec" in rendered and "child_env" in rendered
        assert password not in rendered
        await client.aclose()
    finally:
        await server.stop()
