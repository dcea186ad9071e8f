# SPDX-License-Identifier: Apache-2.0
"""Distributed mode under failure, real processes on loopback: an edge killed
with SIGKILL during streaming and non-streaming load and restarted on the
same data dir; the hub frozen for 30 s (SIGSTOP, a partition as the edges
see it) and killed and restarted while usage batches are in flight; an edge
restarted while the hub is down (serves from its encrypted snapshot on disk);
refused peers (wrong enrolment secret, unknown edge, a certificate from
another CA, unauthenticated requests, garbage and oversized frames) while the
hub keeps serving the good edges.

Exactly-once, as checked here (gwtest.check_usage_exact): every request
whose response a client received completely has exactly one usage row, not
partial, with the fake provider's usage; no request id has two rows; every
other row belongs to a request some client saw interrupted, and there are
no more of them than interrupted requests."""
import os
import select
import signal
import socket
import ssl
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "lib"))
import gwtest  # noqa: E402

UPSTREAM_SECRET = "sk-upstream-failures-secret-24680"
STREAM_SCENARIO = "delay-ms-between-events=25"
PLAIN_SCENARIO = "slow-first-byte-ms=40"


def send(port, key, stream=False, text="hello"):
    body = gwtest.anthropic_body(text, stream=stream)
    hdrs = {"x-api-key": key, "content-type": "application/json", "anthropic-version": "2023-06-01"}
    status, h, data = gwtest.Http(port).request("POST", "/v1/messages", body, hdrs, timeout=30)
    return status, h.get("x-aicarpool-request-id"), len(body), data


def wait_complete(loads, n, seconds=30):
    """Waits until the loads together completed n more responses."""
    base = sum(len(ld.complete) for ld in loads)
    gwtest.wait_until(f"{n} more completed responses", lambda: sum(len(ld.complete) for ld in loads) >= base + n,
                      seconds)


def settle(hub, key_id, loads, edges, seconds=60):
    """Waits until every completed response has its row and every edge
    reports nothing pending (GET /api/edges usage_pending 0 after a
    heartbeat newer than the end of the load), then returns the rows."""
    want = set()
    for ld in loads:
        want |= set(ld.complete)

    def probe():
        rows = hub.all_usage(key_id)
        have = {r["request_id"] for r in rows}
        if not want <= have:
            return None
        listing = hub.edges()
        for e in edges:
            got = listing.get(e.edge_id)
            if got is None or got.get("usage_pending", 0) != 0:
                return None
        return rows
    rows = gwtest.wait_until("usage of every completed response at the hub, nothing pending", probe, seconds,
                             interval=0.2)
    # Pending 0 on every edge means nothing more can arrive: read once more.
    return hub.all_usage(key_id)


def count_broken(loads):
    return sum(len(ld.broken) for ld in loads)


def kill_all(hub, edges, fake):
    for e in edges:
        try:
            e.stop(signal.SIGKILL)
        except Exception:  # noqa: BLE001 - best effort on the failure path
            pass
    try:
        hub.proc.p.send_signal(signal.SIGCONT)
        hub.proc.stop(signal.SIGKILL)
    except Exception:  # noqa: BLE001
        pass
    fake.stop()


def setup(wd, n_edges, link="tcp", db=None, edge_extra=None):
    fake = gwtest.FakeProvider(wd)
    hub = gwtest.Hub(wd, db=db, edge_listen=False, link=link)
    edges = []
    for i in range(n_edges):
        edge_id, secret = hub.enrol_edge(f"f-edge-{i}-{time.monotonic_ns()}", f"region-{i}")
        edges.append(gwtest.RemoteEdge(wd, hub, edge_id, secret, region=f"region-{i}", name=f"edge{i}",
                                       extra=["--usage-flush-ms", "20"] + (edge_extra or [])))
    key_id, key = hub.setup_group(fake.url, api_key=UPSTREAM_SECRET)
    v = hub.config_version()
    for e in edges:
        e.wait_ready(min_version=v)
    return fake, hub, edges, key_id, key


