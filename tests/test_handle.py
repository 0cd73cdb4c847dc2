"""The server handle's acquire/recovery state machine (and the seed's handle cases).

The health endpoint is a fake OpenCode on 127.0.0.1 (:mod:`fake_opencode`), so probe timeouts,
blocked probes and refused connections are real network behaviour. ``managed`` children are tiny
stand-ins with ``exited()`` / ``kill_sync()`` / ``stop()``: the handle only asks whether the child is
alive and stops it when it is replaced.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fake_opencode import FakeOpenCode, Reply

from orchestrator_tui.opencode import binary
from orchestrator_tui.opencode.client import OpenCodeClient
from orchestrator_tui.pool import handle as handle_module
from orchestrator_tui.pool.handle import ServerHandle, ServerUnavailable, Snapshot, _State
from orchestrator_tui.pool.service import recursion_guard


class FakeChild:
    """Stands in for a ManagedServer: alive or exited, and records being stopped."""

    _pids = iter(range(10_000_000, 20_000_000))

    def __init__(self, exited: bool = False) -> None:
        self._exited = exited
        self.pid = next(self._pids)  # never a real process: tells children apart
        self.killed = 0
        self.stopped = 0

    def exited(self) -> bool:
        return self._exited

    def kill_sync(self) -> None:
        self.killed += 1
        self._exited = True

    async def stop(self) -> None:
        self.stopped += 1
        self._exited = True


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenCode]:
    async with FakeOpenCode() as server:
        yield server


@pytest.fixture
async def clients() -> AsyncIterator[list[OpenCodeClient]]:
    made: list[OpenCodeClient] = []
    yield made
    for client in made:
        await client.aclose()


def snapshot_at(clients: list[OpenCodeClient], url: str, managed: FakeChild | None = None) -> Snapshot:
    client = OpenCodeClient(url, timeout=5)
    clients.append(client)
    return Snapshot(client=client, managed=managed)  # type: ignore[arg-type]


class Starter:
    """A start procedure that counts its calls; ``fail`` = how many first calls fail."""

    def __init__(self, make: Any, *, delay: float = 0.0, fail: int = 0) -> None:
        self.make, self.delay, self.fail = make, delay, fail
        self.calls = 0

    async def __call__(self) -> Snapshot:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.calls <= self.fail:
            raise ServerUnavailable(f"always fail (attempt {self.calls})")
        return self.make()


# ------------------------------------------------------------------------------------ start


async def test_initialization_is_serialized_and_the_snapshot_reused(
    fake: FakeOpenCode, clients: list[OpenCodeClient]
) -> None:
    start = Starter(lambda: snapshot_at(clients, fake.url), delay=0.05)
    handle = ServerHandle(start)
    first, second = await asyncio.gather(handle.acquire(), handle.acquire())
    assert first is second
    assert start.calls == 1 and handle.starts == 1
    # A later acquire reuses it after one health probe.
    assert await handle.acquire() is first
    assert start.calls == 1
    assert fake.count("GET", "/global/health") >= 1


async def test_start_succeeds_on_the_first_attempt(fake: FakeOpenCode, clients: list[OpenCodeClient]) -> None:
    start = Starter(lambda: snapshot_at(clients, fake.url))
    snapshot = await ServerHandle(start).acquire()
    assert snapshot.base_url == fake.url
    assert start.calls == 1


async def test_start_is_retried_once_and_succeeds(fake: FakeOpenCode, clients: list[OpenCodeClient]) -> None:
    start = Starter(lambda: snapshot_at(clients, fake.url), fail=1)
    snapshot = await ServerHandle(start).acquire()
    assert snapshot.base_url == fake.url
    assert start.calls == 2


async def test_start_fails_after_exactly_two_attempts_with_the_last_error(
    fake: FakeOpenCode, clients: list[OpenCodeClient]
) -> None:
    start = Starter(lambda: snapshot_at(clients, fake.url), fail=99)
    handle = ServerHandle(start)
    with pytest.raises(ServerUnavailable) as info:
        await handle.acquire()
    assert str(info.value) == "always fail (attempt 2)"
    assert start.calls == 2
    # A failed managed start is attempted again on the next acquire (not sticky).
    with pytest.raises(ServerUnavailable, match=r"always fail \(attempt 4\)"):
        await handle.acquire()
    assert start.calls == 4


async def test_recursion_guard_only_blocks_real_starts(fake: FakeOpenCode, clients: list[OpenCodeClient]) -> None:
    def guard() -> ServerUnavailable | None:
        return recursion_guard({"OPENCODE_ORCHESTRATOR_MANAGED": "1"})

    start = Starter(lambda: snapshot_at(clients, fake.url))
    preloaded = snapshot_at(clients, fake.url)
    # A snapshot that already exists keeps working under the guard...
    assert await ServerHandle.preloaded(preloaded, start, guard=guard).acquire() is preloaded
    # ...but nothing new is started.
    with pytest.raises(ServerUnavailable) as info:
        await ServerHandle(start, guard=guard).acquire()
    assert str(info.value) == binary.RECURSION_GUARD_TEXT
    assert str(info.value).startswith("ENV VAR OPENCODE_ORCHESTRATOR_MANAGED is set to 1. ")
    assert start.calls == 0


# ------------------------------------------------------------------------------------ validation


async def test_validation_of_an_external_server_uses_health(fake: FakeOpenCode, clients: list[OpenCodeClient]) -> None:
    snapshot = snapshot_at(clients, fake.url)
    assert await ServerHandle.preloaded(snapshot).validate(snapshot) is None
    assert fake.count("GET", "/global/health") == 1


async def test_health_probe_timeout_text(fake: FakeOpenCode, clients: list[OpenCodeClient]) -> None:
    fake.get("/global/health", Reply({"healthy": True, "version": "test"}, delay=30))
    snapshot = snapshot_at(clients, fake.url)
    handle = ServerHandle.preloaded(snapshot, health_timeout=0.025)
    problem = await asyncio.wait_for(handle.validate(snapshot), 2)
    assert problem == "/global/health probe timed out after 25ms"


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        (Reply({"healthy": False, "version": "test"}), "/global/health reported unhealthy"),
        (Reply({"message": "nope"}, 503), "/global/health probe failed: HTTP error 503: nope"),
    ],
)
async def test_unhealthy_answers_need_recovery(
    fake: FakeOpenCode, clients: list[OpenCodeClient], reply: Reply, problem: str
) -> None:
    fake.get("/global/health", reply)
    snapshot = snapshot_at(clients, fake.url)
    assert await ServerHandle.preloaded(snapshot).validate(snapshot) == problem


async def test_dead_managed_child_short_circuits_without_http(
    fake: FakeOpenCode, clients: list[OpenCodeClient]
) -> None:
    snapshot = snapshot_at(clients, fake.url, managed=FakeChild(exited=True))
    assert await ServerHandle.preloaded(snapshot).validate(snapshot) == "managed child is no longer running"
    assert fake.requests == []


# ------------------------------------------------------------------------------------ concurrency


async def test_concurrent_healthy_acquires_are_not_serialized(
    fake: FakeOpenCode, clients: list[OpenCodeClient]
) -> None:
    release = asyncio.Event()
    all_in = asyncio.Event()
    in_flight = 0

    async def blocking_health(_request: Any) -> Any:
        nonlocal in_flight
        in_flight += 1
        if in_flight == 3:
            all_in.set()
        try:
            await release.wait()
        finally:
            in_flight -= 1
        return {"healthy": True, "version": "test"}

    fake.get("/global/health", blocking_health)
    snapshot = snapshot_at(clients, fake.url)
    handle = ServerHandle.preloaded(snapshot)
    acquires = asyncio.gather(*(handle.acquire() for _ in range(3)))
    # All three probes reach the server while none has been answered: no lock is held over them.
    await asyncio.wait_for(all_in.wait(), 1)
    release.set()
    results = await asyncio.wait_for(acquires, 1)
    assert all(r is snapshot for r in results)
    assert handle.starts == 0


async def test_concurrent_acquires_single_flight_the_rebuild_of_a_dead_managed_server(
    fake: FakeOpenCode, clients: list[OpenCodeClient]
) -> None:
    old_child = FakeChild(exited=True)
    stale = snapshot_at(clients, "http://127.0.0.1:9", managed=old_child)
    start = Starter(lambda: snapshot_at(clients, fake.url, managed=FakeChild()), delay=0.05)
    handle = ServerHandle.preloaded(stale, start)

    results = await asyncio.wait_for(asyncio.gather(*(handle.acquire() for _ in range(3))), 2)
    fresh = results[0]
    assert fresh is not stale
    assert all(r is fresh for r in results)
    assert start.calls == 1
    assert old_child.killed == 1  # the replaced child is stopped
    assert handle.current is fresh


async def test_acquire_starts_over_when_the_snapshot_changes_while_validating(
    fake: FakeOpenCode, clients: list[OpenCodeClient]
) -> None:
    release = asyncio.Event()

    async def health(_request: Any) -> Any:
        if fake.count("GET", "/global/health") == 1:
            await release.wait()  # only the first probe (of the old snapshot) blocks
        return {"healthy": True, "version": "test"}

    fake.get("/global/health", health)
    old = snapshot_at(clients, fake.url)
    replacement = snapshot_at(clients, fake.url)
    start = Starter(lambda: snapshot_at(clients, fake.url))
    handle = ServerHandle.preloaded(old, start)

    acquiring = asyncio.create_task(handle.acquire())
    await fake.wait_for("GET", "/global/health", 1, timeout=1)
    # The lock is free while the probe runs; swap the cached snapshot behind the acquire's back.
    async with asyncio.timeout(0.1):
        async with handle._lock:
            handle._state = _State("ready", replacement, replacement.mode, base_url=replacement.base_url)
    release.set()
    assert await asyncio.wait_for(acquiring, 2) is replacement
    assert start.calls == 0 and handle.starts == 0


async def test_rebuild_does_not_invalidate_a_held_snapshot(fake: FakeOpenCode, clients: list[OpenCodeClient]) -> None:
    held = snapshot_at(clients, "http://127.0.0.1:9", managed=FakeChild(exited=True))
    start = Starter(lambda: snapshot_at(clients, fake.url + "/", managed=FakeChild()))
    handle = ServerHandle.preloaded(held, start)

    fresh = await handle.acquire()
    assert fresh is not held
    assert start.calls == 1
    assert held.base_url == "http://127.0.0.1:9"  # the caller's copy still names its own server
    assert fresh.base_url == fake.url and not fresh.base_url.endswith("/")
    assert await handle.acquire() is fresh  # healthy now: no second rebuild
    assert start.calls == 1


async def test_external_failure_is_typed_and_probed_again_at_most_once_a_second(
    fake: FakeOpenCode, clients: list[OpenCodeClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handle_module, "REPROBE_INTERVAL", 0.3)
    dead = snapshot_at(clients, "http://127.0.0.1:9")  # nothing listens on port 9
    outcomes = [ServerUnavailable("External OpenCode server unavailable (base_url=http://127.0.0.1:9): refused")]

    def probe() -> Snapshot:
        if outcomes:
            raise outcomes.pop()
        return snapshot_at(clients, fake.url)

    start = Starter(probe)
    handle = ServerHandle.preloaded(dead, start)
    assert handle.mode == "external"

    errors = []
    for _ in range(2):
        with pytest.raises(ServerUnavailable) as info:
            await asyncio.wait_for(handle.acquire(), 5)
        errors.append(str(info.value))
    assert errors[0].startswith("External OpenCode server unavailable (base_url=http://127.0.0.1:9): ")
    assert "/global/health probe failed: Transport error: " in errors[0]
    assert errors[1] == errors[0]  # within the interval: the same error at once, no probe
    assert start.calls == 0
    await asyncio.sleep(0.35)
    with pytest.raises(ServerUnavailable, match="refused"):  # probed again: still down
        await handle.acquire()
    assert start.calls == 1
    await asyncio.sleep(0.35)
    back = await handle.acquire()  # probed again: it came back, and is used again
    assert back.base_url == fake.url and start.calls == 2
    assert await handle.acquire() is back
