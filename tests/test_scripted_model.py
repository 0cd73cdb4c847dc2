"""The scripted model server: over HTTP on its own, then as the real OpenCode's provider.

The HTTP tests pin the wire format and every script branch quickly; the `real_opencode` tests
prove that OpenCode 1.18.33 accepts that wire format (text, tool calls, titles, tool results).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator_tui.scripted_model.directives import (
    TextReply,
    ToolCallReply,
    choose_reply,
    make_title,
    parse_read_output,
)
from orchestrator_tui.scripted_model.server import MODEL_ID, ScriptedModelServer, opencode_config

TOOLS = [
    {"type": "function", "function": {"name": n, "parameters": {}}} for n in ("read", "bash", "question")
]
READ_OUTPUT = (
    "<path>/tmp/x.txt</path>\n<type>file</type>\n<content>\n1: TOKEN-123\n2: second\n3: \n4: last\n\n"
    "(End of file - total 4 lines)\n</content>"
)


@pytest.fixture
def model() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer() as server:
        yield server


@dataclass
class Streamed:
    """A parsed SSE answer: the JSON chunks, whether `[DONE]` came, and any comment lines."""

    chunks: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False
    comments: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(c["choices"][0]["delta"].get("content") or "" for c in self.chunks if c["choices"])

    @property
    def deltas(self) -> list[str]:
        return [
            c["choices"][0]["delta"]["content"]
            for c in self.chunks
            if c["choices"][0]["delta"].get("content")
        ]

    @property
    def finish(self) -> str | None:
        return self.chunks[-1]["choices"][0]["finish_reason"]

    @property
    def tool_call(self) -> dict[str, Any]:
        calls = [
            c["choices"][0]["delta"]["tool_calls"]
            for c in self.chunks
            if c["choices"][0]["delta"].get("tool_calls")
        ]
        assert len(calls) == 1 and len(calls[0]) == 1
        return calls[0][0]


def body_for(
    text: str | None = None,
    *,
    messages: list[dict[str, Any]] | None = None,
    tools: bool = True,
    stream: bool = True,
) -> dict[str, Any]:
    msgs = (
        messages
        if messages is not None
        else [{"role": "system", "content": "sys"}, {"role": "user", "content": text}]
    )
    body: dict[str, Any] = {"model": "scripted-model", "messages": msgs, "stream": stream}
    if tools:
        body["tools"] = TOOLS
    return body


def stream_chat(server: ScriptedModelServer, body: dict[str, Any]) -> Streamed:
    out = Streamed()
    with httpx.stream("POST", f"{server.base_url}/chat/completions", json=body, timeout=10) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                payload = line[len("data: ") :]
                if payload == "[DONE]":
                    out.done = True
                else:
                    assert not out.done, "a chunk after [DONE]"
                    out.chunks.append(json.loads(payload))
            elif line.startswith(":"):
                out.comments.append(line)
    return out


def say(server: ScriptedModelServer, text: str) -> Streamed:
    return stream_chat(server, body_for(text))


def after_tool(name: str, result: str, args: str = "{}") -> dict[str, Any]:
    return body_for(
        messages=[
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "do it"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": name, "arguments": args}}
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": result},
        ]
    )


# -- HTTP basics ------------------------------------------------------------------------------


def test_models_and_addresses(model: ScriptedModelServer) -> None:
    assert model.base_url == f"http://127.0.0.1:{model.port}/v1"
    listed = httpx.get(f"{model.base_url}/models", timeout=5).json()
    assert [m["id"] for m in listed["data"]] == ["scripted-model"]
    assert MODEL_ID == "scripted/scripted-model"
    assert httpx.get(f"{model.base_url}/nope", timeout=5).status_code == 404
    bad = httpx.post(f"{model.base_url}/chat/completions", content=b"{not json", timeout=5)
    assert bad.status_code == 400 and "error" in bad.json()


def test_text_stream_shape_and_usage(model: ScriptedModelServer) -> None:
    out = say(model, "Say exactly 'hello' and nothing else.")
    assert out.text == "hello" and out.done
    first, last = out.chunks[0], out.chunks[-1]
    assert first["object"] == "chat.completion.chunk" and first["choices"][0]["delta"]["role"] == "assistant"
    assert last["choices"][0]["finish_reason"] == "stop"
    usage = last["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert len({c["id"] for c in out.chunks}) == 1


def test_non_streaming_text_and_tool_call(model: ScriptedModelServer) -> None:
    url = f"{model.base_url}/chat/completions"
    text = httpx.post(url, json=body_for("ECHO plain answer", stream=False), timeout=5).json()
    assert text["object"] == "chat.completion"
    assert text["choices"][0]["message"] == {"role": "assistant", "content": "plain answer"}
    assert text["choices"][0]["finish_reason"] == "stop" and text["usage"]["total_tokens"] > 0
    tool = httpx.post(url, json=body_for("READ /etc/hostname", stream=False), timeout=5).json()
    choice = tool["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["id"].startswith("call_") and call["type"] == "function"
    assert call["function"]["name"] == "read"
    assert json.loads(call["function"]["arguments"]) == {"filePath": "/etc/hostname"}


def test_request_log(model: ScriptedModelServer) -> None:
    say(model, "first line\nsecond")
    stream_chat(model, body_for("make a title", tools=False))
    stream_chat(model, after_tool("bash", "out"))
    log = model.requests
    assert [r["reply"] for r in log] == ["default", "title", "after:bash"]
    assert log[0]["tools"] == ["read", "bash", "question"] and log[1]["tools"] == []
    assert log[0]["last_text"] == "first line\nsecond" and log[0]["last_role"] == "user"
    assert log[0]["model"] == "scripted-model" and log[0]["stream"] is True
    assert log[2]["last_role"] == "tool" and log[2]["tool"] == "bash"


# -- titles -----------------------------------------------------------------------------------


def test_title_requests_without_tools(model: ScriptedModelServer) -> None:
    messages = [
        {"role": "system", "content": "You are a title generator."},
        {"role": "user", "content": "Generate a title for this conversation:\n"},
        {
            "role": "user",
            "content": "Please refactor the parser module so that it streams input lazily\nmore",
        },
    ]
    out = stream_chat(model, body_for(messages=messages, tools=False))
    assert out.text == "Please refactor the parser module so that it"
    assert out.finish == "stop"


@pytest.mark.parametrize(
    ("prompt", "title"),
    [
        ("Say exactly 'hello' and nothing else.", "Say exactly 'hello' and nothing else"),
        ("READ /tmp/a.txt", "READ /tmp/a.txt"),
        ("x" * 80, "x" * 49 + "…"),
        ("   \n\n", "Untitled session"),
        ("short\nsecond line", "short"),
    ],
)
def test_make_title(prompt: str, title: str) -> None:
    assert make_title(prompt) == title
    assert len(title) <= 50 and "\n" not in title


# -- natural prompts and directives ---------------------------------------------------------


def test_natural_read_prompt(model: ScriptedModelServer) -> None:
    prompt = (
        'There is a text file at "/tmp/x y/z.txt".\nThe file contains a unique token.\n'
        "Use the `read` tool to read it, then reply with the exact file contents and nothing else."
    )
    out = say(model, prompt)
    call = out.tool_call
    assert call["index"] == 0 and call["id"].startswith("call_") and call["type"] == "function"
    assert call["function"]["name"] == "read"
    assert json.loads(call["function"]["arguments"]) == {"filePath": "/tmp/x y/z.txt"}
    assert out.finish == "tool_calls" and out.chunks[-1]["usage"]["total_tokens"] > 0 and out.done


@pytest.mark.parametrize(
    ("prompt", "answer"),
    [
        ("Say exactly 'hello' and nothing else.", "hello"),
        ("Say 'two words' and nothing else", "two words"),
        ("say exactly: 'it's fine'.", "it's fine"),
        ('Say "double"', "double"),
        ("ECHO some text\nover lines ", "some text\nover lines"),
        ("What is this?\nline two", 'scripted model: received "What is this?"'),
        ("", "scripted model: received an empty message."),
    ],
)
def test_text_answers(model: ScriptedModelServer, prompt: str, answer: str) -> None:
    assert say(model, prompt).text == answer


@pytest.mark.parametrize(
    ("prompt", "name", "arguments"),
    [
        ("READ /tmp/a.txt please", "read", {"filePath": "/tmp/a.txt"}),
        (
            "now BASH echo hi && ls\nignored",
            "bash",
            {"command": "echo hi && ls", "description": "Run a scripted command"},
        ),
        (
            "EDIT src/a.py old text => new text",
            "edit",
            {"filePath": "src/a.py", "oldString": "old text", "newString": "new text"},
        ),
        (
            "WRITE notes.txt line one\nline two",
            "write",
            {"filePath": "notes.txt", "content": "line one\nline two"},
        ),
        ('CALL glob {"pattern": "**/*.py"} trailing', "glob", {"pattern": "**/*.py"}),
        ("ECHO first, READ /x later", None, None),  # the earliest directive wins
        ("BASH ls; READ /x", "bash", {"command": "ls; READ /x", "description": "Run a scripted command"}),
    ],
)
def test_tool_directives(model: ScriptedModelServer, prompt: str, name: str | None, arguments: Any) -> None:
    out = say(model, prompt)
    if name is None:
        assert out.text == "first, READ /x later"
        return
    assert out.finish == "tool_calls"
    assert out.tool_call["function"]["name"] == name
    assert json.loads(out.tool_call["function"]["arguments"]) == arguments


def test_question_directives(model: ScriptedModelServer) -> None:
    one = json.loads(say(model, "ASK").tool_call["function"]["arguments"])
    assert one == {
        "questions": [
            {
                "question": "Pick a colour",
                "header": "Colour",
                "options": [
                    {"label": "red", "description": "warm"},
                    {"label": "blue", "description": "cold"},
                ],
            }
        ]
    }
    multi = json.loads(say(model, "please ASKMULTI").tool_call["function"]["arguments"])["questions"]
    assert [q["question"] for q in multi] == ["Pick a colour", "Pick toppings"]
    assert multi[1]["header"] == "Toppings" and multi[1]["multiple"] is True
    assert [o["label"] for o in multi[1]["options"]] == ["cheese", "ham"]
    assert "multiple" not in multi[0]
    assert say(model, "TASK list").text.startswith("scripted model")  # directives are whole words


def test_call_with_bad_json_says_so(model: ScriptedModelServer) -> None:
    assert "CALL needs a JSON object" in say(model, "CALL read {oops").text


def test_fast_and_slow(model: ScriptedModelServer) -> None:
    fast = say(model, "FAST 500")
    assert fast.deltas == [f"w{i} " for i in range(500)] and fast.finish == "stop"
    started = time.monotonic()
    slow = say(model, "SLOW 3 100")
    assert slow.deltas == ["s0 ", "s1 ", "s2 "]
    assert time.monotonic() - started >= 0.29


def test_stream_is_word_by_word_with_a_delay(model: ScriptedModelServer) -> None:
    started = time.monotonic()
    out = say(model, "STREAM the quick  brown fox")
    assert out.deltas == ["the ", "quick  ", "brown ", "fox"]
    assert out.text == "the quick  brown fox"
    assert time.monotonic() - started >= 0.09


@pytest.mark.parametrize(
    ("directive", "status", "kind"),
    [("ERROR500", 500, "server_error"), ("ERROR400", 400, "invalid_request_error")],
)
def test_errors(model: ScriptedModelServer, directive: str, status: int, kind: str) -> None:
    response = httpx.post(f"{model.base_url}/chat/completions", json=body_for(f"go {directive}"), timeout=5)
    assert response.status_code == status
    assert response.json()["error"]["type"] == kind and response.json()["error"]["message"]


# -- tool results -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "result", "answer"),
    [
        ("read", READ_OUTPUT, "TOKEN-123\nsecond\n\nlast"),
        ("bash", "hi there\nerr\n", "Command output:\nhi there\nerr"),
        ("bash", "Error: not really, just output\n", "Command output:\nError: not really, just output"),
        (
            "question",
            'User has answered your questions: "Pick a colour"="red". You can now continue.',
            'User has answered your questions: "Pick a colour"="red". You can now continue.',
        ),
        (
            "read",
            "The user rejected permission to use this specific tool call with the following feedback: no\n"
            "more",
            "Understood: The user rejected permission to use this specific tool call with the following "
            "feedback: no",
        ),
        ("read", "File not found: /tmp/missing.txt", "Understood: File not found: /tmp/missing.txt"),
        ("question", "The user dismissed this question", "Understood: The user dismissed this question"),
        (
            "edit",
            "Edit applied successfully." + "x" * 300,
            "Tool edit returned: Edit applied successfully." + "x" * 174,
        ),
    ],
)
def test_tool_result_follow_ups(model: ScriptedModelServer, name: str, result: str, answer: str) -> None:
    out = stream_chat(model, after_tool(name, result))
    assert out.text == answer and out.finish == "stop"


def test_tool_result_content_parts_and_unknown_call() -> None:
    body = after_tool("read", "")
    body["messages"][-1]["content"] = [{"type": "text", "text": READ_OUTPUT}]
    assert choose_reply(body) == TextReply(("TOKEN-123\nsecond\n\nlast",), kind="after:read")
    body["messages"][-1]["tool_call_id"] = "call_other"
    reply = choose_reply(body)
    assert isinstance(reply, TextReply) and reply.text.startswith("Tool unknown returned: <path>")


def test_parse_read_output() -> None:
    assert parse_read_output(READ_OUTPUT) == "TOKEN-123\nsecond\n\nlast"
    assert parse_read_output("<path>/d</path>\n<type>directory</type>\n<entries>\na\n</entries>") is None
    paged = (
        "<path>/a</path>\n<type>file</type>\n<content>\n10: ten\n11: 12: eleven\n\n"
        "(Showing lines 10-11 of 90. Use offset=12 to continue.)\n</content>"
    )
    assert parse_read_output(paged) == "ten\n12: eleven"


def test_directives_only_look_at_the_last_message() -> None:
    body = body_for(
        messages=[
            {"role": "user", "content": "READ /tmp/old.txt"},
            {"role": "assistant", "content": "done"},
            {"role": "user", "content": "thanks"},
        ]
    )
    assert choose_reply(body) == TextReply(('scripted model: received "thanks"',), kind="default")
    assert isinstance(choose_reply(body_for("READ /a")), ToolCallReply)


# -- lifecycle ----------------------------------------------------------------------------------


def _stream_in_background(server: ScriptedModelServer, prompt: str) -> tuple[list[str], threading.Event]:
    """Ask for ``prompt`` and read the streamed reply in a thread: its non-empty lines, as they
    come, and an event set when the stream ends (``<broken>`` if it broke)."""
    seen: list[str] = []
    ended = threading.Event()

    def consume() -> None:
        try:
            with httpx.stream(
                "POST", f"{server.base_url}/chat/completions", json=body_for(prompt), timeout=10
            ) as response:
                seen.extend(line for line in response.iter_lines() if line)
        except httpx.HTTPError:
            seen.append("<broken>")
        finally:
            ended.set()

    threading.Thread(target=consume, daemon=True).start()
    deadline = time.monotonic() + 5
    while not any(line.startswith(": keepalive") for line in seen) and time.monotonic() < deadline:
        time.sleep(0.05)
    return seen, ended


def test_hang_keeps_alive_until_stop() -> None:
    server = ScriptedModelServer().start()
    port = server.port
    seen, ended = _stream_in_background(server, "HANG")
    assert any("hanging" in line for line in seen), seen
    assert any(line.startswith(": keepalive") for line in seen), seen
    assert not ended.is_set()
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2
    assert ended.wait(3), "stop() must end a hanging stream"
    assert not any("[DONE]" in line for line in seen)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1)


def test_stall_keeps_alive_without_a_token_until_stop() -> None:
    """`STALL`: the stream opens and stays open, but no token ever comes (a model that never
    starts answering), until the server stops."""
    server = ScriptedModelServer().start()
    seen, ended = _stream_in_background(server, "STALL")
    assert seen and all(line.startswith(": keepalive") for line in seen), seen
    assert not ended.is_set()
    server.stop()
    assert ended.wait(3), "stop() must end a stalled stream"
    assert not any(line.startswith("data:") for line in seen), seen
    assert server.requests[-1]["reply"] == "stall"


def test_hang_client_disconnect_is_quiet(capfd: pytest.CaptureFixture[str]) -> None:
    with ScriptedModelServer() as server:
        with httpx.stream(
            "POST", f"{server.base_url}/chat/completions", json=body_for("HANG"), timeout=5
        ) as r:
            next(r.iter_lines())
        with httpx.stream(
            "POST", f"{server.base_url}/chat/completions", json=body_for("FAST 200000"), timeout=5
        ) as r:
            next(r.iter_lines())
        deadline = time.monotonic() + 5
        while server._connections and time.monotonic() < deadline:  # handlers notice and finish
            time.sleep(0.05)
        assert not server._connections
        assert say(server, "ECHO still serving").text == "still serving"
    assert "Traceback" not in capfd.readouterr().err


def test_non_streaming_hang_ends_on_stop() -> None:
    server = ScriptedModelServer().start()
    errors: list[BaseException] = []

    def call() -> None:
        try:
            httpx.post(f"{server.base_url}/chat/completions", json=body_for("HANG", stream=False), timeout=10)
        except httpx.HTTPError as exc:
            errors.append(exc)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    time.sleep(0.3)
    assert thread.is_alive()
    server.stop()
    thread.join(3)
    assert not thread.is_alive() and errors


def test_stop_is_idempotent_and_restartable() -> None:
    server = ScriptedModelServer()
    server.stop()
    with pytest.raises(RuntimeError):
        _ = server.base_url
    server.start()
    with pytest.raises(RuntimeError):
        server.start()
    server.stop()
    server.stop()


def test_opencode_config() -> None:
    config = opencode_config("http://127.0.0.1:9/v1", permission={"bash": "ask"}, share="manual")
    provider = config["provider"]["scripted"]
    assert provider["npm"] == "@ai-sdk/openai-compatible"
    assert provider["options"] == {"baseURL": "http://127.0.0.1:9/v1", "apiKey": "scripted"}
    assert provider["models"]["scripted-model"]["tool_call"] is True
    assert provider["models"]["scripted-model"]["limit"] == {"context": 200000, "output": 8192}
    assert config["model"] == MODEL_ID and config["autoupdate"] is False
    assert config["permission"] == {"external_directory": "ask", "bash": "ask"}  # deep-merged
    assert config["share"] == "manual"
    assert opencode_config("u")["share"] == "disabled"  # overrides never leak between calls


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cli_foreground(sig: signal.Signals) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator_tui", "scripted-model", "--port", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],  # the checkout, importable even when not installed
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("scripted model listening on http://127.0.0.1:"), line
        base_url = line.rsplit(" ", 1)[1].strip()
        assert httpx.get(f"{base_url}/models", timeout=5).status_code == 200
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert "OPENCODE_CONFIG_CONTENT=" in err and base_url in err and "Traceback" not in err


# -- against the real OpenCode ----------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RealOpenCode:
    client: httpx.Client
    model: ScriptedModelServer
    project: Path
    outside: Path
    startup_seconds: float


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, then SIGKILL it: OpenCode's first SIGTERM can be swallowed."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def real_opencode(opencode_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealOpenCode]:
    root = tmp_path_factory.mktemp("real-opencode")
    project, outside = root / "project", root / "outside"
    project.mkdir()
    outside.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    model = ScriptedModelServer().start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCODE_")}
    for name in ("DATA", "CONFIG", "CACHE", "STATE"):
        env[f"XDG_{name}_HOME"] = str(root / "xdg" / name.lower())
    env["OPENCODE_CONFIG_CONTENT"] = json.dumps(opencode_config(model.base_url))
    port = _free_port()
    started = time.monotonic()
    stderr = (root / "serve.err").open("wb")
    proc = subprocess.Popen(
        [str(opencode_binary), "serve", "--hostname", "127.0.0.1", "--port", str(port)],
        cwd=project,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr,
        start_new_session=True,
    )
    listening = threading.Event()

    def drain() -> None:  # watch for the line, then keep the pipe empty
        assert proc.stdout is not None
        for raw in proc.stdout:
            if b"opencode server listening on" in raw:
                listening.set()

    threading.Thread(target=drain, daemon=True).start()
    try:
        # Requests sent before this line can hang forever (spec 0.1), so none are sent earlier.
        if not listening.wait(60):
            pytest.fail(f"opencode serve did not start: {(root / 'serve.err').read_text()[-2000:]}")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield RealOpenCode(client, model, project, outside, time.monotonic() - started)
    finally:
        _stop_group(proc)
        stderr.close()
        model.stop()


def _prompt(oc: RealOpenCode, text: str) -> str:
    session_id = oc.client.post("/session", json={}).raise_for_status().json()["id"]
    response = oc.client.post(
        f"/session/{session_id}/prompt_async", json={"parts": [{"type": "text", "text": text}]}
    )
    assert response.status_code == 204, response.text
    return str(session_id)


def _wait_idle(
    oc: RealOpenCode, session_id: str, timeout: float = 60, while_busy: Callable[[], bool] | None = None
) -> dict[str, Any]:
    """Wait until the session is idle with a finished assistant reply; return that message.

    Idle sessions are absent from /session/status, but so is a session whose prompt OpenCode
    has not started yet, so a completed assistant message is required as well.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if while_busy is not None and while_busy():
            while_busy = None
        if session_id not in oc.client.get("/session/status").json():
            messages = oc.client.get(f"/session/{session_id}/message").json()
            replies = [m for m in messages if m["info"]["role"] == "assistant"]
            if replies and replies[-1]["info"].get("time", {}).get("completed"):
                return dict(replies[-1])
        time.sleep(0.05)
    pytest.fail(f"session {session_id} did not finish in {timeout} s")


