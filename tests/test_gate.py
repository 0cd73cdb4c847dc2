"""The human gate holds: every way around the approval policy that was found, tried and refused.

Each test reproduces an attack an orchestrating agent can make through its tools, on the real
OpenCode 1.18.33 with the scripted model, shows it refused (with an error that says why and what
to do instead), and shows that a human decision is still possible afterwards.

The tests share one OpenCode server (module scope): each works in its own project directory,
which OpenCode keeps as its own instance, so one test's ``always`` grants and commands do not
reach another's. The agent is an :class:`Orchestrator` (what the MCP worker runs) and the human
is :class:`PoolActions` (what the dashboard runs), on the same pool registry.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from test_claims_policy_rules import until
from test_dashboard_tmux import Terminal, console_script, demo_env, terminal
from test_mcp_protocol import ProcessGuard, guard, sdk_worker, text_of

from orchestrator_tui.opencode.binary import Launcher
from orchestrator_tui.opencode.models import Paths, PermissionRequest
from orchestrator_tui.opencode.process import ManagedServer
from orchestrator_tui.opencode.templates import expand
from orchestrator_tui.orchestrator import types as t
from orchestrator_tui.orchestrator.command_guard import check_command_run
from orchestrator_tui.orchestrator.errors import InvalidInput
from orchestrator_tui.orchestrator.tools import ClientInfo, Orchestrator
from orchestrator_tui.pool.actions import PoolActions
from orchestrator_tui.pool.policy import ApprovalPolicy, load_policy, policy_path
from orchestrator_tui.pool.registry import PoolStateError, Registry
from orchestrator_tui.pool.rules import RuleEngine
from orchestrator_tui.pool.service import PoolService, ServerSpec
from orchestrator_tui.scripted_model.server import ScriptedModelServer, opencode_config

__all__ = ["demo_env", "guard", "terminal"]  # fixtures, used by name

T = TypeVar("T")
SLOW = 60.0
ASK = {"bash": "ask", "edit": "ask", "read": "ask", "external_directory": "ask", "webfetch": "ask"}

pytestmark = pytest.mark.real_opencode


# ---------------------------------------------------------------------------------------------
# one server for the module; a project, a registry, an agent and a human per test
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server_env(opencode_base_env: dict[str, str]) -> dict[str, str]:
    return opencode_base_env


@pytest.fixture(scope="module")
def server(
    server_env: dict[str, str], scripted_model: ScriptedModelServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ManagedServer]:
    """One ``opencode serve`` for every test here (its own process group, killed at teardown)."""
    config = json.dumps(opencode_config(scripted_model.base_url, permission=ASK))
    home = tmp_path_factory.mktemp("gate-server")
    started = asyncio.run(
        ManagedServer.start(
            launcher=Launcher(server_env["OPENCODE_BINARY"]), cwd=home, env=server_env, config_content=config
        )
    )
    try:
        yield started
    finally:
        started.kill_sync()


class Pool:
    """The agent and the human of one test, on one project directory and one registry."""

    def __init__(self, server: ManagedServer, project: Path, env: dict[str, str], state: Path) -> None:
        self.project = project
        self.registry = Registry(state / "registry.sqlite3")
        spec = ServerSpec(
            cwd=project, attach_url=server.base_url, username=server.username, password=server.password
        )
        self.agent = Orchestrator(PoolService(spec), registry=self.registry, env=env)
        self.agent.client_info = ClientInfo(name="hostile-agent")
        self.human = PoolActions(self.agent.service, self.registry)

    def use_policy(self, text: str | None) -> ApprovalPolicy:
        path = policy_path(self.registry.path.parent)
        if text is not None:
            path.write_text(text)
        self.agent.policy = load_policy(path)
        return self.agent.policy

    def pending(self, sid: str) -> PermissionRequest | None:
        return next((p for p in self.agent.service.pool.permissions.values() if p.sessionID == sid), None)

    async def close(self) -> None:
        await self.agent.close()
        self.registry.close()


@pytest.fixture
def project(project_dir: Path) -> Path:
    """A git project with this module's commands (OpenCode reads them when it first serves it)."""
    for name, template in COMMANDS.items():
        write_command(project_dir, name, template)
    return project_dir


