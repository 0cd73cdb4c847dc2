"""What OpenCode's transcript says about a turn: its answer, its text, and how it ended.

A run that sent work carries its own message id; :class:`Turn` finds the reply to that id in
the events or in a transcript, whatever else the session did meanwhile. The functions below
read it: the final text (:func:`extract_response`), a reply that never finished because its
server died (:func:`interrupted_reply`), and the transcript itself, read again after short
pauses because OpenCode may announce the end of a turn a moment before it stores the last
message (:func:`read_transcript`).

The readers take the client as a function called at each read, not a client: a run follows
the pool to a restarted server, and a read retried after a pause goes to the server in use then.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from orchestrator_tui.opencode.client import OpenCodeClient, OpenCodeError
from orchestrator_tui.opencode.models import Message, MessageInfo
from orchestrator_tui.orchestrator.errors import Internal
from orchestrator_tui.pool.state import Pool

log = logging.getLogger(__name__)

#: Pauses between transcript reads while the last message may not be stored yet.
FINALIZE_BACKOFF = (0.0, 0.05, 0.1, 0.2, 0.4)
#: The same, longer, for a turn's answer still open when its session went idle (an abort being
#: written): about 3 s in all, and only in that case.
SETTLE_BACKOFF = (*FINALIZE_BACKOFF, 0.8, 1.6)


def message_text(message: Message) -> str | None:
    """A message's text parts, concatenated; None when blank."""
    text = "".join(p.text or "" for p in message.parts if p.type == "text")
    return text if text.strip() else None


def extract_response(messages: list[Message]) -> str | None:
    """The last assistant message's text parts, concatenated."""
    for message in reversed(messages):
        if message.info.role == "assistant":
            return message_text(message)
    return None


def interrupted_reply(messages: list[Message]) -> Message | None:
    """The last assistant message when it never finished (no completion time, no error).

    While its session is idle that means its turn stopped in the middle: the server that ran it
    died (OpenCode keeps turns in memory; after a restart the message stays as it was, its tool
    calls "running"). A turn that was aborted or failed carries an error instead.
    """
    for message in reversed(messages):
        if message.info.role == "assistant":
            info = message.info
            return message if info.time.completed is None and not info.error else None
    return None


def session_error_text(error: dict[str, Any] | None) -> str:
    """What the agent is told when its turn ended in an error (an abort, a provider failure)."""
    text = json.dumps(error, ensure_ascii=False) if error is not None else "Unknown error"
    return f"Session error: {text}"


def _created(info: MessageInfo) -> tuple[int, str]:
    """OpenCode's own order of messages: its clock first, the id on a tie (as its loop decides)."""
    return (info.time.created or 0, info.id)


class Turn:
    """The turn that answers one user message we sent with our own id (a prompt or a command).

    Fed message infos in the order OpenCode published them (the run's watch) or in OpenCode's
    order (a transcript). The *answer* is the latest assistant message of the turn: one whose
    parent is our message, or a user message that came after ours and was folded into the same
    turn (a second prompt sent before OpenCode started the loop, a compaction's "continue").
    An assistant message answering an earlier message is never the answer, whatever its timing.
    """

    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        #: Our user message's ``time.created`` on OpenCode's clock, once seen.
        self.created: int | None = None
        #: User messages whose replies belong to this turn: ours, and later ones.
        self.users: set[str] = {message_id}
        self.answer: MessageInfo | None = None

    @property
    def complete(self) -> bool:
        """The answer exists and OpenCode finished writing it."""
        return self.answer is not None and self.answer.time.completed is not None

    def observe(self, info: MessageInfo) -> bool:
        """Take one message's (updated) info; True when the answer or its completion changed."""
        if info.role == "user":
            if info.id == self.message_id:
                self.created = info.time.created or 0
            elif self.created is not None and _created(info) > (self.created, self.message_id):
                self.users.add(info.id)
            return False
        if info.role != "assistant" or info.parentID not in self.users:
            return False
        answer = self.answer
        if answer is not None and info.id != answer.id and _created(info) < _created(answer):
            return False  # an update of an earlier step of the turn
        was_complete = self.complete
        self.answer = info
        return answer is None or answer.id != info.id or was_complete != self.complete

    @classmethod
    def from_transcript(cls, message_id: str, messages: list[Message]) -> Turn:
        turn = cls(message_id)
        for message in sorted(messages, key=lambda m: _created(m.info)):
            turn.observe(message.info)
        return turn

    def answer_text(self, messages: list[Message]) -> tuple[bool, str | None]:
        """The answer's text in a transcript: (found, text)."""
        if self.answer is None:
            return False, None
        for message in messages:
            if message.info.id == self.answer.id:
                return True, message_text(message)
        return False, None