def _text_of(message: dict[str, Any]) -> str:
    return "".join(part.get("text", "") for part in message["parts"] if part["type"] == "text")


@pytest.mark.real_opencode
def test_real_opencode_text_reply_and_title(real_opencode: RealOpenCode) -> None:
    oc = real_opencode
    started = time.monotonic()
    session_id = _prompt(oc, "Say exactly 'hello' and nothing else.")
    reply = _wait_idle(oc, session_id)
    assert _text_of(reply) == "hello"
    assert reply["info"]["finish"] == "stop" and reply["info"]["tokens"]["output"] > 0
    deadline = time.monotonic() + 10
    while (title := oc.client.get(f"/session/{session_id}").json()["title"]).startswith("New session"):
        assert time.monotonic() < deadline, "the title request never produced a title"
        time.sleep(0.05)
    assert title == "Say exactly 'hello' and nothing else"
    kinds = [r["reply"] for r in oc.model.requests]
    assert "title" in kinds and "say" in kinds
    print(f"startup {oc.startup_seconds:.2f}s, hello turn {time.monotonic() - started:.2f}s")


@pytest.mark.real_opencode
def test_real_opencode_external_read_asks_then_returns_contents(real_opencode: RealOpenCode) -> None:
    oc = real_opencode
    secret = oc.outside / "secret.txt"
    secret.write_text("TOKEN-4711\nsecond line\n")
    started = time.monotonic()
    session_id = _prompt(oc, f"READ {secret}")
    asked: list[dict[str, Any]] = []

    def answer_permission() -> bool:
        pending = [p for p in oc.client.get("/permission").json() if p["sessionID"] == session_id]
        if not pending:
            return False
        asked.extend(pending)
        reply = oc.client.post(f"/permission/{pending[0]['id']}/reply", json={"reply": "once"})
        assert reply.status_code == 200
        return True

    reply = _wait_idle(oc, session_id, while_busy=answer_permission)
    assert [p["permission"] for p in asked] == ["external_directory"]
    assert asked[0]["metadata"]["filepath"] == str(secret)
    assert _text_of(reply) == "TOKEN-4711\nsecond line"
    print(f"external read turn {time.monotonic() - started:.2f}s")


@pytest.mark.real_opencode
def test_real_opencode_question_answer_reaches_the_model(real_opencode: RealOpenCode) -> None:
    oc = real_opencode
    started = time.monotonic()
    session_id = _prompt(oc, "ASK")

    def answer_question() -> bool:
        pending = [q for q in oc.client.get("/question").json() if q["sessionID"] == session_id]
        if not pending:
            return False
        assert pending[0]["questions"][0]["header"] == "Colour"
        assert (
            oc.client.post(f"/question/{pending[0]['id']}/reply", json={"answers": [["blue"]]}).status_code
            == 200
        )
        return True

    reply = _wait_idle(oc, session_id, while_busy=answer_question)
    assert _text_of(reply).startswith('User has answered your questions: "Pick a colour"="blue"')
    print(f"question turn {time.monotonic() - started:.2f}s")
