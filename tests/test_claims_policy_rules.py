"""One answer per request, the approval policy and rules (issue 4, parts 3-5).

The policy and rule matching are unit-tested; everything else runs against the real OpenCode
1.18.33 and the scripted model. The human is :class:`PoolActions` (what the dashboard calls) and
the agent is :class:`Orchestrator` (what the MCP worker calls), in one process on one pool: the
claims live in the shared registry, so the outcome is the same across processes.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from orchestrator_tui.opencode.client import OpenCodeClient
from orchestrator_tui.opencode.models import PermissionRequest
from orchestrator_tui.orchestrator import types as t
from orchestrator_tui.orchestrator.errors import InvalidInput
from orchestrator_tui.orchestrator.tools import ClientInfo, Orchestrator
from orchestrator_tui.pool.actions import ActionError, PoolActions
from orchestrator_tui.pool.policy import ApprovalPolicy, PolicyError, load_policy, policy_path
from orchestrator_tui.pool.registry import Registry, Rule, Showing
from orchestrator_tui.pool.rules import (
    PathScope,
    RuleEngine,
    default_rule_pattern,
    rule_matches,
    suggest_rule_patterns,
)

T = TypeVar("T")
SLOW = 60.0
ASK_BASH = {"permission": {"bash": "ask"}}


def request(permission: str = "bash", *patterns: str, always: tuple[str, ...] = ()) -> PermissionRequest:
    return PermissionRequest(
        id="per_test", sessionID="ses_test", permission=permission, patterns=list(patterns), always=list(always)
    )


def write_policy(folder: Path, text: str) -> Path:
    path = policy_path(folder)
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------
# unit: the policy file
# ---------------------------------------------------------------------------------------------


def test_missing_policy_keeps_the_seed_behaviour(tmp_path: Path) -> None:
    policy = load_policy(policy_path(tmp_path))
    assert policy.path == tmp_path / "policy.toml" and policy.warnings == ()
    for reply in (None, "once", "always", "reject"):
        assert policy.needs_human(request("bash", "rm -rf /"), reply) is None
    text = policy.describe()
    assert str(tmp_path / "policy.toml") in text and "not present" in text


def test_policy_rules_first_match_wins_and_reserving_is_greedy(tmp_path: Path) -> None:
    path = write_policy(
        tmp_path,
        """
default = "human"
agent_may_allow_always = false
human_wait_timeout = 30

[[rule]]
permission = "bash"
pattern = "rm *"
answer = "human"

[[rule]]
permission = "bash"
pattern = "git *"
answer = "agent"

[[rule]]
permission = "read"
answer = "agent"
""",
    )
    policy = ApprovalPolicy.from_file(path)
    assert (policy.default, policy.agent_may_allow_always, policy.human_wait_timeout) == ("human", False, 30.0)
    assert policy.needs_human(request("bash", "git status")) is None
    assert policy.needs_human(request("read", "a.txt")) is None
    # the default, and a human rule matching one pattern of several (whatever the rule order)
    reason = policy.needs_human(request("edit", "a.txt"))
    assert reason and 'default = "human"' in reason and str(path) in reason
    reason = policy.needs_human(request("bash", "git status", "rm -rf build"))
    assert reason and "rule #1" in reason and 'pattern = "rm *"' in reason
    # an agent rule needs every pattern: one outside it falls through to the default
    reason = policy.needs_human(request("bash", "git status", "make"))
    assert reason and 'default = "human"' in reason
    # `always` is the human's; `once` is fine; a reject is always the agent's to give
    reason = policy.needs_human(request("bash", "git push"), "always")
    assert reason and "agent_may_allow_always = false" in reason and "reply 'once' instead" in reason
    assert policy.needs_human(request("bash", "git push"), "once") is None
    assert policy.needs_human(request("bash", "rm -rf /"), "reject") is None
    text = policy.describe()
    assert "Rules (first match wins)" in text and "rm *" in text and "→ human" in text and "30 s" in text


def test_always_is_judged_by_the_patterns_it_grants(tmp_path: Path) -> None:
    # The repro: .github is the human's; "always" on an edit of src/a.txt grants "*" (every
    # later edit, .github included), so it is not the agent's to give, though "once" is.
    path = write_policy(
        tmp_path,
        """