#: Bounds of the text held for assistant messages not yet known to answer a command (0.7.10's):
#: all of it, per message, and how many messages.
PRECORRELATION_TOTAL_BYTES = 64 * 1024
PRECORRELATION_MESSAGE_BYTES = 16 * 1024
PRECORRELATION_MESSAGE_IDS = 32


class PreCorrelationBuffer:
    """Streamed text of messages whose lineage is not known yet, within fixed bounds.

    OpenCode may publish a reply's first deltas before the ``message.updated`` that names its
    parent. Until then the text cannot be told apart from another message's in the same session;
    it waits here, and is flushed into the command's partial response when the message turns out
    to answer the command, or dropped when it does not. The bounds (the reference's) keep a
    session streaming other work from growing it without limit: a delta that does not fit is
    dropped, the oldest message gives way to a new one, never a message to its own later text.
    Sizes count UTF-8 bytes, as the reference does.
    """

    def __init__(self) -> None:
        self._deltas: deque[tuple[str, str]] = deque()
        self._bytes: dict[str, int] = {}
        self.total_bytes = 0

    def __contains__(self, message_id: str) -> bool:
        return message_id in self._bytes

    def __len__(self) -> int:
        return len(self._bytes)

    def push(self, message_id: str, delta: str) -> None:
        if not message_id or not delta:
            return
        size = len(delta.encode())
        if size > PRECORRELATION_MESSAGE_BYTES or size > PRECORRELATION_TOTAL_BYTES:
            return
        if message_id not in self._bytes and len(self._bytes) >= PRECORRELATION_MESSAGE_IDS:
            self.evict(self._deltas[0][0])
        held = self._bytes.get(message_id, 0)
        if held + size > PRECORRELATION_MESSAGE_BYTES:
            return
        while self.total_bytes + size > PRECORRELATION_TOTAL_BYTES:
            oldest = self._deltas[0][0] if self._deltas else None
            if oldest is None or oldest == message_id:
                return
            self.evict(oldest)
        self._deltas.append((message_id, delta))
        self._bytes[message_id] = held + size
        self.total_bytes += size

    def take(self, message_id: str) -> str:
        """The message's held text, in order, removed from the buffer."""
        size = self._bytes.pop(message_id, None)
        if size is None:
            return ""
        text = "".join(d for m, d in self._deltas if m == message_id)
        self._deltas = deque((m, d) for m, d in self._deltas if m != message_id)
        self.total_bytes -= size
        return text

    def evict(self, message_id: str) -> None:
        self.take(message_id)