@pytest.fixture
async def pool(server: ManagedServer, server_env: dict[str, str], project: Path, tmp_path: Path) -> AsyncIterator[Pool]:
    made = Pool(server, project, {**server_env, "ORCHESTRATOR_TUI_STATE_DIR": str(tmp_path / "state")}, tmp_path)
    await made.agent.acquire()
    try:
        yield made
    finally:
        await made.close()


#: Project commands of every test project (the attacks use some, the legitimate uses others).
COMMANDS = {
    "shellecho": "Echo: !`echo $ARGUMENTS`",
    "sneaky": "Note !`date` then $ARGUMENTS",
    "summary": "ECHO summary of $ARGUMENTS",
    "status": "ECHO status: !`echo from-template` $ARGUMENTS",
}


def run(**fields: Any) -> t.RunInput:
    return t.RunInput(**fields)


def respond(sid: str, rid: str | None = None, reply: str = "once") -> t.RespondPermissionInput:
    return t.RespondPermissionInput(session_id=sid, permission_request_id=rid, reply=reply)  # type: ignore[arg-type]


def write_command(project: Path, name: str, template: str) -> None:
    folder = project / ".opencode" / "command"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.md").write_text(f"---\ndescription: test command {name}\n---\n{template}\n")


async def user_texts(pool: Pool, sid: str) -> list[str]:
    client = (await pool.agent.acquire()).client
    messages = await client.messages(sid)
    return [
        "".join(p.text or "" for p in m.parts if p.type == "text" and not p.synthetic)
        for m in messages
        if m.info.role == "user"
    ]


# ---------------------------------------------------------------------------------------------
# 1. commands run shell and read files with no permission
# ---------------------------------------------------------------------------------------------


async def test_command_arguments_never_reach_the_shell(pool: Pool, tmp_path: Path) -> None:
    proof = tmp_path / "owned"
    pool.use_policy('default = "human"\n')
    before = {s.id for s in await (await pool.agent.acquire()).client.list_sessions()}
    # The repro: `init` exists in every project and puts its arguments into its template.
    with pytest.raises(InvalidInput) as info:
        await pool.agent.run(run(command="init", message=f"!`id > {proof}`"))
    message = str(info.value)
    assert f"Command 'init' would run `id > {proof}` in the shell, built from your message" in message
    assert "Send the text as a plain message instead" in message
    # A custom command that puts $ARGUMENTS inside its own shell block: the same refusal.
    with pytest.raises(InvalidInput, match="would run `echo hello; touch"):
        await pool.agent.run(run(command="shellecho", message=f"hello; touch {proof}"))
    # JavaScript's replacement patterns cannot smuggle one in either: "$`" repeats the template's
    # text before $ARGUMENTS, which here holds "!`" ...
    with pytest.raises(InvalidInput, match="would run"):
        await pool.agent.run(run(command="sneaky", message=f"$`id > {proof}`"))
    await asyncio.sleep(1.0)
    assert not proof.exists()
    # Nothing was started on the agent's behalf.
    after = {s.id for s in await (await pool.agent.acquire()).client.list_sessions()}
    assert after == before
    assert pool.registry.decisions() == []

    # The human can still decide to run it: from the dashboard the command runs as asked.
    client = (await pool.agent.acquire()).client
    session = await client.create_session()
    await pool.human.run_command(session.id, "shellecho", f"hello; touch {proof}")
    await until(proof.exists, "the human's command to run its shell block")


async def test_command_arguments_never_bring_in_files_outside_the_project(pool: Pool, tmp_path: Path) -> None:
    secret = tmp_path / "outside-secret.txt"
    secret.write_text("TOP-SECRET-TOKEN\n")
    (pool.project / "notes.txt").write_text("project notes\n")
    (pool.project / "escape").symlink_to(secret)
    for argument, named in (
        (f"summarise @{secret}", str(secret)),
        ("summarise @../outside-secret.txt", str(secret)),
        ("summarise @escape", str(pool.project / "escape")),  # a symlink out of the project
        ("summarise @~/.ssh/id_rsa", str(Path.home() / ".ssh" / "id_rsa")),
    ):
        with pytest.raises(InvalidInput) as info:
            await pool.agent.run(run(command="init", message=argument))
        message = str(info.value)
        assert f"Command 'init' would put '{named}' into the model's input" in message, message
        assert "may not bring in files outside the project" in message

    # A file inside the project is fine (no policy file: the agent may read), and OpenCode's own
    # expansion is the one the guard predicted.
    done = await asyncio.wait_for(pool.agent.run(run(command="summary", message="@notes.txt")), SLOW)
    assert done.output.status == t.RunStatus.COMPLETED, done.output
    texts = await user_texts(pool, done.output.session_id)
    assert expand(COMMANDS["summary"], "@notes.txt").text.strip() in texts
    assert "TOP-SECRET-TOKEN" not in json.dumps(
        [m.model_dump() for m in await (await pool.agent.acquire()).client.messages(done.output.session_id)]
    )