def test_kill9_edge_under_load():
    with gwtest.Workdir("kill9-edge") as wd:
        fake, hub, edges, key_id, key = setup(wd, 2)
        loads = []
        try:
            victim, other = edges
            for ed in (victim, other):
                for stream, scen in ((True, STREAM_SCENARIO), (False, PLAIN_SCENARIO)):
                    for j in range(2):
                        ld = gwtest.Load(lambda ed=ed: ed.port, key, stream=stream, scenario=scen,
                                         name=f"{ed.name}-{'s' if stream else 'n'}{j}")
                        ld.start()
                        loads.append(ld)
            wait_complete(loads, 40)
            for _ in range(2):
                victim.kill()
                victim.port = None
                victim.start()
                victim.wait_ready()
                wait_complete(loads, 30)
            for ld in loads:
                ld.stop()
            for ld in loads:
                ld.join(30)
            rows = settle(hub, key_id, loads, edges)
            complete, extra = gwtest.check_usage_exact(rows, loads)
            assert extra <= count_broken(loads), (extra, count_broken(loads))
            assert complete >= 100, complete
            assert any(ld.broken for ld in loads if ld.name.startswith("edge0")), "the kill interrupted nothing"
            print(f"  kill -9: {complete} complete, {count_broken(loads)} interrupted, {extra} rows for interrupted")
            for e in edges:
                assert e.stop() == 0
            assert hub.stop() == 0
        except BaseException:
            for ld in loads:
                ld.stop()
            kill_all(hub, edges, fake)
            raise
        fake.stop()


def test_hub_partition_30s_and_restarts():
    with gwtest.Workdir("hub-down") as wd:
        fake, hub, edges, key_id, key = setup(wd, 2)
        loads = []
        try:
            for ed in edges:
                for stream, scen in ((True, STREAM_SCENARIO), (False, PLAIN_SCENARIO)):
                    ld = gwtest.Load(lambda ed=ed: ed.port, key, stream=stream, scenario=scen,
                                     name=f"{ed.name}-{'s' if stream else 'n'}")
                    ld.start()
                    loads.append(ld)
            wait_complete(loads, 20)

            # Partition: the hub neither answers nor closes its connections.
            hub.proc.p.send_signal(signal.SIGSTOP)
            before = {ld.name: len(ld.complete) for ld in loads}
            errors_before = sum(ld.errors for ld in loads)
            t_end = time.monotonic() + 30
            try:
                gwtest.wait_until("30 s of hub partition", lambda: time.monotonic() >= t_end, 31, interval=0.5)
            finally:
                hub.proc.p.send_signal(signal.SIGCONT)
            for ld in loads:
                assert len(ld.complete) > before[ld.name] + 10, f"{ld.name} stalled while the hub was away"
            assert sum(ld.errors for ld in loads) == errors_before
            assert sum(ld.statuses.get(s, 0) for ld in loads for s in ld.statuses if s != 200) == 0, \
                [ld.statuses for ld in loads]
            for e in edges:
                assert e.readyz()[0] == 200

            # Kill the hub three times while batches flow (usage-flush-ms 20,
            # so some batch is applied-but-unacknowledged at some kill).
            for _ in range(3):
                wait_complete(loads, 20)
                hub.restart(signal.SIGKILL)
            wait_complete(loads, 20)
            for ld in loads:
                ld.stop()
            for ld in loads:
                ld.join(30)
            rows = settle(hub, key_id, loads, edges, seconds=90)
            complete, extra = gwtest.check_usage_exact(rows, loads)
            assert extra <= count_broken(loads), (extra, count_broken(loads))
            print(f"  hub away: {complete} complete, {len(rows)} rows")
            for e in edges:
                assert e.stop() == 0
            assert hub.stop() == 0
        except BaseException:
            for ld in loads:
                ld.stop()
            kill_all(hub, edges, fake)
            raise
        fake.stop()


