"""The live pool: one in-memory truth per process about every session of an OpenCode server.

It is fed by two sources that can disagree for a moment: the event stream (fast, but nothing
is replayed after a reconnect) and REST resyncs (complete, but a snapshot of the past). The
reducer is therefore written so that both can be applied in any order: statuses start as
*unknown* until observed, and a request that was answered while a resync was in flight is
not brought back by that resync's stale list.

Consumers never poll it. The dashboard subscribes to coalesced :class:`Changes` (at most one
notification per event-loop turn, whatever the event rate); the ``run`` tool opens a
:meth:`Pool.watch` on one session and reads that session's events in order.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

from orchestrator_tui.opencode.models import (
    Event,
    MessageUpdated,
    PartDelta,
    PartUpdated,
    PermissionAsked,
    PermissionReplied,
    PermissionRequest,
    QuestionAsked,
    QuestionRejected,
    QuestionReplied,
    QuestionRequest,
    Session,
    SessionCreated,
    SessionDeleted,
    SessionError,
    SessionIdle,
    SessionStatus,
    SessionStatusEvent,
    SessionUpdated,
    event_session_id,
)
from orchestrator_tui.pool.projects import project_root

log = logging.getLogger(__name__)

#: The name of a pool's own server (managed, or the one ``--attach`` names); the servers the pool
#: follows besides it have names of their own (``pool.servers``).
PRIMARY = "local"

#: What a session asks of a human: a permission or a question.
AskedRequest = TypeVar("AskedRequest", PermissionRequest, QuestionRequest)
_K = TypeVar("_K")
_V = TypeVar("_V")


def _remember(memory: OrderedDict[_K, _V], key: _K, value: _V) -> None:
    """Keep ``key`` as the newest entry of a bounded memory: past :data:`MAX_RESOLVED` entries,
    the oldest go (what the pool remembers of requests and sessions must not grow forever)."""
    memory[key] = value
    memory.move_to_end(key)
    while len(memory) > MAX_RESOLVED:
        memory.popitem(last=False)

#: How many tool calls the pool remembers per session (the dashboard's timeline).
MAX_TOOL_CALLS = 50
#: Streamed text kept per session; older text is dropped from the front.
MAX_TEXT_CHARS = 64_000
#: Answered request ids remembered so a stale resync cannot resurrect them.
MAX_RESOLVED = 4096


class Status(StrEnum):
    """A session's status as the pool knows it. ``UNKNOWN`` until observed."""

    UNKNOWN = "unknown"
    IDLE = "idle"
    BUSY = "busy"
    RETRY = "retry"


@dataclass(slots=True)
class ToolCall:
    call_id: str
    tool: str
    status: str
    title: str | None = None
    started_at: int | None = None
    completed_at: int | None = None
    error: str | None = None
    message_id: str | None = None
    input: dict[str, object] | None = None


@dataclass(slots=True)
class SessionView:
    """Everything the pool knows about one session."""

    id: str
    info: Session | None = None
    #: The server the session lives on (:data:`PRIMARY` unless the pool follows others).
    server: str = PRIMARY
    status: Status = Status.UNKNOWN
    retry: SessionStatus | None = None
    last_error: dict[str, object] | None = None
    #: Wall-clock ms of the last activity seen (event or status change).
    last_activity: int | None = None
    tool_calls: OrderedDict[str, ToolCall] = field(default_factory=OrderedDict)
    #: Id of the assistant message whose text is in ``_text``.
    text_message_id: str | None = None
    #: The text message is finished (its ``message.updated`` carried ``time.completed``).
    text_complete: bool = False
    #: ``Pool.connects`` when the text message started: equal to the current value means the
    #: whole message was seen on the live stream, so ``text`` is its complete text.
    text_connection: int = -1
    #: When the pool first heard of the session (monotonic): a resync's list asked for before
    #: then cannot say the session is gone.
    born: float = field(default_factory=time.monotonic)
    _text: dict[str, list[str]] = field(default_factory=dict)
    _part_kinds: dict[str, str] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return self.info.title if self.info else ""

    @property
    def directory(self) -> str | None:
        return self.info.directory if self.info else None

    @property
    def project(self) -> str | None:
        """The session's project: its worktree root (a subdirectory's session belongs to its repo)."""
        return project_root(self.info.directory, self.info.path) if self.info else None

    @property
    def text(self) -> str:
        """The streamed text of the latest assistant message (text parts only, in order)."""
        return "".join("".join(chunks) for chunks in self._text.values())

    def part_kind(self, part_id: str | None) -> str | None:
        return self._part_kinds.get(part_id) if part_id else None