agent_may_allow_always = true

[[rule]]
permission = "edit"
pattern = ".github/*"
answer = "human"

[[rule]]
permission = "bash"
pattern = "git *"
answer = "agent"
""",
    )
    policy = ApprovalPolicy.from_file(path)
    edit = request("edit", "src/a.txt", always=("*",))
    assert policy.needs_human(edit, "once") is None
    reason = policy.needs_human(edit, "always")
    assert reason and "every later edit request matching '*'" in reason and 'pattern = ".github/*"' in reason
    assert policy.needs_human(request("edit", ".github/workflows/ci.yml")) is not None
    # a grant an agent rule covers entirely is the agent's; one reaching past it falls to the default
    assert policy.needs_human(request("bash", "git status", always=("git status *",)), "always") is None
    assert policy.needs_human(request("bash", "git log", always=("git *",)), "always") is None
    wide = request("bash", "git log", always=("*",))
    assert policy.needs_human(wide, "always") is None  # default = "agent": nothing reserved for bash
    strict = ApprovalPolicy.from_file(write_policy(tmp_path, 'default = "human"\n' + path.read_text()))
    reason = strict.needs_human(wide, "always")
    assert reason and 'default = "human"' in reason


def test_agent_may_allow_always_is_false_unless_the_file_says_so(tmp_path: Path) -> None:
    assert load_policy(policy_path(tmp_path)).agent_may_allow_always  # no file: the reference's behaviour
    policy = ApprovalPolicy.from_file(write_policy(tmp_path, 'default = "agent"\n'))
    assert not policy.agent_may_allow_always
    reason = policy.needs_human(request("bash", "ls", always=("ls *",)), "always")
    assert reason and "agent_may_allow_always = false" in reason
    assert ApprovalPolicy.from_file(write_policy(tmp_path, "agent_may_allow_always = true\n")).agent_may_allow_always


def test_a_request_nobody_can_see_is_the_agents_only_if_everything_is(tmp_path: Path) -> None:
    open_policy = load_policy(policy_path(tmp_path))
    assert open_policy.blind_reason("once") is None and open_policy.blind_reason("always") is None
    reserved = ApprovalPolicy.from_file(write_policy(tmp_path, HUMAN_BASH.format(timeout=5)))
    reason = reserved.blind_reason("once")
    assert reason and "HTTP 400" in reason and "rule #1" in reason
    assert reserved.blind_reason("reject") is None
    no_always = ApprovalPolicy.from_file(write_policy(tmp_path, "agent_may_allow_always = false\n"))
    assert no_always.blind_reason("once") is None
    assert "agent_may_allow_always = false" in (no_always.blind_reason("always") or "")
    closed = ApprovalPolicy.closed("the pool's registry /x is damaged. Fix: move it aside")
    assert closed.needs_human(request("read", "a.txt")) is not None
    assert "the fail-closed policy in force because the pool's registry /x is damaged" in (
        closed.needs_human(request("read", "a.txt")) or ""
    )
    assert closed.blind_reason("once") is not None and closed.needs_human(request("read"), "reject") is None


def test_wildcard_permission_and_patternless_requests(tmp_path: Path) -> None:
    policy = ApprovalPolicy.from_file(write_policy(tmp_path, '[[rule]]\npermission = "*"\nanswer = "human"\n'))
    assert policy.needs_human(request("webfetch")) is not None
    assert policy.needs_human(request("bash", "ls")) is not None


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("default = [", ("Invalid TOML", "Fix the syntax")),
        ('default = "robot"', ("`default`", '"agent" or "human"', "'robot'")),
        ("agent_may_allow_always = 1", ("`agent_may_allow_always`", "true or false")),
        ("human_wait_timeout = -5", ("`human_wait_timeout`", "number of seconds")),
        ('defualt = "human"', ("unknown key 'defualt'", "the keys are default")),
        ('[[rule]]\npermission = "bash"\nanswer = "maybe"', ("rule #1", "`answer`", '"agent" or "human"')),
        ('[[rule]]\nanswer = "human"', ("rule #1", "`permission` is required")),
        ('[[rule]]\npermission = "bash"\nanswer = "human"\nglob = "x"', ("rule #1", "unknown key 'glob'")),
        ('rule = "bash"', ("`rule`", "[[rule]]")),
    ],
)
def test_bad_policy_file_gives_a_clear_error_and_falls_back(
    tmp_path: Path, text: str, fragments: tuple[str, ...]
) -> None:
    path = write_policy(tmp_path, text)
    with pytest.raises(PolicyError) as info:
        ApprovalPolicy.from_file(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message
    # a front end never crashes on it; it fails closed (a human answers everything), with the error
    policy = load_policy(path)
    assert policy.default == "human" and not policy.agent_may_allow_always
    assert policy.rules == () and policy.path == path
    assert len(policy.warnings) == 1 and message in policy.warnings[0]
    assert message in policy.describe()


def test_policy_follows_edits_of_its_file(tmp_path: Path) -> None:
    path = policy_path(tmp_path)
    policy = load_policy(path)
    assert policy.refreshed() is policy  # nothing changed: not re-read
    path.write_text('default = "human"\n')
    policy = policy.refreshed()
    assert policy.default == "human"
    path.write_text('default = "human"\nhuman_wait_timeout = 5\n')
    assert policy.refreshed().human_wait_timeout == 5.0
    path.unlink()
    assert policy.refreshed().default == "agent"


# ---------------------------------------------------------------------------------------------
# unit: rule matching and the patterns offered for a rule
# ---------------------------------------------------------------------------------------------


def make_rule(permission: str, pattern: str, revoked: bool = False) -> Rule:
    return Rule(1, permission, pattern, "once", "human", 0.0, 1.0 if revoked else None)


def test_rule_matching() -> None:
    assert rule_matches(make_rule("bash", "echo *"), request("bash", "echo hi"))
    assert not rule_matches(make_rule("bash", "echo *"), request("bash", "echo hi", "rm x"))  # every pattern
    assert not rule_matches(make_rule("bash", "echo *"), request("edit", "echo hi"))
    assert rule_matches(make_rule("*", "*"), request("webfetch"))
    assert not rule_matches(make_rule("webfetch", "https://*"), request("webfetch"))  # no patterns: only "*"
    assert not rule_matches(make_rule("bash", "*", revoked=True), request("bash", "ls"))
    assert rule_matches(make_rule("bash", "*"), request("bash", "/bin/ls /"))  # not a path permission
    # OpenCode's globs, not fnmatch's: a trailing " *" is optional, "[" is a literal
    assert rule_matches(make_rule("bash", "git push *"), request("bash", "git push"))
    assert not rule_matches(make_rule("bash", "ls [ab]"), request("bash", "ls a"))
    assert rule_matches(make_rule("bash", "ls [ab]"), request("bash", "ls [ab]"))


# A git project: OpenCode gives file paths relative to the worktree, the project itself.
GIT = PathScope(directory="/srv/proj", worktree="/srv/proj")
# Outside git the worktree is "/": "tmp/x" is relative to the root of the disk.
PLAIN = PathScope(directory="/tmp/x/proj", worktree="/")


def test_file_rules_decide_inside_the_project_on_the_absolute_path() -> None:
    inside = make_rule("read", "*")  # a relative glob: anything under the session's project
    assert rule_matches(inside, request("read", "notes.txt", "src/a.py"), GIT)
    assert not rule_matches(inside, request("read", "/etc/passwd"), GIT)
    assert not rule_matches(inside, request("read", "../other/secret"), GIT)
    assert not rule_matches(make_rule("edit", "src/*"), request("edit", "src/../../x"), GIT)
    # the attack: outside a git repository the relative form of /etc/passwd is "etc/passwd"
    assert rule_matches(inside, request("read", "tmp/x/proj/notes.txt"), PLAIN)
    assert not rule_matches(inside, request("read", "etc/passwd"), PLAIN)
    assert not rule_matches(inside, request("read", "tmp/x/other/secret"), PLAIN)
    # an absolute glob matches the absolute path, whatever form OpenCode used
    project = make_rule("read", "/tmp/x/proj/*")
    assert rule_matches(project, request("read", "tmp/x/proj/a/b.txt"), PLAIN)
    assert not rule_matches(project, request("read", "tmp/x/project-evil/b.txt"), PLAIN)
    assert rule_matches(make_rule("read", "/srv/data/*"), request("read", "/srv/data/a.csv"), GIT)
    # without knowing where the session is, a relative file rule answers nothing (a person does)
    assert not rule_matches(inside, request("read", "notes.txt"))
    assert PathScope.of("/tmp/x/proj", "tmp/x/proj") == PLAIN
    assert PathScope.of("/srv/proj/sub", "sub") == PathScope("/srv/proj/sub", "/srv/proj")
    assert PathScope.of("/srv/proj", "") == GIT
    assert PathScope.of("/srv/proj", "elsewhere") is None


def test_default_and_suggested_rule_patterns() -> None:
    bash = request("bash", "echo hi", always=("echo *",))
    assert default_rule_pattern(bash) == "echo *"
    assert suggest_rule_patterns(bash, GIT) == [
        ("echo *", "like this request"),
        ("echo hi", "exactly this"),
        ("*", "any bash request"),
    ]
    assert suggest_rule_patterns(bash, GIT).preferred == "echo *"
    # files: the absolute path, the project as an absolute glob, then any path at all
    edit = request("edit", "tmp/x/proj/src/a.py", always=("*",))
    assert suggest_rule_patterns(edit, PLAIN) == [
        ("/tmp/x/proj/src/a.py", "like this request"),
        ("/tmp/x/proj/*", "anything under this project"),
        ("/*", "any edit request, anywhere"),
    ]
    # the make-rule dialog proposes the project for a file: the rule people mean
    assert suggest_rule_patterns(edit, PLAIN).preferred == "/tmp/x/proj/*"
    # a file outside the project is never offered as "under this project"
    outside = request("read", "etc/passwd", always=("*",))
    assert [p for p, _ in suggest_rule_patterns(outside, PLAIN)] == ["/etc/passwd", "/*"]
    assert suggest_rule_patterns(outside, PLAIN).preferred == "/etc/passwd"
    external = request("external_directory", "/srv/other/*", always=("/srv/other/*",))
    assert [p for p, _ in suggest_rule_patterns(external, GIT)] == ["/srv/other/*", "/*"]
    assert default_rule_pattern(request("bash", "a", "b")) == "a"
    assert default_rule_pattern(request("webfetch")) == "*"


@pytest.mark.parametrize("steps_between", [0, 1])
async def test_rule_engine_stops_when_a_pool_change_comes_with_the_stop(tmp_path: Path, steps_between: int) -> None:
    """The dashboard stops its rule engine as it closes, and a pool change (a request answered,
    the stream dropping) can wake the engine in the same moment: stop() still returns. On
    Python 3.11, asyncio.wait_for swallowed the cancel in that moment; the engine went back
    to waiting and the dashboard's exit waited for it forever (a dashboard test hit the
    300 s test timeout that way)."""
    from orchestrator_tui.pool.service import PoolService, ServerSpec

    service = PoolService(ServerSpec(cwd=tmp_path))  # never started: no request ever pending
    registry = Registry(tmp_path / "registry.sqlite3")
    engine = RuleEngine(service, registry, channel="dashboard")
    try:
        engine.start()
        await asyncio.sleep(0.1)  # the engine waits for the next change
        service.pool.set_connection("connected")
        service.pool.flush()  # the change reaches the engine...
        for _ in range(steps_between):
            await asyncio.sleep(0)
        stopping = asyncio.ensure_future(engine.stop())  # ...as the dashboard stops it
        done, _ = await asyncio.wait({stopping}, timeout=20)
        assert done, "the rule engine did not stop"
    finally:
        await service.close()
        registry.close()


# ---------------------------------------------------------------------------------------------
# real OpenCode: helpers
# ---------------------------------------------------------------------------------------------


async def until(predicate: Callable[[], T | None], what: str, timeout: float = SLOW) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def pending(orch: Orchestrator, sid: str) -> PermissionRequest | None:
    return next((p for p in orch.service.pool.permissions.values() if p.sessionID == sid), None)


async def start_session(actions: PoolActions, prompt: str) -> str:
    """A session started by the human (returns at once; its turn runs on)."""
    return (await actions.new_session(prompt)).id


def count_replies(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count every permission reply that is sent to OpenCode, by request id."""
    sent: Counter[str] = Counter()
    original = OpenCodeClient.reply_permission

    async def counting(self: OpenCodeClient, request_id: str, *args: Any, **kwargs: Any) -> Any:
        sent[request_id] += 1
        return await original(self, request_id, *args, **kwargs)

    monkeypatch.setattr(OpenCodeClient, "reply_permission", counting)
    return sent


