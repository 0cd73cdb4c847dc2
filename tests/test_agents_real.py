"""``list_agents`` and ``run(agent=...)`` against the real OpenCode 1.18.33.

The test's OpenCode config defines two agents of its own besides OpenCode's built-ins: a visible
``reviewer`` with a two-line description and a ``hidden`` one. ``[orchestrator.agents]`` of the
project's ``agentic.toml`` filters what ``list_agents`` shows and what ``run`` may use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator_tui.orchestrator import types as t
from orchestrator_tui.orchestrator.errors import InvalidInput

pytestmark = pytest.mark.real_opencode

AGENTS = {
    "agent": {
        "reviewer": {"description": "Reviews code.\nSecond line.", "mode": "primary", "prompt": "You review."},
        "secret": {"description": "An internal helper.", "mode": "subagent", "hidden": True},
    }
}
#: OpenCode 1.18.33's own visible agents, as ``GET /agent`` names them.
BUILT_IN = ["build", "explore", "general", "plan"]
#: OpenCode's own hidden agents (no description); never listed.
HIDDEN = {"compaction", "summary", "title", "secret"}


@pytest.fixture
def make(make_orchestrator: Callable[..., Any], project_dir: Path) -> Callable[..., Any]:
    """An orchestrator on a server with the test's agents; ``agentic`` becomes the project's agentic.toml."""

    def build(agentic: str | None = None) -> Any:
        if agentic is not None:
            (project_dir / "agentic.toml").write_text(agentic)
        return make_orchestrator(**AGENTS)

    return build


async def test_list_agents_shows_the_visible_agents_with_their_first_description_line(make: Any) -> None:
    out = await asyncio.wait_for(make().call("list_agents", {}), 60)
    listing, _ = out
    assert isinstance(listing, t.ListAgentsOutput)
    names = [a.name for a in listing.agents]
    assert sorted(names) == sorted([*BUILT_IN, "reviewer"])
    assert not HIDDEN & set(names)
    reviewer = next(a for a in listing.agents if a.name == "reviewer")
    assert reviewer.description == "Reviews code.\nSecond line."  # the JSON keeps it whole
    text = listing.text()
    assert text.startswith("Available agents:\n")
    assert "  reviewer - Reviews code.\n" in text and "Second line" not in text
    assert "  plan - Plan mode. Disallows all edit tools.\n" in text
    assert text.endswith("\nUse orchestrator_run(message=<prompt>, agent=<name>) for raw prompts\n")


async def test_list_agents_applies_allow_and_deny_with_deny_winning(make: Any) -> None:
    orch = make('[orchestrator.agents]\nallow = [" reviewer ", "plan", "Build", "secret"]\ndeny = ["plan"]\n')
    listing = await asyncio.wait_for(orch.list_agents(t.ListAgentsInput()), 60)
    # Entries are trimmed; matching is case-sensitive ("Build" is not "build"); deny wins over
    # allow; an allowed hidden agent stays hidden.
    assert [a.name for a in listing.agents] == ["reviewer"]
    assert listing.to_json() == {"agents": [{"name": "reviewer", "description": "Reviews code.\nSecond line."}]}


async def test_list_agents_with_nothing_allowed_says_so(make: Any) -> None:
    orch = make('[orchestrator.agents]\ndeny = ["build", "explore", "general", "plan", "reviewer"]\n')
    listing = await asyncio.wait_for(orch.list_agents(t.ListAgentsInput()), 60)
    assert listing.agents == []
    assert listing.text() == (
        "Available agents:\n  (no agents available)\n\n"
        "Use orchestrator_run(message=<prompt>, agent=<name>) for raw prompts\n"
    )


async def test_run_with_an_agent_sends_the_prompt_to_that_agent(make: Any) -> None:
    orch = make()
    result = await asyncio.wait_for(orch.run(t.RunInput(message="Say exactly 'reviewed'.", agent=" reviewer ")), 120)
    out = result.output
    assert out.status == t.RunStatus.COMPLETED and out.response == "reviewed"
    client = (await orch.acquire()).client
    messages = await client.messages(out.session_id)
    users = [m for m in messages if m.info.role == "user"]
    assert len(users) == 1 and (users[0].info.model_extra or {}).get("agent") == "reviewer"
    assert (await client.get_session(out.session_id)).agent == "reviewer"
    # A resume-only call sends nothing: its agent is not used, and nothing new is asked.
    again = await asyncio.wait_for(orch.run(t.RunInput(session_id=out.session_id, agent="plan")), 60)
    assert again.output.status == t.RunStatus.COMPLETED
    assert len(await client.messages(out.session_id)) == len(messages)


async def test_run_refuses_a_bad_agent_before_making_a_session(make: Any) -> None:
    orch = make('[orchestrator.agents]\nallow = ["build", "plan", "reviewer", "nope"]\ndeny = ["plan"]\n')
    cases = {
        "plan": "Agent 'plan' cannot be used because it is blocked by orchestrator.agents.deny.",
        "explore": "Agent 'explore' cannot be used because it is not present in orchestrator.agents.allow.",
        "Reviewer": "Agent 'Reviewer' cannot be used because it is not present in orchestrator.agents.allow.",
        "nope": "Agent 'nope' not found. Use list_agents to see the available agents.",
    }
    for agent, text in cases.items():
        with pytest.raises(InvalidInput) as info:
            await asyncio.wait_for(orch.run(t.RunInput(message="hi", agent=agent)), 60)
        assert str(info.value) == f"invalid input: {text}", agent
    assert (await orch.list_sessions(t.ListSessionsInput())).sessions == []


async def test_agent_validation_happens_before_any_request(make: Any) -> None:
    orch = make()
    cases = [
        (t.RunInput(command="review", message="x", agent="plan"), "agent cannot be provided when command is specified"),
        (t.RunInput(message="x", agent=""), "agent cannot be empty or whitespace-only"),
        (t.RunInput(message="x", agent=" \n\t "), "agent cannot be empty or whitespace-only"),
    ]
    for inp, text in cases:
        with pytest.raises(InvalidInput) as info:
            await orch.run(inp)
        assert str(info.value) == f"invalid input: {text}"
    assert orch.service.primary.handle.current is None, "no server was started for an invalid call"
