"""Several fake OpenCode servers in one process, for `benchmarks.pty_keys --servers N`.

    python -m benchmarks._fake_servers [--servers 3] [--sessions 3000] [--rate 1000] [--busy 60]

Started by the benchmark in a process of its own (its CPU is not the dashboard's, and its event
loop shares no interpreter with the terminal side), not meant to be run by hand. Each server is
`tests/fake_opencode.FakeOpenCode` (the repository's one fake OpenCode: a real HTTP/1.1 server
on 127.0.0.1), answering what the dashboard asks a server it follows in every directory:

- ``GET /global/health``: healthy, the pinned version;
- ``GET /experimental/session`` (and ``/session``): its ``--sessions`` sessions, made by
  `benchmarks._pty_app.session_info` as of the process's start (session ``i`` lives on server
  ``i % servers``, and is more recent than session ``i + 1``: each server's most recent
  sessions are at the top of the list, in turn);
- ``GET /session/status``, ``/permission``, ``/question`` (any ``?directory=``): all idle,
  nothing pending; ``/command``: the fake's few commands;
- ``GET /global/event`` (and ``/event``): ``server.connected``, a ``server.heartbeat`` every 10 s,
  and the feed, each payload wrapped ``{"directory", "project", "payload"}`` on ``/global/event``.

The feed is `benchmarks._pty_app.Replay`, the recorded real stream remapped onto each server's
busy sessions, at ``--rate`` events per second in all, dealt to the servers in turn (10 ms
ticks). SIGUSR1 starts it, SIGUSR2 stops it; SIGTERM stops the servers.

It tells the benchmark what it does on stdout, one JSON object per line: ``{"event": "listening",
"servers": [[name, url], ...]}`` once every server listens; ``{"event": "load", "on": bool,
"events": n, "t": ...}`` when the feed starts or stops (``n``: events sent so far, ``t`` on the
system-wide monotonic clock); on SIGTERM, ``{"event": "requests", "answered": {...},
"unanswered": [...]}``: what the dashboard asked, by method and path, and what got a 404.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import signal
import sys
import time
from typing import Any

from benchmarks._common import REPO_DIR
from benchmarks._pty_app import DIRECTORY, Replay, server_names, session_info

HEARTBEAT_INTERVAL = 10.0


def fake_opencode() -> Any:
    """The tests' `fake_opencode` module (in the tests' folder, which is no package)."""
    import importlib

    tests = str(REPO_DIR / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    return importlib.import_module("fake_opencode")


def serve(server: int, servers: int, sessions: int, now: int) -> Any:
    """Fake OpenCode number ``server`` of ``servers``, holding ``sessions`` sessions (not started)."""
    from orchestrator_tui.opencode.binary import PINNED_VERSION

    module = fake_opencode()
    Reply, Sse = module.Reply, module.Sse
    fake = module.FakeOpenCode(events="live")
    fake.get("/global/health", {"healthy": True, "version": PINNED_VERSION})
    own = range(server, servers * sessions, servers)

    def listed(_request: Any) -> Reply:
        return Reply([session_info(i, now) for i in own])

    for path in ("/experimental/session", "/session"):
        fake.get(path, listed)
    fake.get("/session/status", {})
    fake.get("/permission", [])
    fake.get("/question", [])
    for path in ("/event", "/global/event"):
        fake.get(path, Sse(directory=DIRECTORY))
    return fake


async def run(servers: int, sessions: int, rate: int, busy: int) -> None:
    # One "now" for every server and every listing: session i is always more recent than
    # session i + 1, whichever servers they live on and whenever each server was read.
    now = int(time.time() * 1000)
    fakes = [serve(k, servers, sessions, now) for k in range(servers)]
    for fake in fakes:
        await fake.start()
    replays = [Replay(busy, k, servers) for k in range(servers)]
    state = {"on": False, "sent": 0}
    stopped = asyncio.Event()

    def say(event: str, **fields: Any) -> None:
        sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
        sys.stdout.flush()

    def switch(on: bool) -> None:
        state["on"] = on
        say("load", on=on, events=state["sent"], t=time.monotonic())

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, switch, True)
    loop.add_signal_handler(signal.SIGUSR2, switch, False)
    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    loop.add_signal_handler(signal.SIGINT, stopped.set)

    async def feed() -> None:
        per_tick = max(1, rate // 100)
        turn = 0
        next_tick = time.monotonic()
        while True:
            if state["on"]:
                for _ in range(per_tick):
                    k = turn % servers
                    turn += 1
                    fakes[k].emit(json.loads(next(replays[k])))
                state["sent"] += per_tick
                next_tick += 0.01
                await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
            else:
                await asyncio.sleep(0.01)
                next_tick = time.monotonic()

    async def heartbeats() -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL)
            for fake in fakes:
                fake.emit({"type": "server.heartbeat", "properties": {}})

    tasks = [loop.create_task(feed()), loop.create_task(heartbeats())]
    say("listening", servers=[[name, fake.url] for name, fake in zip(server_names(servers), fakes, strict=True)])
    await stopped.wait()
    for task in tasks:
        task.cancel()
    answered: collections.Counter[str] = collections.Counter()
    unanswered: set[str] = set()
    for fake in fakes:
        for request in fake.requests:
            what = f"{request.method} {request.path}"
            answered[what] += 1
            if fake._find(request.method, request.path)[0] is None:
                unanswered.add(what)
    say("requests", answered=dict(answered), unanswered=sorted(unanswered))
    for fake in fakes:
        await fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._fake_servers", description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=3_000, help="sessions on each server")
    parser.add_argument("--rate", type=int, default=1_000, help="events per second in all, while the feed runs")
    parser.add_argument("--busy", type=int, default=60, help="sessions the feed streams into, in all")
    args = parser.parse_args()
    asyncio.run(run(args.servers, args.sessions, args.rate, args.busy))


if __name__ == "__main__":
    main()
