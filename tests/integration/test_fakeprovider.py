# SPDX-License-Identifier: Apache-2.0
"""The fake provider itself (tests/fakes/README.md): every endpoint of the
Anthropic, OpenAI and Gemini dialects, streaming and not, with the usage
numbers its formulas promise; the failure scenarios (statuses and their
bodies per dialect, retry-after, fail-first counting, slow first byte,
stalled and cut streams) by header and by /fault/ path prefix; /acct/ labels,
request records and stats; credential errors per dialect. Other tests rely on
the fake behaving exactly like this, so it is tested on its own, as a real
process on loopback."""
import http.client
import json
import math
import os
import re
import select
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import gwtest  # noqa: E402
from gwtest import FAKE_TEXT, fake_url, fake_usage, fake_usage_gemini, fake_usage_openai  # noqa: E402

WORDS = ["Hello ", "from ", "the ", "AiCarpool ", "fake ", "provider."]
ANTHROPIC_KEY = {"x-api-key": "sk-ant-fake-key-123"}
OPENAI_KEY = {"authorization": "Bearer sk-openai-fake-key-456"}
GEMINI_KEY = {"x-goog-api-key": "AIza-fake-key-789"}

FAKE = None  # the one fake provider all tests share; each test clears it first


def padded(obj, length):
    """obj as compact JSON bytes of exactly `length` bytes (padded with a
    "pad" field), so a test picks L and with it every usage number."""
    obj = dict(obj, pad="")
    base = len(json.dumps(obj, separators=(",", ":")).encode())
    assert length >= base, (length, base)
    obj["pad"] = "p" * (length - base)
    data = json.dumps(obj, separators=(",", ":")).encode()
    assert len(data) == length
    return data


def post(path, body, headers=None, timeout=30):
    hdrs = {"content-type": "application/json"}
    hdrs.update(headers or {})
    return FAKE.http.request("POST", path, body, hdrs, timeout=timeout)


def get(path, headers=None):
    return FAKE.http.request("GET", path, None, headers or {})


def records():
    return FAKE.requests()


def last_record():
    recs = records()
    assert recs, "no request recorded"
    return recs[-1]


def sse_json(data):
    return [(ev, json.loads(d) if d not in (None, "[DONE]") else d) for ev, d in gwtest.parse_sse_raw(data)]


