"""agentic.toml loading, the command and agent policies, the idle grace and the timeout texts.

Ports the reference's ``src/config.rs`` tests and the command- and agent-policy cases of
``src/server.rs``, plus the loader's behaviour and the timeout fixes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator_tui.orchestrator.config import (
    AgentPolicy,
    AgentsConfig,
    CommandPolicy,
    CommandsConfig,
    OrchestratorConfig,
    advisory_warnings,
    deadline_text,
    global_config_path,
    human_duration,
    idle_grace_ms,
    inactivity_timeout_text,
    load_config,
)

# ================================================================================================
# idle grace
# ================================================================================================


def test_idle_grace_uses_default_when_env_missing() -> None:
    assert idle_grace_ms({}) == 1000


def test_idle_grace_uses_env_value_when_valid() -> None:
    assert idle_grace_ms({"OPENCODE_ORCHESTRATOR_IDLE_GRACE_MS": "42"}) == 42


def test_idle_grace_falls_back_when_env_invalid() -> None:
    assert idle_grace_ms({"OPENCODE_ORCHESTRATOR_IDLE_GRACE_MS": "abc"}) == 1000


def test_idle_grace_falls_back_when_env_empty() -> None:
    assert idle_grace_ms({"OPENCODE_ORCHESTRATOR_IDLE_GRACE_MS": "   "}) == 1000


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0),  # allowed: accept idle immediately
        (" 250\n", 250),
        ("+7", 7),  # Rust's u64::from_str accepts a leading plus
        ("0000000000000000000000000042", 42),
        ("18446744073709551615", 2**64 - 1),
        ("18446744073709551616", 1000),  # overflow
        ("-1", 1000),
        ("1.5", 1000),
        ("4_2", 1000),  # Python's int() would accept this, Rust does not
        ("\u0664\u0662", 1000),  # non-ASCII digits, likewise
        ("", 1000),
    ],
)
def test_idle_grace_parsing_matches_rust(value: str, expected: int) -> None:
    assert idle_grace_ms({"OPENCODE_ORCHESTRATOR_IDLE_GRACE_MS": value}) == expected


def test_idle_grace_reads_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENCODE_ORCHESTRATOR_IDLE_GRACE_MS", "77")
    assert idle_grace_ms() == 77


# ================================================================================================
# command policy
# ================================================================================================


def test_command_policy_allows_all_when_allowlist_is_empty() -> None:
    policy = CommandPolicy(allow=[], deny=["blocked"])
    assert policy.decide("plan") == "allowed"
    assert policy.decide("blocked") == "denied_by_denylist"


def test_command_policy_trims_entries_and_deny_wins() -> None:
    policy = CommandPolicy(allow=["  plan  "], deny=["plan"])
    assert policy.decide("plan") == "denied_by_denylist"


def test_command_policy_matching_is_case_sensitive() -> None:
    policy = CommandPolicy(allow=["Plan"])
    assert policy.decide("Plan") == "allowed"
    assert policy.decide("plan") == "denied_by_allowlist"


def test_command_policy_drops_empty_entries_and_does_not_trim_the_name() -> None:
    # An allow list of only blank entries is empty after normalization: everything is allowed.
    assert CommandPolicy(allow=["   ", ""]).decide("anything") == "allowed"
    assert CommandPolicy(deny=[" "]).decide(" ") == "allowed"
    policy = CommandPolicy(allow=["plan"])
    assert policy.decide(" plan") == "denied_by_allowlist"
    assert policy.decide("plan") == "allowed"
    assert policy.decide("build") == "denied_by_allowlist"


def test_command_policy_blocked_messages() -> None:
    policy = CommandPolicy(allow=["plan", "blocked"], deny=["blocked"])
    assert policy.blocked_message("plan") is None
    assert policy.blocked_message("blocked") == (
        "Command 'blocked' cannot be run because it is blocked by orchestrator.commands.deny."
    )
    assert policy.blocked_message("build") == (
        "Command 'build' cannot be run because it is not present in orchestrator.commands.allow."
    )


def test_config_builds_its_policy() -> None:
    config = OrchestratorConfig(commands=CommandsConfig(allow=["a"], deny=["b"]))
    assert config.command_policy().decide("a") == "allowed"
    assert config.command_policy().decide("b") == "denied_by_denylist"
    assert config.command_policy().decide("c") == "denied_by_allowlist"


# ================================================================================================
# agent policy (the reference's agent_policy_* cases of src/server.rs)
# ================================================================================================


def test_agent_policy_allows_all_when_allowlist_is_empty() -> None:
    policy = AgentPolicy(allow=[], deny=["Bash"])
    assert policy.decide("Plan") == "allowed"
    assert policy.decide("Bash") == "denied_by_denylist"


def test_agent_policy_trims_entries_and_deny_wins() -> None:
    assert AgentPolicy(allow=["  Plan  "], deny=["Plan"]).decide("Plan") == "denied_by_denylist"


def test_agent_policy_matching_is_case_sensitive() -> None:
    policy = AgentPolicy(allow=["Plan"], deny=["Bash"])
    assert policy.decide("Plan") == "allowed"
    assert policy.decide("plan") == "denied_by_allowlist"


def test_agent_policy_blocked_messages() -> None:
    policy = AgentPolicy(allow=["plan", "blocked"], deny=["blocked"])
    assert policy.blocked_message("plan") is None
    assert policy.blocked_message("blocked") == (
        "Agent 'blocked' cannot be used because it is blocked by orchestrator.agents.deny."
    )
    assert policy.blocked_message("build") == (
        "Agent 'build' cannot be used because it is not present in orchestrator.agents.allow."
    )


def test_config_builds_its_agent_policy_apart_from_the_command_policy() -> None:
    config = OrchestratorConfig(agents=AgentsConfig(allow=["a"], deny=["b"]))
    assert config.agent_policy().decide("a") == "allowed"
    assert config.agent_policy().decide("b") == "denied_by_denylist"
    assert config.agent_policy().decide("c") == "denied_by_allowlist"
    assert config.command_policy().decide("c") == "allowed"


# ================================================================================================
# Loading agentic.toml
# ================================================================================================


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """(global config file, local project dir, env) with the global base isolated by the test hook."""
    base = tmp_path / "config-base"
    (base / "agentic").mkdir(parents=True)
    project = tmp_path / "project"
    project.mkdir()
    env = {"__AGENTIC_CONFIG_DIR_FOR_TESTS": str(base), "HOME": str(tmp_path / "home")}
    return base / "agentic" / "agentic.toml", project, env


def test_load_without_files_returns_defaults(dirs: tuple[Path, Path, dict[str, str]]) -> None:
    _, project, env = dirs
    config, warnings = load_config(project, env)
    assert config == OrchestratorConfig()
    assert (config.session_deadline_secs, config.inactivity_timeout_secs) == (3600, 300)
    assert config.compaction_threshold == 0.80
    assert (config.commands.allow, config.commands.deny) == ([], [])
    assert warnings == []


def test_load_local_only(dirs: tuple[Path, Path, dict[str, str]]) -> None:
    _, project, env = dirs
    (project / "agentic.toml").write_text("[orchestrator]\nsession_deadline_secs = 7200\n")
    config, warnings = load_config(project, env)
    assert config.session_deadline_secs == 7200
    assert config.inactivity_timeout_secs == 300
    assert warnings == []


def test_local_merges_over_global(dirs: tuple[Path, Path, dict[str, str]]) -> None:
    global_file, project, env = dirs
    global_file.write_text(
        "[orchestrator]\n"
        "session_deadline_secs = 100\n"
        "compaction_threshold = 0.5\n"
        "[orchestrator.commands]\n"
        'allow = ["a", "b"]\n'
        'deny = ["x"]\n'
    )
    (project / "agentic.toml").write_text(
        "[orchestrator]\ninactivity_timeout_secs = 5\ncompaction_threshold = 1\n"
        '[orchestrator.commands]\nallow = ["c"]\n'
    )
    config, warnings = load_config(project, env)
    assert config.session_deadline_secs == 100  # from global: tables merge key by key
    assert config.inactivity_timeout_secs == 5  # from local
    assert config.compaction_threshold == 1.0  # local scalar replaces; TOML integer accepted as float
    assert config.commands.allow == ["c"]  # arrays replace, they do not concatenate
    assert config.commands.deny == ["x"]
    assert warnings == []


def test_global_path_resolution() -> None:
    assert global_config_path({"__AGENTIC_CONFIG_DIR_FOR_TESTS": " /t ", "XDG_CONFIG_HOME": "/x"}) == Path(
        "/t/agentic/agentic.toml"
    )
    assert global_config_path({"XDG_CONFIG_HOME": "/x", "HOME": "/h"}) == Path("/x/agentic/agentic.toml")
    assert global_config_path({"XDG_CONFIG_HOME": "  ", "HOME": "/h"}) == Path(
        "/h/.config/agentic/agentic.toml"
    )


def test_load_uses_xdg_config_home(tmp_path: Path) -> None:
    xdg = tmp_path / "xdg"
    (xdg / "agentic").mkdir(parents=True)
    (xdg / "agentic" / "agentic.toml").write_text("[orchestrator]\ninactivity_timeout_secs = 42\n")
    config, _ = load_config(tmp_path, {"XDG_CONFIG_HOME": str(xdg), "HOME": str(tmp_path / "nohome")})
    assert config.inactivity_timeout_secs == 42


def test_unknown_keys_are_ignored_and_unknown_sections_warned(
    dirs: tuple[Path, Path, dict[str, str]],
) -> None:
    _, project, env = dirs
    (project / "agentic.toml").write_text(
        "typo = 1\n[services]\nanthropic = 5\n"
        '[orchestrator]\nfuture_knob = "x"\n[orchestrator.commands]\nextra = 1\n'
    )
    config, warnings = load_config(project, env)
    assert config == OrchestratorConfig()
    assert warnings == ["[config.unknown_top_level_key] $: Unknown top-level key 'typo' will be ignored"]


def test_zero_timeouts_mean_no_limit(dirs: tuple[Path, Path, dict[str, str]]) -> None:
    _, project, env = dirs
    (project / "agentic.toml").write_text(
        "[orchestrator]\nsession_deadline_secs = 0\ninactivity_timeout_secs = 0\n"
    )
    config, warnings = load_config(project, env)
    assert (config.session_deadline_secs, config.inactivity_timeout_secs) == (0, 0)
    assert config.session_deadline() is None
    assert config.inactivity_timeout() is None
    assert warnings == []
    assert OrchestratorConfig().session_deadline() == 3600.0
    assert OrchestratorConfig().inactivity_timeout() == 300.0


def test_invalid_toml_falls_back_with_a_warning(dirs: tuple[Path, Path, dict[str, str]]) -> None:
    _, project, env = dirs
    local = project / "agentic.toml"
    local.write_text("not valid toml [[[\n")
    config, warnings = load_config(project, env)
    assert config == OrchestratorConfig()
    assert len(warnings) == 1
    assert warnings[0].startswith(f"Invalid TOML in {local}: ")
    assert "line 1" in warnings[0]
    assert warnings[0].endswith("Fix the syntax; using the built-in orchestrator defaults.")


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (
            '[orchestrator]\nsession_deadline_secs = "1h"\n',
            "`orchestrator.session_deadline_secs` must be a non-negative integer number of seconds "
            '(0 = no limit), got "1h". Fix: write e.g. `session_deadline_secs = 3600`.',
        ),
        (
            "[orchestrator]\ninactivity_timeout_secs = -5\n",
            "`orchestrator.inactivity_timeout_secs` must be a non-negative integer number of seconds "
            "(0 = no limit), got -5. Fix: write e.g. `inactivity_timeout_secs = 300`.",
        ),
        (
            "[orchestrator]\ninactivity_timeout_secs = true\n",
            "`orchestrator.inactivity_timeout_secs` must be a non-negative integer number of seconds "
            "(0 = no limit), got true. Fix: write e.g. `inactivity_timeout_secs = 300`.",
        ),
        (
            "[orchestrator]\nsession_deadline_secs = 1.5\n",
            "`orchestrator.session_deadline_secs` must be a non-negative integer number of seconds "
            "(0 = no limit), got 1.5. Fix: write e.g. `session_deadline_secs = 3600`.",
        ),
        (
            '[orchestrator]\ncompaction_threshold = "high"\n',
            '`orchestrator.compaction_threshold` must be a number between 0.0 and 1.0, got "high". '
            "Fix: write e.g. `compaction_threshold = 0.8`.",
        ),
        (
            '[orchestrator.commands]\nallow = "plan"\n',
            '`orchestrator.commands.allow` must be an array of command names (strings), got "plan". '
            'Fix: write e.g. `allow = ["plan", "research"]`.',
        ),
        (
            '[orchestrator.commands]\ndeny = ["plan", 3]\n',
            "`orchestrator.commands.deny` must be an array of command names (strings), got an array. "
            'Fix: write e.g. `deny = ["plan", "research"]`.',
        ),
        (
            '[orchestrator.agents]\nallow = "plan"\n',
            '`orchestrator.agents.allow` must be an array of agent names (strings), got "plan". '
            'Fix: write e.g. `allow = ["build", "plan"]`.',
        ),
        (
            '[orchestrator]\nagents = ["plan"]\n',
            "`orchestrator.agents` must be a table, got an array. Fix: write it as an "
            "`[orchestrator.agents]` section with `allow = [...]` / `deny = [...]`.",
        ),
        (
            "orchestrator = 5\n",
            "`orchestrator` must be a table, got 5. Fix: write it as an `[orchestrator]` section.",
        ),
        (
            '[orchestrator]\ncommands = "all"\n',
            '`orchestrator.commands` must be a table, got "all". Fix: write it as an '
            "`[orchestrator.commands]` section with `allow = [...]` / `deny = [...]`.",
        ),
    ],
)
def test_type_errors_name_file_key_and_fix(
    dirs: tuple[Path, Path, dict[str, str]], toml: str, expected: str
) -> None:
    _, project, env = dirs
    local = project / "agentic.toml"
    local.write_text(toml)
    config, warnings = load_config(project, env)
    assert config == OrchestratorConfig()
    assert warnings == [
        f"Invalid config in {local}: {expected} Using the built-in orchestrator defaults until it is fixed."
    ]


def test_type_error_names_the_global_file_when_the_value_comes_from_it(
    dirs: tuple[Path, Path, dict[str, str]],
) -> None:
    global_file, project, env = dirs
    global_file.write_text('[orchestrator]\nsession_deadline_secs = "soon"\n')
    (project / "agentic.toml").write_text("[orchestrator]\ninactivity_timeout_secs = 10\n")
    config, warnings = load_config(project, env)
    assert config == OrchestratorConfig()  # the whole load falls back, as in the reference
    assert len(warnings) == 1
    assert warnings[0].startswith(f"Invalid config in {global_file}: `orchestrator.session_deadline_secs`")


def test_unreadable_file_falls_back_with_a_warning(dirs: tuple[Path, Path, dict[str, str]]) -> None:
    _, project, env = dirs
    (project / "agentic.toml").mkdir()  # a directory where the file should be
    config, warnings = load_config(project, env)
    assert config == OrchestratorConfig()
    assert len(warnings) == 1
    assert warnings[0].startswith(f"Failed to read config file {project / 'agentic.toml'}: ")


def test_non_utf8_file_falls_back_with_a_warning(dirs: tuple[Path, Path, dict[str, str]]) -> None:
    _, project, env = dirs
    (project / "agentic.toml").write_bytes(b'[orchestrator]\nx = "\xff"\n')
    config, warnings = load_config(project, env)
    assert config == OrchestratorConfig()
    assert warnings == [
        f"Invalid TOML in {project / 'agentic.toml'}: the file is not UTF-8 text. "
        "Save it as UTF-8; using the built-in orchestrator defaults."
    ]


# ================================================================================================
# Advisory warnings
# ================================================================================================


def _warnings_for(**commands: list[str]) -> list[str]:
    return advisory_warnings(OrchestratorConfig(commands=CommandsConfig(**commands)))


def test_default_config_has_no_advisory_warnings() -> None:
    assert advisory_warnings(OrchestratorConfig()) == []


@pytest.mark.parametrize("threshold", [1.5, -0.1, float("nan")])
def test_threshold_out_of_range_warns(threshold: float) -> None:
    assert advisory_warnings(OrchestratorConfig(compaction_threshold=threshold)) == [
        "[orchestrator.compaction_threshold.out_of_range] orchestrator.compaction_threshold: "
        "expected a value between 0.0 and 1.0"
    ]


def test_empty_entry_warns() -> None:
    assert _warnings_for(allow=["   "]) == [
        "[orchestrator.commands.allow.empty_entry] orchestrator.commands.allow: "
        'entry "   " becomes empty after trimming'
    ]


def test_trimmed_entry_warns() -> None:
    assert _warnings_for(deny=["  plan  "]) == [
        "[orchestrator.commands.deny.trimmed_entry] orchestrator.commands.deny: "
        'entry "  plan  " has surrounding whitespace; effective value is "plan"'
    ]


def test_duplicate_entry_warns() -> None:
    assert _warnings_for(allow=["plan", "plan", "b", "b"]) == [
        "[orchestrator.commands.allow.duplicate] orchestrator.commands.allow: "
        "duplicate command entries after trimming: b, plan"
    ]


def test_overlap_warns_that_deny_wins() -> None:
    assert _warnings_for(allow=["plan"], deny=["plan"]) == [
        "[orchestrator.commands.overlap] orchestrator.commands: "
        "commands appear in both allow and deny: plan. deny wins at runtime"
    ]


def test_agent_entries_warn_like_command_entries() -> None:
    config = OrchestratorConfig(agents=AgentsConfig(allow=[" plan", "x", "x"], deny=["plan", ""]))
    assert advisory_warnings(config) == [
        "[orchestrator.agents.allow.trimmed_entry] orchestrator.agents.allow: "
        'entry " plan" has surrounding whitespace; effective value is "plan"',
        "[orchestrator.agents.allow.duplicate] orchestrator.agents.allow: duplicate agent entries after trimming: x",
        '[orchestrator.agents.deny.empty_entry] orchestrator.agents.deny: entry "" becomes empty after trimming',
        "[orchestrator.agents.overlap] orchestrator.agents: "
        "agents appear in both allow and deny: plan. deny wins at runtime",
    ]


def test_load_reads_the_agents_table(dirs: tuple[Path, Path, dict[str, str]]) -> None:
    _, project, env = dirs
    (project / "agentic.toml").write_text('[orchestrator.agents]\nallow = ["build", "plan"]\ndeny = ["plan"]\n')
    config, warnings = load_config(project, env)
    assert config.agent_policy().decide("build") == "allowed"
    assert config.agent_policy().decide("plan") == "denied_by_denylist"
    assert config.agent_policy().decide("explore") == "denied_by_allowlist"
    assert [w.split("]")[0] + "]" for w in warnings] == ["[orchestrator.agents.overlap]"]


def test_entry_with_control_characters_is_quoted_like_rust() -> None:
    (warning,) = _warnings_for(allow=['\tq"x\n'])
    assert warning.endswith('entry "\\tq\\"x\\n" has surrounding whitespace; effective value is "q\\"x"')


def test_load_returns_advisory_warnings(dirs: tuple[Path, Path, dict[str, str]]) -> None:
    _, project, env = dirs
    (project / "agentic.toml").write_text(
        "[orchestrator]\ncompaction_threshold = 2.0\n"
        '[orchestrator.commands]\nallow = [" plan"]\ndeny = ["plan"]\n'
    )
    config, warnings = load_config(project, env)
    assert config.compaction_threshold == 2.0  # advisory only: the value is still used
    assert config.command_policy().decide("plan") == "denied_by_denylist"
    assert [w.split("]")[0] + "]" for w in warnings] == [
        "[orchestrator.compaction_threshold.out_of_range]",
        "[orchestrator.commands.allow.trimmed_entry]",
        "[orchestrator.commands.overlap]",
    ]


# ================================================================================================
# Timeout texts (stating the configured duration)
# ================================================================================================


@pytest.mark.parametrize(
    ("secs", "text"),
    [
        (0, "0 seconds"),
        (1, "1 second"),
        (45, "45 seconds"),
        (60, "1 minute"),
        (90, "90 seconds"),
        (120, "2 minutes"),
        (150, "2 minutes 30 seconds"),
        (300, "5 minutes"),
        (3600, "1 hour"),
        (3661, "1 hour 1 minute 1 second"),
        (5400, "1 hour 30 minutes"),
        (9000, "2 hours 30 minutes"),
        (172800, "48 hours"),
    ],
)
def test_human_duration(secs: int, text: str) -> None:
    assert human_duration(secs) == text


def test_timeout_texts_with_default_durations_match_the_reference() -> None:
    assert inactivity_timeout_text("ses_1", 300) == (
        "Session idle timeout: no activity for 5 minutes (session_id=ses_1). "
        "The session may still be running; use run(session_id=...) to check status."
    )
    assert deadline_text(3600) == (
        "Session execution timed out after 1 hour. "
        "The session may still be running; use run with the session_id to check status."
    )


def test_timeout_texts_state_the_configured_durations() -> None:
    assert inactivity_timeout_text("ses_2", 90) == (
        "Session idle timeout: no activity for 90 seconds (session_id=ses_2). "
        "The session may still be running; use run(session_id=...) to check status."
    )
    assert deadline_text(9000) == (
        "Session execution timed out after 2 hours 30 minutes. "
        "The session may still be running; use run with the session_id to check status."
    )
