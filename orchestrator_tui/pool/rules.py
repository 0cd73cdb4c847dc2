"""Standing decisions: rules made from the inbox, applied by the pool to every session's requests.

A rule ("always allow read under this project") lives in the registry, so every front end of
the pool sees it. Each front end runs one :class:`RuleEngine`; when a permission request shows
up, every engine may try to apply the rules to it, and the registry's claim makes exactly one of
them (in whatever process) send the reply and write the decision, with ``rule #N`` as the decider.

Rules are read from the registry on every pass rather than cached: a revoked rule must stop at
once, in every process, and the read is one small indexed query.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import posixpath
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from orchestrator_tui.opencode.models import PermissionRequest
from orchestrator_tui.pool import globs
from orchestrator_tui.pool.answers import AlreadyAnswered, Answer, Answered, Answerer, Gone, Outcome, answer
from orchestrator_tui.pool.registry import Registry, Rule
from orchestrator_tui.pool.service import PoolService
from orchestrator_tui.pool.state import Changes, Pool

log = logging.getLogger(__name__)

#: The channel every rule decision is recorded under.
RULE_CHANNEL = "rule"
#: Seconds between passes over pending requests when nothing changed locally: a rule added by
#: another process must reach requests this process already knew about.
RESCAN_INTERVAL = 2.0


#: Permission types whose patterns are file paths: relative to OpenCode's worktree, or absolute.
#: (``glob``/``grep`` patterns are search patterns, not paths.)
PATH_PERMISSIONS = frozenset({"read", "edit", "write", "external_directory"})


@dataclass(frozen=True, slots=True)
class PathScope:
    """Where a session's relative paths are rooted, and what "this project" is, as absolute paths.

    OpenCode gives a path permission's patterns relative to the session's *worktree*: the git
    root, or ``/`` outside a git repository (observed with 1.18.33: ``tmp/x/proj/a.txt``). So
    "inside the project" is decided on the absolute path, never on the relative form, which
    outside a repository covers the whole disk.
    """

    #: The session's directory: "this project".
    directory: str
    #: The session's worktree: what its relative patterns are relative to.
    worktree: str

    @classmethod
    def of(cls, directory: str | None, path: str | None) -> PathScope | None:
        """From a session's ``directory`` and ``path`` (its directory relative to the worktree)."""
        if not directory or not posixpath.isabs(directory):
            return None
        directory = posixpath.normpath(directory)
        rel = (path or "").strip("/")
        if not rel:
            return cls(directory, directory)
        if directory == "/" + rel:
            return cls(directory, "/")
        if directory.endswith("/" + rel):
            return cls(directory, directory[: -len(rel) - 1] or "/")
        return None  # an unexpected shape: no scope, so no project-relative rule applies

    def absolute(self, pattern: str) -> str:
        return posixpath.normpath(pattern if posixpath.isabs(pattern) else posixpath.join(self.worktree, pattern))

    def inside(self, absolute: str) -> bool:
        root = self.directory.rstrip("/")
        return absolute == self.directory or absolute.startswith(root + "/")


def rule_matches(rule: Rule, request: PermissionRequest, scope: PathScope | None = None) -> bool:
    """Whether ``rule`` answers ``request``: same permission (or a glob of it), and every pattern.

    Every pattern, not any: a rule grants something, so one pattern outside it must leave the
    request to a person. A request without patterns only matches the catch-all glob ``*``.
    Globs match as OpenCode's own do (:mod:`~orchestrator_tui.pool.globs`).

    For file permissions the pattern is judged on the absolute path (``scope`` turns OpenCode's
    worktree-relative form into it): an absolute rule glob (``/srv/proj/*``) matches it directly;
    a relative one (``*``, ``src/*``) speaks of paths inside the session's project only, so it
    matches the path relative to the project, and never anything outside it. Without a scope a
    relative rule matches no file request: a person answers instead.
    """
    if rule.revoked_at is not None:
        return False
    if not globs.match(request.permission, rule.permission):
        return False
    if not request.patterns:
        return rule.pattern == "*"
    if request.permission not in PATH_PERMISSIONS:
        return all(globs.match(p, rule.pattern) for p in request.patterns)
    absolute_rule = posixpath.isabs(rule.pattern)
    for pattern in request.patterns:
        if absolute_rule:
            if scope is None and not posixpath.isabs(pattern):
                return False
            path = scope.absolute(pattern) if scope is not None else posixpath.normpath(pattern)
            if not globs.match(path, rule.pattern):
                return False
            continue
        if scope is None:
            return False
        path = scope.absolute(pattern)
        if not scope.inside(path):
            return False
        if not globs.match(posixpath.relpath(path, scope.directory), rule.pattern):
            return False
    return True


