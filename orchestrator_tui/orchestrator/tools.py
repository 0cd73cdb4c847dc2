"""The seven orchestrator tools as plain async methods, transport-free.

:class:`Orchestrator` is what the MCP adapter calls and what tests drive directly. Inputs
are validated models; outputs are the seed's output types; every failure is a
:class:`~orchestrator_tui.orchestrator.errors.ToolError` whose text is the contract.

Over 600 lines because the seven tools share one :class:`Orchestrator` (its pool, client, config,
policy, registry and call log), and the gate that holds a permission for a rule or a human reads
all of them; the answering of ``respond_permission``/``respond_question`` is the pool's one
answer path (:mod:`~orchestrator_tui.pool.answers`), and how OpenCode's objects read in the
outputs is :mod:`.views`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from orchestrator_tui.opencode.client import HttpStatusError, OpenCodeClient, OpenCodeError
from orchestrator_tui.opencode.models import PermissionRequest, QuestionRequest, Session, SessionStatus
from orchestrator_tui.orchestrator import types as t
from orchestrator_tui.orchestrator.command_guard import check_command_run
from orchestrator_tui.orchestrator.config import OrchestratorConfig, idle_grace_ms, load_config
from orchestrator_tui.orchestrator.errors import Cancelled, Internal, InvalidInput, ToolError
from orchestrator_tui.orchestrator.parsing import parse_input
from orchestrator_tui.orchestrator.render import render_text
from orchestrator_tui.orchestrator.routing import Route, Router, looks_like_session_id
from orchestrator_tui.orchestrator.run import (
    GateVerdict,
    PermissionGate,
    Progress,
    RunMachine,
    RunPlan,
    RunResult,
)
from orchestrator_tui.orchestrator.specs import TOOL_SPECS
from orchestrator_tui.orchestrator.transcript import extract_response, interrupted_reply
from orchestrator_tui.orchestrator.views import status_summary, tool_calls_of
from orchestrator_tui.pool.answers import (
    AlreadyAnswered,
    Answer,
    Answered,
    Answerer,
    Gone,
    Kind,
    Refusal,
    answer,
    settled,
)
from orchestrator_tui.pool.handle import ServerUnavailable, Snapshot
from orchestrator_tui.pool.policy import ApprovalPolicy
from orchestrator_tui.pool.registry import Origin, Registry, Sight
from orchestrator_tui.pool.rules import first_matching_rule, scope_of
from orchestrator_tui.pool.service import PoolService
from orchestrator_tui.pool.state import PRIMARY, LostRequest

log = logging.getLogger(__name__)

#: A pending request the agent names: a permission or a question.
Pending = TypeVar("Pending", PermissionRequest, QuestionRequest)

#: Seconds a run waits for a matching rule to be applied (by any front end's rule engine)
#: before it returns the permission after all; applying one takes milliseconds.
RULE_WAIT = 15.0
#: Where the human answers what the policy reserves for them.
DASHBOARD_NAME = "orchestrator-tui"
#: Seconds a dashboard whose view covers a request gets to list it (it hears of the request on
#: its own event stream, moments after the agent's run does) before the run stops waiting.
SHOW_GRACE = 10.0


@dataclass(frozen=True)
class ClientInfo:
    """Who is calling: the MCP client's name/version from its ``initialize``."""

    name: str | None = None
    version: str | None = None


def _reply_of(inp: t.RespondPermissionInput) -> str:
    return inp.reply.value if hasattr(inp.reply, "value") else str(inp.reply)


def _lost_text(lost: LostRequest) -> str:
    """What the agent is told of a request that went away with a server that stopped.

    OpenCode keeps pending requests in memory only: after a restart they are gone, and the
    tool call that asked is interrupted. "Not found, may have been answered" would be a lie.
    """
    when = datetime.fromtimestamp(lost.lost_at / 1000).strftime("%H:%M:%S")
    what = lost.describe()
    return (
        f"{what[0].upper()}{what[1:]} was lost: the OpenCode server that held it stopped (noticed at {when}) and was "
        "restarted, and the tool call that asked for it was interrupted, so nothing is waiting for an answer. Call "
        f"run with session_id='{lost.request.sessionID}' and a message to continue (for example, ask it to retry the "
        "last step)."
    )


