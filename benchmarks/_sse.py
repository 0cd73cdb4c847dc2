"""A minimal, timestamping listener on OpenCode's ``/event`` stream (httpx + basic auth).

It deliberately does not use the product's `EventStream`: the benchmarks observe OpenCode the
way an outside witness would, and stamp each payload with `time.monotonic()` the moment its
``data:`` line has been read.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import httpx

#: ``on_payload(raw_json_text, monotonic_arrival_time)``; called on the event loop, keep it cheap.
PayloadHandler = Callable[[str, float], None]


class EventTap:
    def __init__(
        self,
        base_url: str,
        auth: tuple[str, str] | None,
        on_payload: PayloadHandler,
        *,
        directory: str | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url,
            auth=httpx.BasicAuth(*auth) if auth else None,
            timeout=httpx.Timeout(10.0, read=None),
            trust_env=False,
        )
        self._params = {"directory": directory} if directory else {}
        self._on_payload = on_payload
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None

    async def start(self, timeout: float = 15.0) -> EventTap:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="bench-event-tap")
        waiter = asyncio.ensure_future(self._connected.wait())
        done, _ = await asyncio.wait({waiter, self._task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            await self.stop()
            raise RuntimeError(f"/event did not connect within {timeout:.0f} s ({self.error!r})")
        return self

    async def _run(self) -> None:
        try:
            async with self._http.stream("GET", "/event", params=self._params) as response:
                response.raise_for_status()
                data: list[str] = []
                async for line in response.aiter_lines():
                    if line.startswith("data:"):
                        data.append(line[6:] if line.startswith("data: ") else line[5:])
                        continue
                    if line or not data:
                        continue
                    raw = "\n".join(data)
                    data.clear()
                    arrived = time.monotonic()
                    if not self._connected.is_set() and '"server.connected"' in raw:
                        self._connected.set()
                    self._on_payload(raw, arrived)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.error = exc

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._http.aclose()
