"""The OpenCode client's two route families, and its models against the server's own contract.

OpenCode 1.18.33 serves ``/api/`` routes beside the legacy ones (issue 12). The client picks one
family per server (opencode/client.py has the table of which operation uses which); these tests
pin, on the real pinned server, the facts that choice rests on, and check every field our
models read against the OpenAPI document the server publishes at ``GET /doc``, so a drift of
OpenCode's shapes fails here rather than in a user's dashboard.
"""

from __future__ import annotations

import asyncio
import subprocess
import types
import typing
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from orchestrator_tui.opencode import binary, models
from orchestrator_tui.opencode.client import BACKEND_ENV, OpenCodeClient, backend_wanted
from orchestrator_tui.opencode.process import ManagedServer
from orchestrator_tui.tui.widgets import ServerState, StatusLine


@pytest.fixture
async def server(
    project_dir: Path, opencode_env: dict[str, str], model_config: Callable[..., str]
) -> AsyncIterator[ManagedServer]:
    started = await ManagedServer.start(
        launcher=binary.Launcher(opencode_env["OPENCODE_BINARY"]),
        cwd=project_dir,
        env=opencode_env,
        config_content=model_config(),
    )
    try:
        yield started
    finally:
        await started.stop()


def _client(server: ManagedServer, directory: Path | None, backend: str | None = None) -> OpenCodeClient:
    return OpenCodeClient(
        server.base_url,
        auth=(server.username, server.password),
        directory=str(directory) if directory else None,
        backend=backend,
    )


# --------------------------------------------------------------------------- choosing the routes


def test_the_backend_variable_is_checked_with_a_fix() -> None:
    assert backend_wanted({}) == "auto"
    assert backend_wanted({BACKEND_ENV: " API "}) == "api"
    with pytest.raises(ValueError, match="Fix: set one of them or unset it"):
        backend_wanted({BACKEND_ENV: "v2"})


def test_the_server_line_says_which_routes_are_used() -> None:
    for backend, shown in (("api", "OpenCode 1.18.33 (/api routes)"), ("legacy", "OpenCode 1.18.33 (legacy routes)")):
        assert shown in StatusLine.line(ServerState(version="1.18.33", backend=backend, stream="connected")).plain
    assert "routes" not in StatusLine.line(ServerState(version="1.18.33", stream="connected")).plain


@pytest.mark.real_opencode
async def test_auto_probes_the_api_routes_once_for_all_views(server: ManagedServer, project_dir: Path) -> None:
    client = _client(server, project_dir, backend="auto")
    try:
        assert client.backend_name is None
        health = await client.health(timeout=10)
        assert health.version == binary.PINNED_VERSION
        assert client.backend_name == "api"
        assert client.at(None).backend_name == "api"  # a view shares its server's answer
        legacy = _client(server, project_dir, backend="legacy")
        try:
            await legacy.health(timeout=10)
            assert legacy.backend_name == "legacy"
        finally:
            await legacy.aclose()
    finally:
        await client.aclose()


# --------------------------------------------------------------------------- what /api shows