def test_edge_restart_hub_down_serves_from_disk():
    with gwtest.Workdir("edge-disk") as wd:
        fake, hub, edges, key_id, key = setup(wd, 1)
        edge = edges[0]
        try:
            assert edge.readyz()[1].get("snapshot_source") == "hub"
            sent = {}
            status, rid, blen, _ = send(edge.port, key)
            assert status == 200
            sent[rid] = blen
            gwtest.wait_until("first row", lambda: len(hub.all_usage(key_id)) == 1, 10)
            # The snapshot on disk is encrypted: neither the provider
            # credential nor anything else readable from the admin side.
            for root, _, files in os.walk(edge.data):
                for f in files:
                    with open(os.path.join(root, f), "rb") as fh:
                        blob = fh.read()
                    assert UPSTREAM_SECRET.encode() not in blob, f
                    assert b"acct-" not in blob and b"127.0.0.1" not in blob, f

            assert edge.stop() == 0
            assert hub.stop() == 0
            edge.start()
            body = edge.wait_ready(source="disk", seconds=20)
            assert body["snapshot_source"] == "disk", body
            assert send(edge.port, "aicp_not_a_key_at_all_000000000000")[0] == 401
            for i in range(3):
                status, rid, blen, data = send(edge.port, key, stream=bool(i % 2), text=f"offline {i}")
                assert status == 200, (status, data[:300])
                sent[rid] = blen

            hub._start()
            edge.wait_ready(source="hub", seconds=30)
            rows = gwtest.wait_until("rows replayed from the journal",
                                     lambda: (lambda r: r if len(r) >= len(sent) else None)(hub.all_usage(key_id)), 30)
            ids = [r["request_id"] for r in rows]
            assert sorted(ids) == sorted(sent), (ids, list(sent))
            assert edge.stop() == 0
            assert hub.stop() == 0
        except BaseException:
            kill_all(hub, edges, fake)
            raise
        fake.stop()


def log_has(proc, words, seconds=15, all_words=False):
    """Waits until one line of proc's log holds any (or all) of words (case-insensitive)."""
    words = [w.lower() for w in words]

    def probe():
        for line in proc.output().lower().splitlines():
            if (all if all_words else any)(w in line for w in words):
                return True
        return False
    gwtest.wait_until(f"{proc.name} logs one of {words}", probe, seconds)


def assert_never_ready(edge, seconds=2.0):
    """Probes /readyz for `seconds` after the refusal was logged: never 200."""
    d = gwtest.Deadline(seconds)
    while not d.expired():
        if not edge.proc.alive():
            return
        try:
            status, _ = edge.readyz()
        except OSError:
            continue
        assert status != 200, f"{edge.name} became ready"
        select.select([], [], [], 0.1)  # probe interval, not synchronisation


