# SPDX-License-Identifier: Apache-2.0
"""Distributed and hybrid modes end to end: aicarpool-hub without (or with)
its in-process edge, remote aicarpool-edge processes dialling the hub's link
over tls+tcp:// with mutual TLS (certificates from scripts/make-certs), all
on loopback. Edges are enrolled through POST /api/edges; requests through
every edge are billed exactly once; GET /api/edges shows them online with
region, version and no snapshot lag; a revoked key is refused by every edge
within 1 s; a push lost on the way (dropped by a frame-level proxy on the
push channel) is recovered through FetchDeltas. Runs on SQLite and, when
GW_TEST_MYSQL_DSN is set, on MariaDB."""
import os
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "lib"))
import gwtest  # noqa: E402
from gwtest import FAKE_TEXT  # noqa: E402

UPSTREAM_SECRET = "sk-upstream-distributed-secret-98765"


def send(port, key, stream=False, text="hello", scenario=None):
    """One Anthropic request; returns (status, request id, body length, data)."""
    body = gwtest.anthropic_body(text, stream=stream)
    hdrs = {"x-api-key": key, "content-type": "application/json", "anthropic-version": "2023-06-01"}
    if scenario:
        hdrs["x-fake-scenario"] = scenario
    status, h, data = gwtest.Http(port).request("POST", "/v1/messages", body, hdrs, timeout=30)
    return status, h.get("x-aicarpool-request-id"), len(body), data


def check_edges_listing(hub, edges, want_version):
    """GET /api/edges: every edge online, with its region, a version string
    and snapshot lag 0 (the listing may name the state `state` or `status`)."""
    def probe():
        listing = hub.edges()
        for e in edges:
            got = listing.get(e.edge_id)
            if got is None:
                return None
            state = got.get("state", got.get("status"))
            lag = got.get("snapshot_lag", got.get("lag"))
            if state != "online" or got.get("snapshot_version") != want_version or lag != 0:
                return None
        return listing
    listing = gwtest.wait_until("both edges online and current in GET /api/edges", probe, 15)
    for e in edges:
        got = listing[e.edge_id]
        assert got["region"] == e.region, got
        assert isinstance(got.get("version"), str) and got["version"], got
        assert "secret" not in got and e.secret not in str(got), got
        assert got.get("last_seen") or got.get("last_seen_ms"), got
    return listing


def start_edges(wd, hub, n, regions=("eu-west", "us-east")):
    edges = []
    for i in range(n):
        edge_id, secret = hub.enrol_edge(f"edge-{i}-{time.monotonic_ns()}", regions[i])
        edges.append(gwtest.RemoteEdge(wd, hub, edge_id, secret, region=regions[i], name=f"edge{i}",
                                       secret_in_env=(i == 0)))
    return edges


def billed_exactly(hub, key_id, sent):
    """sent: {request id: (body length, edge id or None)}. Every request has
    one row with the fake's usage, and there is nothing else."""
    rows = gwtest.wait_until(f"{len(sent)} usage rows", lambda: (lambda r: r if len(r) >= len(sent) else None)(
        hub.all_usage(key_id)), 20)
    ids = [r["request_id"] for r in rows]
    assert len(ids) == len(set(ids)), f"duplicate request ids in usage: {len(ids)} rows, {len(set(ids))} distinct"
    assert set(ids) == set(sent), (set(ids) ^ set(sent))
    for r in rows:
        body_len, edge_id = sent[r["request_id"]]
        want = gwtest.fake_usage(body_len)
        for field in ("input_tokens", "output_tokens", "cache_read_tokens"):
            assert r[field] == want[field], (field, r, want)
        assert r["partial"] in (False, 0), r
        if edge_id is not None:
            assert r["edge_id"] == edge_id, (r, edge_id)
    return rows