def agent(orch: Orchestrator, name: str = "test-agent") -> Orchestrator:
    orch.client_info = ClientInfo(name=name)
    return orch


def respond(sid: str, rid: str | None = None, reply: str = "once") -> t.RespondPermissionInput:
    return t.RespondPermissionInput(session_id=sid, permission_request_id=rid, reply=reply)  # type: ignore[arg-type]


pytest_real = pytest.mark.real_opencode


# ---------------------------------------------------------------------------------------------
# 1. one answer per request
# ---------------------------------------------------------------------------------------------


@pytest_real
async def test_human_and_agent_answer_the_same_permission_once(
    make_orchestrator: Callable[..., Orchestrator], monkeypatch: pytest.MonkeyPatch
) -> None:
    orch = agent(make_orchestrator(**ASK_BASH))
    registry = orch.registry
    assert registry is not None
    human = PoolActions(orch.service, registry)
    sent = count_replies(monkeypatch)

    # Both at the same moment (the human claims first), then the human a moment after the agent
    # claimed: each side wins once.
    outcomes: list[str] = []
    for n, human_second in enumerate((False, True)):
        sid = await start_session(human, f"BASH echo race-{n}")
        req = await until(lambda sid=sid: pending(orch, sid), "the bash permission")

        async def human_answers(rid: str = req.id, second: bool = human_second) -> None:
            if second:
                await until(lambda: registry.claim_of(rid), "the agent's claim")
            await human.reply_permission(rid, "once")

        by_human, by_agent = await asyncio.wait_for(
            asyncio.gather(human_answers(), orch.respond_permission(respond(sid, req.id)), return_exceptions=True),
            SLOW,
        )
        assert sent[req.id] == 1, sent
        (decision,) = registry.decisions(request_id=req.id)
        if by_human is None:
            assert isinstance(by_agent, InvalidInput), by_agent
            assert f"Permission request '{req.id}' was already answered by human (orchestrator-tui dashboard)" in str(
                by_agent
            )
            assert ": once" in str(by_agent) and f"session_id='{sid}'" in str(by_agent)
            assert (decision.decided_by, decision.channel) == ("human", "dashboard")
            outcomes.append("human")
            follow = await asyncio.wait_for(orch.run(t.RunInput(session_id=sid, wait_for_activity=True)), SLOW)
            assert follow.output.response == f"Command output:\nrace-{n}"
        else:
            assert isinstance(by_human, ActionError), by_human
            assert str(by_human).startswith("This request was already answered by agent (test-agent) at ")
            assert not isinstance(by_agent, BaseException), by_agent
            assert by_agent.output.response == f"Command output:\nrace-{n}"
            assert (decision.decided_by, decision.channel, decision.client_name) == ("agent", "mcp", "test-agent")
            outcomes.append("agent")
    assert outcomes == ["human", "agent"]

    # A batch: two pending requests and one already answered; each is reported on its own.
    sids = [await start_session(human, f"BASH echo batch-{n}") for n in range(2)]
    reqs = [await until(lambda sid=sid: pending(orch, sid), "a batch permission") for sid in sids]
    answered = next(iter(sent))
    results = await human.reply_permissions([r.id for r in reqs] + [answered], "once")
    assert [rid for rid, _ in results] == [reqs[0].id, reqs[1].id, answered]
    assert results[0][1] is None and results[1][1] is None
    assert results[2][1] is not None and "already answered by" in str(results[2][1])
    for r in reqs:
        assert sent[r.id] == 1 and len(registry.decisions(request_id=r.id)) == 1
    assert all(count == 1 for count in sent.values()), sent