async def test_a_templates_own_shell_is_judged_by_the_policy(pool: Pool) -> None:
    # No policy file: the agent may answer everything (the reference's behaviour), so it runs.
    ran = await asyncio.wait_for(pool.agent.run(run(command="status", message="now")), SLOW)
    assert ran.output.status == t.RunStatus.COMPLETED, ran.output
    (text,) = await user_texts(pool, ran.output.session_id)
    assert "from-template" in text and "!`" not in text and text.endswith("now"), text

    # A policy that keeps bash for the human keeps this command for the human too.
    pool.use_policy('[[rule]]\npermission = "bash"\nanswer = "human"\n')
    with pytest.raises(InvalidInput) as info:
        await pool.agent.run(run(command="status", message="again"))
    message = str(info.value)
    assert "Command 'status' would run `echo from-template` before the model sees it" in message
    assert "reserves bash requests like this one for a human" in message and "rule #1" in message
    # ... unless the policy lets the agent run exactly that.
    pool.use_policy('[[rule]]\npermission = "bash"\npattern = "echo *"\nanswer = "agent"\n')
    again = await asyncio.wait_for(pool.agent.run(run(command="status", message="again")), SLOW)
    assert again.output.status == t.RunStatus.COMPLETED


def test_the_guard_reproduces_opencodes_expansion() -> None:
    assert expand("Do $ARGUMENTS", "a b").text == "Do a b"
    assert expand("$1 and $2", '"a b" c d').text == "a b and c d"  # the last one takes the rest
    assert expand("$2|$1", "x").text == "|x"
    assert expand("plain", "args here").text == "plain\n\nargs here"
    assert expand("plain", "   ").text == "plain"
    assert expand("A $ARGUMENTS B", "$$ $& $` $'").text == "A $ $ARGUMENTS A   B B"
    assert expand("!`ls $1`", "x").shell == ("ls x",)
    assert expand("see @a.py, @b/c.txt and me@mail.com", "").references == ("a.py", "b/c.txt")
    # JavaScript's \s ends a reference at a no-break space; Python's own \w would not stop at "é"
    assert expand("@docs\u00a0/x", "").references == ("docs",)
    paths = Paths(home="/home/me", directory="/srv/proj", worktree="/srv/proj")
    from orchestrator_tui.opencode.models import Command

    unknown = Command(name="mcp-prompt", template=None)
    with pytest.raises(InvalidInput, match="OpenCode does not show its template"):
        check_command_run(unknown, "anything", paths, None)
    check_command_run(unknown, "", paths, None)
    check_command_run(None, "!`id`", paths, None)  # OpenCode does not know it: it will say so itself


# ---------------------------------------------------------------------------------------------
# 2. "always" widens past the policy
# ---------------------------------------------------------------------------------------------

GITHUB_IS_HUMAN = """
agent_may_allow_always = true

[[rule]]
permission = "edit"
pattern = ".github/*"
answer = "human"
"""


