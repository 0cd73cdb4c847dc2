"""Context-limit safeguard of a run: notice when the prompt nears the model's window.

A :class:`TokenTracker` lives for one ``run`` call and is fed every SSE event delivered for the
session. It remembers which provider/model answered (from ``message.updated``) and the latest token
counts (from ``message.updated`` or a ``step-finish`` part), and sets the sticky
``compaction_needed`` flag once ``input tokens / context limit >= threshold``. The order in which
model and tokens arrive does not matter. When the run completes, the run logic asks OpenCode to
summarize the session if the flag is set, and logs :meth:`TokenTracker.to_log_token_usage`.

Context limits come from ``GET /provider`` once per server start; see
:func:`context_limits_from_providers`. Without a limit the tracker never triggers.

Event payloads come from the network: malformed ones are ignored, never raised on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from orchestrator_tui.orchestrator.calllog import TokenUsage

DEFAULT_THRESHOLD = 0.80


def _count(value: object) -> int | None:
    """A token count from JSON: a non-negative integer (integral floats accepted), else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and math.isfinite(value) and value >= 0 and value.is_integer():
        return int(value)
    return None


def parse_token_usage(tokens: object) -> TokenUsage | None:
    """OpenCode's ``tokens`` object (``{input, output, reasoning, total?, cache}``) → :class:`TokenUsage`.

    ``input`` is required (it drives the threshold); missing ``output``/``reasoning`` count as 0.
    """
    if not isinstance(tokens, Mapping):
        return None
    input_tokens = _count(tokens.get("input"))
    if input_tokens is None:
        return None
    return TokenUsage(
        input=input_tokens,
        output=_count(tokens.get("output")) or 0,
        total=_count(tokens.get("total")),
        reasoning=_count(tokens.get("reasoning")) or 0,
    )


def context_limits_from_providers(payload: object) -> dict[tuple[str, str], int]:
    """``GET /provider`` → ``{(providerID, modelID): context}`` for every model with ``limit.context``.

    Best effort: anything malformed is skipped (an empty map only means compaction never triggers).
    """
    limits: dict[tuple[str, str], int] = {}
    providers = payload.get("all") if isinstance(payload, Mapping) else None
    if not isinstance(providers, list):
        return limits
    for provider in providers:
        if not isinstance(provider, Mapping):
            continue
        provider_id = provider.get("id")
        models = provider.get("models")
        if not isinstance(provider_id, str) or not isinstance(models, Mapping):
            continue
        for model_id, model in models.items():
            limit = model.get("limit") if isinstance(model, Mapping) else None
            context = _count(limit.get("context")) if isinstance(limit, Mapping) else None
            if isinstance(model_id, str) and context is not None:
                limits[(provider_id, model_id)] = context
    return limits


class TokenTracker:
    """Per-run token accounting; see the module docstring."""

    __slots__ = (
        "_limits",
        "compaction_needed",
        "context_limit",
        "latest_input_tokens",
        "latest_tokens",
        "model_id",
        "provider_id",
        "threshold",
    )

    def __init__(
        self,
        threshold: float = DEFAULT_THRESHOLD,
        limits: Mapping[tuple[str, str], int] | None = None,
    ) -> None:
        self.threshold = threshold
        self._limits: Mapping[tuple[str, str], int] = limits if limits is not None else {}
        self.provider_id: str | None = None
        self.model_id: str | None = None
        self.context_limit: int | None = None
        self.latest_input_tokens: int | None = None
        self.latest_tokens: TokenUsage | None = None
        #: Sticky for the run: once the threshold is reached it stays set.
        self.compaction_needed = False

    @property
    def provider_model(self) -> tuple[str, str] | None:
        """``(providerID, modelID)`` of the last assistant message seen, needed to summarize."""
        if self.provider_id is None or self.model_id is None:
            return None
        return (self.provider_id, self.model_id)

    @property
    def usage(self) -> TokenUsage | None:
        """The latest token counts observed (``None`` before any)."""
        return self.latest_tokens

    def observe(self, event: object) -> None:
        """Feed one event given as an object with ``.type`` / ``.properties`` (e.g. the typed
        pydantic events of ``orchestrator_tui.opencode.models``) or as a raw ``{type, properties}``
        dict. Only the two token-bearing event types are converted, so deltas stay cheap."""
        try:
            if isinstance(event, Mapping):
                event_type, properties = event.get("type"), event.get("properties")
            else:
                event_type = getattr(event, "type", None)
                properties = getattr(event, "properties", None)
            if event_type not in ("message.updated", "message.part.updated"):
                return
            if not isinstance(properties, Mapping):
                dump = getattr(properties, "model_dump", None)
                properties = dump() if callable(dump) else None
            self.observe_event(event_type, properties)
        except Exception:  # a malformed event must never break the run loop
            return

    def observe_event(self, event_type: str, properties: object) -> None:
        """Feed one SSE event (its ``type`` and ``properties``); other event types are ignored."""
        if not isinstance(properties, Mapping):
            return
        if event_type == "message.updated":
            info = properties.get("info")
            if not isinstance(info, Mapping):
                return
            provider_id, model_id = info.get("providerID"), info.get("modelID")
            usage = parse_token_usage(info.get("tokens"))
            if isinstance(provider_id, str) and isinstance(model_id, str):
                self.provider_id, self.model_id = provider_id, model_id
                self.context_limit = self._limits.get((provider_id, model_id))
                if usage is None:  # a limit that arrives after the tokens must still trigger
                    self._recompute()
            if usage is not None:
                self.observe_tokens(usage)
        elif event_type == "message.part.updated":
            part = properties.get("part")
            if isinstance(part, Mapping) and part.get("type") == "step-finish":
                usage = parse_token_usage(part.get("tokens"))
                if usage is not None:
                    self.observe_tokens(usage)

    def observe_tokens(self, tokens: TokenUsage) -> None:
        """Record the latest usage and re-check the threshold."""
        self.latest_input_tokens = tokens.input
        self.latest_tokens = tokens
        self._recompute()

    def usage_ratio(self) -> float | None:
        """``input / context limit`` when both are known (and the limit is positive)."""
        if self.latest_input_tokens is None or not self.context_limit:
            return None
        return self.latest_input_tokens / self.context_limit

    def to_log_token_usage(self) -> TokenUsage | None:
        """The usage for the call log (``CallLogger`` saturates it via :meth:`TokenUsage.to_record`)."""
        return self.latest_tokens

    def _recompute(self) -> None:
        ratio = self.usage_ratio()
        if ratio is not None and ratio >= self.threshold:
            self.compaction_needed = True


__all__ = [
    "DEFAULT_THRESHOLD",
    "TokenTracker",
    "TokenUsage",
    "context_limits_from_providers",
    "parse_token_usage",
]
