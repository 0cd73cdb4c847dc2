"""Many concurrent ``run`` calls on one Orchestrator, against the real OpenCode 1.18.33.

Under load OpenCode takes seconds before it marks a new prompt's session busy. A ``run`` that
took "idle" after a fixed grace period for the end of the turn came back ``completed`` with no
response (or the wrong one) for a good part of 100 concurrent calls. A run's turn is over only
when the reply to *its* prompt is there; these tests hold every response to the exact text the
scripted model sent.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from orchestrator_tui.orchestrator import types as t

pytestmark = pytest.mark.real_opencode

#: Enough to reproduce the fault on a 2-core machine: 30-53 of 100 came back empty before the fix.
CONCURRENT = 100


def fast_text(count: int) -> str:
    """What the scripted model streams for ``FAST <count>``, as OpenCode stores it (trailing space too)."""
    return "".join(f"w{i} " for i in range(count))


def load_prompt(index: int) -> tuple[str, str]:
    """Half short echoes, half streamed replies of different lengths: (prompt, expected response)."""
    if index % 2 == 0:
        return f"ECHO answer-{index}", f"answer-{index}"
    count = 20 + index
    return f"FAST {count}", fast_text(count)


async def test_concurrent_runs_each_get_their_own_complete_reply(orchestrator: Any) -> None:
    warm = await asyncio.wait_for(orchestrator.run(t.RunInput(message="ECHO warm")), 120)
    assert warm.output.status == t.RunStatus.COMPLETED and warm.output.response == "warm"

    # The sessions exist first, so the prompts reach OpenCode together, as fast as one worker sends them.
    client = (await orchestrator.acquire()).client
    sessions = [session.id for session in await asyncio.gather(*(client.create_session() for _ in range(CONCURRENT)))]
    expected = [load_prompt(i) for i in range(CONCURRENT)]
    results = await asyncio.wait_for(
        asyncio.gather(
            *(
                orchestrator.run(t.RunInput(session_id=sid, message=prompt))
                for sid, (prompt, _) in zip(sessions, expected, strict=True)
            )
        ),
        240,
    )
    wrong = [
        (prompt, result.output.status.value, result.output.response, result.output.warnings)
        for (prompt, answer), result in zip(expected, results, strict=True)
        if result.output.status != t.RunStatus.COMPLETED or result.output.response != answer
    ]
    empty = sum(1 for _, _, response, _ in wrong if response is None)
    assert not wrong, f"{len(wrong)} of {CONCURRENT} runs came back wrong ({empty} empty), e.g. {wrong[:3]}"
    assert len({result.output.session_id for result in results}) == CONCURRENT
