"""The JSON schemas the agent reads in ``tools/list``, in the Rust reference's exact shape.

LLM clients decide how to call a tool from its schema, and agents written against the reference
compare them, so :func:`input_schema` / :func:`output_schema` post-process pydantic's schema of a
model from :mod:`orchestrator_tui.orchestrator.types` into that shape: draft 2020-12, optional
fields nullable with ``"null"`` first and an "Optional; omit or use null." hint, string enums
inlined, no ``title`` clutter, the internally tagged unions as hand-written ``oneOf`` ``$defs``
and keys in the reference's order. ``tests/snapshots/orchestrator_tool_schemas.json`` pins the
result byte for byte.

Schemas are built lazily, once per model: the MCP worker must start fast, and it needs them only
for its first ``tools/list`` that the recorded handshake does not answer.
"""

import copy
import functools
from typing import Any, get_args

from pydantic import BaseModel

#: Appended to the description of every optional, nullable property (the reference's schema hint).
OPTIONAL_PROPERTY_GUIDANCE = "Optional; omit or use null."

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

#: Hand-written ``$defs`` for the internally tagged enums (pydantic's discriminated-union schema has
#: ``$ref`` indirections, defaults on the tag and an OpenAPI ``discriminator`` keyword).
_EXTRA_DEFS: dict[str, dict[str, Any]] = {
    "SessionStatusSummary": {
        "description": "Session status summary for list/detail views.",
        "oneOf": [
            {
                "type": "object",
                "properties": {"state": {"type": "string", "const": "idle"}},
                "required": ["state"],
            },
            {
                "type": "object",
                "properties": {"state": {"type": "string", "const": "busy"}},
                "required": ["state"],
            },
            {
                "type": "object",
                "properties": {
                    "state": {"type": "string", "const": "retry"},
                    "attempt": {"type": "integer", "minimum": 0},
                    "message": {"type": "string"},
                    "next": {
                        "description": "Unix timestamp (ms) of next retry attempt.",
                        "type": "integer",
                        "minimum": 0,
                    },
                },
                "required": ["state", "attempt", "message", "next"],
            },
        ],
    },
    "ToolStateSummary": {
        "description": "Simplified tool state for session diagnostics.",
        "oneOf": [
            *(
                {
                    "type": "object",
                    "properties": {"status": {"type": "string", "const": name}},
                    "required": ["status"],
                }
                for name in ("pending", "running", "completed")
            ),
            {
                "type": "object",
                "properties": {
                    "status": {"type": "string", "const": "error"},
                    "message": {"type": "string"},
                },
                "required": ["status", "message"],
            },
        ],
    },
}

_KEY_ORDER = (
    "$schema",
    "$ref",
    "description",
    "type",
    "const",
    "enum",
    "minimum",
    "items",
    "properties",
    "required",
    "oneOf",
    "anyOf",
    "default",
    "$defs",
)


def input_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The MCP ``inputSchema`` of a tool input model (a fresh copy; callers may mutate it).

    Draft 2020-12, object-rooted; optional fields are nullable with ``"null"`` first in ``type``
    and carry the "Optional; omit or use null." hint; ``answers`` stays non-nullable with its ``[]``
    default; enums are inline string enums; no ``title`` keywords.
    """
    return copy.deepcopy(_schema(model, output=False))


def output_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The MCP ``outputSchema`` of a tool output model (same conventions; ``default`` keys dropped,
    since defaults say nothing about what the server sends)."""
    return copy.deepcopy(_schema(model, output=True))


