"""The ``run`` state machine, on top of the live pool.

The reference opens one SSE connection per call; here the process-wide pool already holds
the stream, so a run opens a :meth:`Pool.watch` on its session *before* dispatching work
(subscribe-before-dispatch) and reads that session's events in order. A 1 s REST poll runs
beside it as the safety net for anything the stream misses (a reconnect, a dead stream), one
round shared by every run waiting at the time (:class:`SharedPoll`).

Deliberate differences from 0.6.3, each because the reference is wrong against 1.18.33:
``session.idle`` is gated like a polled idle (stale idles from an earlier
turn do not end a new one); ``session.status`` busy/retry events count as activity; reasoning
deltas are kept out of ``partial_response``; the command is never sent twice; timeouts state
the configured durations and 0 means "no limit".

A prompt's turn ends by correlation, not by a timer. The prompt (and a command) carries a
message id we choose; the turn is over when an assistant message answering that id is
complete and the session is idle after it (:class:`Turn`). The reference's idle grace (accept
an idle after 1 s even without having seen the session busy) returned ``completed`` with no
response, or another turn's, whenever a loaded OpenCode took longer than that to start the
turn (30 to 92 of 100 concurrent runs on this project's 2-core machine). The grace remains
for what has no message of ours to follow: ``wait_for_activity`` continuations, and a command
whose POST already returned.

A command is followed by its lineage, as in 0.7.10: only assistant messages whose parent is the
command's message are its activity, progress and partial response (:class:`CommandLineage`), so
another message streaming in the same session is not taken for the command's. Its POST lasts the
whole turn; losing that connection once OpenCode shows the command started is only a warning.

A permission the run meets normally ends it with ``permission_required``. A
:data:`PermissionGate` may instead *hold* it: someone else is about to answer it (a human the
approval policy reserves it for, with the dashboard attached; a standing rule), so the run keeps
waiting, reports progress, and goes on with the turn once the request is answered. The
inactivity timeout is suspended while a hold lasts; the hold has its own timeout.

Over 600 lines, nearly all of them :class:`RunMachine`: its states share the watch, the poll, the
turn and the deadlines, so splitting the class would pass all of them back and forth. What is a
concern of its own lives beside it: reading the transcript (:mod:`.transcript`: :class:`Turn`,
the answer's text), the shared REST poll (:mod:`.poll`), and OpenCode's requests as the run's
outputs (:mod:`.views`).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from orchestrator_tui.opencode import ids
from orchestrator_tui.opencode.client import HttpStatusError, OpenCodeClient, OpenCodeError, TransportError
from orchestrator_tui.opencode.models import (
    Message,
    MessageUpdated,
    PartDelta,
    PartUpdated,
    PermissionAsked,
    PermissionReplied,
    PermissionRequest,
    QuestionAsked,
    SessionError,
    SessionIdle,
    SessionStatusEvent,
)
from orchestrator_tui.orchestrator.config import OrchestratorConfig, deadline_text, inactivity_timeout_text
from orchestrator_tui.orchestrator.errors import Cancelled, Internal, InvalidInput
from orchestrator_tui.orchestrator.poll import POLL_INTERVAL, POLL_REQUEST_TIMEOUT, SharedPoll, list_permissions
from orchestrator_tui.orchestrator.tokens import TokenTracker
from orchestrator_tui.orchestrator.transcript import (
    CommandLineage,
    Turn,
    final_response,
    interrupted_reply,
    session_error_text,
    transcript_or_none,
    turn_response,
)
from orchestrator_tui.orchestrator.types import RunOutput, RunStatus
from orchestrator_tui.orchestrator.views import permission_output, question_output
from orchestrator_tui.pool.state import Pool

log = logging.getLogger(__name__)

PERMISSION_LIST_WARNING = (
    "Permission state could not be listed during preflight (HTTP 400). Permission state may be stale or "
    "malformed; pending permissions may be stale or undiscoverable."
)


def permission_refresh_warning(error: OpenCodeError) -> str:
    """The warning of a respond_permission continuation whose preflight could not list permissions (0.7.x)."""
    return (
        f"Permission refresh failed after reply ({error}); permission state could not be listed and may be stale "
        "or malformed. Continuing with polling fallback."
    )
#: Seconds between transcript reads while a prompt waits for OpenCode to start its turn and the
#: unbroken event stream says there is no answer yet (a safety net; the stream is what decides).
TRANSCRIPT_RECHECK = 5.0

#: Receives a one-line progress message ("session busy: <latest streamed line>", or what a held
#: permission waits for); the MCP adapter forwards it as a progress notification.
Progress = Callable[[str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class GateVerdict:
    """What a run does with a pending permission it meets (the default: return it as the seed does)."""

    #: Keep waiting for someone else to answer it instead of returning ``permission_required``.
    hold: bool = False
    #: Progress text while holding ("waiting for a human to approve bash in orchestrator-tui").
    message: str = ""
    #: Seconds to hold at most; then the run returns ``permission_required`` after all.
    timeout: float = 0.0
    #: Added to the ``permission_required`` output: when not holding, or when the hold timed out.
    warning: str | None = None


#: Asked each time a run meets a pending permission of its session (about once a second while held).
PermissionGate = Callable[[PermissionRequest], GateVerdict]


@dataclass
class RunPlan:
    """What one pass of the state machine is asked to do (already validated)."""

    session_id: str
    message: str | None = None
    command: str | None = None
    wait_for_activity: bool = False
    idle_grace: float = 1.0
    #: The agent a prompt is sent to (``None``: OpenCode's default); commands name their own.
    agent: str | None = None


@dataclass
class RunResult:
    output: RunOutput
    tracker: TokenTracker | None = None
    warnings: list[str] = field(default_factory=list)


def feed_tracker(tracker: TokenTracker, event: object) -> None:
    """Hand the token tracker the two event kinds it reads, as plain mappings."""
    if isinstance(event, MessageUpdated) or (
        isinstance(event, PartUpdated) and event.properties.part.type == "step-finish"
    ):
        tracker.observe_event(event.type, event.properties.model_dump(exclude_none=True))


class RunMachine:
    """One ``run`` (or respond continuation) against one session."""

    def __init__(
        self,
        client: OpenCodeClient,
        pool: Pool,
        config: OrchestratorConfig,
        *,
        model_limits: dict[tuple[str, str], int] | None = None,
        limits_ready: Callable[[], Awaitable[object]] | None = None,
        progress: Progress | None = None,
        gate: PermissionGate | None = None,
        follow: Callable[[], OpenCodeClient | None] | None = None,
        after_reply: bool = False,
    ) -> None:
        self._client = client
        #: The run continues a session right after respond_permission replied (the reference's
        #: "continuation" preflight: a permission list OpenCode cannot give is reported as such).
        self.after_reply = after_reply
        #: The client of the server the pool follows now: when OpenCode dies and is restarted,
        #: the run goes on talking to the new one (the old client is closed) and finds out what
        #: became of its turn, instead of failing on a closed connection.
        self._follow = follow
        #: The pool's server generation when the run started (see :meth:`Pool.server_replaced`).
        self._generation = pool.server_generation
        self.pool = pool
        self.config = config
        self.model_limits = model_limits if model_limits is not None else {}
        #: Awaited once the turn is dispatched (so the model works meanwhile): the context
        #: windows may still be loading into ``model_limits`` (filled in place) when a run starts.
        self._limits_ready = limits_ready
        self.progress = progress
        self.gate = gate
        #: Warnings gathered before the loop (preflight), carried into every result.
        self.warnings: list[str] = []
        #: Holds so far: (request id, why) → loop time at which that hold gives up. Keyed by the
        #: reason too, so a request that changes hands (a rule revoked mid-wait, now the human's)
        #: gets the new reason's full timeout.
        self._hold_deadlines: dict[tuple[str, str], float] = {}
        #: The request being held right now, and the progress text saying so.
        self.holding: str | None = None
        self._hold_message = ""

    @property
    def client(self) -> OpenCodeClient:
        if self._follow is not None and (current := self._follow()) is not None:
            return current
        return self._client

    @property
    def server_replaced(self) -> bool:
        """Whether the pool moved to another server (or a restarted one) since the run started."""
        return self.pool.server_generation != self._generation

    def interrupted_text(self, sid: str, *, after_the_fact: bool = False) -> str:
        """What to tell the agent when its session's turn died with the server that ran it."""
        lost = self.pool.lost_for(sid)
        waiting = f", waiting for {lost[-1].describe()}," if lost else ""
        lost_note = f" ({lost[-1].describe()} was lost with it)" if lost and after_the_fact else ""
        if after_the_fact:
            return (
                f"The last turn of session '{sid}' did not finish and nothing runs in it now: OpenCode stopped while "
                f"it ran{lost_note}. The session and its history are kept: call run with session_id='{sid}' and a "
                "message to continue (for example, ask it to retry the last step)."
            )
        return (
            f"OpenCode stopped while session '{sid}' was working{waiting} and was restarted: the turn that was running "
            f"was interrupted and will not finish. The session and its history are kept: call run with "
            f"session_id='{sid}' and a message to continue (for example, ask it to retry the last step)."
        )

    def meet_permission(
        self, session_id: str, req: PermissionRequest, partial: str = "", tracker: TokenTracker | None = None
    ) -> RunResult | None:
        """The result for a pending permission of the session, or None to keep waiting (held)."""
        verdict = self.gate(req) if self.gate is not None else GateVerdict()
        warning = verdict.warning
        if verdict.hold:
            now = asyncio.get_running_loop().time()
            deadline = self._hold_deadlines.setdefault((req.id, verdict.message), now + verdict.timeout)
            if now < deadline:
                self.holding = req.id
                self._hold_message = verdict.message
                return None
        self.holding = None
        warnings = [*self.warnings, warning] if warning else self.warnings
        return RunResult(permission_output(session_id, req, partial, warnings), tracker)

    # ---------------------------------------------------------------- steps 5–8

    async def preflight(self, session_id: str, *, may_hold: bool = True) -> tuple[bool, RunOutput | None]:
        """Status, then pending permission, then pending question.

        A held permission is not an interruption: the loop waits it out. ``may_hold`` is False
        when the run brings new work (a message or command): that is not sent past a pending
        permission, so the run returns the permission as the seed does.
        """
        try:
            statuses = await self.client.session_status()
        except OpenCodeError as exc:
            raise Internal(f"Failed to get session status: {exc}") from exc
        status = statuses.get(session_id)
        is_idle = status is None or status.type == "idle"
        try:
            permissions, unlisted = await self.list_permissions()
        except OpenCodeError as exc:
            raise Internal(f"Failed to list permissions: {exc}") from exc
        if unlisted is not None:
            self.warnings.append(permission_refresh_warning(unlisted) if self.after_reply else PERMISSION_LIST_WARNING)
        for req in permissions:
            if req.sessionID == session_id:
                met = self.meet_permission(session_id, req)
                if met is None and not may_hold:
                    self.holding = None
                    met = RunResult(permission_output(session_id, req, warnings=self.warnings))
                if met is not None:
                    return is_idle, met.output
                break
        try:
            questions = await self.client.questions()
        except OpenCodeError as exc:
            raise Internal(f"Failed to list questions: {exc}") from exc
        for q in questions:
            if q.sessionID == session_id:
                return is_idle, question_output(session_id, q, warnings=self.warnings)
        return is_idle, None

    async def list_permissions(
        self, *, timeout: float | None = None
    ) -> tuple[list[PermissionRequest], HttpStatusError | None]:
        """``GET /permission``, or the pool's view when OpenCode cannot list them (:func:`list_permissions`)."""
        return await list_permissions(self.client, self.pool, timeout=timeout)

    async def execute(self, plan: RunPlan) -> RunResult:
        sid = plan.session_id
        is_idle, interruption = await self.preflight(sid, may_hold=plan.message is None and plan.command is None)
        if interruption is not None:
            return RunResult(interruption)
        if (
            plan.message is None
            and plan.command is None
            and is_idle
            and not plan.wait_for_activity
            and self.holding is None
        ):
            await self._await_limits()
            return await self.finalize(
                sid, TokenTracker(self.config.compaction_threshold, self.model_limits), self.warnings
            )
        with self.pool.watch(sid) as watch:
            return await self._loop(plan, watch)

    # ---------------------------------------------------------------- the loop

    async def _loop(self, plan: RunPlan, watch) -> RunResult:
        sid = plan.session_id
        loop = asyncio.get_running_loop()
        dispatched = plan.command is not None or plan.message is not None or plan.wait_for_activity
        grace_deadline: float | None = None
        awaiting_grace = False
        if plan.wait_for_activity and plan.command is None and plan.message is None:
            grace_deadline = loop.time() + plan.idle_grace
        # Work we send carries our own message id: its turn is recognised by correlation.
        turn = Turn(ids.message_id()) if plan.command is not None or plan.message is not None else None
        # Which stream connection saw the dispatch: while it lasts, the watch misses nothing.
        epoch = self.pool.stream_epoch()

        command_task: asyncio.Task[OpenCodeError | None] | None = None
        prompt_turn: Turn | None = None
        #: A command's reply lineage: only its own reply's events are its activity and partial text.
        lineage: CommandLineage | None = None
        if plan.command is not None:
            assert turn is not None
            lineage = CommandLineage(turn.message_id)
            command_task = loop.create_task(self._send_command(sid, plan.command, plan.message or "", turn.message_id))
        elif plan.message is not None:
            assert turn is not None
            try:
                await self.client.prompt_async(sid, plan.message, message_id=turn.message_id, agent=plan.agent)
            except OpenCodeError as exc:
                raise Internal(f"Failed to send prompt: {exc}") from exc
            prompt_turn = turn

        cfg = self.config
        start = loop.time()
        session_deadline = cfg.session_deadline()
        deadline = start + session_deadline if session_deadline is not None else None
        inactivity = cfg.inactivity_timeout()
        last_activity = start
        tracker = TokenTracker(cfg.compaction_threshold, self.model_limits)
        partial: list[str] = []
        warnings = self.warnings
        observed_busy = False
        #: OpenCode showed the session working since the dispatch (a busy or retry status).
        busy_seen = False
        next_poll = start  # the first tick fires immediately
        #: Loop time at which the watch showed the turn's answer complete (None: not yet).
        answered_at: float | None = None
        #: When the transcript was last read for a prompt's answer the watch has not shown.
        transcript_read = start if epoch is not None else -math.inf
        get_task: asyncio.Task[object] = loop.create_task(watch.get())

        def activity() -> None:
            nonlocal last_activity, observed_busy, awaiting_grace
            last_activity = loop.time()
            observed_busy = True
            awaiting_grace = False

        async def accept_idle(polled_at: float | None = None) -> RunResult | None:
            """Apply the completion rules to an observed idle.

            ``polled_at``: when the poll that saw the idle started; None for a ``session.idle``
            event, which comes after every event OpenCode published before it.
            """
            nonlocal awaiting_grace
            if prompt_turn is not None:
                return await prompt_answered(prompt_turn, polled_at)
            if not dispatched or observed_busy:
                return await self.finalize(sid, tracker, warnings, turn=turn)
            if grace_deadline is None:
                return None  # the command POST is still in flight
            if loop.time() >= grace_deadline:
                return await self.finalize(sid, tracker, warnings, turn=turn)
            awaiting_grace = True
            return None

        async def prompt_answered(prompt: Turn, polled_at: float | None) -> RunResult | None:
            """An idle ends a prompt's turn only once the answer to *that* prompt is complete.

            Idle alone proves nothing: a loaded OpenCode leaves a new prompt's session idle for
            seconds before it marks it busy, and a previous turn's idle can arrive after the
            prompt. No timer decides it. An idle counts when it was observed after the watch
            showed the answer complete (a poll that started later, or the idle event itself).
            The transcript is the fallback for what the watch may not show: at once when the
            stream reconnected since the dispatch or the session was seen busy, otherwise
            every few seconds as a safety net.
            """
            nonlocal transcript_read
            if answered_at is not None and (polled_at is None or answered_at <= polled_at):
                return await self.finalize(sid, tracker, warnings, turn=prompt)
            now = loop.time()
            stream_whole = epoch is not None and self.pool.stream_epoch() == epoch
            pause = TRANSCRIPT_RECHECK if stream_whole and not busy_seen else POLL_INTERVAL
            if now - transcript_read < pause:
                return None
            transcript_read = now
            return await self._transcript_answer(sid, prompt, tracker, warnings, turn_ran=busy_seen)

        if self.holding is not None and self.progress is not None:
            await self._report(sid, partial)
        try:
            await self._await_limits()  # the turn is dispatched: the model works meanwhile
            if not dispatched and self.holding is None:
                # Post-subscribe re-check (step 13): the session may have gone idle meanwhile.
                try:
                    statuses = await self.client.session_status(timeout=POLL_REQUEST_TIMEOUT)
                    if sid not in statuses or statuses[sid].type == "idle":
                        return await self.finalize(sid, tracker, warnings)
                except OpenCodeError as exc:
                    log.warning("post-subscribe status check failed: %s", exc)

            while True:
                now = loop.time()
                if self.holding is not None:
                    last_activity = now  # waiting for someone else's answer is not inactivity
                if inactivity is not None and now - last_activity >= inactivity:
                    raise Internal(inactivity_timeout_text(sid, cfg.inactivity_timeout_secs))
                if deadline is not None and now >= deadline:
                    raise Internal(deadline_text(cfg.session_deadline_secs))

                wake = [next_poll]
                if awaiting_grace and grace_deadline is not None:
                    wake.append(grace_deadline)
                if inactivity is not None:
                    wake.append(last_activity + inactivity)
                if deadline is not None:
                    wake.append(deadline)
                timeout = max(0.0, min(wake) - now)
                waiting: set[asyncio.Future[object]] = {get_task}
                if command_task is not None:
                    waiting.add(command_task)
                done, _ = await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)

                # (e) the command POST finished
                if command_task is not None and command_task in done:
                    error = command_task.result()
                    command_task = None
                    if error is None:
                        grace_deadline = loop.time() + plan.idle_grace
                    else:
                        assert turn is not None
                        name = plan.command
                        if isinstance(error, HttpStatusError) and error.status in (400, 404):
                            raise InvalidInput(f"Failed to dispatch command '{name}': {error}")
                        if not isinstance(error, TransportError):
                            raise Internal(f"Failed to dispatch command '{name}': {error}")
                        # The POST blocks until the whole turn ends, so a connection lost meanwhile says
                        # nothing of the command. Once OpenCode shows it started, supervise it as usual.
                        started = observed_busy or turn.created is not None
                        if not started:
                            evidence = await self._command_started(sid, turn)
                            started = evidence is not None
                            if evidence == "busy":
                                activity()
                            elif evidence == "transcript":
                                last_activity = loop.time()
                        if started and grace_deadline is None:
                            # No POST to wait for any more: an idle may end the turn.
                            grace_deadline = loop.time() + plan.idle_grace
                        if not started:
                            raise Internal(
                                f"Failed to dispatch command '{name}': transport error before session start "
                                f"evidence: {error}"
                            )
                        log.warning("command transport error after start evidence; continuing supervision: %s", error)
                        warnings.append(
                            "OpenCode command transport error after start evidence; continuing supervision: "
                            f"{error}"
                        )

                # (b) an event of this session
                if get_task in done:
                    event = get_task.result()
                    get_task = loop.create_task(watch.get())
                    feed_tracker(tracker, event)
                    if isinstance(event, PermissionAsked):
                        held = self.holding
                        met = self.meet_permission(sid, event.properties, "".join(partial), tracker)
                        if met is not None:
                            return met
                        if held != self.holding and self.progress is not None:
                            await self._report(sid, partial)
                        continue
                    if isinstance(event, PermissionReplied):
                        if event.properties.requestID == self.holding:
                            self.holding = None
                            activity()
                        continue
                    if isinstance(event, QuestionAsked):
                        return RunResult(question_output(sid, event.properties, "".join(partial), warnings), tracker)
                    if isinstance(event, MessageUpdated) and turn is not None and turn.observe(event.properties.info):
                        answered_at = loop.time() if turn.complete else None
                    if isinstance(event, PartDelta):
                        p = event.properties
                        reasoning = self.pool.session(sid).part_kind(p.partID) == "reasoning"
                        text = p.delta if p.delta and not reasoning else None
                        if lineage is None:
                            activity()
                            if text:
                                partial.append(text)
                        else:
                            ours, text = lineage.delta(p.messageID, text)
                            if ours:
                                activity()
                                if text:
                                    partial.append(text)
                    elif isinstance(event, MessageUpdated):
                        if lineage is None:
                            activity()
                        else:
                            ours, held = lineage.updated(event.properties.info)
                            if ours:
                                activity()
                                if held:
                                    partial.append(held)
                    elif isinstance(event, PartUpdated):
                        if lineage is None or lineage.part(event.properties.part.messageID):
                            activity()
                    elif isinstance(event, SessionStatusEvent):
                        if event.properties.status.type != "idle":
                            busy_seen = True
                            activity()
                    elif isinstance(event, SessionError):
                        raise Internal(session_error_text(event.properties.error))
                    elif isinstance(event, SessionIdle) and self.holding is None:
                        result = await accept_idle()
                        if result is not None:
                            return result
                    continue

                now = loop.time()
                # (d) the idle-grace timer
                if awaiting_grace and grace_deadline is not None and self.holding is not None:
                    awaiting_grace = False  # a held permission means the turn is not over
                if awaiting_grace and grace_deadline is not None and now >= grace_deadline:
                    awaiting_grace = False
                    try:
                        statuses = await self.client.session_status(timeout=POLL_REQUEST_TIMEOUT)
                        st = statuses.get(sid)
                        if st is None or st.type == "idle":
                            return await self.finalize(sid, tracker, warnings, turn=turn)
                        activity()
                    except OpenCodeError as exc:
                        log.warning("idle-grace status check failed: %s", exc)

                # (c) the poll tick
                if now >= next_poll:
                    # On the common grid, so that concurrent runs share one round (SharedPoll).
                    next_poll = (math.floor(now / POLL_INTERVAL) + 1) * POLL_INTERVAL
                    result, polled_at = await self._poll(sid, partial, warnings, tracker, start)
                    if isinstance(result, RunResult):
                        return result
                    if result == "busy":
                        busy_seen = True
                        activity()
                    elif result == "idle":
                        done_result = await accept_idle(polled_at)
                        if done_result is not None:
                            return done_result
                    if self.progress is not None:
                        await self._report(sid, partial)
        except asyncio.CancelledError:
            if command_task is not None:
                command_task.cancel()
            raise Cancelled() from None
        finally:
            get_task.cancel()
            if command_task is not None:
                # OpenCode keeps running the turn when the client goes away (docs/opencode-behaviour.md);
                # dropping the request only stops us waiting for it.
                command_task.cancel()

    async def _await_limits(self) -> None:
        if self._limits_ready is not None:
            try:
                await self._limits_ready()
            except OpenCodeError as exc:  # best effort: no limit, no compaction
                log.warning("could not load model limits: %s", exc)

    async def _report(self, sid: str, partial: list[str]) -> None:
        assert self.progress is not None
        if self.holding is not None:
            message = self._hold_message
        else:
            view = self.pool.sessions.get(sid)
            text = "".join(partial)[-500:].strip()
            tail = text.splitlines()[-1][:200] if text else ""
            message = f"session {view.status.value if view else 'unknown'}" + (f": {tail}" if tail else "")
        try:
            await self.progress(message)
        except Exception:  # progress is advisory; a closed client must not fail the run
            log.debug("progress notification failed", exc_info=True)

    async def _poll(
        self, sid: str, partial: list[str], warnings: list[str], tracker: TokenTracker, since: float
    ) -> tuple[RunResult | str | None, float]:
        """This session's share of a poll round, and when that round started."""
        result = await SharedPoll.of(self.client, self.pool).get(since)
        for req in result.permissions or ():
            if req.sessionID == sid:
                met = self.meet_permission(sid, req, "".join(partial), tracker)
                return ("held" if met is None else met), result.started
        self.holding = None  # whatever we held is answered
        for q in result.questions or ():
            if q.sessionID == sid:
                return RunResult(question_output(sid, q, "".join(partial), warnings), tracker), result.started
        if result.statuses is None:
            return None, result.started
        st = result.statuses.get(sid)
        return ("idle" if st is None or st.type == "idle" else "busy"), result.started

    async def _send_command(self, sid: str, command: str, arguments: str, message_id: str) -> OpenCodeError | None:
        """POST the command; returns its error or None. Never sends it twice unless the
        first attempt provably never reached the server."""
        for attempt in range(2):
            try:
                await self.client.command(sid, command, arguments, message_id=message_id)
                return None
            except OpenCodeError as exc:
                if attempt == 0 and isinstance(exc, TransportError) and exc.connect_failed:
                    await asyncio.sleep(0.05)
                    continue
                return exc
        return None  # pragma: no cover - loop always returns

    async def _command_started(self, sid: str, turn: Turn) -> str | None:
        """What shows the command started, asked after its POST failed in transit: ``"busy"``
        (the session works now), ``"transcript"`` (the command's message, our id, is in it) or None.

        Either way the POST reached OpenCode, which runs the command whatever became of the connection.
        """
        try:
            statuses = await self.client.session_status(timeout=POLL_REQUEST_TIMEOUT)
        except OpenCodeError as exc:
            log.warning("status check after a command transport error failed: %s", exc)
        else:
            status = statuses.get(sid)
            if status is not None and status.type != "idle":
                return "busy"
        messages = await transcript_or_none(lambda: self.client, sid)
        if messages is not None and any(m.info.id == turn.message_id for m in messages):
            return "transcript"
        return None

    # ---------------------------------------------------------------- finalize

    async def finalize(
        self,
        sid: str,
        tracker: TokenTracker,
        warnings: list[str],
        *,
        turn: Turn | None = None,
        transcript: list[Message] | None = None,
    ) -> RunResult:
        """The completed result. With ``turn`` (work we sent), the response is that turn's answer:
        from ``transcript`` when the caller just read it, else the pool or OpenCode."""
        warnings = list(warnings)
        if turn is not None and turn.answer is not None and turn.answer.error:
            # The turn ended in an error whose session.error event came after the idle we act on
            # (seen under load with an abort): the same answer as if the event had come first.
            raise Internal(session_error_text(turn.answer.error))
        if turn is not None and transcript is not None:
            response = turn.answer_text(transcript)[1]
        elif turn is not None:
            response, warning = await turn_response(lambda: self.client, self.pool, sid, turn)
            if warning:
                warnings.append(warning)
        else:
            # The pool usually saw the whole final message on the live stream; asking OpenCode
            # for the transcript right after idle costs 20-30 ms (it is busy finishing the turn),
            # which is most of the run's overhead. The REST read, with its retries, is the fallback.
            known, response = self.pool.final_text(sid)
            if not known:
                response, messages = await final_response(lambda: self.client, sid)
                if response is None and interrupted_reply(messages) is not None:
                    # The session is idle, and its last reply never finished: its server died.
                    if self.server_replaced:
                        raise Internal(self.interrupted_text(sid))
                    warnings.append(self.interrupted_text(sid, after_the_fact=True))
        provider_model = tracker.provider_model
        if tracker.compaction_needed and provider_model is not None:
            try:
                await self.client.summarize(sid, *provider_model)
                warnings.append("Context limit reached; summarization triggered")
            except OpenCodeError as exc:
                warnings.append(f"Summarization failed: {exc}")
        return RunResult(
            RunOutput(session_id=sid, status=RunStatus.COMPLETED, response=response, warnings=warnings), tracker
        )

    async def _transcript_answer(
        self, sid: str, turn: Turn, tracker: TokenTracker, warnings: list[str], *, turn_ran: bool
    ) -> RunResult | None:
        """The result when OpenCode's transcript shows the turn answered and the session idle after.

        The transcript is read first and the status second, so an answer that is only one step
        of the turn (a tool call, with more to come) is never taken for the end of it.

        ``turn_ran``: the session was seen busy since the dispatch. If it is idle now and still
        no reply answers our message, OpenCode ended the turn without one (it let a prompt that
        arrived as the previous turn was ending go unanswered). Waiting longer would only end in
        the inactivity timeout, so the run completes without a response and says why: never a
        silent empty ``completed``.

        A reply that exists but is neither finished nor failed while the session is idle is an
        abort being written, not a turn without a reply: OpenCode 1.18.33 aborts a model request
        in flight (with or without a first token) by publishing ``session.error``
        (``MessageAbortedError``), then the idle, and only then writing the error into the reply,
        a moment later (seconds under load). A poll that sees the idle can overtake that event
        on our side, so the run keeps waiting: the event, the reply's update or the next
        transcript read reports the abort as the session error it is.
        """
        messages = await transcript_or_none(lambda: self.client, sid)
        if messages is None:
            return None
        seen = Turn.from_transcript(turn.message_id, messages)
        if not seen.complete and not turn_ran:
            return None
        try:
            statuses = await self.client.session_status(timeout=POLL_REQUEST_TIMEOUT)
        except OpenCodeError as exc:
            log.warning("status check after the transcript failed: %s", exc)
            return None
        status = statuses.get(sid)
        if status is not None and status.type != "idle":
            return None
        if not seen.complete:
            # Idle is established now; an answer written before it is in a transcript read after it.
            messages = await transcript_or_none(lambda: self.client, sid)
            if messages is None:
                return None
            seen = Turn.from_transcript(turn.message_id, messages)
            if seen.answer is not None and seen.answer.error:
                raise Internal(session_error_text(seen.answer.error))
            if not seen.complete and self.server_replaced:
                raise Internal(self.interrupted_text(sid))
            if seen.answer is not None and not seen.complete:
                return None  # an abort being written into the reply (see above)
            if not seen.complete:
                warning = (
                    f"OpenCode ended the turn without a reply to this run's message ({turn.message_id}): it was "
                    f"aborted or failed before the model answered. Send the message again with "
                    f"run(session_id='{sid}', message=...) to retry."
                )
                return await self.finalize(sid, tracker, [*warnings, warning], turn=seen, transcript=messages)
        return await self.finalize(sid, tracker, warnings, turn=seen, transcript=messages)