def first_matching_rule(
    rules: Iterable[Rule], request: PermissionRequest, scope: PathScope | None = None
) -> Rule | None:
    """The oldest active rule that answers ``request`` (rules are kept in creation order)."""
    return next((rule for rule in rules if rule_matches(rule, request, scope)), None)


def default_rule_pattern(request: PermissionRequest, scope: PathScope | None = None) -> str:
    """The glob a rule made from ``request`` uses unless the human picks another.

    For a file permission: the absolute path when it names one file (``exactly this``), since
    OpenCode's ``always`` for files is ``*``, everything. Otherwise OpenCode's own ``always``
    pattern when there is exactly one (``echo *`` for ``echo hi``, the folder glob of an
    ``external_directory``), else the request's first pattern, or ``*`` when it has none.
    """
    if request.permission in PATH_PERMISSIONS and request.permission != "external_directory":
        if len(request.patterns) == 1 and scope is not None:
            return scope.absolute(request.patterns[0])
        if request.patterns:
            return request.patterns[0]
    if len(request.always) == 1:
        return request.always[0]
    return request.patterns[0] if request.patterns else "*"


class RuleSuggestions(list[tuple[str, str]]):
    """(glob, label) pairs a rule made from a request could use, best first.

    ``preferred`` is the glob the make-rule dialog proposes: "anything under this project" when
    it is offered (the rule people mean for file permissions), else the first. A list still, so
    that what offered the pairs before keeps working.
    """

    def __init__(self, options: Iterable[tuple[str, str]], preferred: str) -> None:
        super().__init__(options)
        self.preferred = preferred


def suggest_rule_patterns(request: PermissionRequest, scope: PathScope | None) -> RuleSuggestions:
    """Globs a rule made from ``request`` could use, each with a label for the UI.

    The default (:func:`default_rule_pattern`) first; then, for file permissions, anything under
    this project (the absolute ``<project>/*``, offered only when every path is inside it) and
    any path at all (``/*``); for the others, exactly this request and any request of the type.
    Every suggestion after the first matches ``request`` itself, so the rule also covers the
    request it was made from.
    """
    first = default_rule_pattern(request, scope)
    options: list[tuple[str, str]] = [(first, "like this request")]
    project: str | None = None
    if request.permission in PATH_PERMISSIONS:
        inside = scope is not None and all(scope.inside(scope.absolute(p)) for p in request.patterns)
        if inside and request.patterns and request.permission != "external_directory":
            assert scope is not None
            project = f"{scope.directory.rstrip('/')}/*"
            options.append((project, "anything under this project"))
        options.append(("/*", f"any {request.permission} request, anywhere"))
    else:
        if len(request.patterns) == 1:
            options.append((request.patterns[0], "exactly this"))
        options.append(("*", f"any {request.permission} request"))
    seen: set[str] = set()
    unique: list[tuple[str, str]] = []
    for n, (glob, label) in enumerate(options):
        rule = Rule(0, request.permission, glob, "once", "", 0.0, None)
        if glob not in seen and (n == 0 or rule_matches(rule, request, scope)):
            seen.add(glob)
            unique.append((glob, label))
    return RuleSuggestions(unique, project if project is not None and project in seen else first)


def scope_of(pool: Pool, session_id: str) -> PathScope | None:
    """The session's path scope from what the pool knows of it (None when it does not)."""
    view = pool.sessions.get(session_id)
    info = view.info if view is not None else None
    return PathScope.of(info.directory, info.path) if info is not None else None


def sent_reply(rule: Rule) -> str:
    """What a rule sends OpenCode: ``once`` for an allow, whatever the rule says.

    OpenCode's ``always`` grants the request's ``always`` patterns (``*`` for a file edit) until
    the server stops, which is more than the rule's own pattern, and revoking the rule could not
    take it back. So the rule itself does the remembering and answers each request once.
    """
    return "reject" if rule.reply == "reject" else "once"


