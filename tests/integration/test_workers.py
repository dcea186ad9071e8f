# SPDX-License-Identifier: Apache-2.0
"""The edge with several worker threads: the hub's in-process edge runs with
--edge-workers 2 (two loops sharing the port with SO_REUSEPORT). 200
concurrent requests (python threads, streaming and not) are all answered
correctly, served by both workers and billed exactly once; /metrics adds the
workers' shards up to the same totals. SIGTERM while 5 slow streams are in
flight: the edge stops accepting, the streams complete, their usage is
billed, and the hub exits 0."""
import json
import os
import re
import signal
import socket
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import gwtest  # noqa: E402
from gwtest import FAKE_TEXT, fake_usage  # noqa: E402

N_CONCURRENT = 200
N_SLOW = 5
SLOW_SCENARIO = "delay-ms-between-events=250"


def request_body(i, stream):
    body = {"model": "claude-sonnet-4-5-20250929", "max_tokens": 256,
            "messages": [{"role": "user", "content": f"request {i}" + " x" * i}]}
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":")).encode()


def answer_text(stream, data):
    if not stream:
        return json.loads(data)["content"][0]["text"]
    events = gwtest.parse_sse(data)
    assert events and events[-1][0] == "message_stop", events[-3:]
    return "".join(d["delta"]["text"] for e, d in events if e == "content_block_delta").strip()


def metrics(edge):
    status, hdrs, data = edge.request("GET", "/metrics")
    assert status == 200, (status, data)
    assert hdrs["content-type"].startswith("text/plain; version=0.0.4"), hdrs
    samples = {}
    for line in data.decode().splitlines():
        if line.startswith("#") or not line:
            continue
        series, value = line.rsplit(" ", 1)
        samples[series] = float(value)
    return samples


def msum(samples, family, *must):
    total = 0.0
    for series, v in samples.items():
        name = series.split("{", 1)[0]
        if name == family and all(m in series for m in must):
            total += v
    return total


