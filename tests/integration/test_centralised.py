# SPDX-License-Identifier: Apache-2.0
"""Centralised mode end to end: aicarpool-hub with its in-process edge and the
fake provider as real processes on loopback. Creates group, account, binding
and key through the admin API, sends streaming and non-streaming Anthropic
requests, and checks the response bytes, the exact usage rows, which
credential reached the provider, and the error answers. Runs on SQLite and,
when GW_TEST_MYSQL_DSN is set, on MariaDB."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import gwtest  # noqa: E402
from gwtest import FAKE_TEXT, fake_usage  # noqa: E402

UPSTREAM_SECRET = "sk-upstream-account-secret-123456"


def request_body(text="Say hello", stream=False, max_tokens=256, pad=0):
    body = {
        "model": "claude-sonnet-4-5-20250929",
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": text + (" x" * pad)}],
    }
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":")).encode()


def check_usage_row(row, body_len, max_tokens=256, status=200):
    want = fake_usage(body_len, max_tokens)
    for field, value in want.items():
        assert row[field] == value, f"{field}: want {value}, got {row[field]} in {row}"
    assert row["cache_write_tokens"] == want["cache_write_5m_tokens"] + want["cache_write_1h_tokens"], row
    assert row["model"] == "claude-sonnet-4-5-20250929", row
    assert row["status"] == status, row
    assert row["partial"] in (False, 0), row
    assert row["priced"] is True and row["cost"] is not None, row
    # claude-sonnet-4-5: 3 / 15 / 0.30 read / 3.75 write 5m / 6 write 1h USD per Mtok.
    total = (want["input_tokens"] * 3_000_000 + want["output_tokens"] * 15_000_000
             + want["cache_read_tokens"] * 300_000 + want["cache_write_5m_tokens"] * 3_750_000
             + want["cache_write_1h_tokens"] * 6_000_000)
    assert row["cost_micros"] == (total + 500_000) // 1_000_000, (row, total)


def scenario(db):
    with gwtest.Workdir("centralised") as wd:
        fake = gwtest.FakeProvider(wd)
        hub = gwtest.Hub(wd, db=db)
        try:
            key_id, key = hub.setup_group(fake.url, api_key=UPSTREAM_SECRET)
            edge = hub.edge

            # Non-streaming, key in x-api-key, Claude Code style query string.
            body = request_body()
            status, hdrs, data = edge.request("POST", "/v1/messages?beta=true", body,
                                              {"x-api-key": key, "content-type": "application/json",
                                               "anthropic-version": "2023-06-01",
                                               "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14",
                                               "x-claude-code-session-id": "sess-1"})
            assert status == 200, (status, data)
            msg = json.loads(data)
            assert msg["content"][0]["text"] == FAKE_TEXT, msg
            assert msg["usage"]["input_tokens"] == fake_usage(len(body))["input_tokens"], msg

            # Streaming, key as Bearer (the Anthropic SDK's way), behind a path prefix.
            sbody = request_body("Stream please", stream=True, pad=40)
            status, hdrs, sdata = edge.request("POST", "/api/v1/messages", sbody,
                                               {"authorization": f"Bearer {key}", "content-type": "application/json",
                                                "anthropic-version": "2023-06-01"})
            assert status == 200, (status, sdata)
            assert hdrs["content-type"].startswith("text/event-stream"), hdrs
            events = gwtest.parse_sse(sdata)
            names = [e for e, _ in events]
            assert names[0] == "message_start" and names[-1] == "message_stop", names
            text = "".join(d["delta"]["text"] for e, d in events if e == "content_block_delta")
            assert text.strip() == FAKE_TEXT, text

            # The provider saw the account credential, never the gateway key, and
            # the client's own headers and query string survived.
            seen = [r for r in fake.requests() if "/v1/messages" in r["target"]]
            assert len(seen) == 2, seen
            for r in seen:
                assert r["headers"].get("x-api-key") == UPSTREAM_SECRET, r["headers"]
                assert key not in json.dumps(r), "gateway key leaked upstream"
                assert "authorization" not in r["headers"], r["headers"]
            assert seen[0]["target"] == "/v1/messages?beta=true", seen[0]["target"]
            assert seen[0]["headers"]["anthropic-beta"] == "claude-code-20250219,interleaved-thinking-2025-05-14"
            assert seen[0]["headers"]["x-claude-code-session-id"] == "sess-1"
            assert seen[0]["body_len"] == len(body) and seen[1]["body_len"] == len(sbody)

            rows = hub.usage(key_id, 2)
            assert len(rows) == 2, rows
            by_len = {r["input_tokens"]: r for r in rows}
            check_usage_row(by_len[fake_usage(len(body))["input_tokens"]], len(body))
            check_usage_row(by_len[fake_usage(len(sbody))["input_tokens"]], len(sbody))
            assert len({r["request_id"] for r in rows}) == 2, rows

            # Errors, in Anthropic's format, and nothing billed for them.
            fake.clear()
            status, _, data = edge.request("POST", "/v1/messages", body, {"x-api-key": "aicp_wrong_key_xyz"})
            err = json.loads(data)
            assert status == 401 and err["type"] == "error" and err["error"]["type"] == "authentication_error", data
            status, _, data = edge.request("POST", "/v1/messages", body, {})
            assert status == 401, data
            status, _, data = edge.request("POST", "/v1/messages", b'{"model": "x", "messages": [', {"x-api-key": key})
            err = json.loads(data)
            assert status == 400 and err["error"]["type"] == "invalid_request_error", data
            raw = gwtest.raw_http(hub.edge_port, (
                "POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: %s\r\ncontent-type: application/json\r\n"
                "content-length: %d\r\nconnection: close\r\n\r\n" % (key, 1 << 30)).encode())
            assert raw.startswith(b"HTTP/1.1 413"), raw[:200]
            assert fake.requests() == [], "a rejected request reached the provider"
            # Still exactly two rows: nothing billed for requests that never reached a provider.
            _, data = hub.api("GET", f"/api/usage?key_id={key_id}", expect=200)
            assert len(data["items"]) == 2, data
        finally:
            hub_rc = hub.stop()
            fake.stop()
        assert hub_rc == 0, f"hub exit status {hub_rc}:\n{hub.proc.output()[-4000:]}"


def test_centralised_sqlite():
    scenario(None)


def test_centralised_mysql():
    dsn = gwtest.mysql_dsn()
    if not dsn:
        print("GW_TEST_MYSQL_DSN not set: MariaDB run skipped")
        return "skip"
    scenario(dsn)


if __name__ == "__main__":
    gwtest.run_main([test_centralised_sqlite, test_centralised_mysql])