@functools.cache
def _schema(model: type[BaseModel], output: bool) -> dict[str, Any]:
    raw = model.model_json_schema(mode="validation", ref_template="#/$defs/{model}")
    defs: dict[str, Any] = raw.pop("$defs", {})
    enums = {name: d for name, d in defs.items() if "enum" in d}
    classes = _models_in(model)
    used_extra: set[str] = set()

    def clean(node: Any) -> Any:
        if isinstance(node, list):
            return [clean(item) for item in node]
        if not isinstance(node, dict):
            return node
        node = dict(node)
        node.pop("title", None)
        node.pop("discriminator", None)
        if output:
            node.pop("default", None)
        if "x-def" in node:
            name = node.pop("x-def")
            used_extra.add(name)
            node = {"$ref": f"#/$defs/{name}", **node}
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.rsplit("/", 1)[-1] in enums:
            enum_def = enums[ref.rsplit("/", 1)[-1]]
            del node["$ref"]
            node = {"type": "string", "enum": list(enum_def["enum"]), **node}
        if "anyOf" in node:
            node = _collapse_nullable(node, [clean(b) for b in node["anyOf"]])
        if isinstance(node.get("properties"), dict):
            required = set(node.get("required", ()))
            props: dict[str, Any] = {}
            for key, value in node["properties"].items():
                value = clean(value)
                if key not in required and _allows_null(value):
                    description = value.get("description")
                    value["description"] = (
                        f"{description}\n\n{OPTIONAL_PROPERTY_GUIDANCE}"
                        if description
                        else OPTIONAL_PROPERTY_GUIDANCE
                    )
                    value = _ordered(value)
                props[key] = value
            node["properties"] = props
        for key in ("items", "additionalProperties", "oneOf", "allOf"):
            if key in node:
                node[key] = clean(node[key])
        return _ordered(node)

    root = clean(raw)
    root.pop("description", None)
    out_defs: dict[str, Any] = {}
    for name, definition in defs.items():
        if name in enums:
            continue
        cleaned = clean(definition)
        cleaned.pop("description", None)
        described = getattr(classes.get(name), "schema_description", None)
        if described:
            cleaned = {"description": described, **cleaned}
        out_defs[name] = _ordered(cleaned)
    for name in sorted(used_extra):
        out_defs[name] = copy.deepcopy(_EXTRA_DEFS[name])

    result: dict[str, Any] = {"$schema": JSON_SCHEMA_DIALECT}
    described = getattr(model, "schema_description", None)
    if described:
        result["description"] = described
    result.update(root)
    result.setdefault("type", "object")
    result.setdefault("properties", {})
    if out_defs:
        result["$defs"] = dict(sorted(out_defs.items()))
    return _ordered(result)


def _collapse_nullable(node: dict[str, Any], branches: list[Any]) -> dict[str, Any]:
    """``anyOf: [X, {type: null}]`` → ``type: ["null", X.type]`` when X is a plain typed schema,
    else ``anyOf`` with the null branch first (the reference's "null first" normalization)."""
    null = {"type": "null"}
    others = [b for b in branches if b != null]
    has_null = len(others) != len(branches)
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    if has_null and len(others) == 1:
        only = others[0]
        simple = (
            isinstance(only, dict)
            and isinstance(only.get("type"), str)
            and not ({"$ref", "anyOf", "oneOf", "allOf"} & only.keys())
        )
        if simple:
            merged = dict(only)
            merged["type"] = ["null", only["type"]]
            if "enum" in merged:
                merged["enum"] = [None, *merged["enum"]]
            merged.update(rest)
            return merged
    return {**rest, "anyOf": ([null] if has_null else []) + others}


def _allows_null(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return False
    types = schema.get("type")
    if isinstance(types, list) and "null" in types:
        return True
    if isinstance(schema.get("enum"), list) and None in schema["enum"]:
        return True
    return any(branch == {"type": "null"} for branch in schema.get("anyOf", ()))


def _ordered(node: dict[str, Any]) -> dict[str, Any]:
    rank = {key: index for index, key in enumerate(_KEY_ORDER)}
    return dict(sorted(node.items(), key=lambda item: rank.get(item[0], len(rank))))


def _models_in(model: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """Every model class reachable from ``model``'s fields, by name (pydantic's ``$defs`` keys)."""
    found: dict[str, type[BaseModel]] = {}

    def visit(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation.__name__ not in found:
                found[annotation.__name__] = annotation
                for info in annotation.model_fields.values():
                    visit(info.annotation)
            return
        for argument in get_args(annotation):
            visit(argument)

    visit(model)
    return found
