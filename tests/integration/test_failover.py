# SPDX-License-Identifier: Apache-2.0
"""Failover, cooldowns, partial billing and session affinity through the
edge: aicarpool-hub with its in-process edge, a second standalone
aicarpool-edge attached to the same hub over an ipc:// link, and one fake
provider whose accounts fail in different ways through /fault/ prefixes in
their base URLs. Each scenario has its own group (accounts ordered by
priority) so cooldowns of one cannot leak into another:

- 500 -> the next account answers, one usage row, for the account that did;
- 429 with retry-after -> the next answers; the 429 account is skipped until
  the cooldown passes, then used again;
- 529 -> the next answers, and the 529 account is back within seconds;
- 401 -> the next answers, and the hub counts the auth failure;
- connection refused -> the next answers;
- every account failing -> the last answer (429 with retry-after) relayed;
- a stream cut by the provider -> no failover, the client sees the cut, the
  usage row is partial with the usage reported before the cut;
- a client that goes away mid-stream -> partial row;
- an attempt that fails after the failover time budget is relayed;
- one session id lands on one account across requests and on the same
  account through both edges."""
import json
import math
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import gwtest  # noqa: E402
from gwtest import FAKE_TEXT, fake_usage  # noqa: E402

SECRET = "sk-upstream-failover-secret"
MODEL = "claude-fake-sonnet"


def body(text="Say hello", stream=False, max_tokens=256):
    b = {"model": MODEL, "max_tokens": max_tokens, "messages": [{"role": "user", "content": text}]}
    if stream:
        b["stream"] = True
    return json.dumps(b, separators=(",", ":")).encode()


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connections are refused
    return port


class Scenario:
    """One group with its accounts (label, base URL, priority) and a key."""

    def __init__(self, hub, fake, name, accounts):
        self.hub, self.fake = hub, fake
        _, g = hub.api("POST", "/api/groups", {"name": f"{name}-{os.getpid()}"}, expect=201)
        self.ids = {}
        for label, url, prio in accounts:
            _, a = hub.api("POST", "/api/accounts", {"name": f"{name}-{label}", "kind": "anthropic",
                                                     "base_url": url, "api_key": SECRET,
                                                     "priority": prio, "weight": 1}, expect=201)
            hub.api("POST", f"/api/groups/{g['id']}/bindings", {"account_id": a["id"]}, expect=201)
            self.ids[label] = a["id"]
        _, k = hub.api("POST", "/api/keys", {"group_id": g["id"], "name": f"{name}-key"}, expect=201)
        self.key_id, self.key = k["id"], k["key"]

    def post(self, b=None, headers=None, edge=None):
        h = {"x-api-key": self.key, "content-type": "application/json", "anthropic-version": "2023-06-01"}
        h.update(headers or {})
        return (edge or self.hub.edge).request("POST", "/v1/messages", b or body(), h)

    def count(self, label):
        return self.fake.stats().get(label, {}).get("requests", 0)

    def rows(self, n):
        return self.hub.usage(self.key_id, n)


