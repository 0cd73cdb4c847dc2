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
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from orchestrator_tui.opencode.client import HttpStatusError, OpenCodeError
from orchestrator_tui.opencode.models import PermissionRequest
from orchestrator_tui.pool.handle import ServerUnavailable
from orchestrator_tui.pool.registry import Registry, Rule
from orchestrator_tui.pool.service import PoolService
from orchestrator_tui.pool.state import Changes

log = logging.getLogger(__name__)

#: The channel every rule decision is recorded under.
RULE_CHANNEL = "rule"
#: Seconds between passes over pending requests when nothing changed locally: a rule added by
#: another process must reach requests this process already knew about.
RESCAN_INTERVAL = 2.0


def rule_matches(rule: Rule, request: PermissionRequest) -> bool:
    """Whether ``rule`` answers ``request``: same permission (or ``*``), and every pattern matches.

    Every pattern, not any: a rule grants something, so one pattern outside it must leave the
    request to a person. A request without patterns only matches the catch-all glob ``*``.
    """
    if rule.revoked_at is not None:
        return False
    if rule.permission != "*" and rule.permission != request.permission:
        return False
    if not request.patterns:
        return rule.pattern == "*"
    # A relative glob speaks of paths inside the project (OpenCode gives those relative):
    # "*" must not also grant "/etc/passwd" or "../other/secret".
    relative_rule = request.permission in PATH_PERMISSIONS and not _outside_project(rule.pattern)
    if relative_rule and any(_outside_project(p) for p in request.patterns):
        return False
    return all(fnmatchcase(p, rule.pattern) for p in request.patterns)


def _outside_project(path: str) -> bool:
    return path.startswith(("/", "~", "..")) or "/../" in path


def first_matching_rule(rules: Iterable[Rule], request: PermissionRequest) -> Rule | None:
    """The oldest active rule that answers ``request`` (rules are kept in creation order)."""
    return next((rule for rule in rules if rule_matches(rule, request)), None)


def default_rule_pattern(request: PermissionRequest) -> str:
    """The glob a rule made from ``request`` uses unless the human picks another.

    OpenCode's own ``always`` pattern when there is exactly one (``echo *`` for ``echo hi``, the
    folder glob of an ``external_directory``): it is what "allow always" would have granted.
    Otherwise the request's first pattern (just this), or ``*`` when it has none.
    """
    if len(request.always) == 1:
        return request.always[0]
    return request.patterns[0] if request.patterns else "*"


#: Permission types whose patterns are file paths (relative to the project, or absolute).
PATH_PERMISSIONS = frozenset({"read", "edit", "write", "list", "glob", "grep", "external_directory"})


def suggest_rule_patterns(request: PermissionRequest, project: Path) -> list[tuple[str, str]]:
    """Globs a rule made from ``request`` could use, each with a label for the UI.

    The default (:func:`default_rule_pattern`) first, then just this request, anything under
    this project, and any request of this permission type. For file permissions "under this project" is
    offered: OpenCode gives paths inside the project relative to it (``a.txt``), so ``*`` is that
    scope for them, and ``<project>/*`` for absolute paths inside it. The other suggestions all
    match ``request`` itself, so the rule also covers the kind of request it was made from.
    """
    options: list[tuple[str, str]] = [(default_rule_pattern(request), "like this request")]
    if len(request.patterns) == 1:
        options.append((request.patterns[0], "exactly this"))
    if request.permission in PATH_PERMISSIONS and request.patterns:
        root = str(project).rstrip("/")
        if all(p.startswith(root + "/") for p in request.patterns):
            options.append((f"{root}/*", "anything under this project"))
        elif not any(p.startswith(("/", "..")) for p in request.patterns):
            options.append(("*", "anything under this project"))
    if request.permission not in PATH_PERMISSIONS:
        options.append(("*", f"any {request.permission} request"))
    seen: set[str] = set()
    unique: list[tuple[str, str]] = []
    for n, (glob, label) in enumerate(options):
        covers = all(fnmatchcase(p, glob) for p in request.patterns or [""])
        if glob not in seen and (covers or n == 0):
            seen.add(glob)
            unique.append((glob, label))
    return unique


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

    Claims first (another engine may be applying the same rule right now), replies, then
    records the decision under ``rule #N``. ``applied_by`` names the front end that did it.
    """
    active = registry.rules() if rules is None else rules
    if not active:
        return []
    pool = service.pool
    done: list[Applied] = []
    for request in list(requests):
        rule = first_matching_rule(active, request)
        if rule is None or registry.claim_of(request.id) is not None:
            continue
        lost = registry.claim(
            request.id,
            session_id=request.sessionID,
            decision=rule.reply,
            decided_by=rule.decider,
            channel=RULE_CHANNEL,
            client_name=applied_by,
        )
        if lost is not None:
            continue
        try:
            client = (await service.acquire()).client
            await client.reply_permission(request.id, rule.reply, None)
        except HttpStatusError as exc:
            registry.release_claim(request.id)
            if exc.status == 404:  # answered outside the pool's claims (or the session is gone)
                pool.resolve_request(request.id)
            else:
                log.warning("rule #%s could not answer %s: %s", rule.id, request.id, exc)
            continue
        except (OpenCodeError, ServerUnavailable) as exc:
            registry.release_claim(request.id)
            log.warning("rule #%s could not answer %s: %s", rule.id, request.id, exc)
            continue
        except BaseException:  # cancelled mid-reply: give the claim back, someone may retry
            registry.release_claim(request.id)
            raise
        pool.resolve_request(request.id)
        detail = {"permission": request.permission, "patterns": request.patterns, "rule": rule.id}
        if rule.reply == "always":
            detail["always"] = request.always
        try:
            registry.record_decision(
                request_id=request.id,
                session_id=request.sessionID,
                kind="permission",
                decision=rule.reply,
                decided_by=rule.decider,
                channel=RULE_CHANNEL,
                detail=detail,
                client_name=applied_by,
            )
        except Exception:  # the reply already happened; the audit trail must not undo it
            log.exception("could not record the decision of rule #%s for %s", rule.id, request.id)
        done.append(Applied(request.id, request.sessionID, rule))
    return done


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
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def kick(self) -> None:
        """Run a pass soon (for example right after a rule was added in this process)."""
        self._wake.set()

    def _on_changes(self, changes: Changes) -> None:
        if changes.requests or changes.connection:
            self._wake.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), RESCAN_INTERVAL)
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
