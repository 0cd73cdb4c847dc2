"""Acquiring the OpenCode server, and recovering it when it dies.

A :class:`ServerHandle` is the process-wide owner of "the server we talk to". Every tool call
acquires a :class:`Snapshot` from it. A healthy snapshot costs one short health probe; a dead
managed server is rebuilt once (single flight: concurrent callers share the rebuild); an
attached (external) server that stops answering fails with an explicit error, because we
cannot restart what we did not start, and is probed again (at most once per
:data:`REPROBE_INTERVAL`) on later calls, so that a server which comes back, restarted on the
same address or after a network blip, is used again without restarting the front end.

Callers keep the snapshot they acquired even if the handle later replaces it; an old
snapshot's managed child is stopped when it is replaced.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from orchestrator_tui.opencode.client import OpenCodeClient, OpenCodeError
from orchestrator_tui.opencode.keeper import pid_alive

if TYPE_CHECKING:
    from orchestrator_tui.opencode.process import ManagedServer

log = logging.getLogger(__name__)

HEALTH_TIMEOUT = 5.0
START_ATTEMPTS = 2
#: An attached server that failed is probed again on an acquire at most this often (seconds);
#: in between, callers get the last error at once instead of each waiting for a probe.
REPROBE_INTERVAL = 1.0

Mode = Literal["managed", "external"]
_generation = itertools.count(1)


#: What to do when an attached server does not answer.
ATTACH_FIX = "check the --attach URL, and that the server is running (opencode serve)"


class ServerUnavailable(Exception):
    """The server could not be started or reached; ``str()`` is the user-facing text.

    ``fix`` says what the user can do about it, where the cause is known (a wrong password, a
    missing binary); None when waiting may be all it takes (a server still starting).
    """

    def __init__(self, text: str, fix: str | None = None) -> None:
        super().__init__(text)
        self.fix = fix

    def again(self) -> ServerUnavailable:
        """The same failure, raised afresh (a stored exception re-raised would grow its traceback)."""
        return ServerUnavailable(str(self), self.fix)


@dataclass(eq=False)
class Snapshot:
    """One server incarnation: its client, its child process (if we started it), its facts."""

    client: OpenCodeClient
    managed: ManagedServer | None = None
    version: str | None = None
    #: (providerID, modelID) → context window, loaded once per start, on first use
    #: (:meth:`ensure_model_limits`): a front end that never runs a turn never pays for it, and a
    #: rebuilt or attached server answers sooner.
    model_limits: dict[tuple[str, str], int] = field(default_factory=dict)
    _limits: asyncio.Future[dict[tuple[str, str], int]] | None = field(default=None, repr=False)
    generation: int = field(default_factory=lambda: next(_generation))
    #: A pool's managed server that another front end started (we attached from its record):
    #: its pid, so that we notice when it dies and may restart it.
    shared_pid: int | None = None

    @property
    def base_url(self) -> str:
        return self.client.base_url

    @property
    def mode(self) -> Mode:
        return "managed" if self.managed is not None or self.shared_pid is not None else "external"

    @property
    def pid(self) -> int | None:
        """The server's pid when it is a managed one (ours or the pool's)."""
        return self.managed.pid if self.managed is not None else self.shared_pid

    def prefetch_model_limits(self) -> None:
        """Start loading the context windows in the background (once)."""
        if self._limits is None and not self.model_limits:  # given when made: a test seam
            self._limits = asyncio.ensure_future(load_model_limits(self.client))

    async def ensure_model_limits(self) -> dict[tuple[str, str], int]:
        """The context windows, loaded once (concurrent callers share the one request)."""
        self.prefetch_model_limits()
        if self._limits is not None:
            # In place: trackers made earlier hold this very mapping and see the limits too.
            self.model_limits.update(await asyncio.shield(self._limits))
        return self.model_limits

    async def close(self) -> None:
        """Stop the child (if any) and release the HTTP client."""
        if self._limits is not None and not self._limits.done():
            self._limits.cancel()
        if self.managed is not None:
            await self.managed.stop()
        await self.client.aclose()


Starter = Callable[[], Awaitable[Snapshot]]


@dataclass
class _State:
    kind: Literal["empty", "ready", "failed"]
    snapshot: Snapshot | None = None
    mode: Mode = "managed"
    #: Why it failed (raised again to every caller until the next attempt).
    error: ServerUnavailable | None = None
    base_url: str | None = None
    #: Loop time of the failure (an attached server is probed again after REPROBE_INTERVAL).
    failed_at: float = 0.0


class ServerHandle:
    """The acquire/recovery state machine.

    ``start`` builds a fresh snapshot (it is retried once, as the reference does);
    ``on_replace(old, new)`` lets the owner re-point its event stream at the new server.
    """

    def __init__(
        self,
        start: Starter,
        *,
        guard: Callable[[], ServerUnavailable | None] | None = None,
        health_timeout: float = HEALTH_TIMEOUT,
        on_replace: Callable[[Snapshot | None, Snapshot], Awaitable[None]] | None = None,
        mode: Mode = "managed",
    ) -> None:
        #: "external": ``start`` attaches to a server someone else runs (a probe, not a start).
        self.mode: Mode = mode
        self._start = start
        self._guard = guard
        self._health_timeout = health_timeout
        self._on_replace = on_replace
        self._lock = asyncio.Lock()
        self._state = _State("empty")
        self.starts = 0

    @classmethod
    def preloaded(cls, snapshot: Snapshot, start: Starter | None = None, **kw: object) -> ServerHandle:
        """A handle that already holds a snapshot (an attached server, or a test seam)."""

        async def refuse() -> Snapshot:
            raise ServerUnavailable("no start procedure configured for this handle")

        kw.setdefault("mode", snapshot.mode)
        handle = cls(start or refuse, **kw)  # type: ignore[arg-type]
        handle._state = _State("ready", snapshot, snapshot.mode, base_url=snapshot.base_url)
        return handle

    @property
    def current(self) -> Snapshot | None:
        return self._state.snapshot if self._state.kind == "ready" else None

    async def acquire(self) -> Snapshot:
        while True:
            async with self._lock:
                state = self._state
                if state.kind == "empty":
                    return await self._start_locked(None)
                if state.kind == "failed":
                    if state.mode == "external" and _now() - state.failed_at < REPROBE_INTERVAL:
                        assert state.error is not None
                        raise state.error.again()
                    # A managed server is started again; an attached one is probed again, and
                    # used again if it came back (restarted on its address, a network blip).
                    return await self._start_locked(None)
                snapshot = state.snapshot
                assert snapshot is not None
            # Validate outside the lock so concurrent healthy acquires do not serialize.
            problem = await self.validate(snapshot)
            async with self._lock:
                if self._state.kind != "ready" or self._state.snapshot is not snapshot:
                    continue  # someone replaced it meanwhile: look again
                if problem is None:
                    return snapshot
                log.warning("OpenCode server at %s needs recovery: %s", snapshot.base_url, problem)
                if snapshot.mode == "external":
                    error = ServerUnavailable(_external_text(snapshot.base_url, problem), ATTACH_FIX)
                    self._state = _State("failed", None, "external", error, snapshot.base_url, _now())
                    raise error
                return await self._start_locked(snapshot)

    async def validate(self, snapshot: Snapshot) -> str | None:
        """None when healthy, else why the snapshot needs recovery."""
        if snapshot.managed is not None and snapshot.managed.exited():
            return "managed child is no longer running"
        if snapshot.shared_pid is not None and not pid_alive(snapshot.shared_pid):
            return "the pool's managed server is no longer running"
        try:
            health = await asyncio.wait_for(snapshot.client.health(timeout=self._health_timeout), self._health_timeout)
        except TimeoutError:
            return f"/global/health probe timed out after {_duration(self._health_timeout)}"
        except OpenCodeError as exc:
            if getattr(exc, "timed_out", False):
                return f"/global/health probe timed out after {_duration(self._health_timeout)}"
            return f"/global/health probe failed: {exc}"
        if not health.healthy:
            return "/global/health reported unhealthy"
        return None

    async def _start_locked(self, stale: Snapshot | None) -> Snapshot:
        if self._guard is not None and (blocked := self._guard()):
            self._state = _State("failed", None, "managed", blocked)
            raise blocked
        error = ServerUnavailable("unknown error")
        # Probing an attached server twice in a row tells nothing new.
        for _attempt in range(1 if self.mode == "external" else START_ATTEMPTS):
            self.starts += 1
            try:
                snapshot = await self._start()
                break
            except ServerUnavailable as exc:
                error = exc
            except Exception as exc:  # never let a start failure escape untyped
                log.exception("server start failed")
                error = ServerUnavailable(str(exc) or type(exc).__name__)
        else:
            self._state = _State("failed", None, self.mode, error, stale.base_url if stale else None, _now())
            raise error
        self._state = _State("ready", snapshot, snapshot.mode, base_url=snapshot.base_url)
        if stale is not None and stale.managed is not None:
            if stale.managed.pid == snapshot.pid:
                # The pool's record still named our own server and it answered after all:
                # keep the child we spawned (and the duty to reap it) with the new snapshot.
                snapshot.managed, snapshot.shared_pid = stale.managed, None
            else:
                stale.managed.kill_sync()
        if self._on_replace is not None:
            await self._on_replace(stale, snapshot)
        return snapshot

    async def close(self) -> None:
        async with self._lock:
            snapshot = self._state.snapshot
            self._state = _State("empty")
        if snapshot is not None:
            await snapshot.close()


async def load_model_limits(client: OpenCodeClient) -> dict[tuple[str, str], int]:
    """Context windows by (provider, model); best effort."""
    limits: dict[tuple[str, str], int] = {}
    try:
        data = await client.providers()
    except OpenCodeError as exc:
        log.warning("could not load model limits: %s", exc)
        return limits
    for provider in (data or {}).get("all", []) if isinstance(data, dict) else []:
        if not isinstance(provider, dict):
            continue
        pid = provider.get("id")
        for mid, model in (provider.get("models") or {}).items():
            context = ((model or {}).get("limit") or {}).get("context") if isinstance(model, dict) else None
            if isinstance(pid, str) and isinstance(context, int) and context > 0:
                limits[(pid, mid)] = context
    return limits


def _now() -> float:
    return asyncio.get_running_loop().time()


def _external_text(base_url: str | None, reason: str) -> str:
    return f"External OpenCode server unavailable (base_url={base_url or '<unknown>'}): {reason}"


def _duration(seconds: float) -> str:
    """Rust ``Debug`` style durations, as the reference prints them (``25ms``, ``5s``)."""
    if seconds >= 1 and float(seconds).is_integer():
        return f"{int(seconds)}s"
    if seconds >= 1:
        return f"{seconds:g}s"
    return f"{round(seconds * 1000)}ms"