def raw_stream(port, key, b, stop_after=None):
    """POSTs a streaming request over a raw socket. Reads until the server
    closes, or until `stop_after` appears (then closes: a client abort).
    Returns (head, body bytes as received)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        s.sendall(("POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: %s\r\ncontent-type: application/json\r\n"
                   "connection: close\r\ncontent-length: %d\r\n\r\n" % (key, len(b))).encode() + b)
        got = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
            if stop_after is not None and stop_after in got:
                break
        head, _, rest = got.partition(b"\r\n\r\n")
        return head.decode(), rest
    finally:
        s.close()


def rid_of(head):
    for line in head.split("\r\n"):
        if line.lower().startswith("x-aicarpool-request-id:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(head)


def row_for(rows, rid):
    for r in rows:
        if r["request_id"] == rid:
            return r
    raise AssertionError((rid, rows))


def check_failover(hub, fake):
    fu = gwtest.fake_url
    port = closed_port()

    # 500 -> next.
    s = Scenario(hub, fake, "f500", [("a500", fu(fake.url, "status-500", "a500"), 0),
                                     ("aok", fu(fake.url, None, "aok"), 1)])
    hub.wait_edge_current()
    b = body()
    st, h, data = s.post(b)
    assert st == 200 and json.loads(data)["content"][0]["text"] == FAKE_TEXT, (st, data)
    assert s.count("a500") == 1 and s.count("aok") == 1
    rows = s.rows(1)
    assert len(rows) == 1 and rows[0]["account_id"] == s.ids["aok"], rows
    assert rows[0]["input_tokens"] == fake_usage(len(b))["input_tokens"] and rows[0]["status"] == 200, rows

    # 429 with retry-after -> next; skipped while cooling down; back after.
    s = Scenario(hub, fake, "f429", [("b429", fu(fake.url, "status-429,retry-after=2,fail-first=1", "b429"), 0),
                                     ("bok", fu(fake.url, None, "bok"), 1)])
    hub.wait_edge_current()
    t0 = time.monotonic()
    st, _, _ = s.post()
    assert st == 200 and s.count("b429") == 1 and s.count("bok") == 1
    st, _, _ = s.post()
    assert st == 200 and s.count("b429") == 1 and s.count("bok") == 2, "the 429 account was not skipped"

    def back():
        st, _, _ = s.post()
        assert st == 200
        return s.count("b429") == 2
    gwtest.wait_until("the 429 account back after its cooldown", back, seconds=20, interval=0.25)
    waited = time.monotonic() - t0
    assert waited >= 1.5, f"the cooldown of 2 s ended after {waited:.2f} s"
    rows = s.rows(s.count("bok") + 1)
    assert {r["account_id"] for r in rows} == {s.ids["b429"], s.ids["bok"]}, rows
    assert all(r["status"] == 200 for r in rows), rows

    # 529 -> next, and no long cooldown.
    s = Scenario(hub, fake, "f529", [("c529", fu(fake.url, "status-529,fail-first=1", "c529"), 0),
                                     ("cok", fu(fake.url, None, "cok"), 1)])
    hub.wait_edge_current()
    t0 = time.monotonic()
    st, _, _ = s.post()
    assert st == 200 and s.count("c529") == 1 and s.count("cok") == 1

    def c_back():
        st, _, _ = s.post()
        assert st == 200
        return s.count("c529") == 2
    gwtest.wait_until("the 529 account back", c_back, seconds=10, interval=0.2)
    assert time.monotonic() - t0 < 8

    # 401 -> next; the hub hears about the account.
    s = Scenario(hub, fake, "f401", [("d401", fu(fake.url, "status-401", "d401"), 0),
                                     ("dok", fu(fake.url, None, "dok"), 1)])
    hub.wait_edge_current()
    st, _, _ = s.post()
    assert st == 200 and s.count("d401") == 1 and s.count("dok") == 1

    def counted():
        _, a = hub.api("GET", f"/api/accounts/{s.ids['d401']}", expect=200)
        return a["auth_failures"] >= 1
    gwtest.wait_until("the hub to count the 401", counted, seconds=15)

    # Connection refused -> next.
    s = Scenario(hub, fake, "fconn", [("dead", f"http://127.0.0.1:{port}", 0),
                                      ("eok", fu(fake.url, None, "eok"), 1)])
    hub.wait_edge_current()
    st, _, data = s.post()
    assert st == 200 and s.count("eok") == 1, (st, data)
    rows = s.rows(1)
    assert rows[0]["account_id"] == s.ids["eok"], rows

    # Everything fails: the last answer is relayed as it came.
    s = Scenario(hub, fake, "fall", [("g500", fu(fake.url, "status-500", "g500"), 0),
                                     ("g429", fu(fake.url, "status-429,retry-after=7", "g429"), 1)])
    hub.wait_edge_current()
    st, h, data = s.post()
    err = json.loads(data)
    assert st == 429 and err["error"]["type"] == "rate_limit_error", (st, data)
    assert h.get("retry-after") == "7", h
    assert s.count("g500") == 1 and s.count("g429") == 1
    rows = s.rows(1)
    assert rows[0]["status"] == 429 and rows[0]["account_id"] == s.ids["g429"], rows
    assert rows[0]["input_tokens"] == 0 and rows[0]["output_tokens"] == 0, rows


def check_partial(hub, fake):
    fu = gwtest.fake_url
    # The provider cuts the stream after 3 events: no failover after the
    # first byte, the client sees the cut, billed as partial.
    s = Scenario(hub, fake, "fcut", [("hcut", fu(fake.url, "cut-after-events=3", "hcut"), 0),
                                     ("hok", fu(fake.url, None, "hok"), 1)])
    hub.wait_edge_current()
    b = body(stream=True)
    head, rest = raw_stream(hub.edge_port, s.key, b)
    assert head.startswith("HTTP/1.1 200"), head
    assert b"message_start" in rest and b"message_stop" not in rest, rest
    assert not rest.endswith(b"0\r\n\r\n"), "the cut stream ended cleanly"
    assert s.count("hok") == 0, "failed over after the first byte"
    row = row_for(s.rows(1), rid_of(head))
    want = fake_usage(len(b))
    assert row["partial"] is True and row["account_id"] == s.ids["hcut"], row
    assert row["input_tokens"] == want["input_tokens"], row
    assert row["cache_read_tokens"] == want["cache_read_tokens"], row
    assert row["output_tokens"] == 1, row  # what message_start reported

    # The client goes away mid-stream.
    s = Scenario(hub, fake, "fabort", [("slow", fu(fake.url, "delay-ms-between-events=300", "slow"), 0)])
    hub.wait_edge_current()
    b = body("abort me", stream=True)
    head, rest = raw_stream(hub.edge_port, s.key, b, stop_after=b"message_start")
    row = row_for(s.rows(1), rid_of(head))
    assert row["partial"] is True and row["input_tokens"] == fake_usage(len(b))["input_tokens"], row

    def dropped():
        recs = [r for r in fake.requests() if r.get("account") == "slow"]
        return recs and recs[-1]["completed"] is False and recs[-1]["events_sent"] < 12
    gwtest.wait_until("the provider to see the abort", dropped, seconds=15)


def wait_edge2_current(hub, edge2):
    def current():
        st, _, data = edge2.request("GET", "/readyz")
        _, status = hub.api("GET", "/api/status", expect=200)
        return st == 200 and json.loads(data)["snapshot_version"] >= status["config_version"]
    gwtest.wait_until("the second edge's snapshot", current, seconds=15)


def check_budget(hub, fake, edge2):
    """The second edge runs with --failover-budget-ms 400: an answer that
    fails after 600 ms is relayed, not failed over; the hub's edge (30 s
    budget) fails over."""
    fu = gwtest.fake_url
    s = Scenario(hub, fake, "fbudget", [("slow500", fu(fake.url, "slow-first-byte-ms=600,status-500", "slow500"), 0),
                                        ("bok2", fu(fake.url, None, "bok2"), 1)])
    hub.wait_edge_current()
    wait_edge2_current(hub, edge2)
    st, _, data = s.post(edge=edge2)
    assert st == 500 and json.loads(data)["error"]["type"] == "api_error", (st, data)
    assert s.count("bok2") == 0, "failed over after the budget"
    st, _, _ = s.post()
    assert st == 200 and s.count("bok2") == 1


def check_affinity(hub, fake, edge2):
    fu = gwtest.fake_url
    labels = ["s1", "s2", "s3"]
    s = Scenario(hub, fake, "aff", [(lb, fu(fake.url, None, lb), 0) for lb in labels])
    hub.wait_edge_current()
    wait_edge2_current(hub, edge2)

    def landed(edge, session):
        before = {lb: s.count(lb) for lb in labels}
        st, _, data = s.post(headers={"x-claude-code-session-id": session}, edge=edge)
        assert st == 200, (st, data)
        after = {lb: s.count(lb) for lb in labels}
        moved = [lb for lb in labels if after[lb] != before[lb]]
        assert len(moved) == 1, (before, after)
        return moved[0]

    homes = {}
    for i in range(8):
        session = f"session-{i}-{os.getpid()}"
        first = landed(hub.edge, session)
        for _ in range(2):
            assert landed(hub.edge, session) == first, session
        assert landed(edge2, session) == first, f"{session}: the edges disagree"
        homes[session] = first
    assert len(set(homes.values())) >= 2, f"every session on one account: {homes}"


def scenario(db):
    with gwtest.Workdir("failover") as wd:
        fake = gwtest.FakeProvider(wd)
        link = f"ipc://{wd}/hub-link.ipc"
        hub = gwtest.Hub(wd, db=db, extra=["--link", link])
        edge2, rc2 = None, 0
        try:
            edge_id, secret = hub.enrol_edge("edge-two", "test")
            edge2 = gwtest.Proc("edge2", [os.path.join(gwtest.BIN_DIR, "edge", "aicarpool-edge"),
                                          "--listen", "127.0.0.1:0", "--hub", link, "--edge-id", edge_id,
                                          "--data", os.path.join(wd, "edge2-data"),
                                          "--poll-interval-ms", "100", "--usage-flush-ms", "100",
                                          "--failover-budget-ms", "400"], cwd=wd,
                                env={"AICARPOOL_ENROL_SECRET": secret})

            def edge2_port():
                for line in edge2.output().splitlines():
                    if "EDGE-LISTEN" in line and "127.0.0.1:" in line:
                        return int(line.split("127.0.0.1:")[1].split()[0])
                assert edge2.alive(), edge2.output()[-4000:]
                return None
            e2 = gwtest.Http(gwtest.wait_until("edge2 listening", edge2_port, seconds=20))

            check_failover(hub, fake)
            check_partial(hub, fake)
            check_budget(hub, fake, e2)
            check_affinity(hub, fake, e2)
        finally:
            if edge2 is not None:
                rc2 = edge2.stop()
            hub_rc = hub.stop()
            fake.stop()
        assert rc2 == 0, f"edge2 exit status {rc2}:\n{edge2.output()[-4000:]}"
        assert hub_rc == 0, f"hub exit status {hub_rc}:\n{hub.proc.output()[-4000:]}"


def test_failover_sqlite():
    scenario(None)


def test_failover_mysql():
    dsn = gwtest.mysql_dsn()
    if not dsn:
        print("GW_TEST_MYSQL_DSN not set: MariaDB run skipped")
        return "skip"
    scenario(dsn)


if __name__ == "__main__":
    gwtest.run_main([test_failover_sqlite, test_failover_mysql])