def anthropic_body(length=None, stream=False, max_tokens=256):
    obj = {"model": "claude-x", "max_tokens": max_tokens, "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        obj["stream"] = True
    return padded(obj, length) if length else json.dumps(obj).encode()


def chat_body(length, stream=False, include_usage=None):
    obj = {"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        obj["stream"] = True
    if include_usage is not None:
        obj["stream_options"] = {"include_usage": include_usage}
    return padded(obj, length)


def responses_body(length, stream=False):
    obj = {"model": "codex-x", "input": [{"role": "user", "content": "hi"}]}
    if stream:
        obj["stream"] = True
    return padded(obj, length)


def gemini_body(length):
    return padded({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}, length)


def oa_expect(L):
    cached = L % 97
    prompt = math.ceil(L / 4) + cached
    return prompt, cached, prompt + 7


def gemini_usage_expect(L, candidates=7):
    cached, thoughts = L % 97, L % 5
    prompt = math.ceil(L / 4) + cached
    u = {"promptTokenCount": prompt, "candidatesTokenCount": candidates,
         "totalTokenCount": prompt + candidates + thoughts}
    if cached:
        u["cachedContentTokenCount"] = cached
    if thoughts:
        u["thoughtsTokenCount"] = thoughts
    return u


class RawStream:
    """A request on a raw socket, to watch a response arrive byte by byte:
    whether the server stops sending, keeps the socket open or closes it."""

    def __init__(self, path, body, headers):
        self.s = socket.create_connection(("127.0.0.1", FAKE.port), timeout=10)
        lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{FAKE.port}", "Content-Type: application/json",
                 f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        self.data = b""
        self.eof = False

    def read_for(self, seconds):
        """Reads whatever arrives within `seconds` (stops early at EOF)."""
        deadline = gwtest.Deadline(seconds)
        while not self.eof:
            r, _, _ = select.select([self.s], [], [], deadline.left())
            if not r:
                break
            b = self.s.recv(65536)
            if not b:
                self.eof = True
                break
            self.data += b

    def read_until(self, what, predicate, seconds=10):
        deadline = gwtest.Deadline(seconds)
        while not predicate(self.data):
            if self.eof or deadline.expired():
                raise AssertionError(f"waiting for {what}: eof={self.eof}, got {self.data[-2000:]!r}")
            self.read_for(min(0.2, deadline.left()))

    def events(self):
        return self.data.count(b"data: ")

    def close(self):
        self.s.close()


# ---- Anthropic ----

def test_anthropic_messages():
    FAKE.clear()
    body = anthropic_body(300)
    status, hdrs, data = post("/acct/ant-1/v1/messages?beta=true", body, ANTHROPIC_KEY)
    assert status == 200, data
    msg = json.loads(data)
    want = fake_usage(300)
    assert msg["type"] == "message" and msg["role"] == "assistant" and msg["model"] == "claude-x", msg
    assert msg["id"].startswith("msg_fake_") and hdrs["request-id"] == msg["id"], (msg, hdrs)
    assert msg["content"] == [{"type": "text", "text": FAKE_TEXT}], msg
    assert msg["stop_reason"] == "end_turn", msg
    u = msg["usage"]
    assert u["input_tokens"] == want["input_tokens"] == 75, u
    assert u["output_tokens"] == 7 and u["cache_read_input_tokens"] == 300 % 97, u
    assert u["cache_creation_input_tokens"] == 300 % 13, u
    assert u["cache_creation"] == {"ephemeral_5m_input_tokens": want["cache_write_5m_tokens"],
                                   "ephemeral_1h_input_tokens": want["cache_write_1h_tokens"]}, u
    rec = last_record()
    assert rec["target"] == "/acct/ant-1/v1/messages?beta=true" and rec["account"] == "ant-1", rec
    assert rec["dialect"] == "anthropic" and rec["endpoint"] == "messages", rec
    assert rec["headers"]["x-api-key"] == ANTHROPIC_KEY["x-api-key"], rec
    assert rec["body_len"] == 300 and rec["status"] == 200 and rec["stream"] is False, rec
    assert rec["completed"] is True and rec["scenario"] is None and rec["scenario_applied"] is False, rec
    assert rec["usage"]["input_tokens"] == 75 and rec["usage"]["output_tokens"] == 7, rec

    # max_tokens below 7 cuts the answer
    status, _, data = post("/v1/messages", anthropic_body(max_tokens=3), {"authorization": "Bearer t"})
    msg = json.loads(data)
    assert status == 200 and msg["content"][0]["text"] == "Hello from the", msg
    assert msg["usage"]["output_tokens"] == 3 and msg["stop_reason"] == "max_tokens", msg


def test_anthropic_stream():
    FAKE.clear()
    body = anthropic_body(211, stream=True)
    status, hdrs, data = post("/v1/messages", body, ANTHROPIC_KEY)
    assert status == 200 and hdrs["content-type"] == "text/event-stream", (status, hdrs)
    events = sse_json(data)
    names = [e for e, _ in events]
    assert names == ["message_start", "content_block_start", "ping"] + ["content_block_delta"] * 6 + [
        "content_block_stop", "message_delta", "message_stop"], names
    assert [d["delta"]["text"] for e, d in events if e == "content_block_delta"] == WORDS
    start = events[0][1]["message"]["usage"]
    assert start["input_tokens"] == math.ceil(211 / 4) and start["cache_read_input_tokens"] == 211 % 97, start
    assert events[-2][1]["usage"] == {"output_tokens": 7}, events[-2]
    rec = last_record()
    assert rec["stream"] is True and rec["completed"] is True and rec["events_sent"] == 12, rec

    status, _, data = post("/v1/messages", anthropic_body(stream=True, max_tokens=2), ANTHROPIC_KEY)
    events = sse_json(data)
    assert len(events) == 8, events
    assert [d["delta"]["text"] for e, d in events if e == "content_block_delta"] == ["Hello ", "from"]


def test_anthropic_count_tokens():
    FAKE.clear()
    body = anthropic_body(123)
    status, _, data = post("/api/v1/messages/count_tokens", body, ANTHROPIC_KEY)
    assert status == 200 and json.loads(data) == {"input_tokens": 31}, data
    rec = last_record()
    assert rec["endpoint"] == "count_tokens" and rec["usage"] is None and rec["completed"], rec


# ---- OpenAI ----

def test_openai_chat():
    FAKE.clear()
    L = 250
    status, hdrs, data = post("/v1/chat/completions", chat_body(L), OPENAI_KEY)
    assert status == 200, data
    obj = json.loads(data)
    prompt, cached, total = oa_expect(L)
    assert obj["object"] == "chat.completion" and obj["id"].startswith("chatcmpl-fake-"), obj
    assert obj["model"] == "gpt-x" and isinstance(obj["created"], int), obj
    ch = obj["choices"]
    assert len(ch) == 1 and ch[0]["index"] == 0 and ch[0]["finish_reason"] == "stop", ch
    assert ch[0]["message"]["role"] == "assistant" and ch[0]["message"]["content"] == FAKE_TEXT, ch
    u = obj["usage"]
    assert u["prompt_tokens"] == prompt == 63 + 56 and u["completion_tokens"] == 7 and u["total_tokens"] == total, u
    assert u["prompt_tokens_details"]["cached_tokens"] == cached == 56, u
    assert u["completion_tokens_details"]["reasoning_tokens"] == 0, u
    rec = last_record()
    assert rec["dialect"] == "openai" and rec["endpoint"] == "chat_completions", rec
    assert rec["usage"] == {"prompt_tokens": prompt, "completion_tokens": 7, "total_tokens": total,
                            "cached_tokens": cached, "reasoning_tokens": 0}, rec
    # the gwtest helper: the row the edge should write
    row = fake_usage_openai(L)
    assert row["input_tokens"] == u["prompt_tokens"] - cached and row["cache_read_tokens"] == cached, row
    assert row["output_tokens"] == 7 and row["reasoning_tokens"] == 0, row


def test_openai_chat_stream():
    FAKE.clear()
    L = 199
    prompt, cached, total = oa_expect(L)
    for include in (None, False, True):
        status, hdrs, data = post("/v1/chat/completions", chat_body(L, True, include), OPENAI_KEY)
        assert status == 200 and hdrs["content-type"] == "text/event-stream", (status, hdrs)
        events = sse_json(data)
        assert all(ev is None for ev, _ in events), events
        assert events[-1][1] == "[DONE]", events[-1]
        chunks = [d for _, d in events[:-1]]
        assert all(c["object"] == "chat.completion.chunk" and c["model"] == "gpt-x" for c in chunks), chunks
        assert len({c["id"] for c in chunks}) == 1
        words = [c["choices"][0]["delta"]["content"] for c in chunks[:6]]
        assert words == WORDS, words
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant", chunks[0]
        assert chunks[6]["choices"][0]["finish_reason"] == "stop" and chunks[6]["choices"][0]["delta"] == {}
        assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:6])
        if include:
            assert len(events) == 9, len(events)
            assert all("usage" in c and c["usage"] is None for c in chunks[:7]), chunks
            last = chunks[7]
            assert last["choices"] == [], last
            assert last["usage"]["prompt_tokens"] == prompt and last["usage"]["total_tokens"] == total, last
            assert last["usage"]["prompt_tokens_details"]["cached_tokens"] == cached, last
            assert last_record()["usage"]["prompt_tokens"] == prompt
        else:
            assert len(events) == 8, len(events)
            assert all("usage" not in c for c in chunks), chunks
            assert last_record()["usage"] is None, last_record()
        rec = last_record()
        assert rec["stream"] is True and rec["completed"] is True and rec["events_sent"] == len(events), rec