async def test_always_cannot_grant_what_the_policy_keeps_for_the_human(pool: Pool) -> None:
    workflows = pool.project / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "ci.yml").write_text("on: push\n")
    (pool.project / "src").mkdir()
    (pool.project / "src" / "a.txt").write_text("alpha\n")
    pool.use_policy(GITHUB_IS_HUMAN)

    # The repro, step 1: refused "once" on the reserved workflow file.
    ci = await asyncio.wait_for(pool.agent.run(run(message=f"EDIT {workflows}/ci.yml push => pull_request")), SLOW)
    assert ci.output.status == t.RunStatus.PERMISSION_REQUIRED
    with pytest.raises(InvalidInput, match="reserves edit requests like this one for a human"):
        await pool.agent.respond_permission(respond(ci.output.session_id, ci.output.permission_request_id))
    # Step 2: "always" on a harmless edit would grant "*", every later edit: refused.
    src = await asyncio.wait_for(pool.agent.run(run(message=f"EDIT {pool.project}/src/a.txt alpha => beta")), SLOW)
    assert src.output.status == t.RunStatus.PERMISSION_REQUIRED
    with pytest.raises(InvalidInput) as info:
        await pool.agent.respond_permission(respond(src.output.session_id, reply="always"))
    assert "would allow every later edit request matching '*'" in str(info.value)
    assert 'pattern = ".github/*"' in str(info.value)
    # "once" is the agent's to give, and grants only this edit.
    done = await asyncio.wait_for(pool.agent.respond_permission(respond(src.output.session_id)), SLOW)
    assert done.output.status == t.RunStatus.COMPLETED
    assert (pool.project / "src" / "a.txt").read_text() == "beta\n"
    # The human turns the first workflow edit down (OpenCode edits one file at a time: the next
    # edit of it waits for this one).
    await pool.human.reply_permission(ci.output.permission_request_id or "", "reject")
    # Step 3: the next workflow edit is still asked, and waits for a person.
    again = await asyncio.wait_for(pool.agent.run(run(message=f"EDIT {workflows}/ci.yml push => schedule")), SLOW)
    assert again.output.status == t.RunStatus.PERMISSION_REQUIRED, again.output
    assert (workflows / "ci.yml").read_text() == "on: push\n"
    # The human decides.
    await pool.human.reply_permission(again.output.permission_request_id or "", "once")
    await until(lambda: (workflows / "ci.yml").read_text() == "on: schedule\n", "the human-approved edit")


# ---------------------------------------------------------------------------------------------
# 6. globs that differ from OpenCode's
# ---------------------------------------------------------------------------------------------


async def test_the_policy_matches_as_opencode_does(pool: Pool) -> None:
    # fnmatch said "git push *" does not match a bare "git push"; OpenCode says it does.
    pool.use_policy('[[rule]]\npermission = "bash"\npattern = "git push *"\nanswer = "human"\n')
    pushed = await asyncio.wait_for(pool.agent.run(run(message="BASH git push")), SLOW)
    assert pushed.output.status == t.RunStatus.PERMISSION_REQUIRED
    assert pushed.output.permission_patterns == ["git push"]
    with pytest.raises(InvalidInput, match=r'reserves bash requests like this one for a human .*"git push \*"'):
        await pool.agent.respond_permission(respond(pushed.output.session_id))
    await pool.human.reply_permission(pushed.output.permission_request_id or "", "reject")


# ---------------------------------------------------------------------------------------------
# 3. the HTTP 400 fallback
# ---------------------------------------------------------------------------------------------


async def test_a_request_that_cannot_be_seen_is_not_answered_blindly(
    pool: Pool, server: ManagedServer, server_env: dict[str, str], tmp_path: Path
) -> None:
    pool.use_policy('[[rule]]\npermission = "bash"\npattern = "echo reserved*"\nanswer = "human"\n')
    human = pool.human
    fetch = await human.new_session('CALL webfetch {"url": "https://example.com", "format": "text"}')
    await until(lambda: pool.pending(fetch.id), "the webfetch permission")
    bash = await human.new_session("BASH echo reserved")
    reserved = await until(lambda: pool.pending(bash.id), "the reserved bash permission")
    client = (await pool.agent.acquire()).client
    with pytest.raises(Exception, match="400"):
        await client.permissions()  # OpenCode 1.18.33 cannot list them while the webfetch one waits

    # A second worker of the pool, started now: it never saw the request, and cannot list it.
    late = Orchestrator(
        PoolService(
            ServerSpec(
                cwd=pool.project, attach_url=server.base_url, username=server.username, password=server.password
            )
        ),
        registry=pool.registry,
        env={**server_env, "ORCHESTRATOR_TUI_STATE_DIR": str(tmp_path / "state")},
        policy=pool.agent.policy,
    )
    try:
        await late.acquire()
        await asyncio.sleep(0.5)
        assert reserved.id not in late.service.pool.permissions
        with pytest.raises(InvalidInput) as info:
            await late.respond_permission(respond(bash.id, reserved.id, "once"))
        message = str(info.value)
        assert f"Permission request '{reserved.id}' cannot be answered by the agent" in message
        assert "cannot be checked against the approval policy" in message and "HTTP 400" in message
    finally:
        await late.close()
    assert reserved.id in pool.agent.service.pool.permissions  # still waiting
    # The human answers it.
    await human.reply_permission(reserved.id, "once")
    await until(lambda: pool.pending(bash.id) is None, "the human's answer to land")
    await human.reply_permission(pool.pending(fetch.id).id, "reject")  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------------------