def scenario_distributed(db):
    with gwtest.Workdir("distributed") as wd:
        fake = gwtest.FakeProvider(wd)
        hub = gwtest.Hub(wd, db=db, edge_listen=False, link="tls")
        edges = []
        try:
            assert hub.edge is None
            edges = start_edges(wd, hub, 2)
            key_id, key = hub.setup_group(fake.url, api_key=UPSTREAM_SECRET)
            version = hub.config_version()
            for e in edges:
                body = e.wait_ready(min_version=version)
                assert body.get("snapshot_source") == "hub", body

            sent = {}
            for e in edges:
                for i in range(5):
                    for stream in (False, True):
                        status, rid, blen, data = send(e.port, key, stream, f"via {e.name} {i}")
                        assert status == 200, (status, data[:500])
                        assert gwtest.complete_anthropic(status, data, stream), data[:500]
                        assert rid and rid not in sent, rid
                        sent[rid] = (blen, e.edge_id)
            billed_exactly(hub, key_id, sent)
            # The provider saw the account's credential, forwarded by the edges
            # that received it over the link, never the gateway key.
            reqs = fake.requests()
            assert len(reqs) >= len(sent)
            assert all(key not in str(r) for r in reqs)
            check_edges_listing(hub, edges, hub.config_version())

            # Revocation: both edges refuse the key within 1 s of the DELETE.
            _, key2 = hub.api("POST", "/api/keys", {"group_id": _group_of(hub, key_id), "name": "to-revoke"},
                              expect=201)
            v2 = hub.config_version()
            for e in edges:
                e.wait_ready(min_version=v2, seconds=5)
                assert send(e.port, key2["key"])[0] == 200
            t0 = time.monotonic()
            st, _ = hub.api("DELETE", f"/api/keys/{key2['id']}")
            assert st in (200, 204), st
            for e in edges:
                def refused(e=e):
                    status = send(e.port, key2["key"])[0]
                    return status in (401, 403)
                gwtest.wait_until(f"{e.name} refuses the revoked key", refused, max(0.0, 1.0 - (time.monotonic() - t0)),
                                  interval=0.01)
            assert time.monotonic() - t0 <= 1.5
            for e in edges:
                assert send(e.port, key)[0] == 200

            for e in edges:
                assert e.stop() == 0, e.proc.output()[-3000:]
            assert hub.stop() == 0
            for p in [hub.proc] + [e.proc for e in edges]:
                assert UPSTREAM_SECRET not in p.output() and key not in p.output()
        except BaseException:
            for e in edges:
                e.stop(signal_kill())
            hub.proc.stop(signal_kill())
            fake.stop()
            raise
        fake.stop()


def signal_kill():
    import signal
    return signal.SIGKILL


def _group_of(hub, key_id):
    _, k = hub.api("GET", f"/api/keys/{key_id}", expect=200)
    return k["group_id"]


def test_distributed_sqlite():
    scenario_distributed(None)


def test_distributed_mysql():
    dsn = gwtest.mysql_dsn()
    if not dsn:
        print("GW_TEST_MYSQL_DSN not set: MariaDB run skipped")
        return "skip"
    scenario_distributed(dsn)


def test_hybrid():
    """Hub with its in-process edge plus one remote edge: both serve, both bill."""
    with gwtest.Workdir("hybrid") as wd:
        fake = gwtest.FakeProvider(wd)
        hub = gwtest.Hub(wd, link="tls")
        edges = []
        try:
            edges = start_edges(wd, hub, 1)
            key_id, key = hub.setup_group(fake.url, api_key=UPSTREAM_SECRET)
            version = hub.config_version()
            edges[0].wait_ready(min_version=version)
            sent = {}
            for port, edge_id in ((hub.edge_port, None), (edges[0].port, edges[0].edge_id)):
                for stream in (False, True):
                    status, rid, blen, data = send(port, key, stream)
                    assert status == 200 and gwtest.complete_anthropic(status, data, stream), (status, data[:300])
                    sent[rid] = (blen, edge_id)
            rows = billed_exactly(hub, key_id, sent)
            assert len({r["edge_id"] for r in rows}) == 2, rows
            check_edges_listing(hub, edges, hub.config_version())
            assert edges[0].stop() == 0
            assert hub.stop() == 0
        except BaseException:
            for e in edges:
                e.stop(signal_kill())
            hub.proc.stop(signal_kill())
            fake.stop()
            raise
        fake.stop()