def test_openai_responses():
    FAKE.clear()
    L = 330
    prompt, cached, total = oa_expect(L)
    want_usage = {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached},
                  "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": total}
    status, _, data = post("/v1/responses", responses_body(L), OPENAI_KEY)
    assert status == 200, data
    obj = json.loads(data)
    assert obj["object"] == "response" and obj["status"] == "completed" and obj["id"].startswith("resp_fake_"), obj
    assert obj["model"] == "codex-x", obj
    out = obj["output"]
    assert len(out) == 1 and out[0]["type"] == "message" and out[0]["role"] == "assistant", out
    assert out[0]["content"][0]["type"] == "output_text" and out[0]["content"][0]["text"] == FAKE_TEXT, out
    assert obj["usage"] == want_usage, obj["usage"]
    rec = last_record()
    assert rec["endpoint"] == "responses" and rec["usage"]["input_tokens"] == prompt, rec

    status, hdrs, data = post("/v1/responses", responses_body(L, stream=True), OPENAI_KEY)
    assert status == 200 and hdrs["content-type"] == "text/event-stream"
    events = sse_json(data)
    names = [e for e, _ in events]
    assert names == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added"] + ["response.output_text.delta"] * 6 + [
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.completed"], names
    for i, (name, d) in enumerate(events):
        assert d["type"] == name and d["sequence_number"] == i, d
    assert events[0][1]["response"]["status"] == "in_progress" and events[0][1]["response"]["usage"] is None
    assert [d["delta"] for e, d in events if e == "response.output_text.delta"] == WORDS
    assert events[10][1]["text"] == FAKE_TEXT and events[11][1]["part"]["text"] == FAKE_TEXT
    assert events[12][1]["item"]["status"] == "completed"
    done = events[-1][1]["response"]
    assert done["status"] == "completed" and done["usage"] == want_usage, done
    assert done["output"][0]["content"][0]["text"] == FAKE_TEXT, done
    assert last_record()["events_sent"] == 14 and last_record()["completed"] is True