def edge_refuses(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            # Accepted by a listener that is still open: not yet.
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return False
    except OSError:
        return True


def run_requests(edge, key, specs, headers=None, timeout=120):
    """Runs one request per spec (index, stream) in its own thread, all
    released at once; returns [(body_len, stream, status, headers, data)]."""
    results = [None] * len(specs)
    barrier = threading.Barrier(len(specs))

    def one(slot, i, stream):
        body = request_body(i, stream)
        hdrs = {"x-api-key": key, "content-type": "application/json", "anthropic-version": "2023-06-01"}
        hdrs.update(headers or {})
        try:
            barrier.wait(timeout=60)
            status, rh, data = edge.request("POST", "/v1/messages", body, hdrs, timeout=timeout)
            results[slot] = (len(body), stream, status, rh, data)
        except Exception as exc:  # reported by the caller
            results[slot] = (len(body), stream, None, {}, repr(exc).encode())

    threads = [threading.Thread(target=one, args=(slot, i, s)) for slot, (i, s) in enumerate(specs)]
    for t in threads:
        t.start()
    return threads, results


def check_answers(results):
    rids = {}
    for body_len, stream, status, rh, data in results:
        assert status == 200, (status, data[:500])
        assert answer_text(stream, data) == FAKE_TEXT, data[:500]
        rid = rh.get("x-aicarpool-request-id")
        assert rid and rid not in rids, (rid, rh)
        rids[rid] = body_len
    return rids


def check_rows(rows, rids):
    by_rid = {r["request_id"]: r for r in rows}
    assert len(by_rid) == len(rows), "a request was billed twice"
    for rid, body_len in rids.items():
        row = by_rid.get(rid)
        assert row is not None, f"request {rid} not billed"
        for field, value in fake_usage(body_len).items():
            assert row[field] == value, (field, row)
        assert row["partial"] in (False, 0) and row["status"] == 200, row
    return by_rid


def test_workers():
    with gwtest.Workdir("workers") as wd:
        fake = gwtest.FakeProvider(wd)
        hub = gwtest.Hub(wd, extra=["--edge-workers", "2"])
        try:
            assert re.search(r"edge listening on 127\.0\.0\.1:\d+ \(HTTP, 2 workers\)", hub.proc.output()), \
                hub.proc.output()[-2000:]
            key_id, key = hub.setup_group(fake.url)

            # 200 at once, half of them streams.
            specs = [(i, i % 2 == 1) for i in range(N_CONCURRENT)]
            threads, results = run_requests(hub.edge, key, specs)
            for t in threads:
                t.join(180)
                assert not t.is_alive(), "a request did not finish"
            rids = check_answers(results)
            assert len(rids) == N_CONCURRENT
            # Request ids are <process>-<worker>-<n>: both workers served.
            workers = {rid.rsplit("-", 2)[1] for rid in rids}
            assert workers == {"0", "1"}, workers

            rows = hub.usage(key_id, N_CONCURRENT)
            assert len(rows) == N_CONCURRENT, len(rows)
            check_rows(rows, rids)

            m = metrics(hub.edge)
            assert msum(m, "aicarpool_edge_requests_total") == N_CONCURRENT, m
            assert msum(m, "aicarpool_edge_requests_total", 'dialect="anthropic"', 'status="200"') == N_CONCURRENT
            assert msum(m, "aicarpool_edge_request_duration_seconds_count", 'dialect="anthropic"') == N_CONCURRENT
            assert msum(m, "aicarpool_edge_upstream_attempts_total", 'outcome="ok"') == N_CONCURRENT
            assert msum(m, "aicarpool_edge_tokens_total", 'kind="input"') == sum(r["input_tokens"] for r in rows)
            assert msum(m, "aicarpool_edge_tokens_total", 'kind="output"') == sum(r["output_tokens"] for r in rows)
            assert m["aicarpool_edge_workers"] == 2, m
            assert m["aicarpool_edge_open_connections"] >= 1, m  # this scrape's own
            assert m["aicarpool_edge_in_flight_requests"] == 0, m
            assert m["aicarpool_edge_snapshot_version"] >= 1, m
            assert msum(m, "aicarpool_edge_errors_total") == 0, m

            # SIGTERM with slow streams in flight: they finish and are billed.
            fake.clear()
            slow_specs = [(1000 + i, True) for i in range(N_SLOW)]
            threads, slow = run_requests(hub.edge, key, slow_specs, {"x-fake-scenario": SLOW_SCENARIO})
            gwtest.wait_until("the slow streams to reach the provider",
                              lambda: len(fake.requests()) >= N_SLOW, 30)
            hub.proc.p.send_signal(signal.SIGTERM)
            gwtest.wait_until("the edge to stop accepting", lambda: edge_refuses(hub.edge_port), 15)
            for t in threads:
                t.join(60)
                assert not t.is_alive(), "a slow stream did not finish"
            slow_rids = check_answers(slow)
            hub_rc = hub.proc.p.wait(60)
            out = hub.proc.output()
            assert hub_rc == 0, f"hub exit status {hub_rc}:\n{out[-4000:]}"
            assert "EDGE-DRAIN" in out, out[-3000:]
            assert "aborting" not in out, out[-3000:]
        finally:
            hub.stop()
            fake.stop()

        # The usage of the drained streams reached the store before the exit.
        hub2 = gwtest.Hub(wd, extra=["--edge-workers", "1"])
        try:
            _, data = hub2.api("GET", f"/api/usage?key_id={key_id}&limit=1000", expect=200)
            rows = data["items"]
            assert len(rows) == N_CONCURRENT + N_SLOW, len(rows)
            check_rows(rows, {**rids, **slow_rids})
        finally:
            rc2 = hub2.stop()
        assert rc2 == 0, hub2.proc.output()[-4000:]


if __name__ == "__main__":
    gwtest.run_main([test_workers])