class PushProxy:
    """A TCP proxy on the push channel (tcp:// on loopback) that forwards SP
    frames from the hub's PUB to the edge's SUB and drops them while `drop`
    is set: a lost push, exactly, for the gap-recovery test."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(4)
        self.port = self.lsock.getsockname()[1]
        self.drop = threading.Event()
        self.dropped = 0
        self.forwarded = 0
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                c.close()
                continue
            u.settimeout(None)
            threading.Thread(target=self._pipe_raw, args=(c, u), daemon=True).start()
            threading.Thread(target=self._pipe_frames, args=(u, c), daemon=True).start()

    @staticmethod
    def _recv_exact(s, n):
        buf = b""
        while len(buf) < n:
            b = s.recv(n - len(buf))
            if not b:
                raise ConnectionError
            buf += b
        return buf

    def _pipe_raw(self, src, dst):
        try:
            while True:
                b = src.recv(65536)
                if not b:
                    break
                dst.sendall(b)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def _pipe_frames(self, src, dst):
        try:
            dst.sendall(self._recv_exact(src, 8))  # SP header
            while True:
                hdr = self._recv_exact(src, 8)
                n = struct.unpack(">Q", hdr)[0]
                body = self._recv_exact(src, n)
                if self.drop.is_set():
                    self.dropped += 1
                    continue
                self.forwarded += 1
                dst.sendall(hdr + body)
        except (OSError, ConnectionError):
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def close(self):
        self.closed = True
        self.lsock.close()


def test_dropped_push_recovered():
    """A Deltas push lost between hub and edge: the next push shows a gap
    (from_version above the edge's version), the edge fetches the missing
    deltas over REQ/REP and ends at the hub's version. The safety poll and
    the heartbeat (whose ack carries the hub's version) are set to an hour
    so only gap detection can explain the recovery."""
    with gwtest.Workdir("dropped-push") as wd:
        fake = gwtest.FakeProvider(wd)
        hub = gwtest.Hub(wd, edge_listen=False, link="tcp")
        proxy = PushProxy(hub.link_port + 1)
        edge = None
        try:
            edge_id, secret = hub.enrol_edge("gap-edge", "ap-south")
            edge = gwtest.RemoteEdge(wd, hub, edge_id, secret, region="ap-south",
                                     extra=["--push", f"tcp://127.0.0.1:{proxy.port}", "--deltas-poll-ms", "3600000",
                                            "--heartbeat-ms", "3600000"])
            key_id, key = hub.setup_group(fake.url, api_key=UPSTREAM_SECRET)
            edge.wait_ready(min_version=hub.config_version())
            gid = _group_of(hub, key_id)
            _, victim = hub.api("POST", "/api/keys", {"group_id": gid, "name": "victim"}, expect=201)
            edge.wait_ready(min_version=hub.config_version(), seconds=5)
            assert proxy.forwarded >= 1, "pushes do not reach the edge through the proxy"
            assert send(edge.port, victim["key"])[0] == 200

            proxy.drop.set()
            st, _ = hub.api("DELETE", f"/api/keys/{victim['id']}")
            assert st in (200, 204), st
            lost_version = hub.config_version()
            gwtest.wait_until("the revocation push dropped", lambda: proxy.dropped >= 1, 5)
            proxy.drop.clear()
            # The edge missed it: still at the old version, still serving the key.
            assert edge.readyz()[1]["snapshot_version"] < lost_version
            assert send(edge.port, victim["key"])[0] == 200
            # The next change arrives with a gap in front of it.
            _, k3 = hub.api("POST", "/api/keys", {"group_id": gid, "name": "after-gap"}, expect=201)
            want = hub.config_version()
            edge.wait_ready(min_version=want, seconds=5)
            assert edge.readyz()[1]["snapshot_version"] == want
            assert send(edge.port, victim["key"])[0] in (401, 403)
            assert send(edge.port, k3["key"])[0] == 200
            assert send(edge.port, key)[0] == 200
            assert edge.stop() == 0
            assert hub.stop() == 0
        except BaseException:
            if edge:
                edge.stop(signal_kill())
            hub.proc.stop(signal_kill())
            fake.stop()
            raise
        finally:
            proxy.close()
        fake.stop()


if __name__ == "__main__":
    gwtest.run_main([test_distributed_sqlite, test_distributed_mysql, test_hybrid, test_dropped_push_recovered])