def test_models_lists():
    FAKE.clear()
    status, _, data = get("/v1/models", OPENAI_KEY)
    obj = json.loads(data)
    assert status == 200 and obj["object"] == "list", obj
    assert [m["id"] for m in obj["data"]] == ["gpt-fake-mini", "gpt-fake-large", "codex-fake"], obj
    assert last_record()["dialect"] == "openai" and last_record()["endpoint"] == "models"

    status, _, data = get("/v1/models", dict(ANTHROPIC_KEY, **{"anthropic-version": "2023-06-01"}))
    obj = json.loads(data)
    assert status == 200 and [m["id"] for m in obj["data"]] == ["claude-fake-sonnet", "claude-fake-haiku"], obj
    assert obj["data"][0]["type"] == "model" and obj["has_more"] is False, obj
    assert last_record()["dialect"] == "anthropic"

    for path, hdrs, source in (("/v1beta/models", GEMINI_KEY, "header"), ("/v1beta/models?key=k1", {}, "query"),
                               ("/v1/models", GEMINI_KEY, "header"), ("/v1/models?key=k2", {}, "query")):
        status, _, data = get(path, hdrs)
        obj = json.loads(data)
        assert status == 200 and [m["name"] for m in obj["models"]] == [
            "models/gemini-fake-flash", "models/gemini-fake-pro"], (path, obj)
        rec = last_record()
        assert rec["dialect"] == "gemini" and rec["key_source"] == source, rec

    status, _, data = get("/v1/models")
    assert status == 401 and json.loads(data)["error"]["code"] == "invalid_api_key", data
    status, _, data = post("/v1/models", b"{}", OPENAI_KEY)
    assert status == 405, data


# ---- Gemini ----

def test_gemini_generate():
    FAKE.clear()
    # L % 97 and L % 5 both non-zero, then both zero (the fields are omitted)
    for L, path in ((123, "/v1beta/models/gemini-x:generateContent"), (485, "/v1/models/gemini-x:generateContent")):
        assert (L % 97 == 0) == (L % 5 == 0)
        status, _, data = post(path, gemini_body(L), GEMINI_KEY)
        assert status == 200, data
        obj = json.loads(data)
        cand = obj["candidates"]
        assert len(cand) == 1 and cand[0]["content"] == {"role": "model", "parts": [{"text": FAKE_TEXT}]}, cand
        assert cand[0]["finishReason"] == "STOP" and cand[0]["index"] == 0, cand
        assert obj["usageMetadata"] == gemini_usage_expect(L), (L, obj["usageMetadata"])
        assert obj["modelVersion"] == "gemini-x", obj
        rec = last_record()
        assert rec["dialect"] == "gemini" and rec["endpoint"] == "generate_content" and rec["key_source"] == "header"
        assert rec["usage"] == {"promptTokenCount": math.ceil(L / 4) + L % 97, "cachedContentTokenCount": L % 97,
                                "candidatesTokenCount": 7, "thoughtsTokenCount": L % 5,
                                "totalTokenCount": math.ceil(L / 4) + L % 97 + 7 + L % 5}, rec
        row = fake_usage_gemini(L)
        um = obj["usageMetadata"]
        assert row["input_tokens"] == um["promptTokenCount"] - um.get("cachedContentTokenCount", 0), row
        assert row["output_tokens"] == 7 + um.get("thoughtsTokenCount", 0), row
        assert row["reasoning_tokens"] == um.get("thoughtsTokenCount", 0), row

    # key in the query string: accepted, recorded as such, never logged
    status, _, data = post("/v1beta/models/gemini-x:generateContent?key=AIza-query-secret-42", gemini_body(200), {})
    assert status == 200, data
    assert last_record()["key_source"] == "query"
    assert "AIza-query-secret-42" not in FAKE.proc.output()

    status, _, data = post("/v1beta/models/gemini-x:countTokens", gemini_body(101), GEMINI_KEY)
    assert status == 200 and json.loads(data) == {"totalTokens": 26}, data
    assert last_record()["endpoint"] == "gemini_count_tokens"

    status, _, data = post("/v1beta/models/gemini-x:generateContent", b'{"nope":1}', GEMINI_KEY)
    err = json.loads(data)["error"]
    assert status == 400 and err["status"] == "INVALID_ARGUMENT" and err["code"] == 400, data
    status, _, data = post("/v1beta/models/gemini-x:frobnicate", gemini_body(100), GEMINI_KEY)
    assert status == 404, data