@dataclass(frozen=True, slots=True)
class Changes:
    """What changed since the previous notification (coalesced)."""

    sessions: frozenset[str] = frozenset()
    removed: frozenset[str] = frozenset()
    requests: bool = False
    connection: bool = False


ChangeListener = Callable[[Changes], None]


@dataclass(frozen=True, slots=True)
class LostRequest:
    """A request that was pending on a server that went away: OpenCode keeps them in memory only."""

    request: PermissionRequest | QuestionRequest
    #: Wall-clock ms when the pool found it gone with its server.
    lost_at: int

    def describe(self) -> str:
        """``the bash request per_… (git push)``, for messages."""
        req = self.request
        if isinstance(req, PermissionRequest):
            what = f" ({', '.join(req.patterns)})" if req.patterns else ""
            return f"the {req.permission} permission request '{req.id}'{what}"
        return f"the question '{req.id}'"


class SessionWatch:
    """An ordered feed of one session's events, opened before work is dispatched."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.queue: asyncio.Queue[Event] = asyncio.Queue()

    async def get(self) -> Event:
        return await self.queue.get()


class Pool:
    def __init__(self) -> None:
        self.sessions: dict[str, SessionView] = {}
        #: Pending requests, oldest first (insertion order).
        self.permissions: dict[str, PermissionRequest] = {}
        self.questions: dict[str, QuestionRequest] = {}
        self._resolved: OrderedDict[str, None] = OrderedDict()
        #: Sessions forgotten, and when (monotonic): a list asked for before then must not
        #: bring one back (bounded like ``_resolved``).
        self._forgotten: OrderedDict[str, float] = OrderedDict()
        #: When the stream announced each request (monotonic; bounded like ``_resolved``): a
        #: snapshot asked for before then is missing it because it is older, not because the
        #: request is gone.
        self._announced: OrderedDict[str, float] = OrderedDict()
        self._watches: dict[str, list[SessionWatch]] = {}
        self._listeners: list[ChangeListener] = []
        self._dirty: set[str] = set()
        self._removed: set[str] = set()
        self._dirty_requests = False
        self._dirty_connection = False
        self._flush_scheduled = False
        self.connection_state = "disconnected"
        self.connection_detail = ""
        #: Every server's stream state and detail, by name (the primary's included).
        self.servers: dict[str, tuple[str, str]] = {}
        #: Directories the event stream has carried events of (directory → when, epoch s): their
        #: OpenCode instances are live, so a resync re-reads their statuses and requests.
        self.directories_active: dict[str, float] = {}
        #: Incremented on every (re)connect of the event stream.
        self.connects = 0
        self.events_seen = 0
        self.resyncs = 0
        #: Incremented whenever the pool follows another server (the old one died, was restarted,
        #: or was replaced): a run that dispatched before a change knows its turn may be gone.
        self.server_generation = 0
        #: Set by :meth:`server_replaced` until the next resync decides what was lost.
        self._replaced = False
        #: Requests that were pending on a server that went away: id → (request, when, epoch ms).
        self.lost: OrderedDict[str, LostRequest] = OrderedDict()

    # ------------------------------------------------------------------ reads

    def session(self, session_id: str) -> SessionView:
        view = self.sessions.get(session_id)
        if view is None:
            view = self.sessions[session_id] = SessionView(session_id)
        return view

    def pending_for(self, session_id: str) -> tuple[list[PermissionRequest], list[QuestionRequest]]:
        return (
            [p for p in self.permissions.values() if p.sessionID == session_id],
            [q for q in self.questions.values() if q.sessionID == session_id],
        )

    def final_text(self, session_id: str, message_id: str | None = None) -> tuple[bool, str | None]:
        """The text of the session's last assistant message, if the pool knows it for certain.

        ``(True, text)`` when that message started and finished while the stream was connected,
        without a reconnect since, so every part of it went through the reducer; the text is
        ``None`` when blank (the same rule as the REST extraction). ``(False, None)`` otherwise,
        and the caller asks OpenCode instead. With ``message_id``, only that message's text is
        known: a run asks for the reply to its own prompt, never for whatever came last.
        """
        view = self.sessions.get(session_id)
        if (
            view is None
            or not view.text_complete
            or (message_id is not None and view.text_message_id != message_id)
            or self.connection_state != "connected"
            or view.text_connection != self.connects
        ):
            return False, None
        text = view.text
        return True, (text if text.strip() else None)

    def stream_epoch(self) -> int | None:
        """Which connection of the event stream is live (None: none is).

        Equal values at two moments mean no event was missed in between: everything OpenCode
        published went through the reducer and to every watch, in order.
        """
        return self.connects if self.connection_state == "connected" else None

    def needs_input(self, session_id: str) -> bool:
        perms, questions = self.pending_for(session_id)
        return bool(perms or questions)

    # ------------------------------------------------------------------ subscriptions

    def subscribe(self, listener: ChangeListener) -> Callable[[], None]:
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    @contextmanager
    def watch(self, session_id: str) -> Iterator[SessionWatch]:
        watch = SessionWatch(session_id)
        self._watches.setdefault(session_id, []).append(watch)
        try:
            yield watch
        finally:
            watches = self._watches.get(session_id, [])
            if watch in watches:
                watches.remove(watch)
            if not watches:
                self._watches.pop(session_id, None)

    def _touch(self, session_id: str) -> None:
        self._dirty.add(session_id)
        self._schedule()

    def _touch_requests(self) -> None:
        self._dirty_requests = True
        self._schedule()

    def _schedule(self) -> None:
        if self._flush_scheduled or not self._listeners:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._flush_scheduled = True
        loop.call_soon(self.flush)

    def flush(self) -> None:
        """Deliver one coalesced notification for everything changed since the last one."""
        self._flush_scheduled = False
        if not (self._dirty or self._removed or self._dirty_requests or self._dirty_connection):
            return
        changes = Changes(
            sessions=frozenset(self._dirty),
            removed=frozenset(self._removed),
            requests=self._dirty_requests,
            connection=self._dirty_connection,
        )
        self._dirty.clear()
        self._removed.clear()
        self._dirty_requests = self._dirty_connection = False
        for listener in list(self._listeners):
            try:
                listener(changes)
            except Exception:
                log.exception("pool listener failed")

    def set_connection(self, state: str, detail: str = "", *, server: str = PRIMARY) -> None:
        """A server's event stream changed state (``connected``, ``disconnected``, ``down``...).

        The primary's is :attr:`connection_state`, what runs and the status line follow; every
        server's is in :attr:`servers`. A session whose server is not connected is unreachable
        (:meth:`reachable`): its rows are repainted when that flips.
        """
        before = self.servers.get(server, ("", ""))[0] == "connected"
        self.servers[server] = (state, detail)
        if server == PRIMARY:
            if state == "connected":
                self.connects += 1
            self.connection_state = state
            self.connection_detail = detail
        if (state == "connected") != before and len(self.servers) > 1:
            self._dirty |= {sid for sid, view in self.sessions.items() if view.server == server}
        self._dirty_connection = True
        self._schedule()

    def reachable(self, session_id: str) -> bool:
        """Whether the session's server is connected (always true while the pool has one server:
        its state is the status line's business)."""
        if len(self.servers) < 2:
            return True
        view = self.sessions.get(session_id)
        server = view.server if view is not None else PRIMARY
        return self.servers.get(server, ("", ""))[0] == "connected"

    # ------------------------------------------------------------------ the reducer

    def apply(self, directory: str | None, event: Event, server: str = PRIMARY) -> None:
        """Fold one event of ``server`` into the model, then hand it to that session's watchers."""
        self.events_seen += 1
        if directory is not None and server == PRIMARY:
            self.directories_active[directory] = time.time()
        sid = event_session_id(event)
        if server != PRIMARY and sid is not None:
            view = self.sessions.get(sid)
            if view is None or view.server != server:
                self.session(sid).server = server
        if isinstance(event, PartDelta):
            self._on_delta(event)
        elif isinstance(event, PartUpdated):
            self._on_part(event)
        elif isinstance(event, MessageUpdated):
            self._on_message(event)
        elif isinstance(event, SessionStatusEvent):
            self._set_status(event.properties.sessionID, event.properties.status)
        elif isinstance(event, SessionIdle):
            self._set_status(event.properties.sessionID, None)
        elif isinstance(event, SessionCreated | SessionUpdated):
            view = self.session(event.properties.info.id)
            view.info = event.properties.info
            self._touch(view.id)
        elif isinstance(event, SessionDeleted):
            self.forget(event.properties.info.id)
        elif isinstance(event, SessionError):
            if sid is not None:
                view = self.session(sid)
                view.last_error = event.properties.error
                self._touch(sid)
        elif isinstance(event, PermissionAsked):
            self._asked(self.permissions, event.properties)
        elif isinstance(event, QuestionAsked):
            self._asked(self.questions, event.properties)
        elif isinstance(event, PermissionReplied | QuestionReplied | QuestionRejected):
            self.resolve_request(event.properties.requestID)
        if sid is not None:
            watches = self._watches.get(sid)
            if watches:
                for watch in watches:
                    watch.queue.put_nowait(event)

    def _asked(self, pending: dict[str, AskedRequest], request: AskedRequest) -> None:
        """A permission or question asked: pending until answered (unless answered already)."""
        if request.id not in self._resolved:
            pending[request.id] = request
            _remember(self._announced, request.id, time.monotonic())
            self._touch_requests()
            self._touch(request.sessionID)

    def resolve_request(self, request_id: str) -> None:
        """Forget a pending request, and remember that it is answered."""
        _remember(self._resolved, request_id, None)
        req = self.permissions.pop(request_id, None) or self.questions.pop(request_id, None)
        if req is not None:
            self._touch_requests()
            self._touch(req.sessionID)

    def forget(self, session_id: str) -> None:
        """Drop a session (deleted) and its pending requests."""
        self.sessions.pop(session_id, None)
        _remember(self._forgotten, session_id, time.monotonic())
        for store in (self.permissions, self.questions):
            for rid in [rid for rid, r in store.items() if r.sessionID == session_id]:
                del store[rid]
                self._dirty_requests = True
        self._dirty.discard(session_id)
        self._removed.add(session_id)
        self._schedule()

    def _set_status(self, session_id: str, status: SessionStatus | None) -> None:
        view = self.session(session_id)
        kind = status.type if status is not None else "idle"
        new = Status.IDLE if kind == "idle" else Status.RETRY if kind == "retry" else Status.BUSY
        view.retry = status if new is Status.RETRY else None
        if new is not Status.IDLE:
            view.last_activity = _now_ms()
        if view.status is not new or new is Status.RETRY:
            view.status = new
            self._touch(session_id)

    def _on_delta(self, event: PartDelta) -> None:
        p = event.properties
        view = self.session(p.sessionID)
        view.last_activity = _now_ms()
        if p.delta and (p.field in (None, "text")) and view._part_kinds.get(p.partID or "", "text") == "text":
            if p.messageID and p.messageID != view.text_message_id:
                self._start_text(view, p.messageID)
            chunks = view._text.setdefault(p.partID or "", [])
            chunks.append(p.delta)
            if len(chunks) > 512:  # keep appends O(1) amortised and memory bounded
                joined = "".join(chunks)
                chunks[:] = [joined[-MAX_TEXT_CHARS:]]
        self._touch(p.sessionID)

    def _start_text(self, view: SessionView, message_id: str) -> None:
        view.text_message_id = message_id
        view.text_complete = False
        view.text_connection = self.connects if self.connection_state == "connected" else -1
        view._text.clear()
        # Part kinds outlive the message: a delta can arrive before its message.updated, and
        # a reasoning part must stay known as reasoning. Bounded instead of cleared.
        if len(view._part_kinds) > 256:
            view._part_kinds.clear()

    def _on_part(self, event: PartUpdated) -> None:
        part = event.properties.part
        sid = event.properties.sessionID or part.sessionID
        if sid is None:
            return
        view = self.session(sid)
        view.last_activity = _now_ms()
        if part.id:
            view._part_kinds[part.id] = part.type
        if part.type == "text" and part.id and part.messageID:
            if part.messageID == view.text_message_id and part.text is not None:
                view._text[part.id] = [part.text]
        elif part.type == "tool" and part.callID:
            self._on_tool(view, part.callID, part)
        self._touch(sid)

    def _on_tool(self, view: SessionView, call_id: str, part: object) -> None:
        from orchestrator_tui.opencode.models import Part

        assert isinstance(part, Part)
        state = part.state
        call = view.tool_calls.get(call_id)
        if call is None:
            call = view.tool_calls[call_id] = ToolCall(call_id=call_id, tool=part.tool or "?", status="pending")
            while len(view.tool_calls) > MAX_TOOL_CALLS:
                view.tool_calls.popitem(last=False)
        call.message_id = part.messageID
        if state is not None:
            call.status = state.status
            call.title = state.title or call.title
            call.error = state.error
            if state.input:
                call.input = state.input
            if state.time is not None:
                call.started_at = state.time.start
                call.completed_at = state.time.end

    def _on_message(self, event: MessageUpdated) -> None:
        info = event.properties.info
        sid = info.sessionID or event.properties.sessionID
        if sid is None:
            return
        view = self.session(sid)
        view.last_activity = _now_ms()
        if info.role == "assistant" and info.id != view.text_message_id and info.time.completed is None:
            self._start_text(view, info.id)
        if info.role == "assistant" and info.id == view.text_message_id and info.time.completed is not None:
            view.text_complete = True
        if info.error:
            view.last_error = info.error
        self._touch(sid)

    # ------------------------------------------------------------------ resync

    def load_sessions(
        self,
        sessions: Iterable[Session],
        *,
        complete: bool = False,
        server: str = PRIMARY,
        asked: float | None = None,
    ) -> None:
        """Merge a REST session list of ``server``; ``complete``: every session the pool tracks there.

        ``asked`` (monotonic): when the list was asked for. A session the stream brought in since
        then is missing from the list because it is newer, not because it is gone; one deleted
        since then is in the list because the list is older, and stays gone.
        """
        seen = set()
        forgotten = self._forgotten
        for info in sessions:
            if asked is not None and forgotten.get(info.id, -math.inf) >= asked:
                continue
            seen.add(info.id)
            view = self.session(info.id)
            view.server = server
            if view.info is None or (info.time.updated or 0) >= (view.info.time.updated or 0):
                view.info = info
                self._dirty.add(info.id)
        if complete:
            gone = [
                sid
                for sid, v in self.sessions.items()
                if sid not in seen
                and v.info is not None
                and v.server == server
                and (asked is None or v.born < asked)
            ]
            for sid in gone:
                self.forget(sid)
        self._schedule()

    def load_statuses(
        self,
        statuses: dict[str, SessionStatus],
        *,
        directories: Collection[str] | None = None,
        server: str = PRIMARY,
    ) -> None:
        """A complete status map: every known session absent from it is idle (docs/opencode-behaviour.md).

        ``directories``: the map covers only these directories' instances (OpenCode keeps statuses
        per directory); sessions elsewhere keep the status the events gave them.

        A tool call still "running" (or "pending") in a session that is idle now will never end:
        its turn stopped without finishing it (the server that ran it went away). It is shown as
        interrupted rather than running forever.
        """
        for sid, view in self.sessions.items():
            status = statuses.get(sid)
            if status is None and view.status is not Status.IDLE and self._covers(directories, sid, server):
                self._set_status(sid, None)
        for sid, status in statuses.items():
            self._set_status(sid, status)
        for sid, view in self.sessions.items():
            if sid in statuses or not self._covers(directories, sid, server):
                continue
            for call in view.tool_calls.values():
                if call.status in ("running", "pending"):
                    call.status = "interrupted"
                    self._touch(sid)

    def _covers(self, directories: Collection[str] | None, session_id: str, server: str) -> bool:
        """Whether a snapshot of ``server`` (per directory, or of everything: None) speaks for this session."""
        view = self.sessions.get(session_id)
        if view is None:
            return directories is None and server == PRIMARY
        return view.server == server and (directories is None or view.directory in directories)

    def server_replaced(self) -> None:
        """The pool now follows another server (or the same one, back after a gap).

        What this means is settled by the next resync: requests the server no longer lists
        were lost with the server that held them (:attr:`lost`), and tool calls still running in
        sessions that are idle now were interrupted.
        """
        self.server_generation += 1
        self._replaced = True

    def lost_for(self, session_id: str) -> list[LostRequest]:
        return [lost for lost in self.lost.values() if lost.request.sessionID == session_id]

    def load_requests(
        self,
        permissions: list[PermissionRequest] | None,
        questions: list[QuestionRequest] | None,
        *,
        permission_directories: Collection[str] | None = None,
        question_directories: Collection[str] | None = None,
        server: str = PRIMARY,
        asked: float | None = None,
    ) -> None:
        """Replace the pending sets with a REST snapshot, minus anything answered meanwhile.

        ``asked`` (monotonic): when the snapshot was asked for; a request the stream announced
        since then is kept, although the snapshot lacks it.

        ``None`` means "could not be listed": that set is left as the events made it.
        ``permission_directories``/``question_directories``: that snapshot covers only the sessions
        of these directories (requests are listed per directory); a request elsewhere is kept,
        never dropped unseen. After
        :meth:`server_replaced`, a request missing from the snapshot was not answered: it went
        away with the server, and is kept in :attr:`lost` so that whoever asks about it is told.
        """
        replaced = False
        if server == PRIMARY:
            replaced, self._replaced = self._replaced, False
        for store, fresh, directories in (
            (self.permissions, permissions, permission_directories),
            (self.questions, questions, question_directories),
        ):
            if fresh is None:
                continue
            fresh_ids = {r.id for r in fresh}
            announced = self._announced
            gone = [
                rid
                for rid, r in store.items()
                if rid not in fresh_ids
                and self._covers(directories, r.sessionID, server)
                and (asked is None or announced.get(rid, -math.inf) < asked)
            ]
            for rid in gone:
                req = store.pop(rid)
                if replaced:
                    _remember(self.lost, rid, LostRequest(req, _now_ms()))
                self._dirty.add(req.sessionID)
                self._dirty_requests = True
            for req in fresh:
                if req.id in self._resolved or req.id in store:
                    continue
                store[req.id] = req  # type: ignore[index,assignment]
                self._dirty.add(req.sessionID)
                self._dirty_requests = True
        self._schedule()


def _now_ms() -> int:
    return int(time.time() * 1000)
