"""Reaching the human away from the dashboard: a desktop notification through the terminal, and
the user's own ``--notify-command``.

**Through the terminal.** Several terminals turn an OSC sequence into a desktop notification,
which reaches the person through SSH and (with passthrough on) tmux, with nothing installed.
They disagree on which sequence, and a terminal that does not know one may print it, so one is
sent only to a terminal known to read it, decided from what the environment says the terminal is
(:func:`terminal_protocol`). The text comes from models and agents (session titles, commands): it
is reduced to visible characters (every control character, ESC and BEL included, becomes its
visible escape, :func:`~orchestrator_tui.safetext.visible`), so nothing in it can end the
sequence early and send the rest to the terminal as commands; and it is kept short.

**The notify command** is the user's own shell command (trusted), run as ``/bin/sh -c CMD`` with
one JSON object describing the request on its stdin. Nothing from the request goes into its
arguments or environment. Runs are serialized: one at a time, in the order the requests started
waiting, each stopped (its whole process group) after :data:`NOTIFY_TIMEOUT` seconds; so a burst
of requests never starts more than one process, and every request's JSON still reaches the
command. A command that fails, hangs or is missing is reported (``on_failure``) and never blocks
or ends anything else.

No Textual here: :mod:`.attention` decides when to call for attention and writes through the
app's driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import os
import signal
from collections.abc import Callable, Mapping
from typing import Any, Literal

from orchestrator_tui.opencode.models import PermissionRequest, QuestionRequest
from orchestrator_tui.safetext import visible
from orchestrator_tui.tui.render import permission_summary, question_summary

log = logging.getLogger(__name__)

DesktopProtocol = Literal["osc9", "osc777", "osc99"]
PROTOCOLS: tuple[DesktopProtocol, ...] = ("osc9", "osc777", "osc99")
#: Choose the sequence (``osc9``, ``osc777``, ``osc99``) or ``off``, instead of the detection.
PROTOCOL_ENV = "ORCHESTRATOR_TUI_DESKTOP_NOTIFY"
#: The longest title and body sent (notification banners show little more).
TITLE_LIMIT = 40
BODY_LIMIT = 120
#: A notify command still running after this many seconds is stopped (its process group killed).
NOTIFY_TIMEOUT = 10.0
#: The end of the command's stderr kept for the report of a failure.
STDERR_TAIL = 300


def terminal_protocol(env: Mapping[str, str]) -> DesktopProtocol | None:
    """The notification sequence the terminal reads, or None when it is not known to read one.

    Decided by the variables terminals set for their children (which tmux passes on to the
    shells it starts, so the outer terminal is still recognised inside tmux). iTerm2 reads OSC 9;
    WezTerm, Ghostty, foot, Windows Terminal, rxvt-unicode and Fedora's VTE (GNOME Terminal;
    upstream VTE ignores it silently) read OSC 777, which has a title; kitty reads its own OSC 99.
    ``ORCHESTRATOR_TUI_DESKTOP_NOTIFY`` overrides: one of those three names, or ``off``.
    """
    forced = env.get(PROTOCOL_ENV, "").strip().lower()
    if forced in ("off", "none", "no", "0"):
        return None
    for protocol in PROTOCOLS:
        if forced == protocol:
            return protocol
    program = env.get("TERM_PROGRAM", "").lower()
    term = env.get("TERM", "").lower()
    if env.get("KITTY_WINDOW_ID") or program == "kitty" or "kitty" in term:
        return "osc99"
    if env.get("ITERM_SESSION_ID") or program == "iterm.app" or env.get("LC_TERMINAL", "").lower() == "iterm2":
        return "osc9"
    if env.get("WEZTERM_PANE") or env.get("WEZTERM_EXECUTABLE") or program == "wezterm":
        return "osc777"
    if env.get("GHOSTTY_RESOURCES_DIR") or env.get("GHOSTTY_BIN_DIR") or program == "ghostty" or "ghostty" in term:
        return "osc777"
    if term.startswith(("foot", "rxvt-unicode")) or env.get("WT_SESSION"):
        return "osc777"
    vte = env.get("VTE_VERSION", "")
    if vte.isdigit() and int(vte) >= 4600:
        return "osc777"
    return None


def _clean(text: str, limit: int) -> str:
    """Visible characters only (no ESC, BEL or any other control, no bidi override), at most
    ``limit`` of them."""
    text = visible(" ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def osc_notification(protocol: DesktopProtocol, title: str, body: str, *, tmux: bool = False) -> str:
    """The bytes (as text) that make the terminal show a notification of ``title`` and ``body``.

    ``tmux``: wrapped for tmux's passthrough (``ESC P tmux; … ESC \\``, every ESC inside doubled),
    which tmux 3.3+ lets through with ``set -g allow-passthrough on``.
    """
    title, body = _clean(title, TITLE_LIMIT), _clean(body, BODY_LIMIT)
    if protocol == "osc777":
        # The title ends at the next ";": the body may hold more, the title may not.
        sequence = f"\x1b]777;notify;{title.replace(';', ',')};{body}\x07"
    elif protocol == "osc99":
        sequence = f"\x1b]99;;{title}: {body}\x1b\\"
    else:
        sequence = f"\x1b]9;{title}: {body}\x07"
    if tmux:
        sequence = "\x1bPtmux;" + sequence.replace("\x1b", "\x1b\x1b") + "\x1b\\"
    return sequence


def request_summary(request: PermissionRequest | QuestionRequest, session_title: str) -> str:
    """One line, escaped for display: ``fix the bug: Run command: git push``."""
    what = permission_summary(request) if isinstance(request, PermissionRequest) else question_summary(request)
    return f"{visible(session_title)}: {what}"


def request_payload(
    request: PermissionRequest | QuestionRequest,
    *,
    session_title: str,
    directory: str | None,
    server: str | None,
    pool: str | None,
    now: datetime.datetime | None = None,
) -> dict[str, Any]:
    """The JSON object a notify command reads on stdin.

    Every text in it (titles, patterns, questions) is the model's or the agent's, exact: use it
    as data (``jq -r``, an argument), never as code. ``summary`` is the same as one line with
    control characters shown as escapes, ready for a notification.
    """
    when = (now or datetime.datetime.now(datetime.UTC)).isoformat(timespec="seconds")
    payload: dict[str, Any] = {
        "kind": "permission" if isinstance(request, PermissionRequest) else "question",
        "request_id": request.id,
        "session_id": request.sessionID,
        "session_title": session_title,
        "directory": directory,
        "summary": request_summary(request, session_title),
    }
    if isinstance(request, PermissionRequest):
        payload["permission"] = request.permission
        payload["patterns"] = list(request.patterns)
    else:
        payload["question"] = request.questions[0].question if request.questions else ""
        payload["questions"] = [
            {"header": q.header, "question": q.question, "options": [o.label for o in q.options]}
            for q in request.questions
        ]
    payload.update(server=server, pool=pool, time=when)
    return payload


class NotifyCommand:
    """Runs the user's ``--notify-command`` once per request, one run at a time.

    ``submit`` never blocks: it queues the JSON and returns. A worker task (started on the first
    submit, inside the running event loop) runs ``/bin/sh -c CMD`` with the JSON on stdin, its
    output discarded but for the end of stderr, in a process group of its own that is killed
    after ``timeout`` seconds and when the dashboard stops.
    """

    def __init__(
        self, command: str, *, on_failure: Callable[[str], None] | None = None, timeout: float = NOTIFY_TIMEOUT
    ) -> None:
        self.command = command
        self.on_failure = on_failure
        self.timeout = timeout
        self._queue: asyncio.Queue[bytes] | None = None
        self._task: asyncio.Task[None] | None = None
        self._proc: asyncio.subprocess.Process | None = None
        #: Runs that ended with status 0, and runs that did not.
        self.succeeded = 0
        self.failed = 0

    def submit(self, payload: Mapping[str, Any]) -> None:
        data = (json.dumps(payload, ensure_ascii=True) + "\n").encode()
        if self._queue is None or self._task is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._work(self._queue), name="notify-command")
        self._queue.put_nowait(data)

    @property
    def pending(self) -> int:
        """Requests whose run has not started yet."""
        return self._queue.qsize() if self._queue is not None else 0

    async def _work(self, queue: asyncio.Queue[bytes]) -> None:
        while True:
            data = await queue.get()
            try:
                await self._run(data)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not end the worker: later requests still go out
                log.exception("running the notify command failed")

    async def _run(self, data: bytes) -> None:
        try:
            proc = await asyncio.create_subprocess_exec(
                "/bin/sh",
                "-c",
                self.command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own group: a timeout kills what it started too
            )
        except OSError as exc:
            self._failed(f"could not be started: {exc.strerror or exc}")
            return
        self._proc = proc
        try:
            try:
                _, err = await asyncio.wait_for(proc.communicate(data), self.timeout)
            except TimeoutError:
                _kill_group(proc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), 5.0)
                self._failed(f"was still running after {self.timeout:g} s and was stopped")
                return
        finally:
            if proc.returncode is None:  # cancelled (the dashboard is stopping): nothing may outlive us
                _kill_group(proc)
            self._proc = None
        if proc.returncode == 0:
            self.succeeded += 1
            return
        tail = err.decode("utf-8", "replace").strip()[-STDERR_TAIL:] if err else ""
        self._failed(f"exited with status {proc.returncode}" + (f": {tail}" if tail else ""))

    def _failed(self, why: str) -> None:
        self.failed += 1
        text = f"the notify command {why}"
        log.warning("%s (command: %s)", text, self.command)
        if self.on_failure is not None:
            try:
                self.on_failure(text)
            except Exception:
                log.exception("notify command failure listener failed")

    async def stop(self) -> None:
        """Stop the worker and kill a run in progress; requests not yet run are dropped (logged)."""
        task, self._task = self._task, None
        if self._proc is not None:
            _kill_group(self._proc)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.pending:
            log.info("the dashboard stopped: %d notify command run(s) not done", self.pending)
        self._queue = None


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