def test_gemini_stream():
    FAKE.clear()
    L = 222  # % 97 = 28, % 5 = 2
    status, hdrs, data = post("/v1beta/models/gemini-x:streamGenerateContent?alt=sse", gemini_body(L), GEMINI_KEY)
    assert status == 200 and hdrs["content-type"] == "text/event-stream", hdrs
    assert b"\r\n\r\n" in data
    events = sse_json(data)
    objs = [d for _, d in events]
    assert len(objs) == 6, objs
    assert [o["candidates"][0]["content"]["parts"][0]["text"] for o in objs] == WORDS
    counts = [o["usageMetadata"]["candidatesTokenCount"] for o in objs]
    assert counts == [1, 2, 3, 4, 5, 7], counts
    for o, c in zip(objs, counts):
        assert o["usageMetadata"] == gemini_usage_expect(L, c), o
    assert objs[-1]["candidates"][0]["finishReason"] == "STOP"
    assert all("finishReason" not in o["candidates"][0] for o in objs[:-1])
    rec = last_record()
    assert rec["endpoint"] == "stream_generate_content" and rec["stream"] is True and rec["events_sent"] == 6, rec

    # without alt=sse: one JSON array, written as 7 pieces
    status, hdrs, data = post("/v1/models/gemini-x:streamGenerateContent", gemini_body(L), GEMINI_KEY)
    assert status == 200 and hdrs["content-type"] == "application/json", hdrs
    arr = json.loads(data)
    assert [dict(o, responseId=None) for o in arr] == [dict(o, responseId=None) for o in objs], arr
    assert last_record()["events_sent"] == 7 and last_record()["completed"] is True


# ---- credentials ----

def test_auth_errors_per_dialect():
    FAKE.clear()
    status, _, data = post("/v1/messages", anthropic_body(), {})
    err = json.loads(data)
    assert status == 401 and err["type"] == "error" and err["error"]["type"] == "authentication_error", data

    for path, body in (("/v1/chat/completions", chat_body(100)), ("/v1/responses", responses_body(100))):
        status, _, data = post(path, body, ANTHROPIC_KEY)  # an x-api-key is not an OpenAI credential
        err = json.loads(data)["error"]
        assert status == 401 and err["type"] == "invalid_request_error" and err["code"] == "invalid_api_key", data
        assert err["param"] is None and err["message"], err

    for path in ("/v1beta/models/g:generateContent", "/v1beta/models/g:generateContent?key=",
                 "/v1/models/g:streamGenerateContent?alt=sse"):
        status, _, data = post(path, gemini_body(100), OPENAI_KEY)
        assert status == 401 and json.loads(data) == {"error": {"code": 401, "message": json.loads(data)["error"][
            "message"], "status": "UNAUTHENTICATED"}}, data
    recs = records()
    assert [r["status"] for r in recs] == [401] * 6 and all(r["usage"] is None for r in recs), recs


# ---- scenarios ----

def error_check(dialect, status, data):
    obj = json.loads(data)
    if dialect == "anthropic":
        types = {500: "api_error", 429: "rate_limit_error", 529: "overloaded_error", 401: "authentication_error",
                 403: "permission_error", 400: "invalid_request_error"}
        assert obj["type"] == "error" and obj["error"]["type"] == types[status], (status, obj)
    elif dialect == "openai":
        codes = {500: "server_error", 429: "requests", 529: "server_error", 401: "invalid_request_error",
                 403: "permission_error", 400: "invalid_request_error"}
        assert obj["error"]["type"] == codes[status] and "param" in obj["error"], (status, obj)
    else:
        names = {500: "INTERNAL", 429: "RESOURCE_EXHAUSTED", 529: "UNAVAILABLE", 401: "UNAUTHENTICATED",
                 403: "PERMISSION_DENIED", 400: "INVALID_ARGUMENT"}
        assert obj["error"]["code"] == status and obj["error"]["status"] == names[status], (status, obj)
    return obj


ENDPOINTS = [
    ("anthropic", "/v1/messages", lambda: anthropic_body(), ANTHROPIC_KEY),
    ("anthropic", "/v1/messages/count_tokens", lambda: anthropic_body(), ANTHROPIC_KEY),
    ("openai", "/v1/chat/completions", lambda: chat_body(100), OPENAI_KEY),
    ("openai", "/v1/responses", lambda: responses_body(100), OPENAI_KEY),
    ("gemini", "/v1beta/models/g:generateContent", lambda: gemini_body(100), GEMINI_KEY),
    ("gemini", "/v1beta/models/g:streamGenerateContent?alt=sse", lambda: gemini_body(100), GEMINI_KEY),
]


def test_injected_statuses():
    FAKE.clear()
    for dialect, path, body, key in ENDPOINTS:
        for st in (500, 429, 529, 401, 403):
            # by header
            status, hdrs, data = post(path, body(), dict(key, **{"x-fake-scenario": f"status-{st}"}))
            assert status == st, (path, st, status, data)
            error_check(dialect, st, data)
            # by path prefix
            status, _, data = post(f"/fault/status-{st}{path}", body(), key)
            assert status == st, (path, st, status, data)
            error_check(dialect, st, data)
            rec = last_record()
            assert rec["scenario"] == f"status-{st}" and rec["scenario_applied"] is True, rec
            assert rec["status"] == st and rec["usage"] is None and rec["dialect"] == dialect, rec