# ---------------------------------------------------------------------------------------------
# 2. the approval policy
# ---------------------------------------------------------------------------------------------

HUMAN_BASH = """
human_wait_timeout = {timeout}
agent_may_allow_always = false

[[rule]]
permission = "bash"
pattern = "echo reserved*"
answer = "human"
"""


@pytest_real
async def test_policy_refuses_the_agent_when_no_human_is_attached(
    make_orchestrator: Callable[..., Orchestrator],
) -> None:
    orch = agent(make_orchestrator(**ASK_BASH))
    assert orch.registry is not None
    path = write_policy(orch.registry.path.parent, HUMAN_BASH.format(timeout=600))
    orch.policy = load_policy(path)
    assert not orch.registry.human_attached()

    started = time.monotonic()
    first = await asyncio.wait_for(orch.run(t.RunInput(message="BASH echo reserved")), SLOW)
    out = first.output
    assert out.status == t.RunStatus.PERMISSION_REQUIRED and out.permission_type == "bash"
    assert time.monotonic() - started < 20  # returned, did not wait for a human
    (warning,) = out.warnings
    assert "A human must answer this bash request in orchestrator-tui" in warning and "rule #1" in warning
    assert "No dashboard is attached" in warning

    with pytest.raises(InvalidInput) as info:
        await orch.respond_permission(respond(out.session_id, out.permission_request_id))
    message = str(info.value)
    assert f"Permission request '{out.permission_request_id}' cannot be answered by the agent" in message
    assert "A human must answer this bash request in orchestrator-tui" in message
    assert 'pattern = "echo reserved*"' in message and str(path) in message
    assert "run `orchestrator-tui`" in message
    assert out.permission_request_id in orch.service.pool.permissions
    assert orch.registry.decisions() == []

    # A reject is the agent's to give even here: it grants nothing.
    done = await asyncio.wait_for(
        orch.respond_permission(respond(out.session_id, out.permission_request_id, "reject")), SLOW
    )
    assert done.output.status == t.RunStatus.COMPLETED
    (decision,) = orch.registry.decisions()
    assert (decision.decision, decision.decided_by) == ("reject", "agent")

    # Not reserved, but "always" is not the agent's to give.
    other = await asyncio.wait_for(orch.run(t.RunInput(message="BASH echo free")), SLOW)
    assert other.output.status == t.RunStatus.PERMISSION_REQUIRED and other.output.warnings == []
    with pytest.raises(InvalidInput, match="agent_may_allow_always = false"):
        await orch.respond_permission(respond(other.output.session_id, reply="always"))
    once = await asyncio.wait_for(orch.respond_permission(respond(other.output.session_id)), SLOW)
    assert once.output.response == "Command output:\nfree"