def test_refused_peers_hub_keeps_serving():
    with gwtest.Workdir("refused") as wd:
        fake, hub, edges, key_id, key = setup(wd, 1, link="tls")
        good = edges[0]
        bad = []
        try:
            certs = hub.certs
            # 1. Enrolled id, wrong secret.
            eid, _secret = hub.enrol_edge("wrong-secret", "x")
            e1 = gwtest.RemoteEdge(wd, hub, eid, "not-the-secret-" + "0" * 32, name="wrongsecret")
            bad.append(e1)
            log_has(e1.proc, ["hub refused hello"])
            log_has(hub.proc, [f"edge {eid} ", "refused: wrong proof"], all_words=True)
            assert_never_ready(e1)
            e1.stop()  # its retries would fill the hub's rate-limited log
            # 2. Unknown edge id.
            e2 = gwtest.RemoteEdge(wd, hub, "edge-nobody-knows", "x" * 40, name="unknown")
            bad.append(e2)
            log_has(e2.proc, ["hub refused hello"])
            log_has(hub.proc, ["edge edge-nobody-knows ", "refused: unknown edge"], all_words=True)
            assert_never_ready(e2)
            e2.stop()
            # 3. Revoked edge, right secret.
            eid3, secret3 = hub.enrol_edge("revoked", "x")
            st, _ = hub.api("DELETE", f"/api/edges/{eid3}")
            assert st in (200, 204), st
            e3 = gwtest.RemoteEdge(wd, hub, eid3, secret3, name="revoked")
            bad.append(e3)
            log_has(e3.proc, ["hub refused hello"])
            assert_never_ready(e3)
            e3.stop()
            # 4. Client certificate from another CA (the right enrolment).
            other = gwtest.Certs(wd, "pki-other")
            eid4, secret4 = hub.enrol_edge("other-ca", "x")
            e4 = gwtest.RemoteEdge(wd, hub, eid4, secret4, name="otherca", certs=other)
            bad.append(e4)
            assert_never_ready(e4, 3.0)
            ctx_other = ssl.create_default_context(cafile=certs.ca)
            ctx_other.load_cert_chain(os.path.join(other.dir, "edge.pem"), os.path.join(other.dir, "edge.key"))
            try:
                c = gwtest.SpClient(hub.link_port, tls_ctx=ctx_other, timeout=5)
                c.request(b"\x0a\x02\x0a\x00")
                raise AssertionError("the hub accepted a client certificate from another CA")
            except (ssl.SSLError, ConnectionError, OSError):
                pass

            # 5. Raw frames from a peer with a good certificate (TLS is not
            # what stops these; the link's parser must).
            ctx = ssl.create_default_context(cafile=certs.ca)
            ctx.load_cert_chain(certs.edge_cert, certs.edge_key)
            # 5a. Garbage protobuf in a well-formed frame: an Error or a closed pipe.
            c = gwtest.SpClient(hub.link_port, tls_ctx=ctx)
            try:
                rep = gwtest.pb_decode(c.request(b"\xff\xff\xff\xff\x0f garbage"))
                assert 7 in rep, rep
            except (ConnectionError, OSError, ValueError):
                pass
            c.close()
            log_has(hub.proc, ["undecodable frame"])
            # 5b. A UsageBatch on an unauthenticated pipe: Error, nothing billed.
            c = gwtest.SpClient(hub.link_port, tls_ctx=ctx)
            rec = gwtest.pb_usage_record("forged-1", key_id)
            batch = gwtest.pb_field(1, good.edge_id) + gwtest.pb_field(2, 999999) + gwtest.pb_field(3, rec)
            try:
                rep = gwtest.pb_decode(c.request(gwtest.pb_field(5, batch)))
                assert 7 in rep and 5 not in rep and 6 not in rep, rep
            except (ConnectionError, OSError):
                pass
            c.close()
            # 5c. A frame announcing 2^40 bytes: the hub must not try to hold it.
            c = gwtest.SpClient(hub.link_port, tls_ctx=ctx)
            try:
                c.sock.sendall(struct.pack(">Q", 1 << 40) + b"\x00" * 65536)
            except OSError:
                pass
            c.close()
            # 5d. An oversized but real frame (70 MiB of zeros), sent
            # without waiting: the hub drops the pipe.
            c = gwtest.SpClient(hub.link_port, tls_ctx=ctx)
            try:
                c.sock.sendall(struct.pack(">Q", 70 << 20) + b"\x00" * (4 << 20))
            except OSError:
                pass
            c.close()
            # 5e. Not SP at all.
            s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", hub.link_port), timeout=5),
                                server_hostname="localhost")
            try:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 10)
                s.recv(100)
            except OSError:
                pass
            s.close()
            # 5f. Plain TCP on a TLS link.
            s = socket.create_connection(("127.0.0.1", hub.link_port), timeout=5)
            try:
                s.sendall(b"\x00SP\x00\x00\x30\x00\x00" + b"\x00" * 100)
                s.recv(100)
            except OSError:
                pass
            s.close()

            # The hub is alive and still serves the good edge: a change reaches
            # it, its requests are billed, and nothing forged was billed.
            assert hub.proc.alive(), hub.proc.output()[-3000:]
            _, k2 = hub.api("POST", "/api/keys", {"group_id": hub.api("GET", f"/api/keys/{key_id}")[1]["group_id"],
                                                  "name": "after-attacks"}, expect=201)
            good.wait_ready(min_version=hub.config_version(), seconds=10)
            status, rid, _, _ = send(good.port, k2["key"])
            assert status == 200
            rows = gwtest.wait_until("the good edge's row", lambda: hub.all_usage(k2["id"]), 10)
            assert [r["request_id"] for r in rows] == [rid]
            assert all(r["request_id"] != "forged-1" for r in hub.all_usage(key_id))
            listing = hub.edges()
            assert listing[good.edge_id].get("state", listing[good.edge_id].get("status")) == "online"
            for e in bad:
                st = listing.get(e.edge_id, {}).get("state", listing.get(e.edge_id, {}).get("status"))
                assert st != "online", (e.name, listing.get(e.edge_id))
            for e in bad:
                e.stop()
            assert good.stop() == 0
            assert hub.stop() == 0
        except BaseException:
            kill_all(hub, edges + bad, fake)
            raise
        fake.stop()


if __name__ == "__main__":
    gwtest.run_main([test_kill9_edge_under_load, test_hub_partition_30s_and_restarts,
                     test_edge_restart_hub_down_serves_from_disk, test_refused_peers_hub_keeps_serving])