class CommandLineage:
    """Which streamed events belong to a command run: the assistant messages whose parent is its message.

    A command may be sent while another message of the same session is still streaming (OpenCode
    answers it after that turn). The reference before 0.7.10 counted every delta of the session
    as the command's activity and partial response; now only replies naming the command's
    message as ``parentID`` do, and deltas that arrive before their message says whose reply it
    is wait in a :class:`PreCorrelationBuffer`.
    """

    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        #: Assistant messages known to answer the command.
        self.replies: set[str] = set()
        self.pending = PreCorrelationBuffer()

    def delta(self, message_id: str | None, text: str | None) -> tuple[bool, str]:
        """A text delta: (it is the command's, the text to add to the partial response now)."""
        if message_id is not None and message_id in self.replies:
            return True, text or ""
        if message_id and text:
            self.pending.push(message_id, text)
        return False, ""

    def updated(self, info: MessageInfo) -> tuple[bool, str]:
        """A message's info: (it is the command's reply, its held text to add to the partial response)."""
        if info.role == "assistant" and info.parentID == self.message_id:
            self.replies.add(info.id)
            return True, self.pending.take(info.id)
        self.pending.evict(info.id)
        return False, ""

    def part(self, message_id: str | None) -> bool:
        """Whether a part event belongs to the command's reply."""
        return message_id is not None and message_id in self.replies


async def transcript_or_none(client: Callable[[], OpenCodeClient], sid: str) -> list[Message] | None:
    """The transcript, or None (logged) when it cannot be read: the caller looks again later."""
    try:
        return await client().messages(sid)
    except OpenCodeError as exc:
        log.warning("reading the transcript for the answer failed: %s", exc)
        return None


async def final_response(client: Callable[[], OpenCodeClient], sid: str) -> tuple[str | None, list[Message]]:
    """The transcript's final text, read until it is visible (or the reply was interrupted)."""
    messages = await read_transcript(
        client, sid, lambda messages: extract_response(messages) is not None or interrupted_reply(messages) is not None
    )
    return extract_response(messages), messages


async def read_transcript(
    client: Callable[[], OpenCodeClient],
    sid: str,
    enough: Callable[[list[Message]], bool],
    backoff: tuple[float, ...] = FINALIZE_BACKOFF,
) -> list[Message]:
    """The session's transcript, read again after each pause of :data:`FINALIZE_BACKOFF` until
    ``enough`` says it holds what the caller needs: OpenCode may announce the end of a turn a
    moment before the last message is stored. Returns the last read either way."""
    messages: list[Message] = []
    for delay in backoff:
        if delay:
            await asyncio.sleep(delay)
        try:
            messages = await client().messages(sid)
        except OpenCodeError as exc:
            raise Internal(f"Failed to list messages: {exc}") from exc
        if enough(messages):
            break
    return messages


async def turn_response(
    client: Callable[[], OpenCodeClient], pool: Pool, sid: str, turn: Turn
) -> tuple[str | None, str | None]:
    """The text of the turn's answer, and a warning when it cannot be had.

    The pool knows it when it saw that very message whole on the stream; otherwise the
    transcript has it (OpenCode stores a message before it publishes it). A command whose
    reply does not name our message (a subtask command) answers with the session's last
    assistant message, as before: its POST returned, so its turn is over.
    """
    if turn.answer is not None and turn.complete:
        known, text = pool.final_text(sid, turn.answer.id)
        if known:
            return text, None

    def settled(messages: list[Message]) -> bool:
        seen = Turn.from_transcript(turn.message_id, messages)
        if seen.answer is None:
            return not turn.complete
        # An answer neither finished nor failed while the session is idle: seen under load
        # when a turn is aborted, the idle coming before the abort error is written into the
        # answer. Wait a little for it to settle.
        return seen.complete or bool(seen.answer.error)

    messages = await read_transcript(client, sid, settled, backoff=SETTLE_BACKOFF)
    seen = Turn.from_transcript(turn.message_id, messages)
    if seen.answer is not None and seen.answer.error:
        raise Internal(session_error_text(seen.answer.error))
    if seen.complete:
        return seen.answer_text(messages)[1], None
    if not turn.complete:
        return extract_response(messages), None
    return None, (
        f"The reply to this run's message ({turn.message_id}) finished but could not be read from OpenCode; "
        f"call run with session_id='{sid}' to read it."
    )