class Orchestrator:
    """The tool semantics over one :class:`PoolService`."""

    def __init__(
        self,
        service: PoolService,
        *,
        registry: Registry | None = None,
        origin: Origin = "agent",
        env: Mapping[str, str] | None = None,
        launcher_id: str | None = None,
        member_id: str | None = None,
        policy: ApprovalPolicy | None = None,
    ) -> None:
        self.service = service
        #: Which server each session lives on (the pool's own unless it follows several).
        self.router = Router(service)
        #: Who may answer which permission (None: the agent answers everything, as the seed).
        self.policy = policy
        #: This worker's row in the registry's members (what the dashboard shows of it).
        self.member_id = member_id
        self.registry = registry
        self.origin: Origin = origin
        self.env = os.environ if env is None else env
        self.launcher_id = launcher_id or uuid.uuid4().hex
        self.client_info = ClientInfo()
        self._launched: set[str] = set()
        self._config: tuple[int, OrchestratorConfig] | None = None
        from orchestrator_tui.orchestrator.calllog import CallLogger

        self.call_logger = CallLogger(self.env)

    # ---------------------------------------------------------------- plumbing

    @property
    def cwd(self) -> Path:
        return self.service.spec.cwd

    async def acquire(self) -> Snapshot:
        try:
            snapshot = await self.service.acquire()
        except ServerUnavailable as exc:
            raise Internal(str(exc)) from exc
        # A run needs the context windows; start loading them now so the first run does not wait.
        snapshot.prefetch_model_limits()
        return snapshot

    def config_for(self, snapshot: Snapshot) -> OrchestratorConfig:
        """The orchestrator config, re-read once per server start."""
        if self._config is None or self._config[0] != snapshot.generation:
            config, warnings = load_config(self.cwd, self.env)
            for warning in warnings:
                print(f"orchestrator-tui: {warning}", file=sys.stderr)
            self._config = (snapshot.generation, config)
        return self._config[1]

    def remember_client(self, info: ClientInfo) -> None:
        """The MCP client's name/version from its ``initialize``: attribution and the members list."""
        self.client_info = info
        if self.registry is not None and self.member_id is not None:
            try:
                self.registry.update_member(self.member_id, client_name=info.name, client_version=info.version)
            except Exception:
                log.exception("could not update the member record")

    def _set_in_flight(self, text: str | None) -> None:
        if self.registry is None or self.member_id is None:
            return
        try:
            self.registry.update_member(self.member_id, in_flight=text)
        except Exception:  # the members list is informative; never fail a call over it
            log.debug("could not update the call in flight", exc_info=True)

    def _record_launch(self, session_id: str) -> None:
        self._launched.add(session_id)
        if self.registry is not None:
            self.registry.record_launch(
                session_id, self.origin, self.launcher_id, self.client_info.name, self.client_info.version
            )

    def launched_by_me(self, session_ids: list[str]) -> set[str]:
        mine = {sid for sid in session_ids if sid in self._launched}
        if self.registry is not None:
            launches = self.registry.launches(session_ids)
            mine |= {sid for sid, rec in launches.items() if rec.launcher_id == self.launcher_id}
        return mine

    def _machine(
        self,
        route: Route,
        config: OrchestratorConfig,
        progress: Progress | None,
        reserved: Mapping[str, str] | None = None,
        *,
        after_reply: bool = False,
    ) -> RunMachine:
        return RunMachine(
            route.client,
            self.service.pool,
            config,
            model_limits=route.snapshot.model_limits,
            limits_ready=route.snapshot.ensure_model_limits,
            progress=progress,
            gate=self._gate(reserved or {}),
            follow=route.follow,
            after_reply=after_reply,
        )

    # ---------------------------------------------------------------- policy, rules and claims

    @property
    def channel(self) -> str:
        """The audit log's channel for this front end's decisions."""
        return "mcp" if self.origin == "agent" else "dashboard"

    def _current_policy(self) -> ApprovalPolicy | None:
        """The policy, re-read when its file changed (a long-lived worker follows edits)."""
        if self.policy is not None:
            self.policy = self.policy.refreshed()
        return self.policy

    def _sight(self, request: PermissionRequest) -> Sight:
        """Whether a human can see this request now (see :meth:`Registry.sight`); a registry that
        cannot be read means no dashboard can be counted on (fail closed: the agent is told a
        human must answer, and nothing waits on a human who may not be there)."""
        if self.registry is None:
            return "absent"
        view = self.service.pool.sessions.get(request.sessionID)
        directory = view.directory if view is not None and view.directory else str(self.cwd)
        try:
            return self.registry.sight(request.id, directory)
        except sqlite3.Error:
            log.warning("could not read the pool's members", exc_info=True)
            return "absent"

    def _gate(self, reserved: Mapping[str, str]) -> PermissionGate | None:
        """What a run does with a permission it meets: hold it while a rule or a human will answer.

        ``reserved`` maps request ids to why the agent may not answer them itself (beyond what
        the policy says of the request as a whole: an ``always`` it may not give, for example).
        """
        policy = self._current_policy()
        if self.registry is None and policy is None:
            return None
        registry = self.registry
        #: When this run first met each request (the grace a dashboard gets to show it).
        first_met: dict[str, float] = {}

        def gate(request: PermissionRequest) -> GateVerdict:
            if registry is not None:
                scope = scope_of(self.service.pool, request.sessionID)
                try:
                    rule = first_matching_rule(registry.rules(), request, scope)
                except sqlite3.Error:
                    rule = None
                if rule is not None:
                    return GateVerdict(
                        hold=True,
                        message=f"waiting for {rule.decider} to answer {request.permission}",
                        timeout=RULE_WAIT,
                        warning=(
                            f"{rule.decider} matches this {request.permission} request but no front end of the pool "
                            f"applied it within {RULE_WAIT:g} s; answer it with respond_permission."
                        ),
                    )
            reason = reserved.get(request.id) or (policy.needs_human(request) if policy is not None else None)
            if reason is None:
                return GateVerdict()
            # Wait only while a dashboard shows the request (or, for a moment, one about to):
            # asked again about once a second, so a dashboard that goes away ends the wait.
            sight = self._sight(request)
            met = first_met.setdefault(request.id, time.monotonic())
            if sight == "shown" or (sight == "expected" and time.monotonic() - met < SHOW_GRACE):
                timeout = policy.human_wait_timeout if policy is not None else 0.0
                return GateVerdict(
                    hold=True,
                    message=f"waiting for a human to approve {request.permission} in {DASHBOARD_NAME}",
                    timeout=timeout,
                    warning=(
                        f"No human answered this {request.permission} request in {DASHBOARD_NAME} within "
                        f"{timeout:g} s; {reason}. It is still pending: call run with session_id to keep waiting."
                    ),
                )
            return GateVerdict(warning=self._human_must_answer(request, reason, sight))

        return gate

    def _human_must_answer(self, request: PermissionRequest, reason: str, sight: Sight = "absent") -> str:
        policy = self.policy
        if policy is not None and policy.unavailable is not None:
            return (
                f"A human must answer this {request.permission} request: {reason}. Until the pool's state can be "
                f"read, no dashboard can be reached from here: ask the user to fix it, then to answer the request in "
                f"{DASHBOARD_NAME}, and call run with session_id='{request.sessionID}' to continue."
            )
        if sight in ("unseen", "expected", "shown"):
            return (
                f"A human must answer this {request.permission} request in {DASHBOARD_NAME}: {reason}. No human "
                f"sees it: the attached dashboards do not show it (filtered to other projects, closed, or cut off "
                f"from OpenCode). Ask the user to show every project in {DASHBOARD_NAME} (f) and answer it in the "
                f"inbox, then call run with session_id='{request.sessionID}' to continue."
            )
        return (
            f"A human must answer this {request.permission} request in {DASHBOARD_NAME}: {reason}. "
            f"No dashboard is attached to the pool: ask the user to run `{DASHBOARD_NAME}` and answer it in the "
            f"inbox, then call run with session_id='{request.sessionID}' to continue."
        )

    @property
    def answerer(self) -> Answerer:
        """Who the claims and the decision log say answered: the agent, by its MCP client's name."""
        return Answerer(self.origin, self.channel, self.client_info.name)

    def _refusal(self, outcome: Refusal, what: Answer) -> ToolError:
        """The agent's words for an answer that did not go through (the one place they are made).

        These texts are the tools' contract: a lost race names the winner, a request gone with a
        server that stopped says so (and how to go on), OpenCode's own errors are quoted.
        """
        rid, sid = what.request_id, what.session_id
        kind = "Permission" if what.kind == "permission" else "Question"
        if what.kind == "permission":
            failed = "Failed to reply to permission"
        else:
            failed = "Failed to reply to question" if what.decision == "reply" else "Failed to reject question"
        if isinstance(outcome, AlreadyAnswered):
            return InvalidInput(
                f"{kind} request '{rid}' was {outcome.claim.describe()}. "
                f"Call run with session_id='{sid}' to follow the session."
            )
        if isinstance(outcome, Gone):
            if outcome.lost is not None:
                return InvalidInput(_lost_text(outcome.lost))
            if outcome.error is not None and what.kind == "permission":
                # 0.7.x: OpenCode's 404 on the reply itself; the agent's id is stale.
                return InvalidInput(
                    f"Permission request '{rid}' was not found or is no longer pending (HTTP 404). It may be stale. "
                    f"Re-run orchestrator_run(session_id='{sid}') to get the latest permission_request_id and retry."
                )
            if outcome.error is not None:
                return Internal(f"{failed}: {outcome.error}")
            return InvalidInput(f"No pending {what.kind} found with id '{rid}'. (session_id='{sid}')")
        if outcome.cause == "registry":
            return Internal(f"Failed to claim request '{rid}' in the pool registry: {outcome.problem}")
        if outcome.cause == "server":
            return Internal(outcome.problem)
        return Internal(f"{failed}: {outcome.problem}")

    def _pending_one(
        self,
        kind: Kind,
        pending: Sequence[Pending],
        sid: str,
        rid: str | None,
        decision: str,
        *,
        complete: bool = True,
    ) -> Pending | None:
        """The pending request the agent means: the one with its id, else its session's only one.

        Refuses (with the reason) an id that is not pending or belongs to another session, and a
        session with none or several. None only for an id missing from a list OpenCode could not
        give whole (``complete`` False): whether to trust it is the caller's call.
        """
        if rid is not None:
            req = next((r for r in pending if r.id == rid), None)
            if req is None and not complete:
                return None
            if req is None:
                settled_as = settled(self.service.pool, self.registry, rid)
                raise self._refusal(settled_as, Answer(rid, sid, kind, decision))
            if req.sessionID != sid:
                raise InvalidInput(
                    f"{kind.capitalize()} request '{rid}' belongs to session '{req.sessionID}', not '{sid}'."
                )
            return req
        mine = [r for r in pending if r.sessionID == sid]
        if not mine and not complete:
            raise InvalidInput(
                f"Unable to discover a pending {kind} for session '{sid}': {kind} state could not be listed "
                f"(HTTP 400). {kind.capitalize()} state may be stale or malformed. Retry with {kind}_request_id "
                "(from run) if available; otherwise reopen the session or start a new one."
            )
        if not mine:
            lost = self.service.pool.lost_for(sid)
            if lost:  # the session's last request went away with a server that stopped
                raise InvalidInput(_lost_text(lost[-1]))
            raise InvalidInput(
                f"No pending {kind} found for session '{sid}'. The {kind} may have already been responded to."
            )
        if len(mine) > 1:
            ids = ", ".join(r.id for r in mine)
            raise InvalidInput(
                f"Multiple pending {kind}s found for session '{sid}': {ids}. "
                f"Please retry with {kind}_request_id (returned by run)."
            )
        return mine[0]

    async def _answer(self, what: Answer) -> None:
        """Answer through the pool's answer path; anything but success raises the tool's error."""
        outcome = await answer(self.service, self.registry, what, self.answerer)
        if not isinstance(outcome, Answered):
            raise self._refusal(outcome, what)

    async def call(
        self, name: str, arguments: object, progress: Progress | None = None
    ) -> tuple[BaseModel, RunResult | None]:
        """Parse, run and log one tool call by name (the single entry point of every adapter)."""
        started = datetime.now(UTC)
        result: RunResult | None = None
        output: BaseModel | None = None
        error: ToolError | None = None
        request: Any = arguments if isinstance(arguments, dict) else {"_raw": repr(arguments)[:200]}
        sid = arguments.get("session_id") if isinstance(arguments, dict) else None
        self._set_in_flight(f"{name} {sid}" if isinstance(sid, str) and sid else name)
        try:
            spec = TOOL_SPECS.get(name)
            if spec is None:
                raise InvalidInput(f"Unknown tool: {name}")
            inp = parse_input(spec.input_model, arguments)
            request = inp.model_dump(mode="json")
            if name == "run":
                result = await self.run(inp, progress)  # type: ignore[arg-type]
                output = result.output
            elif name == "respond_permission":
                result = await self.respond_permission(inp, progress)  # type: ignore[arg-type]
                output = result.output
            elif name == "respond_question":
                result = await self.respond_question(inp, progress)  # type: ignore[arg-type]
                output = result.output
            elif name == "list_sessions":
                output = await self.list_sessions(inp)  # type: ignore[arg-type]
            elif name == "get_session_state":
                output = await self.get_session_state(inp)  # type: ignore[arg-type]
            elif name == "list_agents":
                output = await self.list_agents(inp)  # type: ignore[arg-type]
            else:
                output = await self.list_commands(inp)  # type: ignore[arg-type]
            return output, result
        except ToolError as exc:
            error = exc
            raise
        except asyncio.CancelledError:
            # Cancelled wherever it was (even before the run loop): logged as a cancellation.
            error = Cancelled()
            raise
        finally:
            self._set_in_flight(None)
            self.call_logger.record(
                tool=name,
                request=request,
                started=started,
                completed=datetime.now(UTC),
                result_text=render_text(output) if output is not None and error is None else None,
                error=str(error) if error is not None else None,
                token_usage=result.tracker.to_log_token_usage() if result and result.tracker else None,
            )

    # ---------------------------------------------------------------- run

    async def run(
        self,
        inp: t.RunInput,
        progress: Progress | None = None,
        *,
        reserved: Mapping[str, str] | None = None,
        after_reply: bool = False,
    ) -> RunResult:
        """The ``run`` tool. ``reserved``: requests the caller knows a human must answer, and why;
        ``after_reply``: the run continues the session respond_permission just answered."""
        message = inp.message.strip() if inp.message is not None else None
        if inp.session_id is None and inp.message is None and inp.command is None:
            raise InvalidInput(
                "Either session_id (to resume/check status) or message/command (to start work) is required"
            )
        if inp.command is not None and inp.message is None:
            raise InvalidInput(
                "message is required when command is specified (becomes $ARGUMENTS for template expansion)"
            )
        if inp.command is not None and inp.agent is not None:
            raise InvalidInput("agent cannot be provided when command is specified")
        if message is not None and not message:
            raise InvalidInput("message cannot be empty or whitespace-only")
        agent = inp.agent.strip() if inp.agent is not None else None
        if agent is not None and not agent:
            raise InvalidInput("agent cannot be empty or whitespace-only")
        snapshot = await self.acquire()
        config = self.config_for(snapshot)
        route = await self.router.route(snapshot, inp.session_id)
        client = route.client
        if inp.command is not None:
            blocked = config.command_policy().blocked_message(inp.command)
            if blocked:
                raise InvalidInput(blocked)
            await self._check_command(client, inp.command, message or "")
        if agent is not None:
            blocked = config.agent_policy().blocked_message(agent)
            if blocked:
                raise InvalidInput(blocked)
            if message is not None:  # a resume-only call sends nothing: the agent is not used
                await self._check_agent(client, agent)
        if inp.session_id is not None:
            sid = inp.session_id
            await self._existing_session(
                client,
                sid,
                f"Session '{sid}' not found. Use list_sessions to discover sessions, "
                "or omit session_id to create a new session.",
            )
        else:
            try:
                session = await client.create_session()
            except OpenCodeError as exc:
                raise Internal(f"Failed to create session: {exc}") from exc
            sid = session.id
            self._record_launch(sid)
            self.service.pool.load_sessions([session])
        plan = RunPlan(
            session_id=sid,
            message=message,
            command=inp.command,
            wait_for_activity=bool(inp.wait_for_activity),
            idle_grace=idle_grace_ms(self.env) / 1000,
            agent=agent,
        )
        return await self._machine(route, config, progress, reserved, after_reply=after_reply).execute(plan)

    async def _check_command(self, client: OpenCodeClient, name: str, arguments: str) -> None:
        """Refuse a command run whose expansion would run shell or read files the agent may not
        reach (:mod:`~orchestrator_tui.orchestrator.command_guard`); unknown state refuses too."""
        try:
            commands, paths = await asyncio.gather(client.commands(), client.paths())
        except OpenCodeError as exc:
            raise Internal(f"Failed to check command '{name}' before running it: {exc}") from exc
        command = next((c for c in commands if c.name == name), None)
        check_command_run(command, arguments, paths, self._current_policy())

    async def _check_agent(self, client: OpenCodeClient, name: str) -> None:
        """Refuse an agent the server does not have, before a session is made for it.

        OpenCode 1.18.33 answers a prompt for an unknown agent with 204 and then drops it: no
        message is made and the session stays idle, so the run would wait for a reply that
        never comes (docs/opencode-behaviour.md).
        """
        try:
            agents = await client.agents()
        except OpenCodeError as exc:
            raise Internal(f"Failed to list agents: {exc}") from exc
        if not any(a.name == name for a in agents):
            raise InvalidInput(f"Agent '{name}' not found. Use list_agents to see the available agents.")

    async def _existing_session(self, client: OpenCodeClient, sid: str, not_found: str) -> Session:
        """The session ``sid``; ``not_found`` (the tool's own hint) when there is no such session."""
        if not looks_like_session_id(sid):
            raise InvalidInput(not_found)
        try:
            return await client.get_session(sid)
        except HttpStatusError as exc:
            if exc.status in (404, 400):
                raise InvalidInput(not_found) from exc
            raise Internal(f"Failed to get session: {exc}") from exc
        except OpenCodeError as exc:
            raise Internal(f"Failed to get session: {exc}") from exc

    # ---------------------------------------------------------------- respond_*

    async def respond_permission(self, inp: t.RespondPermissionInput, progress: Progress | None = None) -> RunResult:
        snapshot = await self.acquire()
        sid = inp.session_id
        route = await self.router.route(snapshot, sid)
        client = route.client
        machine = self._machine(route, self.config_for(snapshot), progress)
        try:
            pending, unlisted = await machine.list_permissions()
        except OpenCodeError as exc:
            raise Internal(f"Failed to list permissions: {exc}") from exc
        pre_warnings: list[str] = []
        reply = _reply_of(inp)
        req = self._pending_one(
            "permission", pending, sid, inp.permission_request_id, reply, complete=unlisted is None
        )
        if req is None:
            rid = inp.permission_request_id
            assert rid is not None
            # OpenCode could not list its permissions (HTTP 400) and the event stream did not
            # show this one either: the request behind the id is unknown, so it could be any.
            # Trust the caller's id (0.7.x) only where the policy lets the agent answer anything.
            policy = self._current_policy()
            blind = policy.blind_reason(reply) if policy is not None else None
            if blind is not None:
                raise InvalidInput(
                    f"Permission request '{rid}' cannot be answered by the agent: {blind}. Ask the user to "
                    f"answer it in {DASHBOARD_NAME}, then call run with session_id='{sid}' to continue."
                )
            pre_warnings.append(
                f"Permission validation failed for request '{rid}' ({unlisted}); submitting reply using the "
                "provided request id."
            )
            req = PermissionRequest(id=rid, sessionID=sid, permission="unknown")
        policy = self._current_policy()
        reason = policy.needs_human(req, reply) if policy is not None else None
        if reason is not None:
            sight = self._sight(req)
            if sight not in ("shown", "expected"):
                raise InvalidInput(
                    f"Permission request '{req.id}' cannot be answered by the agent. "
                    + self._human_must_answer(req, reason, sight)
                )
            # The dashboard is attached: wait for the human's answer, then continue the run.
            result = await self.run(
                t.RunInput(session_id=sid, wait_for_activity=True), progress, reserved={req.id: reason}
            )
            result.output.warnings = [*result.output.warnings, *pre_warnings]
            return result
        baseline: str | None = None
        if reply == "reject":
            try:
                baseline = extract_response(await client.messages(sid))
            except OpenCodeError as exc:
                pre_warnings.append(f"Failed to fetch baseline messages: {exc}")
        await self._answer(Answer.permission(req.id, reply, inp.message, request=req))
        result = await self.run(
            t.RunInput(session_id=sid, wait_for_activity=True if reply != "reject" else None),
            progress,
            after_reply=True,
        )
        out = result.output
        out.warnings = [*out.warnings, *pre_warnings]
        if (
            reply == "reject"
            and out.status == t.RunStatus.COMPLETED
            and (out.response is None or out.response == baseline)
        ):
            out.response = None
            patterns = ", ".join(req.patterns) or "(none)"
            out.warnings.append(
                f"Permission rejected for '{req.permission}'. Patterns: {patterns}. "
                "Session stopped without generating a new assistant response."
            )
        return result

    async def respond_question(self, inp: t.RespondQuestionInput, progress: Progress | None = None) -> RunResult:
        snapshot = await self.acquire()
        sid = inp.session_id
        client = (await self.router.route(snapshot, sid)).client
        action = inp.action.value if hasattr(inp.action, "value") else str(inp.action)
        try:
            pending = await client.questions()
        except OpenCodeError as exc:
            raise Internal(f"Failed to list questions: {exc}") from exc
        req = self._pending_one("question", pending, sid, inp.question_request_id, action)
        assert req is not None  # the list is complete: an id not in it was refused
        if action == "reply" and not inp.answers:
            raise InvalidInput("answers is required when action=reply")
        await self._answer(Answer.question(req.id, inp.answers if action == "reply" else None, request=req))
        wait: bool | None = True if action == "reply" else None
        return await self.run(t.RunInput(session_id=sid, wait_for_activity=wait), progress)

    # ---------------------------------------------------------------- list / state

    async def list_sessions(self, inp: t.ListSessionsInput) -> t.ListSessionsOutput:
        snapshot = await self.acquire()
        client = snapshot.client
        limit = inp.effective_limit()
        try:
            sessions = await client.list_sessions(limit=max(limit, 1))
        except OpenCodeError as exc:
            raise Internal(f"Failed to list sessions: {exc}") from exc
        statuses: dict[str, SessionStatus] | None
        try:
            statuses = await client.session_status()
        except OpenCodeError as exc:
            log.warning("session status unavailable for list_sessions: %s", exc)
            statuses = None
        server_of: dict[str, str] = {}
        if len(self.service.links) > 1:
            statuses = dict(statuses) if statuses is not None else None
            server_of = {s.id: PRIMARY for s in sessions}
            for name, others, their_statuses in await self.router.other_servers_sessions(limit):
                for s in others:
                    server_of.setdefault(s.id, name)
                sessions += [s for s in others if server_of[s.id] == name]
                if statuses is not None:
                    statuses.update(their_statuses)
            sessions.sort(key=lambda s: s.time.updated or 0, reverse=True)
        sessions = sessions[:limit]
        mine = self.launched_by_me([s.id for s in sessions])
        summaries = []
        for s in sessions:
            summaries.append(
                t.SessionSummary(
                    id=s.id,
                    title=s.title,
                    updated=s.time.updated,
                    created=s.time.created,
                    directory=s.directory,
                    path=s.path or None,
                    status=None if statuses is None else status_summary(statuses.get(s.id)),
                    change_stats=(
                        t.ChangeStats(
                            additions=s.summary.additions, deletions=s.summary.deletions, files=s.summary.files
                        )
                        if s.summary is not None
                        else None
                    ),
                    launched_by_you=s.id in mine,
                    server=server_of.get(s.id),
                )
            )
        return t.ListSessionsOutput(sessions=summaries)

    async def get_session_state(self, inp: t.GetSessionStateInput) -> t.GetSessionStateOutput:
        snapshot = await self.acquire()
        sid = inp.session_id
        client = (await self.router.route(snapshot, sid)).client
        session = await self._existing_session(
            client, sid, f"Session '{sid}' not found. Use list_sessions to discover available sessions."
        )
        try:
            statuses = await client.session_status()
        except OpenCodeError as exc:
            raise Internal(f"Failed to get session status: {exc}") from exc
        try:
            messages = await client.messages(sid)
        except OpenCodeError as exc:
            raise Internal(f"Failed to list messages: {exc}") from exc
        status = statuses.get(session.id)
        idle = status is None or status.type == "idle"
        # An unfinished reply in an idle session: its turn died with the server that ran it.
        interrupted = interrupted_reply(messages) if idle else None
        pending = 0
        for m in reversed(messages):
            if m.info.role == "assistant":
                break
            if m.info.role == "user":
                pending += 1
        if messages:
            last = messages[-1].info.time
            last_activity = last.completed if last.completed is not None else last.created
        else:
            last_activity = session.time.updated
        return t.GetSessionStateOutput(
            session_id=session.id,
            title=session.title,
            directory=session.directory,
            path=session.path or None,
            status=status_summary(statuses.get(session.id)),
            launched_by_you=session.id in self.launched_by_me([session.id]),
            pending_message_count=pending,
            last_activity=last_activity,
            recent_tool_calls=tool_calls_of(messages, interrupted=interrupted.info.id if interrupted else None),
            server=self.router.server_name(session.id),
        )

    async def list_commands(self, inp: t.ListCommandsInput) -> t.ListCommandsOutput:
        snapshot = await self.acquire()
        config = self.config_for(snapshot)
        try:
            commands = await snapshot.client.commands()
        except OpenCodeError as exc:
            raise Internal(f"Failed to list commands: {exc}") from exc
        policy = config.command_policy()
        return t.ListCommandsOutput(
            commands=[
                t.CommandInfo(name=c.name, description=c.description)
                for c in commands
                if policy.decide(c.name) == "allowed"
            ]
        )

    async def list_agents(self, inp: t.ListAgentsInput) -> t.ListAgentsOutput:
        """The visible agents the agent policy allows (OpenCode's hidden, internal ones left out)."""
        snapshot = await self.acquire()
        config = self.config_for(snapshot)
        try:
            agents = await snapshot.client.agents()
        except OpenCodeError as exc:
            raise Internal(f"Failed to list agents: {exc}") from exc
        policy = config.agent_policy()
        return t.ListAgentsOutput(
            agents=[
                t.AgentInfo(name=a.name, description=a.description)
                for a in agents
                if not a.hidden and policy.decide(a.name) == "allowed"
            ]
        )

    async def close(self) -> None:
        await self.service.close()
