"""Pool ingest: a recorded real ``/event`` stream through ``parse_event`` + ``Pool.apply``, one core.

    python -m benchmarks.pool_ingest [--events 200000] [--passes 3] [--servers 1] [--profile]

Budget (docs/budgets.md): pool event ingest of realistic recorded events, one core, ≥ 50,000 events/s.

``benchmarks/data/events.jsonl`` holds the raw SSE ``data:`` payloads of a real OpenCode 1.18.33
(several sessions streaming text, tool calls, a permission and a question asked and answered;
re-record it with ``python -m benchmarks.record_events``). They are replayed, as bytes straight off
the wire, in a tight single-threaded loop until about ``--events`` have been ingested; the best of
``--passes`` passes is reported (the machine may be shared). Parse-only and apply-only passes
split the cost: the apply-only pass applies pre-parsed events, the parse-only pass discards them.
As extra information, ``parse_global_event`` on the same payloads wrapped the way ``/global/event``
sends them (``{"directory", "project", "payload"}``), the stream a pool not scoped to one directory reads.

``--servers N`` (N > 1): the events of N servers, as a dashboard following N servers ingests them.
Each server has the recording with its own session ids (the same sessions would otherwise be one
session moving from server to server), wrapped as ``/global/event`` sends them (every server a
dashboard follows is read there); the servers' events are interleaved one by one, and each goes
through ``parse_global_event`` + ``Pool.apply(directory, event, server)``, the pool's own server
being ``PRIMARY`` (what `pool.link.ServerLink` does). Parse-only and apply-only passes likewise.
"""

from __future__ import annotations

import argparse
import gc
import math
import re
import time
from collections.abc import Callable

from benchmarks._common import EVENTS_FILE, Figure, fmt, load_note, print_figures

BUDGET_EVENTS_PER_S = 50_000.0
DEFAULT_EVENTS = 200_000
DEFAULT_PASSES = 3


def load_payloads() -> list[bytes]:
    if not EVENTS_FILE.exists():
        raise SystemExit(f"{EVENTS_FILE} is missing: record it with `python -m benchmarks.record_events`")
    payloads = [line for line in EVENTS_FILE.read_bytes().splitlines() if line.strip()]
    if not payloads:
        raise SystemExit(f"{EVENTS_FILE} is empty: record it with `python -m benchmarks.record_events`")
    return payloads


def _best(passes: int, one_pass: Callable[[], float]) -> float:
    """The shortest of ``passes`` timings (seconds); a collection between passes, not inside."""
    best = math.inf
    for _ in range(passes):
        gc.collect()
        best = min(best, one_pass())
    return best


_SESSION_ID = re.compile(rb"ses_[0-9A-Za-z]{26}")


def servers_stream(payloads: list[bytes], servers: int) -> list[tuple[str, bytes]]:
    """(server name, ``/global/event`` payload): the recording once per server, each with its own
    session ids (same length: the last characters name the server), interleaved event by event."""
    from benchmarks._pty_app import server_names

    names = server_names(servers)
    stream = []
    for payload in payloads:
        for k, name in enumerate(names):
            tag = f"s{k}".encode()
            data = payload if k == 0 else _SESSION_ID.sub(lambda m, tag=tag: m.group(0)[: -len(tag)] + tag, payload)
            stream.append((name, b'{"directory":"/srv/project","project":"global","payload":' + data + b"}"))
    return stream


def measure(target_events: int = DEFAULT_EVENTS, passes: int = DEFAULT_PASSES, servers: int = 1) -> dict[str, float]:
    from orchestrator_tui.opencode.models import parse_event, parse_global_event
    from orchestrator_tui.pool.state import Pool

    payloads = load_payloads()
    if servers > 1:
        return _measure_servers(payloads, target_events, passes, servers)
    repeats = max(1, math.ceil(target_events / len(payloads)))
    total = repeats * len(payloads)
    envelopes = [b'{"directory":"/tmp/project","project":"global","payload":' + p + b"}" for p in payloads]

    def ingest() -> float:
        pool = Pool()
        apply = pool.apply
        started = time.perf_counter()
        for _ in range(repeats):
            for data in payloads:
                apply(None, parse_event(data))
        elapsed = time.perf_counter() - started
        assert pool.events_seen == total
        return elapsed

    def parse_only() -> float:
        started = time.perf_counter()
        for _ in range(repeats):
            for data in payloads:
                parse_event(data)
        return time.perf_counter() - started

    def parse_global_only() -> float:
        started = time.perf_counter()
        for _ in range(repeats):
            for data in envelopes:
                parse_global_event(data)
        return time.perf_counter() - started

    events = [parse_event(data) for data in payloads]

    def apply_only() -> float:
        pool = Pool()
        apply = pool.apply
        started = time.perf_counter()
        for _ in range(repeats):
            for event in events:
                apply(None, event)
        return time.perf_counter() - started

    ingest()  # warm-up: first-use costs (lazy imports, pydantic caches) are not ingest
    return {
        "events": float(total),
        "distinct": float(len(payloads)),
        "bytes": float(sum(len(p) for p in payloads) * repeats),
        "ingest_s": _best(passes, ingest),
        "parse_s": _best(passes, parse_only),
        "apply_s": _best(passes, apply_only),
        "global_parse_s": _best(passes, parse_global_only),
    }


