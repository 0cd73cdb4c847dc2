"""Orchestrator configuration: ``agentic.toml``, the command and agent policies, the idle grace and timeout texts.

Everything here is pure (files and an environment mapping in, values out) so the
server start path can call it and the tests can drive it without touching the real environment.

Deliberate differences from the reference, all in favour of the user:

* ``session_deadline_secs = 0`` / ``inactivity_timeout_secs = 0`` mean **no limit** (the reference
  failed every run on the first check). :meth:`OrchestratorConfig.session_deadline` and
  :meth:`OrchestratorConfig.inactivity_timeout` return ``None`` for "no limit".
* Timeout error texts state the configured durations (:func:`inactivity_timeout_text`,
  :func:`deadline_text`) instead of the hard-coded "5 minutes" / "1 hour".
* A broken config is never silent: :func:`load_config` returns the defaults *and* a warning naming
  the file, the key and the fix; the caller prints it to stderr.
* Only the keys this program reads (``[orchestrator]``) are type-checked. The reference deserialized
  the whole shared agentic config, so a type error in another tool's section also reset the
  orchestrator to defaults; we have no schema for those sections and leave them alone.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: Name of the local and global config files.
CONFIG_FILE_NAME = "agentic.toml"
#: Directory under the XDG config home that holds the global config file.
GLOBAL_CONFIG_DIR = "agentic"
#: Test hook of the agentic tools: overrides the global config base directory.
CONFIG_DIR_TEST_ENV = "__AGENTIC_CONFIG_DIR_FOR_TESTS"

IDLE_GRACE_ENV = "OPENCODE_ORCHESTRATOR_IDLE_GRACE_MS"
DEFAULT_IDLE_GRACE_MS = 1000

DEFAULT_SESSION_DEADLINE_SECS = 3600
DEFAULT_INACTIVITY_TIMEOUT_SECS = 300
DEFAULT_COMPACTION_THRESHOLD = 0.80

# Top-level tables of the shared agentic config; anything else gets an advisory warning (typo catch).
_KNOWN_TOP_LEVEL_KEYS = frozenset(
    {
        "$schema",
        "subagents",
        "reasoning",
        "services",
        "orchestrator",
        "web_retrieval",
        "cli_tools",
        "workspace_tools",
        "review",
        "thoughts",
        "logging",
    }
)

# Rust's `str::trim` strips Unicode White_Space exactly; Python's `str.strip()` strips a few more.
_RUST_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_U64_MAX = 2**64 - 1


def _trim(value: str) -> str:
    return value.strip(_RUST_WHITESPACE)


# ================================================================================================
# The config model
# ================================================================================================


class CommandsConfig(BaseModel):
    """``[orchestrator.commands]``: which OpenCode commands ``run``/``list_commands`` may use."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    allow: list[str] = []
    deny: list[str] = []