@pytest_real
async def test_with_a_human_attached_the_agent_waits_for_the_approval(
    make_orchestrator: Callable[..., Orchestrator], token_file: tuple[Path, str], project_dir: Path
) -> None:
    # A short inactivity timeout: waiting for the human must not count as inactivity.
    (project_dir / "agentic.toml").write_text("[orchestrator]\ninactivity_timeout_secs = 5\n")
    orch = agent(make_orchestrator(permission={"bash": "ask", "external_directory": "ask"}))
    registry = orch.registry
    assert registry is not None
    path = write_policy(
        registry.path.parent,
        HUMAN_BASH.format(timeout=600) + '\n[[rule]]\npermission = "external_directory"\nanswer = "human"\n',
    )
    orch.policy = load_policy(path)
    member = registry.register_member("human", "orchestrator-tui")
    human = PoolActions(orch.service, registry)
    progress: list[str] = []

    async def human_looks() -> None:
        """The human's dashboard says what its inbox shows, as the real one does on each change."""
        while True:
            registry.show(member, Showing(frozenset(orch.service.pool.permissions), None, connected=True))
            await asyncio.sleep(0.05)

    looking = asyncio.ensure_future(human_looks())

    async def report(message: str) -> None:
        progress.append(message)

    async def human_approves(sid: str) -> None:
        """The human answers every request of the session, once each, as they come."""
        while True:
            req = pending(orch, sid)
            if req is not None:
                await human.reply_permission(req.id, "once")
            await asyncio.sleep(0.05)

    waiting = "waiting for a human to approve {} in orchestrator-tui"
    try:
        # run: reads a file outside the project; the policy gives that to the human.
        file, token = token_file
        sid = (await (await orch.acquire()).client.create_session()).id
        prompt = f'There is a text file at "{file}". Use the `read` tool to read it and reply with its contents.'
        run = asyncio.ensure_future(orch.run(t.RunInput(session_id=sid, message=prompt), report))
        await until(
            lambda: waiting.format("external_directory") in progress or run.done(), "progress: waiting for the human"
        )
        assert not run.done(), run.result().output
        # The human takes longer than the inactivity timeout: the run still waits.
        await asyncio.sleep(6)
        assert not run.done() and pending(orch, sid) is not None
        approver = asyncio.ensure_future(human_approves(sid))
        try:
            result = await asyncio.wait_for(run, SLOW)
        finally:
            approver.cancel()
        assert result.output.status == t.RunStatus.COMPLETED, result.output
        assert result.output.response is not None and token in result.output.response
        assert {d.decided_by for d in registry.decisions()} == {"human"}

        # respond_permission: the agent tries to approve a reserved request, and waits instead.
        sid2 = await start_session(human, "BASH echo reserved-two")
        req = await until(lambda: pending(orch, sid2), "the reserved bash permission")
        progress.clear()
        answer = asyncio.ensure_future(orch.respond_permission(respond(sid2, req.id), report))
        await until(lambda: waiting.format("bash") in progress, "progress: waiting for the human (respond)")
        await asyncio.sleep(6.0)  # longer than the inactivity timeout
        assert not answer.done() and registry.decisions(request_id=req.id) == []
        await human.reply_permission(req.id, "once")
        result2 = await asyncio.wait_for(answer, SLOW)
        assert result2.output.response == "Command output:\nreserved-two"
        (decision,) = registry.decisions(request_id=req.id)
        assert decision.decided_by == "human"

        # Nobody answers: after human_wait_timeout the usual permission_required, with a warning.
        orch.policy = load_policy(write_policy(registry.path.parent, HUMAN_BASH.format(timeout=1.5)))
        started = time.monotonic()
        late = await asyncio.wait_for(orch.run(t.RunInput(message="BASH echo reserved-late"), report), SLOW)
        assert late.output.status == t.RunStatus.PERMISSION_REQUIRED
        assert time.monotonic() - started >= 1.5
        assert any(
            "No human answered this bash request in orchestrator-tui within 1.5 s" in w for w in late.output.warnings
        )
    finally:
        looking.cancel()
        registry.remove_member(member)


