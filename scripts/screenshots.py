"""Take the README screenshots from the running product: the real demo, nothing drawn by hand.

    .venv/bin/python scripts/screenshots.py [--out screenshots] [--size 140x40]

It starts what ``orchestrator-tui demo`` starts (a managed ``opencode serve`` 1.18.33 on the
scripted model, in a throwaway project), runs the dashboard headless at a fixed terminal size,
lets the six demo sessions get going, and saves:

- ``dashboard.svg`` — the busy pool; the detail pane follows a streaming session, the inbox
  shows the pending edit with its diff;
- ``question.svg`` — the question dialog, one option picked;
- ``help.svg`` — the help screen.

Each SVG also becomes a PNG when ``rsvg-convert`` is installed (librsvg). Everything it started
(OpenCode, the scripted model, the demo's temporary folder) is gone when it returns.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from textual.pilot import Pilot

from orchestrator_tui.opencode.models import PermissionRequest, QuestionRequest
from orchestrator_tui.opencode.process import kill_all_managed
from orchestrator_tui.pool.actions import PoolActions
from orchestrator_tui.pool.registry import Registry
from orchestrator_tui.pool.service import PoolService, ServerSpec
from orchestrator_tui.tui.app import DashboardApp
from orchestrator_tui.tui.main import DEMO_SESSIONS, DemoEnvironment, start_demo_sessions
from orchestrator_tui.tui.screens import HelpScreen, QuestionScreen

ROOT = Path(__file__).resolve().parents[1]
#: Starting OpenCode, then the scripted turns: generous, it is a one-off script.
DEADLINE = 120.0
PNG_WIDTH = 1400


async def until(pilot: Pilot[None], predicate: Callable[[], object], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        await pilot.pause(0.05)


async def settle(pilot: Pilot[None]) -> None:
    await pilot.pause(0.3)
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


def session_id(app: DashboardApp, title: str) -> str | None:
    return next((sid for sid, view in app.pool.sessions.items() if view.title == title), None)


def request_of(app: DashboardApp, title: str, kind: type[PermissionRequest] | type[QuestionRequest]) -> str | None:
    sid = session_id(app, title)
    store = app.pool.permissions if kind is PermissionRequest else app.pool.questions
    return next((rid for rid, request in store.items() if request.sessionID == sid), None)


async def capture(app: DashboardApp, pilot: Pilot[None], out: Path) -> list[Path]:
    """Drive the demo to each picture and save it; returns the SVGs written."""
    titles = [title for title, _ in DEMO_SESSIONS]
    counting, readme, colour = "Count slowly to forty", "Fix the typo in the README", "Ask me which colour to use"
    notes = "Summarise the project notes"
    assert {counting, readme, colour, notes} <= set(titles), "the demo changed: update this script"
    saved: list[Path] = []

    def save(name: str) -> None:
        app.save_screenshot(f"{name}.svg", str(out))
        saved.append(out / f"{name}.svg")
        print(f"  {out / name}.svg", file=sys.stderr)

    await until(pilot, app.ready.is_set, "OpenCode to start")
    await until(pilot, lambda: all(session_id(app, title) for title in titles), "the demo sessions, titled")
    await until(pilot, lambda: request_of(app, readme, PermissionRequest), "the README edit to ask for permission")
    await until(pilot, lambda: request_of(app, colour, QuestionRequest), "the colour question")
    await until(pilot, lambda: len(app.pool.permissions) >= 2, "both permissions (the edit and the command)")

    # The dashboard: a session that read a file and answered, with the README edit in the inbox.
    reader = session_id(app, notes)
    assert reader is not None
    view = app.pool.sessions[reader]
    await until(pilot, lambda: view.tool_calls and view.text_complete, "the notes to be read and summarised")
    await until(pilot, lambda: len(app.pool.sessions[session_id(app, counting) or ""].text) > 40, "the count")
    app.session_list.select(reader)
    edit = request_of(app, readme, PermissionRequest)
    assert edit is not None
    app.inbox.select(edit)
    await until(pilot, lambda: app.inbox.highlighted_id == edit, "the edit highlighted in the inbox")
    await settle(pilot)
    save("dashboard")

    # The question: open it from the inbox, pick the first option.
    question = request_of(app, colour, QuestionRequest)
    assert question is not None
    app.inbox.select(question)
    await until(pilot, lambda: app.inbox.highlighted_id == question, "the question highlighted")
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, QuestionScreen), "the question dialog")
    await pilot.press("1")
    await settle(pilot)
    save("question")
    await pilot.press("escape")
    await until(pilot, lambda: not isinstance(app.screen, QuestionScreen), "the dialog to close")

    await pilot.press("question_mark")
    await until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help screen")
    await settle(pilot)
    save("help")
    await pilot.press("escape")
    return saved


def to_png(svg: Path) -> Path | None:
    """PNG beside the SVG with rsvg-convert (librsvg), if it is installed."""
    converter = shutil.which("rsvg-convert")
    if converter is None:
        return None
    # librsvg collapses the non-breaking spaces Textual pads cells with unless told to keep
    # whitespace; the SVG itself renders fine in browsers either way.
    text = svg.read_text().replace("<svg ", '<svg xml:space="preserve" ', 1)
    png = svg.with_suffix(".png")
    with tempfile.NamedTemporaryFile("w", suffix=".svg", delete=False) as tmp:
        tmp.write(text)
    try:
        subprocess.run([converter, "-w", str(PNG_WIDTH), tmp.name, "-o", str(png)], check=True)
    finally:
        Path(tmp.name).unlink()
    return png


async def run(out: Path, size: tuple[int, int]) -> list[Path]:
    demo = DemoEnvironment.create()
    registry = Registry.for_pool("default", demo.env)
    try:
        spec = ServerSpec(cwd=demo.project, config_content=demo.config, env=demo.env)
        service = PoolService(spec)
        actions = PoolActions(service, registry)

        def on_ready(app: DashboardApp) -> None:
            app.run_worker(start_demo_sessions(actions, demo.project), group="demo")

        app = DashboardApp(service, actions, registry, bell=False, on_ready=on_ready, owns_service=True)
        async with app.run_test(size=size) as pilot:
            return await capture(app, pilot, out)
    finally:
        kill_all_managed()
        registry.close()
        demo.close()
        shutil.rmtree(demo.project.parent, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "screenshots", help="where to write (default: screenshots/)")
    parser.add_argument("--size", default="140x40", help="terminal size, COLUMNSxROWS (default: 140x40)")
    args = parser.parse_args(argv)
    columns, rows = (int(n) for n in args.size.lower().split("x"))
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    print(f"Running the demo at {columns}x{rows}; writing to {args.out}", file=sys.stderr)
    svgs = asyncio.run(run(args.out, (columns, rows)))
    for svg in svgs:
        png = to_png(svg)
        if png is not None:
            print(f"  {png}", file=sys.stderr)
    if shutil.which("rsvg-convert") is None:
        print("rsvg-convert not found: SVGs only (install librsvg2-bin for PNGs)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
