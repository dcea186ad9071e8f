# SPDX-License-Identifier: Apache-2.0
"""Every client dialect through the edge: aicarpool-hub with its in-process
edge and the fake provider as real processes on loopback, one `mock`
account that speaks Anthropic, OpenAI and Gemini. For Anthropic Messages,
OpenAI Chat Completions and Responses, and Gemini (v1beta and the genai
SDK's v1 paths, SSE and JSON-array streams) it checks the answer bytes or
events the client gets, the usage row (exact, from the fake's documented
formulas over the body length the provider saw), which credential and
query string reached the provider, the OpenAI include_usage insertion and
strip, the Gemini key= removal, the count endpoints (relayed, never
billed), the local model lists in each format, and errors in each
dialect's own format."""
import json
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import gwtest  # noqa: E402
from gwtest import FAKE_TEXT, fake_usage, fake_usage_gemini, fake_usage_openai  # noqa: E402

UPSTREAM_SECRET = "sk-upstream-mock-secret-42"
INJECTED = b'"stream_options":{"include_usage":true},'
WORDS = ["Hello ", "from ", "the ", "AiCarpool ", "fake ", "provider."]


def dumps(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


class Client:
    """Sends requests to the edge and remembers, per request id, what the
    usage row must say."""

    def __init__(self, hub, fake, key):
        self.hub, self.fake, self.key = hub, fake, key
        self.expect = {}  # request id -> (model, dialect, usage dict)

    def send(self, method, path, body=None, headers=None):
        status, hdrs, data = self.hub.edge.request(method, path, body, headers or {})
        return status, hdrs, data

    def last_upstream(self):
        recs = self.fake.requests()
        assert recs, "nothing reached the provider"
        return recs[-1]

    def billed(self, hdrs, model, dialect, usage):
        rid = hdrs.get("x-aicarpool-request-id")
        assert rid, hdrs
        self.expect[rid] = (model, dialect, usage)


def check_rows(hub, key_id, expect):
    rows = hub.usage(key_id, len(expect))
    assert len(rows) == len(expect), (len(rows), len(expect), rows)
    by_id = {r["request_id"]: r for r in rows}
    for rid, (model, dialect, usage) in expect.items():
        row = by_id.get(rid)
        assert row is not None, (rid, rows)
        assert row["model"] == model and row["dialect"] == dialect, row
        for field, want in usage.items():
            assert row[field] == want, f"{rid} {dialect} {field}: want {want}, got {row[field]} in {row}"
        assert row["status"] == 200 and row["partial"] in (False, 0), row


def anthropic_cases(c):
    # Non-streaming, x-api-key, Claude Code's query string.
    body = dumps({"model": "claude-fake-sonnet", "max_tokens": 256,
                  "messages": [{"role": "user", "content": "Say hello"}]})
    st, h, data = c.send("POST", "/v1/messages?beta=true", body,
                         {"x-api-key": c.key, "content-type": "application/json",
                          "anthropic-version": "2023-06-01", "x-claude-code-session-id": "s-1"})
    assert st == 200, (st, data)
    msg = json.loads(data)
    assert msg["content"][0]["text"] == FAKE_TEXT and msg["type"] == "message", msg
    up = c.last_upstream()
    assert up["target"] == "/acct/m1/v1/messages?beta=true", up["target"]
    assert up["headers"]["x-api-key"] == UPSTREAM_SECRET and "authorization" not in up["headers"], up
    assert up["body_len"] == len(body)
    c.billed(h, "claude-fake-sonnet", "anthropic", fake_usage(len(body), 256))

    # Streaming, Bearer key, path prefix.
    body = dumps({"model": "claude-fake-sonnet", "max_tokens": 64, "stream": True,
                  "messages": [{"role": "user", "content": "Stream it" + " x" * 30}]})
    st, h, data = c.send("POST", "/some/prefix/v1/messages", body,
                         {"authorization": f"Bearer {c.key}", "anthropic-version": "2023-06-01"})
    assert st == 200 and h["content-type"].startswith("text/event-stream"), (st, h)
    events = gwtest.parse_sse(data)
    names = [e for e, _ in events]
    assert len(events) == 12 and names[0] == "message_start" and names[-1] == "message_stop", names
    assert "".join(d["delta"]["text"] for e, d in events if e == "content_block_delta") == FAKE_TEXT
    c.billed(h, "claude-fake-sonnet", "anthropic", fake_usage(len(body), 64))

    # count_tokens: relayed, never billed.
    body = dumps({"model": "claude-fake-sonnet", "messages": [{"role": "user", "content": "count"}]})
    st, _, data = c.send("POST", "/v1/messages/count_tokens?beta=true", body, {"x-api-key": c.key})
    assert st == 200 and json.loads(data) == {"input_tokens": math.ceil(len(body) / 4)}, data
    assert c.last_upstream()["endpoint"] == "count_tokens"


def openai_cases(c):
    auth = {"authorization": f"Bearer {c.key}", "content-type": "application/json"}
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Say hello"}]

    # Chat, non-streaming.
    body = dumps({"model": "gpt-fake-mini", "messages": msgs})
    st, h, data = c.send("POST", "/v1/chat/completions", body, auth)
    assert st == 200, (st, data)
    obj = json.loads(data)
    assert obj["object"] == "chat.completion" and obj["choices"][0]["message"]["content"] == FAKE_TEXT, obj
    up = c.last_upstream()
    assert up["dialect"] == "openai" and up["endpoint"] == "chat_completions", up
    assert up["headers"]["authorization"] == f"Bearer {UPSTREAM_SECRET}", up["headers"]
    assert "x-api-key" not in up["headers"] and c.key not in json.dumps(up), up
    assert up["body_len"] == len(body)
    c.billed(h, "gpt-fake-mini", "openai", fake_usage_openai(len(body)))

    # Chat stream without include_usage: the edge asks for it upstream and
    # the client never sees the extra chunk.
    body = dumps({"model": "gpt-fake-mini", "stream": True, "messages": msgs})
    st, h, data = c.send("POST", "/v1/chat/completions", body, auth)
    assert st == 200 and h["content-type"].startswith("text/event-stream"), (st, h)
    events = gwtest.parse_sse_raw(data)
    assert len(events) == 8 and events[-1] == (None, "[DONE]"), events
    chunks = [json.loads(d) for _, d in events[:-1]]
    assert all(ch["choices"] for ch in chunks), "the usage-only chunk reached the client"
    assert "".join(ch["choices"][0]["delta"].get("content", "") for ch in chunks) == FAKE_TEXT
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    up = c.last_upstream()
    assert up["body_len"] == len(body) + len(INJECTED), (up["body_len"], len(body))
    assert up["usage"] is not None, up  # the provider did report usage
    c.billed(h, "gpt-fake-mini", "openai", fake_usage_openai(up["body_len"]))

    # Chat stream that asked for usage itself: body and events untouched.
    body = dumps({"model": "gpt-fake-mini", "stream": True, "stream_options": {"include_usage": True},
                  "messages": msgs})
    st, h, data = c.send("POST", "/api/v1/chat/completions", body, auth)
    assert st == 200
    events = gwtest.parse_sse_raw(data)
    assert len(events) == 9 and events[-1] == (None, "[DONE]"), events
    usage_chunk = json.loads(events[-2][1])
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["completion_tokens"] == 7, usage_chunk
    assert c.last_upstream()["body_len"] == len(body)
    c.billed(h, "gpt-fake-mini", "openai", fake_usage_openai(len(body)))

    # Responses, non-streaming and streaming (Codex).
    body = dumps({"model": "codex-fake", "instructions": "be brief", "input": "Say hello"})
    st, h, data = c.send("POST", "/v1/responses", body, dict(auth, session_id="codex-sess-1"))
    assert st == 200, (st, data)
    obj = json.loads(data)
    assert obj["object"] == "response" and obj["output"][0]["content"][0]["text"] == FAKE_TEXT, obj
    up = c.last_upstream()
    assert up["endpoint"] == "responses" and up["headers"]["session_id"] == "codex-sess-1", up
    c.billed(h, "codex-fake", "openai", fake_usage_openai(len(body)))

    body = dumps({"model": "codex-fake", "instructions": "be brief", "stream": True,
                  "input": [{"role": "user", "content": [{"type": "input_text", "text": "Say hello"}]}]})
    st, h, data = c.send("POST", "/v1/responses", body, auth)
    assert st == 200 and h["content-type"].startswith("text/event-stream")
    events = gwtest.parse_sse(data)
    names = [e for e, _ in events]
    assert len(events) == 14 and names[0] == "response.created" and names[-1] == "response.completed", names
    assert "".join(d["delta"] for e, d in events if e == "response.output_text.delta") == FAKE_TEXT
    assert c.last_upstream()["body_len"] == len(body)  # Responses bodies are never rewritten
    c.billed(h, "codex-fake", "openai", fake_usage_openai(len(body)))


def gemini_cases(c):
    body = dumps({"systemInstruction": {"parts": [{"text": "be brief"}]},
                  "contents": [{"role": "user", "parts": [{"text": "Say hello"}]}],
                  "generationConfig": {"maxOutputTokens": 100}})

    # v1beta generateContent, key in the header.
    st, h, data = c.send("POST", "/v1beta/models/gemini-fake-flash:generateContent", body,
                         {"x-goog-api-key": c.key, "content-type": "application/json"})
    assert st == 200, (st, data)
    obj = json.loads(data)
    assert obj["candidates"][0]["content"]["parts"][0]["text"] == FAKE_TEXT, obj
    up = c.last_upstream()
    assert up["target"] == "/acct/m1/v1beta/models/gemini-fake-flash:generateContent", up["target"]
    assert up["headers"]["x-goog-api-key"] == UPSTREAM_SECRET and up["key_source"] == "header", up
    c.billed(h, "gemini-fake-flash", "gemini", fake_usage_gemini(len(body)))

    # streamGenerateContent with alt=sse and the key in ?key= (Gemini CLI
    # style): the key never goes upstream, alt=sse does.
    st, h, data = c.send("POST", f"/v1beta/models/gemini-fake-pro:streamGenerateContent?alt=sse&key={c.key}",
                         body, {"content-type": "application/json"})
    assert st == 200 and h["content-type"].startswith("text/event-stream"), (st, h, data)
    events = gwtest.parse_sse(data)
    assert len(events) == 6, events
    assert "".join(d["candidates"][0]["content"]["parts"][0]["text"] for _, d in events) == FAKE_TEXT
    up = c.last_upstream()
    assert up["target"] == "/acct/m1/v1beta/models/gemini-fake-pro:streamGenerateContent?alt=sse", up["target"]
    assert c.key not in json.dumps(up), "gateway key forwarded upstream"
    c.billed(h, "gemini-fake-pro", "gemini", fake_usage_gemini(len(body)))

    # The genai SDK's v1 paths; streaming without alt=sse is one JSON array.
    st, h, data = c.send("POST", f"/v1/models/gemini-fake-flash:streamGenerateContent?key={c.key}", body)
    assert st == 200, (st, data)
    arr = json.loads(data)
    assert isinstance(arr, list) and len(arr) == 6, arr
    assert c.last_upstream()["target"] == "/acct/m1/v1/models/gemini-fake-flash:streamGenerateContent"
    c.billed(h, "gemini-fake-flash", "gemini", fake_usage_gemini(len(body)))
    st, h, data = c.send("POST", "/v1/models/gemini-fake-flash:generateContent", body, {"x-goog-api-key": c.key})
    assert st == 200, (st, data)
    c.billed(h, "gemini-fake-flash", "gemini", fake_usage_gemini(len(body)))

    # countTokens: relayed, never billed.
    st, _, data = c.send("POST", "/v1beta/models/gemini-fake-flash:countTokens", body, {"x-goog-api-key": c.key})
    assert st == 200 and json.loads(data) == {"totalTokens": math.ceil(len(body) / 4)}, data


def model_lists(c, key_models):
    st, _, data = c.send("GET", "/v1/models", None, {"x-api-key": c.key, "anthropic-version": "2023-06-01"})
    assert st == 200, data
    obj = json.loads(data)
    ids = [m["id"] for m in obj["data"]]
    assert "claude-sonnet-4-5-20250929" in ids and all(m["type"] == "model" for m in obj["data"]), obj
    assert obj["has_more"] is False and obj["first_id"] == ids[0] and obj["last_id"] == ids[-1], obj
    st, _, data = c.send("GET", "/v1/models", None, {"authorization": f"Bearer {c.key}"})
    obj = json.loads(data)
    assert st == 200 and obj["object"] == "list" and "gpt-5" in [m["id"] for m in obj["data"]], obj
    st, _, data = c.send("GET", f"/v1beta/models?key={c.key}")
    obj = json.loads(data)
    assert st == 200 and "models/gemini-2.5-flash" in [m["name"] for m in obj["models"]], obj
    # An account with a model list: exactly those models.
    st, _, data = c.send("GET", "/v1/models", None, {"authorization": f"Bearer {key_models}"})
    obj = json.loads(data)
    assert [m["id"] for m in obj["data"]] == ["gpt-fake-mini", "claude-fake-haiku"], obj
    assert [r for r in c.fake.requests() if r["endpoint"] == "models"] == [], "model lists went upstream"


def errors(c):
    body = dumps({"model": "gpt-fake-mini", "messages": []})
    # 401 wrong key, in each dialect's format.
    st, _, data = c.send("POST", "/v1/messages", body, {"x-api-key": "aicp_wrong"})
    err = json.loads(data)
    assert st == 401 and err["type"] == "error" and err["error"]["type"] == "authentication_error", data
    st, _, data = c.send("POST", "/v1/chat/completions", body, {"authorization": "Bearer aicp_wrong"})
    err = json.loads(data)["error"]
    assert st == 401 and err["code"] == "invalid_api_key" and err["param"] is None and err["message"], data
    st, _, data = c.send("POST", "/v1beta/models/gemini-fake-flash:generateContent?key=aicp_wrong", b"{}")
    err = json.loads(data)["error"]
    assert st == 401 and err["status"] == "UNAUTHENTICATED" and err["code"] == 401, data
    # 400 malformed.
    st, _, data = c.send("POST", "/v1/messages", b'{"model":', {"x-api-key": c.key})
    assert st == 400 and json.loads(data)["error"]["type"] == "invalid_request_error", data
    st, _, data = c.send("POST", "/v1/responses", b'{"input":"x"}', {"authorization": f"Bearer {c.key}"})
    assert st == 400 and json.loads(data)["error"]["type"] == "invalid_request_error", data
    st, _, data = c.send("POST", "/v1beta/models/gemini-fake-flash:generateContent", b'{"contents":{}}',
                         {"x-goog-api-key": c.key})
    assert st == 400 and json.loads(data)["error"]["status"] == "INVALID_ARGUMENT", data
    # 404 unknown path.
    st, _, data = c.send("POST", "/v1/nothing", body, {"x-api-key": c.key})
    assert st == 404 and json.loads(data)["error"]["type"] == "not_found_error", data
    st, _, data = c.send("POST", "/v1/embeddings", body, {"authorization": f"Bearer {c.key}"})
    assert st == 404 and json.loads(data)["error"]["code"] == "not_found", data
    st, _, data = c.send("POST", "/v1beta/models/gemini-fake-flash:embedContent", b"{}", {"x-goog-api-key": c.key})
    assert st == 404 and json.loads(data)["error"]["status"] == "NOT_FOUND", data
    # 405 in the dialect too.
    st, hdrs, data = c.send("GET", "/v1/chat/completions", None, {"authorization": f"Bearer {c.key}"})
    assert st == 405 and hdrs.get("allow") == "POST" and "error" in json.loads(data), data


def scenario(db):
    with gwtest.Workdir("dialects") as wd:
        fake = gwtest.FakeProvider(wd)
        hub = gwtest.Hub(wd, db=db)
        try:
            key_id, key = hub.setup_group(gwtest.fake_url(fake.url, label="m1"), kind="mock",
                                          api_key=UPSTREAM_SECRET)
            # A second group whose mock account names its models.
            _, group = hub.api("POST", "/api/groups", {"name": f"models-{os.getpid()}"}, expect=201)
            _, acct = hub.api("POST", "/api/accounts", {
                "name": "with-models", "kind": "mock", "base_url": gwtest.fake_url(fake.url, label="m2"),
                "api_key": UPSTREAM_SECRET, "models": ["gpt-fake-mini", "claude-fake-haiku"]}, expect=201)
            hub.api("POST", f"/api/groups/{group['id']}/bindings", {"account_id": acct["id"]}, expect=201)
            _, key2 = hub.api("POST", "/api/keys", {"group_id": group["id"], "name": "k2"}, expect=201)
            hub.wait_edge_current()

            c = Client(hub, fake, key)
            anthropic_cases(c)
            openai_cases(c)
            gemini_cases(c)
            model_lists(c, key2["key"])
            fake.clear()
            errors(c)
            assert fake.requests() == [], "a rejected request reached the provider"
            check_rows(hub, key_id, c.expect)
        finally:
            hub_rc = hub.stop()
            fake.stop()
        assert hub_rc == 0, f"hub exit status {hub_rc}:\n{hub.proc.output()[-4000:]}"


def test_dialects_sqlite():
    scenario(None)


def test_dialects_mysql():
    dsn = gwtest.mysql_dsn()
    if not dsn:
        print("GW_TEST_MYSQL_DSN not set: MariaDB run skipped")
        return "skip"
    scenario(dsn)


if __name__ == "__main__":
    gwtest.run_main([test_dialects_sqlite, test_dialects_mysql])
