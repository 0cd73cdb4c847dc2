"""The context-limit safeguard; ports ``src/token_tracker.rs`` tests."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator_tui.orchestrator.calllog import U32_MAX, TokenUsage
from orchestrator_tui.orchestrator.tokens import (
    TokenTracker,
    context_limits_from_providers,
    parse_token_usage,
)

LIMITS = {("provider-1", "model-1"): 1000}


def _tokens(input_tokens: int, **rest: int) -> dict[str, Any]:
    return {"input": input_tokens, "output": 0, "reasoning": 0, "cache": {"read": 0, "write": 0}, **rest}


def _message_updated(
    provider: str | None, model: str | None, tokens: dict[str, Any] | None
) -> dict[str, Any]:
    info: dict[str, Any] = {"id": "msg-1", "role": "assistant", "time": {"created": 0}}
    if provider is not None:
        info["providerID"] = provider
    if model is not None:
        info["modelID"] = model
    if tokens is not None:
        info["tokens"] = tokens
    return {"sessionID": "ses_1", "info": info}


def _step_finish(tokens: dict[str, Any] | None) -> dict[str, Any]:
    part: dict[str, Any] = {"id": "prt_1", "type": "step-finish", "reason": "done", "cost": 0.0}
    if tokens is not None:
        part["tokens"] = tokens
    return {"sessionID": "ses_1", "part": part}


# ================================================================================================
# the reference's cases
# ================================================================================================


def test_triggers_compaction_at_80_percent() -> None:
    tracker = TokenTracker(0.80, LIMITS)
    tracker.observe_event("message.updated", _message_updated("provider-1", "model-1", None))
    tracker.observe_tokens(TokenUsage(input=799, output=0))
    assert not tracker.compaction_needed
    tracker.observe_tokens(TokenUsage(input=800, output=0))
    assert tracker.compaction_needed


def test_does_not_trigger_without_limit() -> None:
    tracker = TokenTracker()
    tracker.observe_tokens(TokenUsage(input=10_000, output=0))
    assert not tracker.compaction_needed


def test_usage_ratio_calculation() -> None:
    tracker = TokenTracker(0.80, LIMITS)
    tracker.observe_event("message.updated", _message_updated("provider-1", "model-1", _tokens(500)))
    assert tracker.usage_ratio() == 0.5


def test_observe_event_tokens_first_limit_later_triggers_compaction() -> None:
    tracker = TokenTracker(0.80, LIMITS)
    tracker.observe_event("message.part.updated", _step_finish(_tokens(800)))
    assert not tracker.compaction_needed  # no limit yet
    tracker.observe_event("message.updated", _message_updated("provider-1", "model-1", None))
    assert tracker.compaction_needed


def test_observe_event_limit_first_tokens_later_triggers_compaction() -> None:
    tracker = TokenTracker(0.80, LIMITS)
    tracker.observe_event("message.updated", _message_updated("provider-1", "model-1", None))
    assert not tracker.compaction_needed  # no tokens yet
    tracker.observe_event("message.part.updated", _step_finish(_tokens(800)))
    assert tracker.compaction_needed


def test_observe_event_combined_message_updated_event_triggers_compaction() -> None:
    tracker = TokenTracker(0.80, LIMITS)
    tracker.observe_event("message.updated", _message_updated("provider-1", "model-1", _tokens(800)))
    assert tracker.compaction_needed


def test_observe_event_tokens_without_any_limit_does_not_trigger_compaction() -> None:
    tracker = TokenTracker(0.80, LIMITS)
    tracker.observe_event("message.part.updated", _step_finish(_tokens(10_000)))
    assert not tracker.compaction_needed
    assert tracker.context_limit is None


def test_to_log_token_usage_preserves_values_without_saturation() -> None:
    tracker = TokenTracker()
    tracker.observe_tokens(TokenUsage(input=10, output=20, total=30, reasoning=5))
    usage = tracker.to_log_token_usage()
    assert usage is not None
    record, saturated = usage.to_record()
    assert not saturated
    assert record == {"prompt": 10, "completion": 20, "total": 30, "reasoning_tokens": 5}


def test_to_log_token_usage_saturates_large_values() -> None:
    u64_max = 2**64 - 1
    tracker = TokenTracker()
    tracker.observe_tokens(TokenUsage(input=u64_max, output=u64_max, total=u64_max, reasoning=u64_max))
    usage = tracker.to_log_token_usage()
    assert usage is not None
    record, saturated = usage.to_record()
    assert saturated
    assert record == {"prompt": U32_MAX, "completion": U32_MAX, "total": U32_MAX, "reasoning_tokens": U32_MAX}


# ================================================================================================
# Beyond the reference's unit tests
# ================================================================================================


def test_no_usage_means_no_log_usage() -> None:
    assert TokenTracker().to_log_token_usage() is None


def test_flag_is_sticky_for_the_run() -> None:
    tracker = TokenTracker(0.80, LIMITS)
    tracker.observe_event("message.updated", _message_updated("provider-1", "model-1", _tokens(900)))
    tracker.observe_event("message.part.updated", _step_finish(_tokens(10)))
    assert tracker.compaction_needed
    assert tracker.latest_input_tokens == 10


def test_provider_model_is_remembered() -> None:
    tracker = TokenTracker(0.80, LIMITS)
    assert tracker.provider_model is None
    tracker.observe_event("message.updated", _message_updated("provider-1", None, None))
    assert tracker.provider_model is None  # both ids are needed
    tracker.observe_event("message.updated", _message_updated("provider-1", "model-1", None))
    assert tracker.provider_model == ("provider-1", "model-1")
    assert tracker.context_limit == 1000


def test_zero_limit_never_triggers() -> None:
    tracker = TokenTracker(0.0, {("p", "m"): 0})
    tracker.observe_event("message.updated", _message_updated("p", "m", _tokens(5)))
    assert tracker.usage_ratio() is None
    assert not tracker.compaction_needed


def test_threshold_is_configurable() -> None:
    tracker = TokenTracker(0.5, LIMITS)
    tracker.observe_event("message.updated", _message_updated("provider-1", "model-1", _tokens(500)))
    assert tracker.compaction_needed


def test_other_part_types_and_events_are_ignored() -> None:
    tracker = TokenTracker(0.80, LIMITS)
    tracker.observe_event("message.updated", _message_updated("provider-1", "model-1", None))
    tracker.observe_event("message.part.updated", {"part": {"type": "text", "tokens": _tokens(999)}})
    tracker.observe_event("session.idle", {"sessionID": "ses_1", "info": {"tokens": _tokens(999)}})
    assert tracker.usage is None
    assert not tracker.compaction_needed


@pytest.mark.parametrize(
    "properties",
    [
        None,
        [],
        "x",
        {"info": None},
        {"info": {"providerID": 1, "modelID": ["m"], "tokens": "lots"}},
        {"info": {"tokens": {"input": -1}}},
        {"info": {"tokens": {"input": True}}},
        {"info": {"tokens": {"output": 5}}},
        {"part": "step-finish"},
        {"part": {"type": "step-finish", "tokens": {"input": float("nan")}}},
    ],
)
def test_malformed_events_are_ignored(properties: object) -> None:
    tracker = TokenTracker(0.80, LIMITS)
    tracker.observe_event("message.updated", properties)
    tracker.observe_event("message.part.updated", properties)
    tracker.observe({"type": "message.updated", "properties": properties})
    assert tracker.usage is None
    assert not tracker.compaction_needed


def test_parse_token_usage() -> None:
    assert parse_token_usage(
        {"input": 5, "output": 7, "reasoning": 1, "total": 13, "cache": {}}
    ) == TokenUsage(input=5, output=7, total=13, reasoning=1)
    assert parse_token_usage({"input": 5.0}) == TokenUsage(input=5, output=0, total=None, reasoning=0)
    assert parse_token_usage({"input": 5, "total": None}) == TokenUsage(input=5, output=0)
    assert parse_token_usage({"output": 5}) is None
    assert parse_token_usage(None) is None


class _Props:
    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def model_dump(self) -> dict[str, Any]:
        return self._data


class _Event:
    def __init__(self, type_: str, properties: Any) -> None:
        self.type = type_
        self.properties = properties


def test_observe_accepts_typed_events_and_dicts() -> None:
    tracker = TokenTracker(0.80, LIMITS)
    tracker.observe(_Event("message.updated", _Props(_message_updated("provider-1", "model-1", None))))
    tracker.observe({"type": "message.part.updated", "properties": _step_finish(_tokens(800))})
    assert tracker.compaction_needed
    tracker.observe(_Event("message.part.delta", object()))  # ignored without touching properties
    tracker.observe(object())


def test_observe_accepts_the_opencode_layer_event_models() -> None:
    models = pytest.importorskip("orchestrator_tui.opencode.models")
    adapter = getattr(models, "EVENT_ADAPTER", None) or getattr(models, "EventAdapter", None)
    if adapter is None:
        pytest.skip("the opencode layer exposes no event adapter")
    tracker = TokenTracker(0.80, LIMITS)
    for raw in (
        {"type": "message.updated", "properties": _message_updated("provider-1", "model-1", None)},
        {"type": "message.part.updated", "properties": _step_finish(_tokens(800))},
    ):
        tracker.observe(adapter.validate_python(raw))
    assert tracker.provider_model == ("provider-1", "model-1")
    assert tracker.compaction_needed


def test_context_limits_from_providers() -> None:
    payload = {
        "all": [
            {
                "id": "anthropic",
                "models": {
                    "claude": {"limit": {"context": 200_000, "output": 8192}},
                    "nolimit": {"limit": {}},
                    "broken": "x",
                },
            },
            {"id": "openai", "models": {"gpt": {"limit": {"context": 128_000}}}},
            {"id": 5, "models": {}},
            "junk",
        ],
        "default": {},
        "connected": [],
    }
    assert context_limits_from_providers(payload) == {
        ("anthropic", "claude"): 200_000,
        ("openai", "gpt"): 128_000,
    }
    assert context_limits_from_providers(None) == {}
    assert context_limits_from_providers({"all": "x"}) == {}