def test_retry_after():
    FAKE.clear()
    for dialect, path, body, key in ENDPOINTS:
        status, hdrs, data = post(path, body(), dict(key, **{"x-fake-scenario": "status-429"}))
        assert status == 429 and hdrs["retry-after"] == "1", hdrs
        before = time.time()
        status, hdrs, data = post(f"/fault/status-429,retry-after=37{path}", body(), key)
        assert status == 429 and hdrs["retry-after"] == "37", hdrs
        obj = error_check(dialect, 429, data)
        if dialect == "anthropic":
            reset = hdrs["anthropic-ratelimit-requests-reset"]
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", reset), reset
            t = time.mktime(time.strptime(reset, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
            assert before + 37 - 2 <= t <= time.time() + 37 + 1, (reset, before)
        else:
            assert "anthropic-ratelimit-requests-reset" not in hdrs, hdrs
        if dialect == "openai":
            assert hdrs["x-ratelimit-reset-requests"] == "37s", hdrs
        if dialect == "gemini":
            assert obj["error"]["details"] == [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                                "retryDelay": "37s"}], obj
    # the header overrides the path
    status, hdrs, _ = post("/fault/status-429,retry-after=5/v1/messages", anthropic_body(),
                           dict(ANTHROPIC_KEY, **{"x-fake-scenario": "retry-after=9"}))
    assert status == 429 and hdrs["retry-after"] == "9", hdrs


def test_accounts_share_one_fake():
    FAKE.clear()
    bad = fake_url(FAKE.url, ["status-529"], "acct-bad")
    good = fake_url(FAKE.url, None, "acct-good")
    assert bad == f"{FAKE.url}/acct/acct-bad/fault/status-529", bad
    pb = bad[len(FAKE.url):] + "/v1/messages"
    pg = good[len(FAKE.url):] + "//v1/chat/completions"  # a base URL with a trailing slash
    for _ in range(3):
        status, _, _ = post(pb, anthropic_body(), ANTHROPIC_KEY)
        assert status == 529
        status, _, data = post(pg, chat_body(120), OPENAI_KEY)
        assert status == 200, data
    status, _, _ = post("/v1/messages", anthropic_body(), ANTHROPIC_KEY)
    assert status == 200
    recs = records()
    assert [r["account"] for r in recs] == ["acct-bad", "acct-good"] * 3 + [None], recs
    assert recs[0]["target"] == "/acct/acct-bad/fault/status-529/v1/messages", recs[0]
    stats = FAKE.stats()
    assert stats["acct-bad"] == {"requests": 3, "completed": 3, "incomplete": 0, "status": {"529": 3},
                                 "dialects": {"anthropic": 3}}, stats
    assert stats["acct-good"] == {"requests": 3, "completed": 3, "incomplete": 0, "status": {"200": 3},
                                  "dialects": {"openai": 3}}, stats
    assert stats[""]["requests"] == 1, stats
    # prefixes in either order, several fault segments add up
    status, hdrs, _ = post("/fault/status-429/acct/x.y_z/fault/retry-after=4/v1/messages", anthropic_body(),
                           ANTHROPIC_KEY)
    assert status == 429 and hdrs["retry-after"] == "4" and last_record()["account"] == "x.y_z"
    assert last_record()["scenario"] == "status-429,retry-after=4", last_record()
    FAKE.clear()
    assert FAKE.stats() == {} and records() == []


def test_fail_first():
    FAKE.clear()
    a = fake_url("", ["status-500", "fail-first=2"], "ff-a")
    b = fake_url("", ["status-429", "fail-first=1"], "ff-b")
    got = []
    for _ in range(4):
        got.append(post(a + "/v1/messages", anthropic_body(), ANTHROPIC_KEY)[0])
        got.append(post(b + "/v1/chat/completions", chat_body(100), OPENAI_KEY)[0])
    assert got == [500, 429, 500, 200, 200, 200, 200, 200], got
    recs = records()
    assert [r["scenario_applied"] for r in recs] == [True, True, True, False, False, False, False, False], recs
    assert all(r["scenario"] for r in recs), recs
    # by header: its own counter
    hdr = dict(GEMINI_KEY, **{"x-fake-scenario": "status-529,fail-first=1"})
    got = [post("/v1beta/models/g:generateContent", gemini_body(100), hdr)[0] for _ in range(3)]
    assert got == [529, 200, 200], got
    # DELETE resets the counters
    FAKE.clear()
    assert post(a + "/v1/messages", anthropic_body(), ANTHROPIC_KEY)[0] == 500
    # fail-first=0: never fails
    assert post("/fault/status-500,fail-first=0/v1/messages", anthropic_body(), ANTHROPIC_KEY)[0] == 200


def test_slow_first_byte_and_delays():
    FAKE.clear()
    t0 = time.monotonic()
    status, _, _ = post("/v1/messages", anthropic_body(), dict(ANTHROPIC_KEY, **{"x-fake-scenario": "slow-first-byte-ms=300"}))
    assert status == 200 and time.monotonic() - t0 >= 0.3
    t0 = time.monotonic()
    status, _, _ = post("/fault/slow-first-byte-ms=300,status-500/v1/chat/completions", chat_body(100), OPENAI_KEY)
    assert status == 500 and time.monotonic() - t0 >= 0.3
    t0 = time.monotonic()
    status, _, data = post("/fault/delay-ms-between-events=40/v1beta/models/g:streamGenerateContent?alt=sse",
                           gemini_body(100), GEMINI_KEY)
    assert status == 200 and len(sse_json(data)) == 6 and time.monotonic() - t0 >= 0.2


def cut_stream(path, body, key):
    conn = http.client.HTTPConnection("127.0.0.1", FAKE.port, timeout=10)
    try:
        conn.request("POST", path, body, dict(key, **{"content-type": "application/json"}))
        resp = conn.getresponse()
        assert resp.status == 200
        try:
            data = resp.read()
        except http.client.IncompleteRead as exc:
            return exc.partial
        raise AssertionError(f"stream was not cut: {data!r}")
    finally:
        conn.close()


def test_cut_after_events():
    FAKE.clear()
    cases = [
        ("/fault/cut-after-events=3/v1/messages", anthropic_body(stream=True), ANTHROPIC_KEY, 3),
        ("/fault/cut-after-events=2/v1/chat/completions", chat_body(200, True, True), OPENAI_KEY, 2),
        ("/fault/cut-after-events=5/v1/responses", responses_body(100, True), OPENAI_KEY, 5),
        ("/fault/cut-after-events=4/v1beta/models/g:streamGenerateContent?alt=sse", gemini_body(100), GEMINI_KEY, 4),
        ("/fault/cut-after-events=0/v1beta/models/g:streamGenerateContent?alt=sse", gemini_body(100), GEMINI_KEY, 0),
    ]
    for path, body, key, n in cases:
        partial = cut_stream(path, body, key)
        assert partial.count(b"data: ") == n, (path, partial)
        rec = last_record()
        assert rec["completed"] is False and rec["events_sent"] == n and rec["status"] == 200, rec
    # the JSON array stream: 2 pieces, so "[" and one object, no "]"
    partial = cut_stream("/fault/cut-after-events=2/v1/models/g:streamGenerateContent", gemini_body(100), GEMINI_KEY)
    assert partial.startswith(b"[{") and b",\r\n{" in partial and not partial.rstrip().endswith(b"]"), partial
    # non-streaming: the connection closes with no response at all
    conn = http.client.HTTPConnection("127.0.0.1", FAKE.port, timeout=10)
    try:
        conn.request("POST", "/fault/cut-after-events=0/v1/chat/completions", chat_body(100),
                     dict(OPENAI_KEY, **{"content-type": "application/json"}))
        try:
            conn.getresponse()
            raise AssertionError("got a response")
        except (http.client.RemoteDisconnected, ConnectionResetError):
            pass
    finally:
        conn.close()
    assert last_record()["completed"] is False
    stats = FAKE.stats()[""]
    assert stats["incomplete"] == 7 and stats["completed"] == 0, stats


def test_stall_after_events():
    FAKE.clear()
    st = RawStream("/acct/stall/v1/messages", anthropic_body(stream=True),
                   dict(ANTHROPIC_KEY, **{"x-fake-scenario": "stall-after-events=4"}))
    try:
        st.read_until("4 events", lambda d: d.count(b"data: ") >= 4)
        st.read_for(0.5)  # nothing more arrives, and the socket stays open
        assert st.events() == 4 and not st.eof, st.data
        assert st.data.startswith(b"HTTP/1.1 200"), st.data
        rec = last_record()
        assert rec["completed"] is False and rec["events_sent"] == 4, rec
        assert FAKE.stats()["stall"]["incomplete"] == 0
    finally:
        st.close()
    gwtest.wait_until("the stalled request to end after the client left",
                      lambda: FAKE.stats()["stall"]["incomplete"] == 1, 10)
    assert last_record()["completed"] is False

    # non-streaming: no answer at all, the connection stays open
    st = RawStream("/acct/stall2/fault/stall-after-events=0/v1beta/models/g:generateContent", gemini_body(100),
                   GEMINI_KEY)
    try:
        st.read_for(0.5)
        assert st.data == b"" and not st.eof, st.data
        assert last_record()["completed"] is False and last_record()["status"] == 200
    finally:
        st.close()
    gwtest.wait_until("the stalled request to end", lambda: FAKE.stats()["stall2"]["incomplete"] == 1, 10)

    # stall and cut together: the smaller count wins
    partial = cut_stream("/fault/stall-after-events=5,cut-after-events=2/v1/chat/completions",
                         chat_body(100, True), OPENAI_KEY)
    assert partial.count(b"data: ") == 2, partial

    # the fake still serves after all this
    assert post("/v1/messages", anthropic_body(), ANTHROPIC_KEY)[0] == 200


def test_echo_request():
    FAKE.clear()
    status, _, data = post("/acct/e/v1/chat/completions", chat_body(150),
                           dict(OPENAI_KEY, **{"x-fake-scenario": "echo-request", "anthropic-beta": "b1"}))
    assert status == 200, data
    obj = json.loads(data)
    text = obj["choices"][0]["message"]["content"]
    assert text.startswith(FAKE_TEXT + "\n"), text
    echo = json.loads(text[len(FAKE_TEXT) + 1:])
    assert echo["method"] == "POST" and echo["target"] == "/acct/e/v1/chat/completions", echo
    assert echo["headers"]["authorization"] == OPENAI_KEY["authorization"] and echo["headers"]["anthropic-beta"] == "b1"
    assert echo["body_len"] == 150 and obj["usage"]["completion_tokens"] == 7, obj
    assert last_record()["scenario_applied"] is False

    status, _, data = post("/fault/echo-request/v1/messages", anthropic_body(stream=True), ANTHROPIC_KEY)
    deltas = [d["delta"]["text"] for e, d in sse_json(data) if e == "content_block_delta"]
    assert deltas[:6] == WORDS and len(deltas) == 7 and json.loads(deltas[6][1:])["headers"]["x-api-key"]

    status, _, data = post("/fault/echo-request/v1beta/models/g:streamGenerateContent?alt=sse&key=qk",
                           gemini_body(100), {})
    objs = [d for _, d in sse_json(data)]
    assert len(objs) == 7 and json.loads(objs[6]["candidates"][0]["content"]["parts"][0]["text"][1:])[
        "target"].endswith("?alt=sse&key=qk"), objs
    assert objs[6]["usageMetadata"]["candidatesTokenCount"] == 7 and objs[5]["usageMetadata"][
        "candidatesTokenCount"] == 6


def test_bad_requests():
    FAKE.clear()
    for dialect, path, body, key in ENDPOINTS:
        status, _, data = post(path, body(), dict(key, **{"x-fake-scenario": "status-5OO"}))
        assert status == 400, (path, data)
        error_check(dialect, 400, data)
        status, _, data = post("/fault/slow-first-byte-ms=x" + path, body(), key)
        assert status == 400, (path, data)
        status, _, data = post("/acct/bad!label" + path, body(), key)
        assert status == 400 and b"label" in data, (path, data)
        error_check(dialect, 400, data)
    status, _, data = post("/v1/chat/completions", b'{"model":"m"}', OPENAI_KEY)
    assert status == 400 and json.loads(data)["error"]["type"] == "invalid_request_error", data
    status, _, data = post("/v1/chat/completions", chat_body(100)[:-1] + b',"stream":"yes"}', OPENAI_KEY)
    assert status == 400, data
    status, _, data = post("/v1/responses", b'{"model":"m","input":5}', OPENAI_KEY)
    assert status == 400, data
    status, _, data = post("/v1/messages", b"not json", ANTHROPIC_KEY)
    assert status == 400 and json.loads(data)["error"]["type"] == "invalid_request_error", data
    status, _, data = FAKE.http.request("GET", "/v1/messages", None, ANTHROPIC_KEY)
    assert status == 405, data

    status, _, data = post("/nowhere", b"{}", ANTHROPIC_KEY)
    assert status == 404 and json.loads(data)["error"]["type"] == "not_found_error", data
    rec = last_record()
    assert rec["dialect"] is None and rec["endpoint"] is None and rec["status"] == 404, rec
    status, _, data = get("/healthz")
    assert status == 200 and data == b"ok\n"
    assert last_record()["target"] == "/nowhere"  # /healthz and /_fake are not recorded


def test_seq_survives_clear():
    FAKE.clear()
    post("/v1/messages", anthropic_body(), ANTHROPIC_KEY)
    seq = last_record()["seq"]
    FAKE.clear()
    post("/v1/messages", anthropic_body(), ANTHROPIC_KEY)
    recs = records()
    assert len(recs) == 1 and recs[0]["seq"] == seq + 1, recs


def main():
    global FAKE
    with gwtest.Workdir("fakeprovider") as wd:
        FAKE = gwtest.FakeProvider(wd)
        tests = [v for k, v in sorted(globals().items()) if k.startswith("test_") and callable(v)]
        code = 1
        try:
            gwtest.run_main(tests)
        except SystemExit as exc:
            code = exc.code
        finally:
            rc = FAKE.stop()
        if rc != 0:
            print(f"FAIL the fake provider exited with {rc}:\n{FAKE.proc.output()[-4000:]}")
            code = 1
        if code:
            raise SystemExit(code)


if __name__ == "__main__":
    main()