# ---------------------------------------------------------------------------------------------
# 3. rules
# ---------------------------------------------------------------------------------------------


@pytest_real
async def test_rule_answers_matching_requests_of_other_sessions_until_revoked(
    make_orchestrator: Callable[..., Orchestrator], monkeypatch: pytest.MonkeyPatch
) -> None:
    orch = agent(make_orchestrator(**ASK_BASH))
    registry = orch.registry
    assert registry is not None
    human = PoolActions(orch.service, registry)
    sent = count_replies(monkeypatch)
    await orch.acquire()
    # Two engines on one pool (as a dashboard and a worker would run): claims make them answer once.
    other_registry = Registry(registry.path)
    engines = [
        RuleEngine(orch.service, registry, channel="dashboard"),
        RuleEngine(orch.service, other_registry, channel="mcp"),
    ]
    for engine in engines:
        engine.start()
    try:
        sid = await start_session(human, "BASH echo first")
        req = await until(lambda: pending(orch, sid), "the first permission")
        assert human.rule_patterns(req.id)[0] == ("echo *", "like this request")
        rule = await human.make_rule(req.id, "once")
        assert (rule.permission, rule.pattern, rule.reply) == ("bash", "echo *", "once")
        assert [r.id for r in human.rules()] == [rule.id]
        (decision,) = registry.decisions(request_id=req.id)
        assert decision.decided_by == "human"

        # The agent's next matching request in another session is answered by the rule, and the
        # agent's run simply completes (it waits for the rule instead of returning the permission).
        result = await asyncio.wait_for(orch.run(t.RunInput(message="BASH echo second")), SLOW)
        assert result.output.status == t.RunStatus.COMPLETED, result.output
        assert result.output.response == "Command output:\nsecond"
        by_rule = [d for d in registry.decisions() if d.decided_by == rule.decider]
        assert len(by_rule) == 1 and by_rule[0].session_id == result.output.session_id
        assert by_rule[0].channel == "rule" and by_rule[0].client_name in ("dashboard", "mcp")
        assert by_rule[0].detail and by_rule[0].detail["rule"] == rule.id
        assert sent[by_rule[0].request_id] == 1

        # Not matching the rule's pattern: left alone.
        third = await asyncio.wait_for(orch.run(t.RunInput(message="BASH ls")), SLOW)
        assert third.output.status == t.RunStatus.PERMISSION_REQUIRED

        # Revoked: the next matching request stays pending.
        human.revoke_rule(rule.id)
        assert human.rules() == []
        with pytest.raises(ActionError, match=f"no active rule #{rule.id}"):
            human.revoke_rule(rule.id)
        after = await asyncio.wait_for(orch.run(t.RunInput(message="BASH echo third")), SLOW)
        assert after.output.status == t.RunStatus.PERMISSION_REQUIRED
        await asyncio.sleep(2.5)  # longer than the engines' rescan
        assert after.output.permission_request_id in orch.service.pool.permissions
        assert len([d for d in registry.decisions() if d.decided_by == rule.decider]) == 1
        assert all(count == 1 for count in sent.values()), sent
    finally:
        for engine in engines:
            await engine.stop()
        other_registry.close()


@pytest.fixture
def token_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A file outside the project, so reading it asks for ``external_directory``."""
    folder = tmp_path_factory.mktemp("outside")
    token = f"claims-policy token: {time.time_ns()}"
    path = folder / "token.txt"
    path.write_text(token)
    return path, token
