"""Which assistant message answers a run's own message (``run.Turn``), and our message ids."""

from __future__ import annotations

import re
from typing import Any

from orchestrator_tui.opencode import ids
from orchestrator_tui.opencode.models import Message, MessageInfo
from orchestrator_tui.orchestrator.transcript import (
    PRECORRELATION_MESSAGE_BYTES,
    PRECORRELATION_MESSAGE_IDS,
    PRECORRELATION_TOTAL_BYTES,
    CommandLineage,
    PreCorrelationBuffer,
    Turn,
)

OURS = "msg_ours"


def info(mid: str, role: str, created: int, parent: str | None = None, completed: int | None = None) -> MessageInfo:
    time: dict[str, Any] = {"created": created}
    if completed is not None:
        time["completed"] = completed
    return MessageInfo.model_validate({"id": mid, "role": role, "parentID": parent, "time": time})


def message(item: MessageInfo, text: str | None = None) -> Message:
    parts = [{"type": "text", "text": text}] if text is not None else []
    return Message.model_validate({"info": item.model_dump(), "parts": parts})


def test_the_answer_is_the_last_step_answering_our_message() -> None:
    turn = Turn(OURS)
    assert not turn.observe(info("msg_prev_answer", "assistant", 1, "msg_prev", completed=2))
    assert turn.answer is None  # an earlier turn's reply, however recent, is not ours
    turn.observe(info(OURS, "user", 5))
    assert turn.observe(info("msg_step", "assistant", 6, OURS))
    assert turn.observe(info("msg_step", "assistant", 6, OURS, completed=7))
    assert turn.complete  # complete, but only a step: the run also needs the idle after it
    assert turn.observe(info("msg_final", "assistant", 8, OURS))
    assert not turn.complete
    assert not turn.observe(info("msg_step", "assistant", 6, OURS, completed=7))  # a late update of the step
    assert turn.answer is not None and turn.answer.id == "msg_final" and not turn.complete
    assert turn.observe(info("msg_final", "assistant", 8, OURS, completed=9))
    assert turn.complete


def test_a_later_prompt_folded_into_the_same_turn_carries_the_answer() -> None:
    # Two prompts queued before OpenCode started its loop: it answers only the latest one.
    transcript = [
        message(info("msg_old", "user", 1)),
        message(info("msg_old_answer", "assistant", 2, "msg_old", completed=3), "old"),
        message(info(OURS, "user", 5)),
        message(info("msg_later", "user", 6)),
        message(info("msg_answer", "assistant", 7, "msg_later", completed=8), "both answered"),
    ]
    turn = Turn.from_transcript(OURS, transcript)
    assert turn.complete and turn.answer_text(transcript) == (True, "both answered")


def test_opencode_clock_orders_the_transcript_not_our_id() -> None:
    # Our id is made on our clock; OpenCode's time.created decides what is earlier.
    ours = "msg_ffffffffffff0000000000000"
    transcript = [
        message(info(ours, "user", 10)),
        message(info("msg_000000000001answer", "assistant", 11, ours, completed=12), "ours"),
        message(info("msg_000000000000before", "user", 3)),
    ]
    turn = Turn.from_transcript(ours, transcript)
    assert turn.answer_text(transcript) == (True, "ours")
    assert turn.users == {ours}  # the earlier user message is not folded in


def test_no_answer_until_a_reply_names_our_message() -> None:
    transcript = [message(info("msg_old", "user", 1)), message(info("msg_a", "assistant", 2, "msg_old", completed=3))]
    turn = Turn.from_transcript(OURS, [*transcript, message(info(OURS, "user", 4))])
    assert not turn.complete and turn.answer_text(transcript) == (False, None)


def test_message_ids_sort_in_creation_order_and_look_like_opencode_ones() -> None:
    made = [ids.message_id() for _ in range(2000)]
    assert made == sorted(made) and len(set(made)) == len(made)
    assert all(re.fullmatch(r"msg_[0-9a-f]{12}[0-9A-Za-z]{14}", mid) for mid in made)


def test_a_commands_text_streamed_before_its_lineage_is_known_is_kept_then_flushed() -> None:
    """0.7.10: a reply's first deltas may come before the ``message.updated`` naming its parent."""
    lineage = CommandLineage(OURS)
    assert lineage.delta("msg_reply", "buffered prefix ") == (False, "")
    assert lineage.delta("msg_other", "another message's text") == (False, "")
    assert lineage.updated(info("msg_other", "assistant", 3, "msg_prev")) == (False, "")
    assert "msg_other" not in lineage.pending  # another lineage: dropped, never shown
    assert lineage.updated(info("msg_reply", "assistant", 5, OURS)) == (True, "buffered prefix ")
    assert lineage.delta("msg_reply", "and the rest") == (True, "and the rest")
    assert lineage.part("msg_reply") and not lineage.part("msg_other") and not lineage.part(None)
    assert lineage.updated(info("msg_reply", "assistant", 5, OURS, completed=6)) == (True, "")
    assert lineage.pending.total_bytes == 0


def test_the_precorrelation_buffer_keeps_within_the_reference_bounds() -> None:
    buffer = PreCorrelationBuffer()
    full = "x" * PRECORRELATION_MESSAGE_BYTES
    buffer.push("full", full)
    buffer.push("full", "overflow")  # over the per-message bound: dropped
    assert buffer.take("full") == full

    for index in range(PRECORRELATION_MESSAGE_IDS):
        buffer.push(f"id-{index}", "x")
    buffer.push("newest", "y")  # one message too many: the oldest gives way
    assert "id-0" not in buffer and len(buffer) == PRECORRELATION_MESSAGE_IDS
    assert buffer.take("newest") == "y"

    capped = PreCorrelationBuffer()
    for index in range(PRECORRELATION_TOTAL_BYTES // PRECORRELATION_MESSAGE_BYTES):
        capped.push(f"m{index}", full)
    assert capped.total_bytes == PRECORRELATION_TOTAL_BYTES
    capped.push("late", "z")  # over the total: the oldest message gives way
    assert "m0" not in capped and capped.total_bytes == PRECORRELATION_TOTAL_BYTES - PRECORRELATION_MESSAGE_BYTES + 1

    oversized = PreCorrelationBuffer()
    oversized.push("big", "x" * (PRECORRELATION_MESSAGE_BYTES + 1))
    oversized.push("wide", "é" * (PRECORRELATION_MESSAGE_BYTES // 2 + 1))  # bytes, not characters
    assert oversized.total_bytes == 0