def _git_project(root: Path, name: str) -> Path:
    project = root / name
    (project / "sub").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    who = ["-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "-C", str(project), *who, "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    return project


@pytest.mark.real_opencode
async def test_api_sessions_are_the_legacy_ones_but_legacy_turns_are_invisible_to_api(
    server: ManagedServer, project_dir: Path, tmp_path: Path
) -> None:
    """Why the ``api`` backend uses ``/api`` for sessions only (opencode/client.py's table).

    Pins: ``/api/session`` lists every project's sessions, with ``location.directory`` the
    session's directory and ``subpath`` its path in the project; a session made by
    ``POST /api/session`` is a legacy session too. But a turn run the legacy way (which is the
    only way that runs commands and uses the configured model) has a pending permission that
    ``/api/permission/request`` does not list, a busy status ``/api/session/active`` does not
    show, and messages ``/api/session/{id}/message`` does not return; and ``/api/command``
    leaves out the skills that ``/command`` lists.
    """
    other = _git_project(tmp_path, "other")
    api = _client(server, other / "sub", backend="api")
    legacy = _client(server, other / "sub", backend="legacy")
    raw = api.at(None)
    try:
        made_by_api = await api.create_session()
        assert made_by_api.directory == str(other / "sub") and made_by_api.path == "sub"
        assert (await legacy.get_session(made_by_api.id)).directory == str(other / "sub")
        mine = await _client(server, project_dir, backend="legacy").create_session(title="here")

        listed = {s.id: s for s in await api.all_sessions()}
        assert listed[made_by_api.id].directory == str(other / "sub")
        assert listed[made_by_api.id].path == "sub"
        assert listed[mine.id].directory == str(project_dir) and listed[mine.id].path == ""
        assert {s.id for s in await legacy.all_sessions()} == set(listed)

        outside = tmp_path / "outside.txt"
        outside.write_text("secret\n")
        await legacy.prompt_async(made_by_api.id, f"READ {outside}")
        for _ in range(300):
            pending = await legacy.permissions()
            if pending:
                break
            await asyncio.sleep(0.1)
        assert [p.sessionID for p in pending] == [made_by_api.id]
        assert (await legacy.session_status())[made_by_api.id].type == "busy"
        assert (await legacy.messages(made_by_api.id))

        location = {"location[directory]": str(other / "sub")}
        api_pending = (await raw.request("GET", "/api/permission/request", params=location)).json()
        assert api_pending["data"] == []
        assert (await raw.request("GET", "/api/session/active")).json()["data"] == {}
        api_messages = (await raw.request("GET", f"/api/session/{made_by_api.id}/message")).json()
        assert api_messages["data"] == []

        legacy_commands = {c.name: c.source for c in await legacy.commands()}
        api_commands = {c["name"] for c in (await raw.request("GET", "/api/command", params=location)).json()["data"]}
        skills = {name for name, source in legacy_commands.items() if source == "skill"}
        assert skills and not skills & api_commands
        assert api_commands == set(legacy_commands) - skills

        await legacy.reply_permission(pending[0].id, "reject")
    finally:
        for c in (api, legacy):
            await c.aclose()


# --------------------------------------------------------------------------- the contract


#: Our model → the component of the server's OpenAPI document it reads.
CONTRACT: dict[type[BaseModel], str] = {
    models.Session: "Session",
    models.TimeSpan: "Session",  # checked through its use in Session.time
    models.SessionStatus: "SessionStatus",
    models.MessageInfo: "Message",
    models.Part: "Part",
    models.PermissionRequest: "PermissionRequest",
    models.QuestionRequest: "QuestionRequest",
    models.QuestionInfo: "QuestionInfo",
    models.QuestionOption: "QuestionOption",
    models.Command: "Command",
    models.Paths: "Path",
    models.ApiSession: "SessionV2Info",
    models.ApiLocation: "LocationRef",
    models.ApiSessionPage: "SessionsResponse",
    models.SessionCreated: "EventSessionCreated",
    models.SessionUpdated: "EventSessionUpdated",
    models.SessionDeleted: "EventSessionDeleted",
    models.SessionStatusEvent: "EventSessionStatus",
    models.SessionIdle: "EventSessionIdle",
    models.SessionError: "EventSessionError",
    models.MessageUpdated: "EventMessageUpdated",
    models.MessageRemoved: "EventMessageRemoved",
    models.PartUpdated: "EventMessagePartUpdated",
    models.PartDelta: "EventMessagePartDelta",
    models.PermissionAsked: "EventPermissionAsked",
    models.PermissionReplied: "EventPermissionReplied",
    models.QuestionAsked: "EventQuestionAsked",
    models.QuestionReplied: "EventQuestionReplied",
    models.QuestionRejected: "EventQuestionRejected",
    models.GlobalEnvelope: "GlobalEvent",
}
#: Fields we model that the document does not declare (everywhere), each with the reason it is
#: kept. Keyed by the class that declares the field; where the document has it, it is still checked.
NOT_IN_CONTRACT: dict[str, str] = {
    "TimeSpan.completed": "TimeSpan is shared: messages have `completed`, sessions do not",
    "TimeSpan.updated": "TimeSpan is shared: sessions have `updated`, messages do not",
    "Tokens.total": "Tokens is shared: assistant messages and parts have `total`, sessions do not",
    "Session.agent": "sent by 1.18.33 after a turn (seen on the wire), not declared in its Session schema",
    "_RepliedProps.answers": "QuestionRejected has none; QuestionReplied's is checked",
    "_RepliedProps.reply": "permission.replied only",
    "GlobalEnvelope.project": "sent on the wire, not declared",
    "_Event.id": "sent on the wire (evt_...), not declared in the event schemas",
}

_JSON_NAME = {str: "string", bool: "boolean", int: "number", float: "number"}
_JSON_TYPES = {str: {"string"}, int: {"integer", "number"}, float: {"number", "integer"}, bool: {"boolean"}}


class _Doc:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.schemas: dict[str, Any] = doc["components"]["schemas"]

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = self.schemas[schema["$ref"].rsplit("/", 1)[-1]]
        return schema

    def variants(self, schema: dict[str, Any]) -> list[dict[str, Any]]:
        """The object shapes a schema may take (anyOf/oneOf/allOf flattened, $refs followed)."""
        schema = self.resolve(schema)
        for key in ("anyOf", "oneOf", "allOf"):
            if key in schema:
                return [v for sub in schema[key] for v in self.variants(sub)]
        return [schema]

    def types(self, schema: dict[str, Any]) -> set[str]:
        found: set[str] = set()
        for v in self.variants(schema):
            kind = v.get("type")
            if isinstance(kind, list):
                found.update(kind)
            elif isinstance(kind, str):
                found.add(kind)
            elif "enum" in v or "const" in v:
                values = v.get("enum", [v.get("const")])
                found.update({_JSON_NAME.get(type(x), "any") for x in values})
            elif "patternProperties" in v or "properties" in v or "additionalProperties" in v:
                found.add("object")
            else:
                found.add("any")
        return found


def _plain(annotation: Any) -> list[Any]:
    """The non-None members of an annotation (``X | None`` → [X])."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin is typing.Annotated:
        return _plain(typing.get_args(annotation)[0])
    return [annotation]


def _expected(annotation: Any) -> set[str]:
    kinds: set[str] = set()
    for a in _plain(annotation):
        origin = typing.get_origin(a) or a
        if origin in _JSON_TYPES:
            kinds |= _JSON_TYPES[origin]
        elif origin is list:
            kinds.add("array")
        elif origin is dict or (isinstance(origin, type) and issubclass(origin, BaseModel)):
            kinds.add("object")
        elif origin is typing.Literal:
            kinds.add("string")
        else:
            kinds.add("any")
    return kinds


def _check(doc: _Doc, model: type[BaseModel], schema: dict[str, Any], where: str, problems: list[str]) -> None:
    shapes = [v for v in doc.variants(schema) if "properties" in v]
    if not shapes:
        problems.append(f"{where}: the document has no object shape here")
        return
    for name, field in model.model_fields.items():
        owner = next((c.__name__ for c in model.__mro__ if name in getattr(c, "__annotations__", {})), model.__name__)
        declared = [shape["properties"][name] for shape in shapes if name in shape["properties"]]
        if not declared:
            if f"{owner}.{name}" not in NOT_IN_CONTRACT and f"{model.__name__}.{name}" not in NOT_IN_CONTRACT:
                problems.append(f"{where}.{name}: not in the document")
            continue
        want = _expected(field.annotation)
        have = set().union(*(doc.types(d) for d in declared))
        if "any" not in want and "any" not in have and not want & have:
            problems.append(f"{where}.{name}: we read {sorted(want)}, the document says {sorted(have)}")
            continue
        for member in _plain(field.annotation):
            inner = member
            sub = declared
            if typing.get_origin(member) is list:
                inner = typing.get_args(member)[0]
                sub = [i for d in declared for v in doc.variants(d) if (i := v.get("items"))]
            elif typing.get_origin(member) is dict:
                continue
            if isinstance(inner, type) and issubclass(inner, BaseModel) and sub:
                merged = {"anyOf": sub}
                _check(doc, inner, merged, f"{where}.{name}", problems)


@pytest.fixture
async def openapi(server: ManagedServer) -> dict[str, Any]:
    client = _client(server, None, backend="legacy")
    try:
        return dict((await client.request("GET", "/doc")).json())
    finally:
        await client.aclose()


@pytest.mark.real_opencode
async def test_models_read_only_what_the_pinned_servers_contract_declares(openapi: dict[str, Any]) -> None:
    """Every field our models read exists in ``GET /doc`` of the pinned server with a compatible type."""
    doc = _Doc(openapi)
    problems: list[str] = []
    for model, component in CONTRACT.items():
        if model is models.TimeSpan:
            continue
        _check(doc, model, {"$ref": f"#/components/schemas/{component}"}, model.__name__, problems)
    health = openapi["paths"]["/global/health"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    _check(doc, models.Health, health, "Health", problems)
    assert problems == [], "\n".join(problems)


def test_the_contract_check_sees_a_drift() -> None:
    """A renamed field and a changed type both fail the check (so the real test can fail)."""
    doc = _Doc(
        {
            "components": {
                "schemas": {
                    "Command": {
                        "type": "object",
                        "properties": {"label": {"type": "string"}, "description": {"type": "number"}},
                    }
                }
            }
        }
    )
    problems: list[str] = []
    _check(doc, models.Command, {"$ref": "#/components/schemas/Command"}, "Command", problems)
    assert "Command.name: not in the document" in problems
    assert "Command.description: we read ['string'], the document says ['number']" in problems



async def test_a_web_page_at_api_health_means_the_legacy_routes() -> None:
    """OpenCode 1.15 answers an unknown route with its web app's HTML page, status 200: that is no
    ``/api`` surface (`./dev test-opencode-lines` meets it for real; the pinned server cannot)."""
    import httpx

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/health":
            return httpx.Response(200, text="<!doctype html>\n<html></html>\n", headers={"content-type": "text/html"})
        return httpx.Response(404)

    client = OpenCodeClient("http://127.0.0.1:9", transport=httpx.MockTransport(handler), backend="auto")
    try:
        assert await client.backend() == "legacy"
    finally:
        await client.aclose()