# 5. rules grant exactly what they say
# ---------------------------------------------------------------------------------------------


async def test_a_rule_answers_once_and_revoking_it_takes_effect_at_once(pool: Pool) -> None:
    (pool.project / "a.txt").write_text("a\n")
    (pool.project / "b.txt").write_text("b\n")
    engine = RuleEngine(pool.agent.service, pool.registry, channel="dashboard")
    engine.start()
    try:
        first = await pool.human.new_session(f"EDIT {pool.project}/a.txt a => A")
        request = await until(lambda: pool.pending(first.id), "the first edit")
        assert request.always == ["*"]  # what OpenCode's "always" would have granted
        patterns = pool.human.rule_patterns(request.id)
        assert patterns[0] == (str(pool.project / "a.txt"), "like this request")
        # Made from the inbox with "always" (an older dashboard's choice): sent "once" all the same.
        rule = await pool.human.make_rule(request.id, "always", pattern=str(pool.project / "a.txt"))
        assert rule.reply == "once"
        (decision,) = pool.registry.decisions(request_id=request.id)
        assert decision.decision == "once"
        await until(lambda: (pool.project / "a.txt").read_text() == "A\n", "the first edit")

        # Another file: OpenCode was not told "always", so it asks; the rule does not cover it.
        other = await asyncio.wait_for(pool.agent.run(run(message=f"EDIT {pool.project}/b.txt b => B")), SLOW)
        assert other.output.status == t.RunStatus.PERMISSION_REQUIRED, other.output
        # The rule's own file: the rule answers it, once.
        again = await asyncio.wait_for(pool.agent.run(run(message=f"EDIT {pool.project}/a.txt A => AA")), SLOW)
        assert again.output.status == t.RunStatus.COMPLETED, again.output
        by_rule = [d for d in pool.registry.decisions() if d.decided_by == rule.decider]
        assert [d.decision for d in by_rule] == ["once"]

        # Revoked: at once, for every request, and the log says who and when.
        pool.human.revoke_rule(rule.id)
        stopped = await asyncio.wait_for(pool.agent.run(run(message=f"EDIT {pool.project}/a.txt AA => AAA")), SLOW)
        assert stopped.output.status == t.RunStatus.PERMISSION_REQUIRED
        await asyncio.sleep(2.5)  # longer than the engine's rescan
        assert stopped.output.permission_request_id in pool.agent.service.pool.permissions
        events = [d for d in pool.registry.decisions() if d.kind == "rule"]
        assert [(d.decision, d.decided_by, d.client_name) for d in events] == [
            ("revoked", "human", "orchestrator-tui dashboard"),
            ("created", "human", "orchestrator-tui dashboard"),
        ]
        (revoked,) = pool.registry.rules(include_revoked=True)
        assert revoked.revoked_at is not None and revoked.revoked_by == "human (orchestrator-tui dashboard)"
    finally:
        await engine.stop()


# ---------------------------------------------------------------------------------------------
# 7. "this project" outside a git repository
# ---------------------------------------------------------------------------------------------


