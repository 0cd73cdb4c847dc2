"""The scripted OpenAI-compatible model server that stands in for an LLM in tests and the demo."""

from orchestrator_tui.scripted_model.server import (
    MODEL_ID,
    ErrorReply,
    Reply,
    ScriptedModelServer,
    TextReply,
    ToolCallReply,
    choose_reply,
    main,
    make_title,
    opencode_config,
    parse_read_output,
)

__all__ = [
    "MODEL_ID",
    "ErrorReply",
    "Reply",
    "ScriptedModelServer",
    "TextReply",
    "ToolCallReply",
    "choose_reply",
    "main",
    "make_title",
    "opencode_config",
    "parse_read_output",
]
