"""The approval policy: which permission requests the agent may answer, and which need a human.

One file per pool, ``<pool dir>/policy.toml``, read by every front end of the pool::

    default = "agent"                 # who answers what no rule below covers: "agent" | "human"
    agent_may_allow_always = false    # may the agent ever reply "always"?
    human_wait_timeout = 600          # seconds an agent's call waits for the human's answer

    [[rule]]                          # first match wins
    permission = "bash"               # a permission type, or "*"
    pattern = "git *"                 # glob against the request's patterns (default "*")
    answer = "agent"

    [[rule]]
    permission = "*"
    answer = "human"

A missing file means the seed's behaviour: the agent may answer everything, ``always`` included.
In a file, ``agent_may_allow_always`` defaults to false: writing a policy at all means the
human wants a say, and ``always`` is the one reply that decides for the future.
A broken file must never take a front end down, so :func:`load_policy` falls back, and it
falls back *closed*: every permission needs a human (the agent may still reject), because a
file meant to restrict the agent must not open everything up over a typo. The error is carried
as a warning naming the file, the key and the fix.

Globs (``permission`` and ``pattern``) match exactly as OpenCode's own permission config does
(:mod:`~orchestrator_tui.pool.globs`), against the patterns OpenCode puts in the request: a
command for ``bash``, a path relative to the project's git worktree for file permissions (or
relative to ``/`` outside a git repository), a folder glob for ``external_directory``.

Matching is deliberately lopsided: a rule that hands a request to the **human** matches when
*any* of the request's patterns matches its glob, while a rule that lets the **agent** answer
matches only when *every* pattern does. A request mixing a reserved pattern with a harmless one
(``["git status", "rm -rf build"]``) therefore always goes to the human, whatever the rule order.

An ``always`` reply is judged by what it grants: OpenCode stores the request's ``always``
patterns (``*`` for a file edit) as allow rules for every later request. The agent may give it
only when, for each granted pattern, no human rule could match any request it lets through
before an agent rule covers all of them (:meth:`ApprovalPolicy.grant_answerer`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from orchestrator_tui.opencode.models import PermissionRequest
from orchestrator_tui.pool import globs

log = logging.getLogger(__name__)

Answerer = Literal["agent", "human"]

POLICY_FILE = "policy.toml"
DEFAULT_HUMAN_WAIT_TIMEOUT = 600.0
_ANSWERERS: tuple[Answerer, ...] = ("agent", "human")
_TOP_KEYS = ("default", "agent_may_allow_always", "human_wait_timeout", "rule")
_RULE_KEYS = ("permission", "pattern", "answer")


class PolicyError(ValueError):
    """``policy.toml`` cannot be used; ``str()`` names the file, the key and the fix."""


@dataclass(frozen=True, slots=True)
class PolicyRule:
    """One ``[[rule]]`` table: who answers ``permission`` requests whose patterns match ``pattern``."""

    permission: str
    answer: Answerer
    pattern: str = "*"
    #: 1-based position in the file, so reasons can say which rule decided.
    index: int = 0

    def matches(self, request: PermissionRequest) -> bool:
        if not globs.match(request.permission, self.permission):
            return False
        patterns = request.patterns or [""]
        hits = (globs.match(p, self.pattern) for p in patterns)
        # Lopsided on purpose (see the module docstring): reserving is greedy, delegating is strict.
        return any(hits) if self.answer == "human" else all(hits)

    def describe(self) -> str:
        fields = f'permission = "{self.permission}", pattern = "{self.pattern}", answer = "{self.answer}"'
        return f"rule #{self.index} ({fields})"


@dataclass(frozen=True, slots=True)
class ApprovalPolicy:
    """Who may answer which permission request; the defaults reproduce the seed (the agent answers all)."""

    default: Answerer = "agent"
    agent_may_allow_always: bool = True
    human_wait_timeout: float = DEFAULT_HUMAN_WAIT_TIMEOUT
    rules: tuple[PolicyRule, ...] = ()
    #: Where the policy lives (whether or not the file exists), so a screen can say where to edit.
    path: Path | None = None
    #: Why the file was not used as written (a bad file falls back to "everything needs a human").
    warnings: tuple[str, ...] = ()
    #: Set when this is not the file's policy but the fail-closed one standing in for it because
    #: the pool's state could not be read: the problem and its fix (reasons quote it).
    unavailable: str | None = None
    #: ``(mtime_ns, size)`` of the file this was read from; None when there was no file.
    _stamp: tuple[int, int] | None = field(default=None, compare=False, repr=False)

    # ------------------------------------------------------------------ decisions

    def answerer(self, request: PermissionRequest) -> tuple[Answerer, str]:
        """Who answers ``request``, and the sentence saying why (which rule, or the default)."""
        for rule in self.rules:
            if rule.matches(request):
                return rule.answer, f"{rule.describe()} in {self._where()}"
        return self.default, f'default = "{self.default}" in {self._where()}'

    def grant_answerer(self, permission: str, granted: str) -> tuple[Answerer, str]:
        """Who may grant ``granted`` (a pattern an ``always`` reply adds for every later request).

        Sound for every request the grant lets through: a human rule whose glob *overlaps* the
        granted pattern reserves it (some request it lets through would be the human's); an agent
        rule decides only when its glob *covers* all of it; one that merely overlaps does not
        decide, since part of the grant falls through to the rules below it.
        """
        for rule in self.rules:
            if not globs.match(permission, rule.permission):
                continue
            if rule.answer == "human" and globs.intersects(granted, rule.pattern):
                return "human", f"{rule.describe()} in {self._where()}"
            if rule.answer == "agent" and globs.covers(rule.pattern, granted):
                return "agent", f"{rule.describe()} in {self._where()}"
        return self.default, f'default = "{self.default}" in {self._where()}'

    def needs_human(self, request: PermissionRequest, reply: str | None = None) -> str | None:
        """Why the agent may not give ``reply`` to ``request`` (None: it may).

        ``reply=None`` asks about the request as a whole (may the agent answer it at all?).
        A ``reject`` is always the agent's to give: it grants nothing, it only stops its own work.
        ``always`` is judged by the patterns it grants, not only by the request at hand.
        """
        if reply == "reject":
            return None
        who, why = self.answerer(request)
        if who == "human":
            return f"the approval policy reserves {request.permission} requests like this one for a human ({why})"
        if reply != "always":
            return None
        if not self.agent_may_allow_always:
            return (
                f"the approval policy does not let the agent answer 'always' (agent_may_allow_always = false in "
                f"{self._where()}); reply 'once' instead, or let a human decide"
            )
        for granted in request.always:
            who, why = self.grant_answerer(request.permission, granted)
            if who == "human":
                return (
                    f"answering 'always' would allow every later {request.permission} request matching "
                    f"{granted!r}, and the approval policy reserves some of those for a human ({why}); "
                    "reply 'once' instead, or let a human decide"
                )
        return None

    def blind_reason(self, reply: str) -> str | None:
        """Why the agent may not give ``reply`` to a request it cannot see (None: it may).

        When OpenCode cannot list its permissions (HTTP 400 while a webfetch one is pending),
        the request behind an id is unknown, so it could be any request: the agent may answer
        only if the policy lets it answer every request, with this reply.
        """
        if reply == "reject":
            return None
        reserving = [rule for rule in self.rules if rule.answer == "human"]
        if self.default == "human" or reserving:
            why = reserving[0].describe() if reserving else f'default = "{self.default}"'
            return (
                "OpenCode cannot list its pending permissions right now (HTTP 400), so this request cannot be "
                f"checked against the approval policy, which reserves some requests for a human ({why} in "
                f"{self._where()})"
            )
        if reply == "always" and not self.agent_may_allow_always:
            return (
                f"the approval policy does not let the agent answer 'always' (agent_may_allow_always = false in "
                f"{self._where()}); reply 'once' instead, or let a human decide"
            )
        return None

    # ------------------------------------------------------------------ display

    def describe(self) -> str:
        """The policy as a person reads it (the dashboard's policy screen)."""
        lines = [f"Approval policy: {self._where()}" + ("" if self._stamp else " (not present: built-in defaults)")]
        lines += [f"warning: {w}" for w in self.warnings]
        lines.append(f"Requests no rule covers are answered by: {self.default}")
        lines.append(f"The agent may answer 'always': {'yes' if self.agent_may_allow_always else 'no'}")
        lines.append(f"An agent's call waits for a human at most {self.human_wait_timeout:g} s")
        if self.rules:
            lines.append("Rules (first match wins):")
            for rule in self.rules:
                lines.append(f"  #{rule.index}  {rule.permission:<18} {rule.pattern:<30} → {rule.answer}")
        else:
            lines.append("No rules.")
        return "\n".join(lines)

    def _where(self) -> str:
        if self.unavailable is not None:
            return f"the fail-closed policy in force because {self.unavailable}"
        return str(self.path) if self.path is not None else "the built-in policy"

    @classmethod
    def closed(cls, problem: str) -> ApprovalPolicy:
        """Everything needs a human (the agent may only reject): the policy when ``problem``
        (the pool's state cannot be read, with the fix) stops us from knowing the real one."""
        return cls(default="human", agent_may_allow_always=False, warnings=(problem,), unavailable=problem)

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_file(cls, path: Path) -> ApprovalPolicy:
        """Read ``path``; a missing file gives the defaults. Raises :class:`PolicyError` for a bad one."""
        import tomllib

        try:
            stat = path.stat()
            raw = path.read_bytes()
        except FileNotFoundError:
            return cls(path=path)
        except OSError as exc:
            raise PolicyError(f"Cannot read the approval policy {path}: {exc}. Fix its permissions.") from None
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise PolicyError(
                f"Invalid approval policy {path}: the file is not UTF-8 text. Save it as UTF-8."
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"Invalid TOML in the approval policy {path}: {exc}. Fix the syntax.") from None
        return cls._parse(data, path, (stat.st_mtime_ns, stat.st_size))

    @classmethod
    def _parse(cls, data: Mapping[str, Any], path: Path, stamp: tuple[int, int]) -> ApprovalPolicy:
        def bad(key: str, fix: str) -> PolicyError:
            return PolicyError(f"Invalid approval policy {path}: {key} {fix}")

        unknown = sorted(set(data) - set(_TOP_KEYS))
        if unknown:
            raise bad(f"unknown key {unknown[0]!r}:", f"the keys are {', '.join(_TOP_KEYS)} (rules go in [[rule]]).")
        default = data.get("default", "agent")
        if default not in _ANSWERERS:
            raise bad("`default`", f'must be "agent" or "human", not {default!r}.')
        # Absent from a file: false. A policy file is there to give the human a say, and "always"
        # is the one reply that decides for every later request too.
        always = data.get("agent_may_allow_always", False)
        if not isinstance(always, bool):
            raise bad("`agent_may_allow_always`", f"must be true or false, not {always!r}.")
        timeout = data.get("human_wait_timeout", DEFAULT_HUMAN_WAIT_TIMEOUT)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
            raise bad("`human_wait_timeout`", f"must be a number of seconds (0 or more), not {timeout!r}.")
        tables = data.get("rule", [])
        if not isinstance(tables, list):
            raise bad("`rule`", "must be an array of tables: write each rule as a [[rule]] table.")
        rules: list[PolicyRule] = []
        for n, table in enumerate(tables, start=1):
            where = f"rule #{n} ([[rule]] number {n})"
            if not isinstance(table, dict):
                raise bad(where, "must be a table: write it as [[rule]] followed by key = value lines.")
            extra = sorted(set(table) - set(_RULE_KEYS))
            if extra:
                raise bad(f"{where}: unknown key {extra[0]!r}:", f"a rule has {', '.join(_RULE_KEYS)}.")
            permission = table.get("permission")
            if not isinstance(permission, str) or not permission:
                raise bad(f"{where}: `permission`", 'is required: a permission type such as "bash", or "*".')
            pattern = table.get("pattern", "*")
            if not isinstance(pattern, str) or not pattern:
                raise bad(f"{where}: `pattern`", f'must be a glob such as "*" or "git *", not {pattern!r}.')
            answer = table.get("answer")
            if answer not in _ANSWERERS:
                raise bad(f"{where}: `answer`", f'must be "agent" or "human", not {answer!r}.')
            rules.append(PolicyRule(permission=permission, pattern=pattern, answer=answer, index=n))
        return cls(
            default=default,
            agent_may_allow_always=always,
            human_wait_timeout=float(timeout),
            rules=tuple(rules),
            path=path,
            _stamp=stamp,
        )

    def refreshed(self) -> ApprovalPolicy:
        """This policy, or the file's new content when it changed on disk since (one ``stat``).

        Lets a long-running worker follow edits to ``policy.toml`` without a restart.
        """
        if self.path is None:
            return self
        try:
            stat = self.path.stat()
            stamp: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            stamp = None
        if stamp == self._stamp:
            return self
        return load_policy(self.path)


def policy_path(pool_folder: Path) -> Path:
    """Where a pool's approval policy lives."""
    return pool_folder / POLICY_FILE


def load_policy(path: Path) -> ApprovalPolicy:
    """The policy at ``path``, never raising: a bad file gives the defaults plus a warning.

    The warning is logged and kept in :attr:`ApprovalPolicy.warnings` for the front end to show.
    """
    try:
        return ApprovalPolicy.from_file(path)
    except PolicyError as exc:
        # Fail closed: a file that was meant to restrict the agent must not open everything up
        # because of a typo. Until it is fixed, every permission waits for a human.
        warning = f"{exc} Until it is fixed, every permission needs a human (the agent may only reject)."
        log.warning("%s", warning)
        try:
            stat = os.stat(path)
            stamp: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            stamp = None
        closed = ApprovalPolicy(path=path, default="human", agent_may_allow_always=False)
        return replace(closed, warnings=(warning,), _stamp=stamp)