async def test_outside_git_this_project_is_not_the_whole_disk(
    server: ManagedServer, server_env: dict[str, str], tmp_path: Path
) -> None:
    project = tmp_path / "plain-project"  # no git: OpenCode's worktree is "/"
    project.mkdir()
    (project / "inside.txt").write_text("inside\n")
    outside = tmp_path / "outside.txt"
    outside.write_text("outside\n")
    pool = Pool(server, project, {**server_env, "ORCHESTRATOR_TUI_STATE_DIR": str(tmp_path / "s")}, tmp_path)
    engine = RuleEngine(pool.agent.service, pool.registry, channel="dashboard")
    try:
        await pool.agent.acquire()
        engine.start()
        first = await pool.human.new_session(f"READ {project}/inside.txt")
        request = await until(lambda: pool.pending(first.id), "the first read")
        assert request.patterns == [str(project / "inside.txt").lstrip("/")]  # relative to "/"
        under = dict((label, glob) for glob, label in pool.human.rule_patterns(request.id))
        assert under["anything under this project"] == f"{project}/*"
        await pool.human.make_rule(request.id, "once", pattern=under["anything under this project"])

        # A read outside the project: OpenCode asks for the folder first (the human allows it),
        # then for the read itself, whose relative form ("tmp/…/outside.txt") a relative glob
        # would have matched. The rule leaves it to a person.
        session = await pool.human.new_session(f"READ {outside}")
        folder = await until(lambda: pool.pending(session.id), "the external_directory request")
        assert folder.permission == "external_directory"
        await pool.human.reply_permission(folder.id, "once")
        read = await until(
            lambda: (p := pool.pending(session.id)) is not None and p.permission == "read" and p, "the read request"
        )
        await asyncio.sleep(2.5)
        assert read.id in pool.agent.service.pool.permissions
        assert not any(d.request_id == read.id for d in pool.registry.decisions())
        await pool.human.reply_permission(read.id, "reject")
    finally:
        await engine.stop()
        await pool.close()


# ---------------------------------------------------------------------------------------------
# 4. no registry means everything needs a human (the real worker, over MCP)
# ---------------------------------------------------------------------------------------------


def _damage(folder: Path, env: dict[str, str], damage: str) -> tuple[str, ...]:
    """Break the pool's state one way; the phrases the error must carry (the problem, the fix)."""
    registry = folder / "registry.sqlite3"
    if damage == "garbage":
        registry.write_bytes(b"this is not a database\n" * 100)
        registry.chmod(0o600)  # our own file, damaged (an unsafe mode is refused before its content)
        return ("is damaged or not a registry", f"mv {registry} {registry}.broken")
    if damage == "foreign":
        db = sqlite3.connect(registry)
        db.execute("CREATE TABLE members (member_id TEXT PRIMARY KEY, colour TEXT)")
        db.commit()
        db.close()
        registry.chmod(0o600)
        return ("its table 'members' has no column 'kind'", f"mv {registry} {registry}.broken")
    if damage == "unsafe":
        os.chmod(folder, 0o777)  # anyone could plant a server record or a registry here
        return (f"refusing to use {folder}", f"chmod 700 {folder}")
    if damage == "not-a-file":
        registry.mkdir()  # what a stray `mkdir` (or another user's prank) leaves in its place
        return ("cannot be opened: Is a directory", f"make {folder} a folder you own")
    if damage == "folder-is-a-file":
        # A pool folder nobody can write into, root included: a file stands where it should be.
        folder.rmdir()
        folder.write_text("not a folder\n")
        return (f"refusing to use {folder}: it is not a folder", f"rm -r {folder}")
    env["ORCHESTRATOR_TUI_POOL"] = "../escape"
    return ("invalid pool name '../escape' (from $ORCHESTRATOR_TUI_POOL)", "e.g. --pool work")


@pytest.mark.parametrize("damage", ["garbage", "foreign", "not-a-file", "folder-is-a-file", "unsafe", "bad-name"])
def test_every_broken_pool_state_is_one_error_with_its_fix(damage: str, tmp_path: Path) -> None:
    env = {"ORCHESTRATOR_TUI_STATE_DIR": str(tmp_path / "state")}
    folder = tmp_path / "state" / "default"
    folder.mkdir(parents=True, mode=0o700)
    expected = _damage(folder, env, damage)
    with pytest.raises(PoolStateError) as info:
        Registry.for_pool(None, env)
    assert all(part in str(info.value) for part in expected), str(info.value)


