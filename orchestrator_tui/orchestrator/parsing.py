"""Tool arguments in, a model or a clear error out: the agent's input is untrusted JSON.

:func:`parse_input` turns *any* JSON value into the tool's input model or an
:class:`~orchestrator_tui.orchestrator.errors.InvalidInput` whose text names the field, what is
wrong and, where useful, the fix, in the words of the Rust reference's serde errors (agents
written against it recognise them). It never raises anything else, so a malformed call is a
tool error, never a crash of the worker. The models themselves live in
:mod:`orchestrator_tui.orchestrator.types`; this module knows only pydantic's error shapes.
"""

import math
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from orchestrator_tui.orchestrator.errors import InvalidInput

M = TypeVar("M", bound=BaseModel)

#: What a field expects, in words, for error messages (defaults by pydantic error type otherwise).
_EXPECTED_BY_FIELD: dict[str, str] = {
    "limit": "a non-negative integer",
    "wait_for_activity": "a boolean (true or false)",
    "answers": 'an array of string arrays, one per question (e.g. [["yes"]])',
    "answers[]": "an array of strings (the selected option labels)",
}
_EXPECTED_BY_TYPE: dict[str, str] = {
    "string_type": "a string",
    "bool_type": "a boolean (true or false)",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "list_type": "an array",
    "dict_type": "an object",
    "model_type": "an object",
}


def parse_input(model: type[M], arguments: object) -> M:
    """Validate a tool's raw JSON arguments into ``model``; any problem becomes :class:`InvalidInput`.

    * ``None`` (a ``tools/call`` without ``arguments``) counts as ``{}``.
    * Anything but a JSON object is rejected with the type that was sent.
    * Field errors are reported in serde's spirit, one per problem, joined by ``"; "``:
      ``missing field `session_id```,
      ``invalid value for `reply`: unknown variant `maybe`, expected one of `once`, `always`, `reject```,
      ``invalid type for `limit`: expected a non-negative integer, got "abc"``.
    * Unknown extra fields are ignored.

    Never raises anything but ``InvalidInput``, whatever the value (deeply nested junk, huge
    integers, NaN, ...): the MCP adapter relies on that to answer with a tool error instead of a crash.
    """
    try:
        if arguments is None:
            arguments = {}
        if isinstance(arguments, Mapping) and not isinstance(arguments, dict):
            arguments = dict(arguments)
        if not isinstance(arguments, dict):
            raise InvalidInput(
                f"invalid type: expected the tool arguments as a JSON object, got {_describe(arguments)}"
            )
        try:
            return model.model_validate(arguments)
        except ValidationError as exc:
            problems = [_explain(model, err) for err in exc.errors(include_url=False)]
            raise InvalidInput("; ".join(dict.fromkeys(problems)) or "invalid arguments") from None
    except InvalidInput:
        raise
    except Exception as exc:  # the contract is "only InvalidInput", whatever goes wrong in between
        raise InvalidInput(f"invalid arguments ({type(exc).__name__})") from None


def _loc_text(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _enum_choices(model: type[BaseModel], field: str) -> list[str] | None:
    info = model.model_fields.get(field)
    annotation = info.annotation if info is not None else None
    if isinstance(annotation, type) and issubclass(annotation, StrEnum):
        return [member.value for member in annotation]
    return None


def _explain(model: type[BaseModel], err: Any) -> str:
    loc: tuple[int | str, ...] = tuple(err.get("loc", ()))
    field = loc[0] if loc and isinstance(loc[0], str) else ""
    where = _loc_text(loc) or "arguments"
    kind = err.get("type", "")
    value = err.get("input")
    choices = _enum_choices(model, field) if len(loc) == 1 else None
    one_of = ", ".join(f"`{c}`" for c in choices) if choices else ""

    if kind == "missing":
        hint = f" (one of {one_of})" if one_of else ""
        return f"missing field `{where}`{hint}"
    if kind == "enum" and choices is not None:
        if isinstance(value, str):
            return f"invalid value for `{where}`: unknown variant `{value}`, expected one of {one_of}"
        return f"invalid type for `{where}`: expected one of {one_of}, got {_describe(value)}"
    if kind in ("greater_than_equal", "greater_than"):
        expected = _EXPECTED_BY_FIELD.get(field, "a larger number")
        return f"invalid value for `{where}`: expected {expected}, got {_describe(value)}"
    if kind in ("less_than_equal", "less_than"):
        bound = (err.get("ctx") or {}).get("le", (err.get("ctx") or {}).get("lt"))
        return (
            f"invalid value for `{where}`: expected a number no larger than {bound}, got {_describe(value)}"
        )

    nested_key = f"{field}[]" if len(loc) == 2 else None
    expected = (
        (_EXPECTED_BY_FIELD.get(nested_key) if nested_key else None)
        or (_EXPECTED_BY_FIELD.get(field) if len(loc) == 1 else None)
        or _EXPECTED_BY_TYPE.get(kind)
    )
    if expected is not None:
        return f"invalid type for `{where}`: expected {expected}, got {_describe(value)}"
    return f"invalid value for `{where}`: {err.get('msg', 'invalid')}"


def _describe(value: object) -> str:
    """A short JSON-ish rendering of an offending value for error messages (never raises)."""
    try:
        if value is None:
            return "null"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            digits = abs(value).bit_length() * 0.30103
            return "an integer too large to show" if digits > 60 else str(value)
        if isinstance(value, float):
            if math.isnan(value):
                return "NaN"
            if math.isinf(value):
                return "Infinity" if value > 0 else "-Infinity"
            return repr(value)
        if isinstance(value, str):
            shown = value if len(value) <= 60 else value[:60] + "…"
            escaped = shown.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
            return f'"{escaped}"'
        if isinstance(value, list | tuple):
            return "an array"
        if isinstance(value, Mapping):
            return "an object"
        return f"a value of type {type(value).__name__}"
    except Exception:
        return "an unreadable value"
