"""The OpenCode event stream: SSE over httpx-sse, reconnecting forever with backoff.

OpenCode replays nothing after a reconnect (docs/opencode-behaviour.md), so the stream reports each
(re)connection through ``on_connected``; the pool answers with a REST resync. A server that
dies mid-stream just ends the body, and a wedged one goes silent: heartbeats come every 10 s,
so a read timeout of :data:`SILENCE_TIMEOUT` doubles as the dead-connection detector.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

import httpx
from httpx_sse import SSEError, aconnect_sse

from orchestrator_tui.opencode.client import OpenCodeClient, error_message_from_body
from orchestrator_tui.opencode.models import Event, parse_event, parse_global_event

log = logging.getLogger(__name__)

#: No bytes for this long (heartbeats arrive every 10 s) means the connection is dead.
SILENCE_TIMEOUT = 25.0
BACKOFF_START = 0.25
BACKOFF_MAX = 30.0

StreamState = Literal["connecting", "connected", "disconnected", "stopped"]


@dataclass(frozen=True, slots=True)
class StreamStatus:
    state: StreamState
    detail: str = ""
    attempt: int = 0


EventHandler = Callable[[str | None, Event], None]
ConnectedHandler = Callable[[], Awaitable[None]]
StatusHandler = Callable[[StreamStatus], None]


class EventStream:
    """Consumes ``/global/event`` (every directory) or ``/event`` (one instance).

    ``on_event(directory, event)`` is called synchronously for every event, in order, on the
    event loop: reducers must be fast and never block. ``on_connected`` is started as soon as
    the stream is open and runs concurrently with event delivery, which is what a resync needs:
    subscribe first, then read the REST state, so nothing falls into a gap.
    """

    def __init__(
        self,
        client: OpenCodeClient,
        on_event: EventHandler,
        *,
        on_connected: ConnectedHandler | None = None,
        on_status: StatusHandler | None = None,
        global_stream: bool = True,
        silence_timeout: float = SILENCE_TIMEOUT,
    ) -> None:
        self._client = client
        self._on_event = on_event
        self._on_connected = on_connected
        self._on_status = on_status
        self._global = global_stream
        self._silence = silence_timeout
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self.status = StreamStatus("connecting")

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout: float | None = None) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self._connected.wait()
            return True
        except TimeoutError:
            return False

    def start(self) -> EventStream:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="opencode-events")
        return self

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # The cancel is swallowed, the caller's too if one lands here: a replacement
            # (ServerLink._attach) stops the old stream, then must make the new one.
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._connected.clear()
        self._set_status(StreamStatus("stopped"))

    def _set_status(self, status: StreamStatus) -> None:
        self.status = status
        if self._on_status is not None:
            try:
                self._on_status(status)
            except Exception:  # a consumer's bug must not kill the stream
                log.exception("stream status handler failed")

    async def _run(self) -> None:
        backoff = BACKOFF_START
        attempt = 0
        path = "/global/event" if self._global else "/event"
        timeout = httpx.Timeout(connect=5.0, read=self._silence, write=10.0, pool=5.0)
        while True:
            attempt += 1
            self._set_status(StreamStatus("connecting", attempt=attempt))
            detail = "stream ended"
            try:
                async with aconnect_sse(
                    self._client.http,
                    "GET",
                    path,
                    params=self._client._params(path),
                    timeout=timeout,
                ) as source:
                    response = source.response
                    if response.status_code >= 400:
                        body = (await response.aread()).decode(errors="replace")
                        detail = f"HTTP {response.status_code}: " + error_message_from_body(response.status_code, body)
                        raise _StreamRefused(detail)
                    self._connected.set()
                    backoff = BACKOFF_START
                    attempt = 0
                    self._set_status(StreamStatus("connected"))
                    if self._on_connected is not None:
                        asyncio.get_running_loop().create_task(self._safe_connected())
                    parse = parse_global_event if self._global else _plain
                    async for sse in source.aiter_sse():
                        if not sse.data:
                            continue
                        try:
                            directory, event = parse(sse.data)
                        except ValueError as exc:
                            log.warning("dropping unparseable event: %s", exc)
                            continue
                        try:
                            self._on_event(directory, event)
                        except Exception:
                            log.exception("event handler failed on %s", event.type)
            except asyncio.CancelledError:
                raise
            except _StreamRefused:
                pass
            except httpx.ReadTimeout:
                detail = f"no event or heartbeat for {self._silence:.0f} s"
            except (httpx.HTTPError, SSEError) as exc:
                detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self._connected.clear()
            self._set_status(StreamStatus("disconnected", detail=detail, attempt=attempt))
            delay = min(backoff, BACKOFF_MAX) * random.uniform(0.8, 1.2)
            backoff = min(backoff * 2, BACKOFF_MAX)
            await asyncio.sleep(delay)

    async def _safe_connected(self) -> None:
        assert self._on_connected is not None
        try:
            await self._on_connected()
        except Exception:
            log.exception("resync after connect failed")


class _StreamRefused(Exception):
    pass


def _plain(data: str) -> tuple[str | None, Event]:
    return None, parse_event(data)