class AgentsConfig(BaseModel):
    """``[orchestrator.agents]``: which OpenCode agents ``run``/``list_agents`` may use."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    allow: list[str] = []
    deny: list[str] = []


class OrchestratorConfig(BaseModel):
    """``[orchestrator]`` of ``agentic.toml``, with the reference's defaults.

    ``session_deadline_secs`` bounds a whole ``run`` call; ``inactivity_timeout_secs`` bounds the
    time without any session activity. **0 disables the respective limit** (a port decision,
    the reference failed immediately). ``compaction_threshold`` is the context-usage ratio at
    which a completed run asks OpenCode to summarize the session.
    """

    model_config = ConfigDict(frozen=True, defer_build=True)

    session_deadline_secs: int = Field(default=DEFAULT_SESSION_DEADLINE_SECS, ge=0)
    inactivity_timeout_secs: int = Field(default=DEFAULT_INACTIVITY_TIMEOUT_SECS, ge=0)
    compaction_threshold: float = DEFAULT_COMPACTION_THRESHOLD
    commands: CommandsConfig = CommandsConfig()
    agents: AgentsConfig = AgentsConfig()

    def session_deadline(self) -> float | None:
        """Seconds a run may take in total, or ``None`` for no limit (configured as 0)."""
        return float(self.session_deadline_secs) if self.session_deadline_secs > 0 else None

    def inactivity_timeout(self) -> float | None:
        """Seconds a run may go without activity, or ``None`` for no limit (configured as 0)."""
        return float(self.inactivity_timeout_secs) if self.inactivity_timeout_secs > 0 else None

    def command_policy(self) -> CommandPolicy:
        """The allow/deny policy built from ``commands``."""
        return CommandPolicy(self.commands.allow, self.commands.deny)

    def agent_policy(self) -> AgentPolicy:
        """The allow/deny policy built from ``agents``."""
        return AgentPolicy(self.agents.allow, self.agents.deny)


# ================================================================================================
# Loading
# ================================================================================================


class _ConfigError(Exception):
    """A problem that makes the whole load fall back to defaults (text is user-facing)."""


def global_config_path(env: Mapping[str, str]) -> Path | None:
    """``<base>/agentic/agentic.toml`` where base is, in order: the test hook, ``XDG_CONFIG_HOME``,
    ``$HOME/.config`` (each trimmed; blank counts as unset). ``None`` if no home can be found."""
    for name in (CONFIG_DIR_TEST_ENV, "XDG_CONFIG_HOME"):
        value = _trim(env.get(name, ""))
        if value:
            return Path(value) / GLOBAL_CONFIG_DIR / CONFIG_FILE_NAME
    home = _trim(env.get("HOME", ""))
    if not home:
        try:
            home = str(Path.home())
        except (RuntimeError, KeyError, OSError):
            return None
    return Path(home) / ".config" / GLOBAL_CONFIG_DIR / CONFIG_FILE_NAME


def load_config(cwd: Path, env: Mapping[str, str] | None = None) -> tuple[OrchestratorConfig, list[str]]:
    """Load ``[orchestrator]`` from the global and the local ``agentic.toml``.

    The local file (``<cwd>/agentic.toml``) is deep-merged over the global one: tables merge key by
    key, arrays and scalars from the local file replace the global ones. Both files are optional.
    Unknown keys are ignored.

    Returns ``(config, warnings)``. Warnings are ready-to-print lines: advisory ones in the
    reference's ``[<code>] <path>: <message>`` format, and — when a file cannot be read or parsed, or
    a key has the wrong type — one line naming the file, the key and the fix; in that case the
    config is all defaults (the reference's behaviour, but no longer silent).
    """
    if env is None:
        env = os.environ
    global_path = global_config_path(env)
    local_path = Path(cwd) / CONFIG_FILE_NAME
    try:
        global_doc = _read_toml(global_path) if global_path is not None else {}
        local_doc = _read_toml(local_path)
        merged = _deep_merge(global_doc, local_doc)
        config = _build(merged, local_doc, local_path, global_path)
    except _ConfigError as exc:
        return OrchestratorConfig(), [str(exc)]
    warnings = _unknown_top_level_warnings(merged)
    warnings.extend(advisory_warnings(config))
    return config, warnings


def _read_toml(path: Path) -> dict[str, Any]:
    import tomllib  # lazily: only the server start path needs it

    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise _ConfigError(
            f"Failed to read config file {path}: {exc.strerror or exc}. "
            "Fix its permissions or remove it; using the built-in orchestrator defaults."
        ) from None
    try:
        text = raw.decode("utf-8")
        return tomllib.loads(text)
    except UnicodeDecodeError:
        raise _ConfigError(
            f"Invalid TOML in {path}: the file is not UTF-8 text. "
            "Save it as UTF-8; using the built-in orchestrator defaults."
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise _ConfigError(
            f"Invalid TOML in {path}: {exc}. Fix the syntax; using the built-in orchestrator defaults."
        ) from None


def _deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _build(
    merged: dict[str, Any], local_doc: dict[str, Any], local_path: Path, global_path: Path | None
) -> OrchestratorConfig:
    def origin(*keys: str) -> Path | None:
        # The file whose value ended up in the merged config: local wins wherever it has the key.
        node: Any = local_doc
        for key in keys:
            if not isinstance(node, dict) or key not in node:
                return global_path
            node = node[key]
        return local_path

    def fail(keys: tuple[str, ...], expected: str, got: object, fix: str) -> _ConfigError:
        dotted = ".".join(keys)
        where = origin(*keys)
        return _ConfigError(
            f"Invalid config in {where}: `{dotted}` must be {expected}, got {_toml_repr(got)}. "
            f"Fix: {fix}. Using the built-in orchestrator defaults until it is fixed."
        )

    orchestrator = merged.get("orchestrator", {})
    if not isinstance(orchestrator, dict):
        raise fail(("orchestrator",), "a table", orchestrator, "write it as an `[orchestrator]` section")

    values: dict[str, Any] = {}
    for key, default in (
        ("session_deadline_secs", DEFAULT_SESSION_DEADLINE_SECS),
        ("inactivity_timeout_secs", DEFAULT_INACTIVITY_TIMEOUT_SECS),
    ):
        if key in orchestrator:
            value = orchestrator[key]
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _U64_MAX:
                raise fail(
                    ("orchestrator", key),
                    "a non-negative integer number of seconds (0 = no limit)",
                    value,
                    f"write e.g. `{key} = {default}`",
                )
            values[key] = value

    if "compaction_threshold" in orchestrator:
        value = orchestrator["compaction_threshold"]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise fail(
                ("orchestrator", "compaction_threshold"),
                "a number between 0.0 and 1.0",
                value,
                "write e.g. `compaction_threshold = 0.8`",
            )
        values["compaction_threshold"] = float(value)

    def name_lists(section: str, what: str, example: str) -> dict[str, list[str]]:
        table = orchestrator.get(section, {})
        if not isinstance(table, dict):
            raise fail(
                ("orchestrator", section),
                "a table",
                table,
                f"write it as an `[orchestrator.{section}]` section with `allow = [...]` / `deny = [...]`",
            )
        lists: dict[str, list[str]] = {}
        for key in ("allow", "deny"):
            if key in table:
                value = table[key]
                if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
                    raise fail(
                        ("orchestrator", section, key),
                        f"an array of {what} names (strings)",
                        value,
                        f"write e.g. `{key} = {example}`",
                    )
                lists[key] = list(value)
        return lists

    commands = name_lists("commands", "command", '["plan", "research"]')
    agents = name_lists("agents", "agent", '["build", "plan"]')
    return OrchestratorConfig(commands=CommandsConfig(**commands), agents=AgentsConfig(**agents), **values)


def _toml_repr(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    text = str(value)
    return text if len(text) <= 40 else text[:40] + "…"


# ================================================================================================
# Advisory warnings (logged, never enforced)
# ================================================================================================


def _warning(code: str, path: str, message: str) -> str:
    return f"[{code}] {path}: {message}"


def _rust_debug(value: str) -> str:
    """Rust's ``{:?}`` of a string, which the reference uses to quote entries in warnings."""
    out = ['"']
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\0":
            out.append("\\0")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{{{ord(ch):x}}}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _unknown_top_level_warnings(merged: Mapping[str, Any]) -> list[str]:
    return [
        _warning("config.unknown_top_level_key", "$", f"Unknown top-level key '{key}' will be ignored")
        for key in merged
        if key not in _KNOWN_TOP_LEVEL_KEYS
    ]


def advisory_warnings(config: OrchestratorConfig) -> list[str]:
    """The reference's advisory checks of ``[orchestrator]``, as printable lines."""
    warnings: list[str] = []
    threshold = config.compaction_threshold
    if not 0.0 <= threshold <= 1.0:  # also true for NaN
        warnings.append(
            _warning(
                "orchestrator.compaction_threshold.out_of_range",
                "orchestrator.compaction_threshold",
                "expected a value between 0.0 and 1.0",
            )
        )
    warnings.extend(_list_warnings("commands", "command", config.commands.allow, config.commands.deny))
    warnings.extend(_list_warnings("agents", "agent", config.agents.allow, config.agents.deny))
    return warnings


def _list_warnings(section: str, what: str, allow: list[str], deny: list[str]) -> list[str]:
    """The advisory checks of one allow/deny pair (the reference's for commands; the same for agents)."""
    warnings: list[str] = []
    for which, entries in (("allow", allow), ("deny", deny)):
        path = f"orchestrator.{section}.{which}"
        seen: set[str] = set()
        duplicates: set[str] = set()
        for entry in entries:
            trimmed = _trim(entry)
            if not trimmed:
                warnings.append(
                    _warning(
                        f"{path}.empty_entry",
                        path,
                        f"entry {_rust_debug(entry)} becomes empty after trimming",
                    )
                )
                continue
            if trimmed != entry:
                warnings.append(
                    _warning(
                        f"{path}.trimmed_entry",
                        path,
                        f"entry {_rust_debug(entry)} has surrounding whitespace; "
                        f"effective value is {_rust_debug(trimmed)}",
                    )
                )
            if trimmed in seen:
                duplicates.add(trimmed)
            seen.add(trimmed)
        if duplicates:
            warnings.append(
                _warning(
                    f"{path}.duplicate",
                    path,
                    f"duplicate {what} entries after trimming: {', '.join(sorted(duplicates))}",
                )
            )
    policy = CommandPolicy(allow, deny)
    overlap = sorted(set(policy.allow) & set(policy.deny))
    if overlap:
        warnings.append(
            _warning(
                f"orchestrator.{section}.overlap",
                f"orchestrator.{section}",
                f"{what}s appear in both allow and deny: {', '.join(overlap)}. deny wins at runtime",
            )
        )
    return warnings


# ================================================================================================
# Command policy
# ================================================================================================

CommandDecision = Literal["allowed", "denied_by_denylist", "denied_by_allowlist"]


class CommandPolicy:
    """Which OpenCode commands the orchestrator may list and run.

    Entries are trimmed and empty ones dropped; matching is exact and case-sensitive on the
    *untrimmed* command name; a deny entry wins over an allow entry; an empty allow list allows
    everything not denied. ``list_commands`` filters with :meth:`decide`; ``run`` refuses with
    :meth:`blocked_message` before any session request.
    """

    __slots__ = ("allow", "deny")

    def __init__(self, allow: Iterable[str] = (), deny: Iterable[str] = ()) -> None:
        self.allow: frozenset[str] = frozenset(t for t in (_trim(e) for e in allow) if t)
        self.deny: frozenset[str] = frozenset(t for t in (_trim(e) for e in deny) if t)

    def decide(self, name: str) -> CommandDecision:
        if name in self.deny:
            return "denied_by_denylist"
        if self.allow and name not in self.allow:
            return "denied_by_allowlist"
        return "allowed"

    def blocked_message(self, name: str) -> str | None:
        """The InvalidInput text for a blocked command, or ``None`` if it is allowed."""
        decision = self.decide(name)
        if decision == "denied_by_denylist":
            return f"Command '{name}' cannot be run because it is blocked by orchestrator.commands.deny."
        if decision == "denied_by_allowlist":
            return f"Command '{name}' cannot be run because it is not present in orchestrator.commands.allow."
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(allow={sorted(self.allow)!r}, deny={sorted(self.deny)!r})"


class AgentPolicy(CommandPolicy):
    """Which OpenCode agents ``run(agent=...)`` may use and ``list_agents`` shows.

    The same rules as :class:`CommandPolicy` (trimmed entries, exact case-sensitive match, deny
    wins, an empty allow list allows all), the reference's ``[orchestrator.agents]``; only the
    refusal text differs.
    """

    __slots__ = ()

    def blocked_message(self, name: str) -> str | None:
        """The InvalidInput text for a blocked agent, or ``None`` if it is allowed."""
        decision = self.decide(name)
        if decision == "denied_by_denylist":
            return f"Agent '{name}' cannot be used because it is blocked by orchestrator.agents.deny."
        if decision == "denied_by_allowlist":
            return f"Agent '{name}' cannot be used because it is not present in orchestrator.agents.allow."
        return None


# ================================================================================================
# Idle grace
# ================================================================================================

_UNSIGNED = re.compile(r"\+?[0-9]+")


def idle_grace_ms(env: Mapping[str, str] | None = None) -> int:
    """``OPENCODE_ORCHESTRATOR_IDLE_GRACE_MS``: how long an idle status is distrusted after dispatch.

    Read on every run call. Trimmed; unset, blank or not a u64 (Rust ``u64::from_str`` syntax:
    ASCII digits with an optional ``+``) → 1000; ``0`` is allowed (accept idle at once).
    """
    if env is None:
        env = os.environ
    value = _trim(env.get(IDLE_GRACE_ENV, ""))
    if not value or not _UNSIGNED.fullmatch(value):
        return DEFAULT_IDLE_GRACE_MS
    digits = value.removeprefix("+").lstrip("0") or "0"
    if len(digits) > 20:  # more digits than u64::MAX has (and keeps int() away from huge strings)
        return DEFAULT_IDLE_GRACE_MS
    parsed = int(digits)
    return parsed if parsed <= _U64_MAX else DEFAULT_IDLE_GRACE_MS


# ================================================================================================
# Timeout texts (they state the configured duration)
# ================================================================================================


def human_duration(secs: int) -> str:
    """A configured duration in words: ``90 seconds``, ``5 minutes``, ``1 hour``, ``2 hours 30 minutes``.

    Under two minutes, a duration that is not a whole minute is said in seconds (``90 seconds``
    reads better than ``1 minute 30 seconds``); otherwise hours, minutes and seconds, zero parts left out.
    """
    secs = max(0, int(secs))

    def unit(n: int, word: str) -> str:
        return f"{n} {word}" if n == 1 else f"{n} {word}s"

    if secs < 120 and secs != 60:
        return unit(secs, "second")
    hours, rest = divmod(secs, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [unit(n, word) for n, word in ((hours, "hour"), (minutes, "minute"), (seconds, "second")) if n]
    return " ".join(parts)


def inactivity_timeout_text(session_id: str, secs: int) -> str:
    """Internal-error text when a run saw no activity for the configured inactivity timeout."""
    return (
        f"Session idle timeout: no activity for {human_duration(secs)} (session_id={session_id}). "
        "The session may still be running; use run(session_id=...) to check status."
    )


def deadline_text(secs: int) -> str:
    """Internal-error text when a run exceeded the configured session deadline."""
    return (
        f"Session execution timed out after {human_duration(secs)}. "
        "The session may still be running; use run with the session_id to check status."
    )


__all__ = [
    "CONFIG_DIR_TEST_ENV",
    "CONFIG_FILE_NAME",
    "DEFAULT_COMPACTION_THRESHOLD",
    "DEFAULT_IDLE_GRACE_MS",
    "DEFAULT_INACTIVITY_TIMEOUT_SECS",
    "DEFAULT_SESSION_DEADLINE_SECS",
    "IDLE_GRACE_ENV",
    "AgentPolicy",
    "AgentsConfig",
    "CommandDecision",
    "CommandPolicy",
    "CommandsConfig",
    "OrchestratorConfig",
    "advisory_warnings",
    "deadline_text",
    "global_config_path",
    "human_duration",
    "idle_grace_ms",
    "inactivity_timeout_text",
    "load_config",
]