async def test_a_broken_pool_state_fails_closed(
    opencode_env: dict[str, str],
    model_config: Callable[..., str],
    project_dir: Path,
    tmp_path: Path,
    guard: ProcessGuard,
) -> None:
    env = dict(opencode_env, OPENCODE_CONFIG_CONTENT=model_config(permission={"bash": "ask"}))
    folder = Path(env["ORCHESTRATOR_TUI_STATE_DIR"]) / "default"
    folder.mkdir(parents=True, mode=0o700)
    # A policy that would let the agent answer everything, had the pool's state been readable.
    (folder / "policy.toml").write_text('default = "agent"\nagent_may_allow_always = true\n')
    expected = _damage(folder, env, "garbage")
    async with sdk_worker(env, project_dir, tmp_path, guard) as worker:
        ran = await worker.call("run", {"message": "BASH echo hello"})
        assert all(part in worker.stderr() for part in expected), worker.stderr()
        assert ran.is_error is False, text_of(ran)
        out = ran.structured_content
        assert out is not None and out["status"] == "permission_required", out
        (warning,) = out["warnings"]
        assert "A human must answer this bash request" in warning
        assert all(part in warning for part in expected), warning
        for reply in ("always", "once"):
            refused = await worker.call("respond_permission", {"session_id": out["session_id"], "reply": reply})
            assert refused.is_error is True
            assert "cannot be answered by the agent" in text_of(refused)
            assert all(part in text_of(refused) for part in expected), text_of(refused)
        # A reject grants nothing: still the agent's to give.
        rejected = await worker.call("respond_permission", {"session_id": out["session_id"], "reply": "reject"})
        assert rejected.is_error is False, text_of(rejected)


@pytest.mark.parametrize("damage", ["garbage", "foreign", "folder-is-a-file", "unsafe"])
def test_the_dashboard_shows_a_broken_pool_state_and_fails_closed(
    damage: str,
    terminal: Terminal,
    demo_env: dict[str, str],
    model_config: Callable[..., str],
    project_dir: Path,
    xdg_root: Path,
) -> None:
    """On screen, no traceback; the policy in force is "everything needs a human", with the fix;
    and the inbox still works, on the dashboard's private OpenCode server."""
    # OpenCode's config folder is the test session's (it installs its plugin there once).
    env = dict(
        demo_env,
        OPENCODE_CONFIG_CONTENT=model_config(permission={"bash": "ask"}),
        XDG_CONFIG_HOME=str(xdg_root / "config"),
    )
    folder = Path(env["XDG_STATE_HOME"]) / "orchestrator-tui" / "default"
    folder.mkdir(parents=True, mode=0o700)
    problem, fix = _damage(folder, env, damage)
    app = shlex.quote(console_script())
    terminal.start(f"sh -c 'cd {shlex.quote(str(project_dir))} && {app}; echo EXITED=$?; exec sleep 600'", env)
    # The status line says so for as long as it lasts (a toast says it too, for a while).
    screen = terminal.wait(
        lambda s: "pool state unavailable: everything needs you (P)" in s.splitlines()[0], "the pool-state notice"
    )
    assert "Traceback" not in screen, screen
    # The policy screen says which policy is in force (everything needs a human) and the fix.
    terminal.wait(lambda s: "live" in s, "the connection to OpenCode")
    terminal.keys("P")
    screen = terminal.wait(lambda s: "What is wrong" in s, "the policy screen")
    flat = " ".join(screen.split())  # wrapped over several lines (the toast may cover the right half)
    assert "every permission needs a" in flat and "What is in force" in flat, screen
    assert problem.split()[0] in flat and "Fix:" in flat and f"{fix.split()[0]} " in flat, screen
    terminal.keys("Escape")
    terminal.wait(lambda s: "What is wrong" not in s, "the policy screen to close")
    # The inbox: a session asks to run a command; the human here allows it; it runs.
    terminal.keys("n")
    terminal.wait(lambda s: "what should the agent do?" in s, "the new-session prompt")
    terminal.keys("-l", "BASH echo inbox-$((6*7))")
    terminal.keys("Enter")
    terminal.wait(lambda s: "Run command: echo inbox-$((6*7))" in s, "the command request in the inbox")
    terminal.wait(lambda s: "o allow once" in s, "the inbox's key hint")
    time.sleep(0.6)  # a key answers only a request that has been on screen for half a second
    terminal.keys("o")
    terminal.wait(lambda s: "inbox-42" in s, "the allowed command's output")
    terminal.keys("q")
    screen = terminal.wait(lambda s: "EXITED=" in s, "the app to exit", timeout=30)
    assert "EXITED=0" in screen and "Traceback" not in screen, screen
