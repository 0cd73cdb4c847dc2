"""The managed ``opencode serve`` process.

One `ManagedServer` is one child process in its own process group, bound to 127.0.0.1 on a port we
picked, protected by a random password only we know. Facts that shape this module:

* Requests on connections made in the ~0.35 s before the ``opencode server listening on`` line hang
  forever, so no HTTP request is sent before that line (only the bounded ``/doc`` probe after the
  startup timeout).
* ``--port 0`` tries 4096 first, so we pick a free port ourselves; a port taken in between makes the
  child exit with rc=1 and ``ServeError`` on stderr, which is retried once with a new port.
* The first SIGTERM can be swallowed while OpenCode's background ``npm install`` runs, so `stop`
  always ends with SIGKILL to the whole group.
* The child gets an allow-listed part of our environment (`passed_to_server`), never all of it,
  plus the password. OpenCode reads the password once, so orchestrator-tui's plugin
  (``env_guard.js``, added to ``OPENCODE_CONFIG_CONTENT``) deletes it from the server's own
  environment, and the bash commands, MCP servers and language servers it spawns do not inherit it.

* Every server gets a keeper (`orchestrator_tui.opencode.keeper`), spawned right after it: the
  keeper stops the server once no front end holds the server's ``alive.lock``, however the front
  ends ended (``kill -9`` and the OOM killer included), so no server outlives its front ends. A
  private server's own `ManagedServer` holds that lock (in a temporary folder); a shared pool's
  lock is held by each front end of the pool (`KeeperSpec` names the pool's folder).

The child's stdout and stderr are drained for its whole life by two daemon threads (a full pipe
would block it), or, for a server shared by several front ends (``log_dir``), written to files
that the threads follow, so that the server outlives the process that started it (see
`ManagedServer.detach`). Nothing is forwarded to our stdout, which is the JSON-RPC channel of the MCP
worker. The process is a plain `subprocess.Popen`, so a server is not tied to the event loop that
started it and can be killed synchronously from signal handlers and ``finally`` blocks.

A little over 600 lines: one child's whole life (spawn, readiness, output, stop, detach and the
process-group bookkeeping that guarantees no server is left behind) reads best in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from orchestrator_tui.opencode import keeper as keeper_module
from orchestrator_tui.opencode.binary import MANAGED_ENV, Launcher
from orchestrator_tui.opencode.keeper import KeeperSpec
from orchestrator_tui.opencode.secret import Secret

log = logging.getLogger(__name__)

HOSTNAME = "127.0.0.1"
USERNAME = "opencode"
READY_MARKER = "opencode server listening on"
#: Outer text of the reference around any start failure (the handle layer wraps with it).
START_FAILED = "Failed to start embedded `opencode serve`"
EXITED_UNEXPECTEDLY = "Failed to spawn server: Server process exited unexpectedly"

_STDERR_TAIL = 50
_STDOUT_TAIL = 20
_DOC_PROBE_TIMEOUT = 0.5
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


class ServerStartError(Exception):
    """Starting ``opencode serve`` failed; ``str(exc)`` is the user-visible text."""

    def __init__(self, text: str, *, port_in_use: bool = False) -> None:
        super().__init__(text)
        self.port_in_use = port_in_use


# ------------------------------------------------------------------------------------------------
# every group this process started and still tracks (the keepers stop them when we are gone)

_live: dict[int, ManagedServer] = {}
_live_lock = threading.Lock()


def kill_all_managed() -> None:
    """SIGKILL every still-live process group this process started and did not detach: a last
    resort for tests and scripts. A front end's own end needs no call: each server's keeper
    stops it once no front end is left."""
    with _live_lock:
        servers = list(_live.values())
    for server in servers:
        server.kill_sync()


def _register(server: ManagedServer) -> None:
    with _live_lock:
        _live[server.pid] = server


def _unregister(server: ManagedServer) -> None:
    with _live_lock:
        if _live.get(server.pid) is server:
            del _live[server.pid]


def _free_port() -> int:
    """A port the OS just handed out on 127.0.0.1 (4096, OpenCode's default, if that fails)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOSTNAME, 0))
            return int(sock.getsockname()[1])
    except OSError:
        return 4096


#: orchestrator-tui's OpenCode plugin: it removes the password from the server's environment once
#: the server has read it, so that nothing a session runs inherits it (see env_guard.js).
ENV_GUARD_PLUGIN = Path(__file__).with_name("env_guard.js")
#: Extra variables the user lets through to the managed server: names separated by spaces or
#: commas, ``NAME*`` for every name starting with ``NAME``.
PASS_ENV = "ORCHESTRATOR_TUI_PASS_ENV"

# What the managed server gets from the environment of the front end that starts it. Everything
# else (tokens of other tools, cloud sessions, SSH agents, the front end's own settings) stays out:
# the server and every command its sessions run would otherwise inherit it.
#: The user, the shell, the locale, the terminal, temporary files, proxies and CA certificates.
_PASSED_NAMES = frozenset(
    {
        "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ",
        "TERM", "COLORTERM", "NO_COLOR", "TMPDIR", "TMP", "TEMP",
        "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "no_proxy", "all_proxy",
        "SSL_CERT_FILE", "SSL_CERT_DIR", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
        # Model-provider credentials of OpenCode 1.18.33's catalogue that the patterns below miss.
        "HF_TOKEN", "FRIENDLI_TOKEN", "CLARIFAI_PAT", "DIGITALOCEAN_ACCESS_TOKEN", "MODAL_PROXY_TOKEN",
        "NEON_AI_GATEWAY_TOKEN", "PRIVATEMODE_ENDPOINT", "INFOMANIAK_PRODUCT_ID", "ZENIFRA_AI_KEY",
        "RUNINFRA_GATEWAY_KEY", "SUBMODEL_INSTAGEN_ACCESS_KEY", "ABLIT_KEY",
    }
)  # fmt: skip
#: Locale and XDG dirs; OpenCode's own settings; npm's settings (OpenCode installs plugins and
#: providers with them); the cloud providers whose SDKs read several variables of their own.
_PASSED_PREFIXES = (
    "LC_", "XDG_", "OPENCODE_", "npm_config_", "NPM_CONFIG_",
    "AWS_", "AZURE_", "GOOGLE_", "VERTEX_", "CLOUDSDK_", "CLOUDFLARE_", "DATABRICKS_", "SNOWFLAKE_",
    "WATSONX_", "AICORE_", "OLLAMA_",
)  # fmt: skip
#: Model-provider credentials and endpoints: ``ANTHROPIC_API_KEY``, ``OPENAI_BASE_URL``, ...
_PASSED_SUFFIXES = ("_API_KEY", "_APIKEY", "_API_TOKEN", "_BASE_URL")


def passed_to_server(name: str, extra: str | None = None) -> bool:
    """Whether the variable ``name`` of the front end's environment reaches the managed server
    (``extra``: the value of ``ORCHESTRATOR_TUI_PASS_ENV``)."""
    if name in _PASSED_NAMES or name.startswith(_PASSED_PREFIXES) or name.endswith(_PASSED_SUFFIXES):
        return True
    for item in (extra or "").replace(",", " ").split():
        if item == name or (item.endswith("*") and len(item) > 1 and name.startswith(item[:-1])):
            return True
    return False


class ChildEnvironment(dict[str, str]):
    """The managed server's environment. Its repr names the variables but shows no value: it
    holds the password and provider keys, and a crash screen renders the locals that hold it."""

    def __repr__(self) -> str:
        return f"<ChildEnvironment {len(self)} variables: {', '.join(sorted(self))}>"


def with_env_guard(config_content: str | None) -> str:
    """The OpenCode config (``OPENCODE_CONFIG_CONTENT``) with orchestrator-tui's plugin added."""
    config: object = {}
    if config_content is not None and config_content.strip():
        try:
            config = json.loads(config_content)
        except ValueError as exc:
            raise ServerStartError(_config_content_text(f"it is not JSON ({exc})")) from None
    if not isinstance(config, dict):
        raise ServerStartError(_config_content_text(f"it is a JSON {type(config).__name__}, not an object"))
    plugins = config.get("plugin", [])
    if not isinstance(plugins, list):
        raise ServerStartError(_config_content_text('its "plugin" is not a list'))
    plugin = ENV_GUARD_PLUGIN.resolve().as_uri()
    if plugin not in plugins:
        config["plugin"] = [*plugins, plugin]
    return json.dumps(config)


def _config_content_text(problem: str) -> str:
    return (
        f"OPENCODE_CONFIG_CONTENT cannot be used: {problem}. orchestrator-tui adds its plugin to it (the "
        "plugin keeps the server's password away from the commands sessions run). Fix: write it as one plain "
        "JSON object (no comments, no trailing commas), or move that configuration into an opencode.json file."
    )


def child_environment(
    env: Mapping[str, str] | None, *, password: Secret, config_content: str | None
) -> ChildEnvironment:
    """The allow-listed part of the front end's environment (see `passed_to_server`) plus what the
    managed server needs. ``OPENCODE_CLIENT`` is never set by us: ``sdk`` would hide the question
    tool. ``config_content`` replaces the environment's ``OPENCODE_CONFIG_CONTENT``; either way
    our plugin is added to it."""
    source = os.environ if env is None else env
    extra = source.get(PASS_ENV)
    child_env = ChildEnvironment({name: value for name, value in source.items() if passed_to_server(name, extra)})
    child_env[MANAGED_ENV] = "1"
    child_env["OPENCODE_SERVER_USERNAME"] = USERNAME
    child_env["OPENCODE_SERVER_PASSWORD"] = password.reveal()
    if config_content is None:
        config_content = child_env.get("OPENCODE_CONFIG_CONTENT")
    child_env["OPENCODE_CONFIG_CONTENT"] = with_env_guard(config_content)
    if child_env.get("OPENCODE_PURE", "").strip().lower() in ("1", "true"):
        log.warning(
            "OPENCODE_PURE is set: OpenCode loads no plugin, so the server's password stays in the "
            "environment of every command its sessions run"
        )
    # OpenCode offers the `question` tool only to the app/cli/desktop clients; a user
    # environment that says OPENCODE_CLIENT=sdk would silently take questions away.
    if child_env.get("OPENCODE_CLIENT", "cli") not in ("app", "cli", "desktop"):
        child_env.setdefault("OPENCODE_ENABLE_QUESTION_TOOL", "1")
    return child_env


class ManagedServer:
    """A running ``opencode serve`` child; create it with `ManagedServer.start`."""

    base_url: str
    username: str
    password: Secret
    pid: int
    port: int
    launcher: Launcher

    def __init__(
        self,
        *,
        launcher: Launcher,
        proc: subprocess.Popen[bytes],
        port: int,
        password: Secret,
        log_files: tuple[Path, Path] | None = None,
    ) -> None:
        #: The keeper process (see `_start_keeper`) and, for a private server, our shared hold
        #: on its ``alive.lock`` (released when we stop or detach the server).
        self.keeper: subprocess.Popen[bytes] | None = None
        self._alive_fd: int | None = None
        self.launcher = launcher
        self.port = port
        self.base_url = f"http://{HOSTNAME}:{port}"
        self.username = USERNAME
        self.password = password
        self.pid = proc.pid
        self._proc = proc
        self._stderr: deque[str] = deque(maxlen=_STDERR_TAIL)
        self._stdout: deque[str] = deque(maxlen=_STDOUT_TAIL)
        self._ready = threading.Event()
        self._stdout_closed = threading.Event()
        self._stderr_closed = threading.Event()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._waiters_lock = threading.Lock()
        self._finished = False
        self.log_files = log_files
        if log_files is not None:
            streams: tuple[IO[bytes] | None, IO[bytes] | None] = (
                _FollowedFile(log_files[0], self),
                _FollowedFile(log_files[1], self),
            )
        else:
            streams = (proc.stdout, proc.stderr)
        self._readers = [
            threading.Thread(
                target=self._drain, args=(streams[0], True), name=f"opencode-{self.pid}-stdout", daemon=True
            ),
            threading.Thread(
                target=self._drain, args=(streams[1], False), name=f"opencode-{self.pid}-stderr", daemon=True
            ),
        ]
        for reader in self._readers:
            reader.start()

    def __repr__(self) -> str:  # never shows the password
        state = f"exited rc={self.returncode}" if self.exited() else "running"
        return f"<ManagedServer pid={self.pid} {self.base_url} {state}>"

    # -- start -------------------------------------------------------------------------------------

    @classmethod
    async def start(
        cls,
        *,
        launcher: Launcher,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        config_content: str | None = None,
        startup_timeout: float = 20.0,
        log_dir: Path | None = None,
        keeper: KeeperSpec | None = None,
    ) -> ManagedServer:
        """Spawn ``<launcher> serve --hostname 127.0.0.1 --port <free port>`` in ``cwd``, and its
        keeper, and wait until both are ready. Raises `ServerStartError`; on any failure or
        cancellation the group is killed.

        With ``log_dir`` the child writes to ``opencode.out.log``/``opencode.err.log`` there instead
        of pipes, so it can outlive us (a shared pool's server). ``keeper``: where the keeper
        watches (a shared pool's folder, whose ``alive.lock`` the caller already holds); by
        default a private folder whose lock this `ManagedServer` holds.
        The recursion guard is the caller's business: this always starts.
        """
        password = Secret(secrets.token_urlsafe(32))
        child_env = child_environment(env, password=password, config_content=config_content)
        for attempt in (1, 2):
            port = _free_port()
            server = cls._spawn(launcher, Path(cwd), child_env, port, password, log_dir)
            try:
                await asyncio.to_thread(server._start_keeper, keeper or KeeperSpec.private_folder())
                await server._wait_ready(startup_timeout)
            except ServerStartError as exc:
                server.kill_sync()
                if exc.port_in_use and attempt == 1:
                    log.info("port %d was taken before opencode could bind it; retrying on another", port)
                    continue
                raise
            except BaseException:
                server.kill_sync()
                raise
            return server
        raise AssertionError("unreachable")

    @classmethod
    def _spawn(
        cls,
        launcher: Launcher,
        cwd: Path,
        child_env: Mapping[str, str],
        port: int,
        password: Secret,
        log_dir: Path | None = None,
    ) -> ManagedServer:
        argv = launcher.argv("serve", "--hostname", HOSTNAME, "--port", str(port))
        log_files: tuple[Path, Path] | None = None
        outputs: list[int] = []
        if log_dir is not None:
            log_files = (log_dir / "opencode.out.log", log_dir / "opencode.err.log")
            flags = os.O_CREAT | os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
            outputs = [os.open(path, flags, 0o600) for path in log_files]
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=outputs[0] if outputs else subprocess.PIPE,
                stderr=outputs[1] if outputs else subprocess.PIPE,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise ServerStartError(f"Failed to spawn server: {exc}") from None
        finally:
            for fd in outputs:
                os.close(fd)
        server = cls(launcher=launcher, proc=proc, port=port, password=password, log_files=log_files)
        _register(server)
        log.debug("spawned %s (pid %d, port %d) in %s", launcher, proc.pid, port, cwd)
        return server

    async def _wait_ready(self, startup_timeout: float) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + startup_timeout
        while not self._ready.is_set():
            if self._stdout_closed.is_set() or self._proc.poll() is not None:
                raise await self._exit_error()
            remaining = deadline - loop.time()
            if remaining <= 0:
                if await self._probe_doc():
                    log.info("opencode pid %d answered /doc without the listening line", self.pid)
                    return
                tail = self._tail_text()
                ms = round(startup_timeout * 1000)
                raise ServerStartError(f"Server not ready within {ms}ms" + (f"\n{tail}" if tail else ""))
            fut = self._add_waiter(loop)
            if self._ready.is_set() or self._stdout_closed.is_set():  # happened while registering
                self._drop_waiter(fut)
                continue
            # The readers wake us at once; the slice also notices a child that died while some
            # grandchild still holds its stdout open.
            # asyncio.timeout, not wait_for: on Python 3.11, wait_for can swallow a cancel of the
            # caller that arrives as the future completes, and a start must stay cancellable.
            try:
                async with asyncio.timeout(min(remaining, 0.25)):
                    await fut
            except TimeoutError:
                self._drop_waiter(fut)
        elapsed = loop.time() - started
        log.info("opencode serve ready at %s (pid %d) after %.2f s", self.base_url, self.pid, elapsed)

    async def _exit_error(self) -> ServerStartError:
        # Let the child finish exiting and the stderr reader reach EOF, so the tail is complete.
        for _ in range(100):
            if self._proc.poll() is not None and self._stderr_closed.is_set():
                break
            await asyncio.sleep(0.01)
        rc = self._proc.poll()
        tail = self._tail_text()
        port_in_use = rc == 1 and any("ServeError" in line for line in self._stderr)
        detail = tail or f"(nothing on stderr; exit status {rc})"
        return ServerStartError(f"{EXITED_UNEXPECTEDLY}\n{detail}", port_in_use=port_in_use)

    async def _probe_doc(self) -> bool:
        import httpx

        try:
            # trust_env=False: an HTTP(S)_PROXY from the environment must not capture 127.0.0.1
            async with httpx.AsyncClient(timeout=_DOC_PROBE_TIMEOUT, trust_env=False) as client:
                response = await client.get(f"{self.base_url}/doc", auth=self.auth)
        except httpx.HTTPError:
            return False
        return response.is_success

    # -- output readers (threads) ------------------------------------------------------------------

    def _drain(self, stream: IO[bytes] | None, is_stdout: bool) -> None:
        if stream is None:
            return
        buffer = self._stdout if is_stdout else self._stderr
        try:
            for raw in iter(stream.readline, b""):
                line = _ANSI.sub("", raw.decode("utf-8", errors="replace")).rstrip()
                buffer.append(line)
                if is_stdout and not self._ready.is_set() and READY_MARKER in line:
                    self._ready.set()
                    self._wake()
        except (OSError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError):
                stream.close()
            (self._stdout_closed if is_stdout else self._stderr_closed).set()
            self._wake()

    def _add_waiter(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = loop.create_future()
        with self._waiters_lock:
            self._waiters.append((loop, fut))
        return fut

    def _drop_waiter(self, fut: asyncio.Future[None]) -> None:
        with self._waiters_lock:
            self._waiters = [(loop, f) for loop, f in self._waiters if f is not fut]

    def _wake(self) -> None:
        with self._waiters_lock:
            waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            with contextlib.suppress(RuntimeError):  # loop closed meanwhile
                loop.call_soon_threadsafe(_resolve, fut)

    # -- state -------------------------------------------------------------------------------------

    @property
    def auth(self) -> tuple[str, str]:
        """Basic-auth credentials, as httpx accepts them: for sending, never for keeping."""
        return (self.username, self.password.reveal())

    @property
    def returncode(self) -> int | None:
        return self._proc.poll()

    def exited(self) -> bool:
        """Whether the child has exited (a local check, no HTTP)."""
        return self._proc.poll() is not None

    def stderr_tail(self) -> list[str]:
        """The last lines the child wrote to stderr (ANSI colours removed)."""
        return list(self._stderr)

    def _tail_text(self) -> str:
        lines = list(self._stderr)
        while lines and not lines[0].strip():
            lines.pop(0)
        while lines and not lines[-1].strip():
            lines.pop()
        return "\n".join(lines)

    # -- stop --------------------------------------------------------------------------------------

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    async def stop(self, grace: float = 3.0) -> None:
        """SIGTERM the group, give the child ``grace`` seconds, then SIGKILL the group and reap the
        child. Idempotent; a group that is already gone is fine."""
        if self._finished:
            return
        self._signal_group(signal.SIGTERM)
        deadline = time.monotonic() + max(grace, 0.0)
        for _ in range(int(grace / 0.02) + 2):
            if self._proc.poll() is not None or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.02)
        if self._proc.poll() is None:
            log.warning("opencode pid %d ignored SIGTERM for %.1f s; sending SIGKILL", self.pid, grace)
        # Always: the child may be gone while its own children (e.g. npm) are not.
        self._signal_group(signal.SIGKILL)
        for _ in range(500):
            if self._proc.poll() is not None:
                break
            await asyncio.sleep(0.01)
        self._finish()

    def kill_sync(self) -> None:
        """SIGKILL the group now and reap the child; safe in ``atexit``, signal handlers and ``finally``."""
        if self._finished:
            return
        self._signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            self._proc.wait(timeout=1.0)
        self._finish()

    def detach(self) -> None:
        """Let the server outlive us (other front ends still use it): never stop or kill it from
        here again. Only a server started with ``log_dir`` can be detached: a piped one would die
        of a closed pipe once we are gone."""
        if self.log_files is None or self._alive_fd is not None:
            raise RuntimeError("only a shared pool's server (log_dir, the pool's keeper) can outlive its starter")
        log.info("leaving opencode pid %d running for the other front ends of the pool", self.pid)
        self._finish()

    def _finish(self) -> None:
        self._finished = True
        _unregister(self)
        self._release_alive()
        self._wake()

    # -- keeper ------------------------------------------------------------------------------------

    def _start_keeper(self, spec: KeeperSpec) -> None:
        """Spawn the keeper of this server and wait for its ``ready`` (it then holds the server
        lock). Blocking (a few tens of ms): run it in a thread. Raises `ServerStartError`."""
        start_time = keeper_module.start_time_of(self.pid)
        if start_time is None:
            raise ServerStartError(f"{EXITED_UNEXPECTEDLY}\n(exit status {self._proc.poll()})")
        if spec.private:
            # Counted before the keeper can look: it must never find "no front end" at its start.
            self._alive_fd = keeper_module.hold_alive(spec.folder, 0)
        self.keeper = start_keeper(spec, self.pid, start_time)
        if spec.record is None:
            self.hand_record(b"")

    def hand_record(self, data: bytes) -> None:
        """Give the keeper the record naming this server, as written (it restores the file from
        it if the file is damaged while the server runs), and close its stdin."""
        stdin = self.keeper.stdin if self.keeper is not None else None
        if stdin is None or stdin.closed:
            return
        with contextlib.suppress(OSError):
            stdin.write(data)
        with contextlib.suppress(OSError):
            stdin.close()

    def _release_alive(self) -> None:
        self.hand_record(b"")
        if self._alive_fd is not None:
            os.close(self._alive_fd)  # the keeper, no longer blocked, sees the server gone and exits
            self._alive_fd = None
        if self.keeper is not None:
            self.keeper.poll()  # reap it if it is done

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


def start_keeper(spec: KeeperSpec, pid: int, start_time: int) -> subprocess.Popen[bytes]:
    """Spawn the keeper of the server ``pid`` (started at ``start_time``) and wait for its
    ``ready``. Its stdin stays open for `ManagedServer.hand_record`. Blocking (a few tens of ms).
    Also used to adopt a running pool server whose keeper is gone. Raises `ServerStartError`."""
    log_fd = subprocess.DEVNULL
    if not spec.private:
        flags = os.O_CREAT | os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
        log_fd = os.open(spec.folder / "keeper.log", flags, 0o600)
    # The stdlib only, no site packages, the package's own folder on the path, nothing of our
    # environment (it holds secrets the keeper has no use for).
    package_root = str(Path(keeper_module.__file__).resolve().parents[2])
    try:
        keeper = subprocess.Popen(
            [sys.executable, "-S", *keeper_module.keeper_argv(spec, pid, start_time)[1:]],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log_fd,
            env={"PYTHONPATH": package_root, "PATH": os.environ.get("PATH", os.defpath)},
            cwd="/",
            start_new_session=True,
            close_fds=True,
        )
    except OSError as exc:
        if spec.private:
            shutil.rmtree(spec.folder, ignore_errors=True)
        raise ServerStartError(f"Failed to start the server's keeper: {exc}") from None
    finally:
        if log_fd != subprocess.DEVNULL:
            os.close(log_fd)
    assert keeper.stdout is not None and keeper.stdin is not None
    with keeper.stdout as out:
        ready = select.select([out], [], [], keeper_module.READY_TIMEOUT)[0]
        line = out.readline() if ready else b""
    if line.strip() != b"ready":
        with contextlib.suppress(OSError):
            keeper.kill()
        with contextlib.suppress(OSError):
            keeper.stdin.close()
        if spec.private:
            shutil.rmtree(spec.folder, ignore_errors=True)
        where = "" if spec.private else f"; see {spec.folder / 'keeper.log'}"
        raise ServerStartError(
            f"Failed to start the server's keeper: it did not report ready (exit status {keeper.poll()}){where}"
        )
    log.debug("keeper pid %d watches opencode pid %d (%s)", keeper.pid, pid, spec.folder)
    return keeper


class _FollowedFile:
    """``tail -f`` of a log file the child writes, readable line by line like its pipe was.

    ``readline`` returns complete lines, waiting for more while the child runs, and ``b""`` once
    it has exited (or we stopped caring) and everything has been read.
    """

    def __init__(self, path: Path, server: ManagedServer) -> None:
        self._fh = open(path, "rb")  # noqa: SIM115 - closed by the reader thread
        self._server = server
        self._partial = b""
        self._ended = False

    def readline(self) -> bytes:
        while True:
            chunk = self._fh.readline()
            if chunk:
                self._partial += chunk
                if chunk.endswith(b"\n"):
                    line, self._partial = self._partial, b""
                    return line
                continue
            if self._ended:
                line, self._partial = self._partial, b""
                return line
            if self._server._finished or self._server._proc.poll() is not None:
                self._ended = True  # one more pass reads what it wrote just before exiting
                continue
            time.sleep(0.02)

    def close(self) -> None:
        self._fh.close()


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