@dataclass(frozen=True, slots=True)
class Applied:
    """One request a rule answered."""

    request_id: str
    session_id: str
    rule: Rule


async def apply_rules(
    service: PoolService,
    registry: Registry,
    requests: Iterable[PermissionRequest],
    *,
    applied_by: str,
    rules: list[Rule] | None = None,
) -> list[Applied]:
    """Answer each of ``requests`` that an active rule covers; the one way rules are applied.

    Each answer takes the pool's answer path (:func:`~orchestrator_tui.pool.answers.answer`):
    another engine may be applying the same rule right now, and exactly one of them answers,
    recorded under ``rule #N``. ``applied_by`` names the front end that did it.
    """
    active = registry.rules() if rules is None else rules
    if not active:
        return []
    pool = service.pool
    done: list[Applied] = []
    for request in list(requests):
        rule = first_matching_rule(active, request, scope_of(pool, request.sessionID))
        if rule is None:
            continue
        what = Answer.permission(
            request.id, sent_reply(rule), request=request, extra={"rule": rule.id, "glob": rule.pattern}
        )
        outcome = await answer(service, registry, what, Answerer(rule.decider, RULE_CHANNEL, applied_by))
        _log_outcome(rule, request, outcome)
        if isinstance(outcome, Answered):
            done.append(Applied(request.id, request.sessionID, rule))
    return done


def _log_outcome(rule: Rule, request: PermissionRequest, outcome: Outcome) -> None:
    """What a rule engine says of an answer that did not go through (the rule's own words)."""
    if isinstance(outcome, Answered):
        return
    if isinstance(outcome, AlreadyAnswered):  # another engine or a person was first: as it should be
        log.debug("rule #%s: %s was %s", rule.id, request.id, outcome.claim.describe())
    elif isinstance(outcome, Gone):
        why = "lost with the server that stopped" if outcome.lost is not None else "no longer pending"
        log.info("rule #%s did not answer %s: %s", rule.id, request.id, why)
    else:
        log.warning(
            "rule #%s could not answer %s (%s): %s. Fix: %s",
            rule.id,
            request.id,
            outcome.cause,
            outcome.problem,
            outcome.fix,
        )


class RuleEngine:
    """Applies the pool's rules to the permission requests of this process's pool, as they appear.

    ``channel`` names the front end running it ("dashboard", "mcp"); it is recorded as the
    client of the decisions this engine makes, next to the rule that decided.
    """

    def __init__(
        self,
        service: PoolService,
        registry: Registry,
        *,
        channel: str,
        on_applied: Callable[[Applied], None] | None = None,
    ) -> None:
        self.service = service
        self.registry = registry
        self.channel = channel
        #: Called for each request this engine answered (the dashboard's notice).
        self.on_applied = on_applied
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        #: The latest requests this engine answered (tests and the dashboard's notices read it).
        self.applied: deque[Applied] = deque(maxlen=1000)

    def start(self) -> None:
        """Subscribe to the pool and start answering; call from inside the event loop."""
        if self._task is not None:
            return
        self._unsubscribe = self.service.pool.subscribe(self._on_changes)
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"rule-engine-{self.channel}")
        self._wake.set()  # requests already pending when we start

    async def stop(self) -> None:
        """Stop answering; returns once the engine's task has ended.

        ``asyncio.wait`` rather than ``await task`` under ``suppress(CancelledError)``: that
        would also swallow a cancellation of ``stop()`` itself.
        """
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})

    def _on_changes(self, changes: Changes) -> None:
        if changes.requests or changes.connection:
            self._wake.set()

    async def _run(self) -> None:
        while True:
            # Not asyncio.wait_for: on Python 3.11 it swallows a cancellation that arrives in the
            # step after the event is set (a pool change as the dashboard closes), so the loop
            # went on and stop() waited for it forever. asyncio.timeout lets the cancel through.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RESCAN_INTERVAL):
                    await self._wake.wait()
            self._wake.clear()
            pending = list(self.service.pool.permissions.values())
            if not pending:
                continue
            try:
                applied = await apply_rules(self.service, self.registry, pending, applied_by=self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad pass (a locked registry, a bug) must not end the engine
                log.exception("applying rules failed")
                continue
            self.applied.extend(applied)
            if self.on_applied is not None:
                for item in applied:
                    try:
                        self.on_applied(item)
                    except Exception:
                        log.exception("rule engine listener failed")