def _measure_servers(payloads: list[bytes], target_events: int, passes: int, servers: int) -> dict[str, float]:
    """`measure` with the events of ``servers`` servers (see the module docstring)."""
    from orchestrator_tui.opencode.models import parse_global_event
    from orchestrator_tui.pool.state import Pool

    stream = servers_stream(payloads, servers)
    repeats = max(1, math.ceil(target_events / len(stream)))
    total = repeats * len(stream)

    def ingest() -> float:
        pool = Pool()
        apply = pool.apply
        started = time.perf_counter()
        for _ in range(repeats):
            for server, data in stream:
                directory, event = parse_global_event(data)
                apply(directory, event, server)
        elapsed = time.perf_counter() - started
        assert pool.events_seen == total
        assert len({view.server for view in pool.sessions.values()}) == servers
        return elapsed

    def parse_only() -> float:
        started = time.perf_counter()
        for _ in range(repeats):
            for _server, data in stream:
                parse_global_event(data)
        return time.perf_counter() - started

    events = [(server, *parse_global_event(data)) for server, data in stream]

    def apply_only() -> float:
        pool = Pool()
        apply = pool.apply
        started = time.perf_counter()
        for _ in range(repeats):
            for server, directory, event in events:
                apply(directory, event, server)
        return time.perf_counter() - started

    ingest()  # warm-up
    return {
        "events": float(total),
        "distinct": float(len(stream)),
        "bytes": float(sum(len(data) for _, data in stream) * repeats),
        "ingest_s": _best(passes, ingest),
        "parse_s": _best(passes, parse_only),
        "apply_s": _best(passes, apply_only),
    }


def run(target_events: int = DEFAULT_EVENTS, passes: int = DEFAULT_PASSES, servers: int = 1) -> list[Figure]:
    m = measure(target_events, passes, servers)
    total = m["events"]
    rate = total / m["ingest_s"]
    parse_rate = total / m["parse_s"]
    apply_rate = total / m["apply_s"]
    us = 1e6 / rate
    if servers > 1:
        print(
            f"  {int(total):,} events of {servers} servers ({int(m['distinct']):,} a pass, the recording once per "
            f"server; {m['bytes'] / 1e6:.0f} MB of /global/event payload), best of {passes} passes; {load_note()}\n"
            f"  parse_global_event + Pool.apply(directory, event, server): {fmt(rate)} events/s ({us:.2f} µs/event)\n"
            f"  parse_global_event only: {fmt(parse_rate)} events/s ({100 * m['parse_s'] / m['ingest_s']:.0f}% of "
            f"ingest); Pool.apply only: {fmt(apply_rate)} events/s ({100 * m['apply_s'] / m['ingest_s']:.0f}%)"
        )
        return [
            Figure(
                f"pool ingest, {servers} servers (/global/event)",
                rate,
                "events/s",
                BUDGET_EVENTS_PER_S,
                "min",
                detail=f"{fmt(rate)} events/s (parse {fmt(parse_rate)}/s, apply {fmt(apply_rate)}/s)",
            )
        ]
    print(
        f"  {int(total):,} events ({int(m['distinct']):,} recorded, replayed; {m['bytes'] / 1e6:.0f} MB of payload), "
        f"best of {passes} passes; {load_note()}"
    )
    print(
        f"  parse_event + Pool.apply: {fmt(rate)} events/s ({us:.2f} µs/event)\n"
        f"  parse_event only:         {fmt(parse_rate)} events/s ({1e6 / parse_rate:.2f} µs/event, "
        f"{100 * m['parse_s'] / m['ingest_s']:.0f}% of ingest)\n"
        f"  Pool.apply only:          {fmt(apply_rate)} events/s ({1e6 / apply_rate:.2f} µs/event, "
        f"{100 * m['apply_s'] / m['ingest_s']:.0f}% of ingest)\n"
        f"  parse_global_event only:  {fmt(total / m['global_parse_s'])} events/s "
        f"(/global/event envelopes; extra information)"
    )
    return [
        Figure(
            "pool ingest",
            rate,
            "events/s",
            BUDGET_EVENTS_PER_S,
            "min",
            detail=f"{fmt(rate)} events/s (parse {fmt(parse_rate)}/s, apply {fmt(apply_rate)}/s)",
        )
    ]


def profile(target_events: int) -> None:
    """cProfile of one ingest pass: where the time goes, by own time."""
    import cProfile
    import pstats

    from orchestrator_tui.opencode.models import parse_event
    from orchestrator_tui.pool.state import Pool

    payloads = load_payloads()
    repeats = max(1, math.ceil(target_events / len(payloads)))
    pool = Pool()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(repeats):
        for data in payloads:
            pool.apply(None, parse_event(data))
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pool_ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS, help="events per pass (approximate)")
    parser.add_argument("--passes", type=int, default=DEFAULT_PASSES, help="passes; the best one is reported")
    parser.add_argument("--servers", type=int, default=1, help="the events of this many servers (2-7: /global/event)")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of one ingest pass")
    args = parser.parse_args(argv)
    print("pool ingest (recorded real events through parse_event + Pool.apply, one core)")
    print_figures(run(args.events, args.passes, args.servers))
    if args.profile:
        profile(args.events)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
