"""Record a realistic ``/event`` stream from the real OpenCode into ``benchmarks/data/events.jsonl``.

    python -m benchmarks.record_events [--rounds 5] [--out PATH]

One real ``opencode serve`` (the pinned 1.18.33, isolated XDG storage) with the scripted model runs
six sessions side by side, ``--rounds`` times over, so their events interleave as they would on a
busy pool:

* ``FAST 500`` (a burst of 500 text deltas) and ``SLOW 20 5`` (20 deltas, 5 ms apart);
* ``READ`` of a file inside the project and ``BASH echo hi`` (bash allowed by config: no prompt);
* ``READ`` of a file outside the project: an ``external_directory`` permission is asked and
  answered ``once``;
* ``ASK``: a question is asked and answered (``red``).

Every raw SSE ``data:`` payload is written as one line, in arrival order, from ``server.connected``
to the last session going idle (first-prompt bootstrap events such as ``plugin.added`` included).
The pool-ingest benchmark replays this file, so it needs no server; re-run this to refresh it.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import time
from pathlib import Path

from benchmarks._common import (
    EVENTS_FILE,
    isolated_env,
    make_project,
    opencode_config_json,
    resolve_opencode,
    temp_root,
)

MAX_FILE_BYTES = 2_000_000
ROUND_TIMEOUT = 120.0


async def record(rounds: int) -> list[str]:
    import httpx

    from benchmarks._sse import EventTap
    from orchestrator_tui.opencode.binary import Launcher
    from orchestrator_tui.opencode.process import ManagedServer
    from orchestrator_tui.scripted_model.server import ScriptedModelServer

    opencode = resolve_opencode()
    payloads: list[str] = []
    with temp_root("record") as root, ScriptedModelServer() as model:
        env = isolated_env(root)
        project = make_project(root)
        (project / "notes.txt").write_text("release notes\nline two\n", encoding="utf-8")
        outside = root / "outside"
        outside.mkdir()
        (outside / "secret.txt").write_text("TOKEN-123\n", encoding="utf-8")
        config = opencode_config_json(model.base_url, permission={"external_directory": "ask", "bash": "allow"})
        print(f"starting opencode serve ({opencode}) in {project}", file=sys.stderr)
        server = await ManagedServer.start(launcher=Launcher(opencode), cwd=project, env=env, config_content=config)
        http = httpx.AsyncClient(
            base_url=server.base_url,
            auth=server.auth,
            params={"directory": str(project)},
            timeout=30.0,
            trust_env=False,
        )
        idle: dict[str, asyncio.Event] = collections.defaultdict(asyncio.Event)
        answers: set[asyncio.Task[None]] = set()
        loop = asyncio.get_running_loop()

        async def answer(kind: str, request: dict[str, object]) -> None:
            await asyncio.sleep(0.05)  # a quick human, not an instant one
            if kind == "permission":
                body: dict[str, object] = {"reply": "once"}
            else:
                questions = request.get("questions") or []
                body = {"answers": [[q["options"][0]["label"]] for q in questions]}  # type: ignore[index]
            response = await http.post(f"/{kind}/{request['id']}/reply", json=body)
            response.raise_for_status()

        def on_payload(raw: str, arrived: float) -> None:
            payloads.append(raw)
            event = json.loads(raw)
            kind = event.get("type")
            props = event.get("properties") or {}
            if kind == "session.idle":
                idle[props["sessionID"]].set()
            elif kind in ("permission.asked", "question.asked"):
                task = loop.create_task(answer(kind.split(".")[0], props))
                answers.add(task)
                task.add_done_callback(answers.discard)

        tap = EventTap(server.base_url, server.auth, on_payload, directory=str(project))
        try:
            await tap.start()
            prompts = {
                "fast": "FAST 500",
                "slow": "SLOW 20 5",
                "read": f"READ {project / 'notes.txt'}",
                "bash": "BASH echo hi",
                "external": f"READ {outside / 'secret.txt'}",
                "question": "ASK",
            }
            sessions: dict[str, str] = {}
            for name in prompts:
                response = await http.post("/session", json={})
                response.raise_for_status()
                sessions[name] = response.json()["id"]
            for index in range(rounds):
                started = time.monotonic()
                for name, text in prompts.items():
                    sid = sessions[name]
                    idle[sid].clear()
                    response = await http.post(
                        f"/session/{sid}/prompt_async", json={"parts": [{"type": "text", "text": text}]}
                    )
                    response.raise_for_status()
                async with asyncio.timeout(ROUND_TIMEOUT):
                    await asyncio.gather(*(idle[sid].wait() for sid in sessions.values()))
                print(
                    f"round {index + 1}/{rounds}: all sessions idle after {time.monotonic() - started:.1f} s, "
                    f"{len(payloads)} events so far",
                    file=sys.stderr,
                )
            await asyncio.sleep(0.5)  # the trailing session.updated / session.diff / message.updated
        finally:
            await tap.stop()
            for task in list(answers):
                task.cancel()
            await http.aclose()
            await server.stop()
    return payloads


def summarize(payloads: list[str]) -> str:
    counts = collections.Counter(json.loads(raw).get("type") for raw in payloads)
    size = sum(len(raw.encode()) + 1 for raw in payloads)
    lines = [f"{len(payloads)} events, {size / 1e6:.2f} MB; by type:"]
    lines += [f"  {count:6d}  {kind}" for kind, count in counts.most_common()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.record_events", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="how many times each session is prompted")
    parser.add_argument("--out", type=Path, default=EVENTS_FILE, help="where to write the JSONL file")
    args = parser.parse_args(argv)
    payloads = asyncio.run(record(args.rounds))
    text = "".join(raw.replace("\n", " ") + "\n" for raw in payloads)
    if len(text.encode()) > MAX_FILE_BYTES:
        print(f"refusing to write {len(text.encode())} bytes (> {MAX_FILE_BYTES}); use fewer --rounds", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}\n{summarize(payloads)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
