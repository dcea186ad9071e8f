#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Snapshot scale: a hub whose SQLite store holds N gateway keys (default
1,000,000) and the cost of shipping them to an edge.

Setup: the hub creates its database and one group/account/binding/key
through the admin API, then stops; N - 1 more key rows (random 32-byte
hashes; nobody can present them) are inserted straight into api_keys with
Python's sqlite3, because a million admin-API calls would measure the admin
API rather than the snapshot. The hub is started again on the same data.

Measures, on a tcp:// link on loopback:
  hub build   Hello + FetchSnapshot{have_version 0} from a raw link client
              (tests/lib/gwtest.SpClient): time to the reply and its size
              (the size on the wire, protobuf), first call and the median of
              the next ones
  edge cold   aicarpool-edge started on an empty --data: process start to
              /readyz 200 from the hub (build + transfer + decode + index +
              encrypted write), RSS when ready
  disk        bytes of the edge's --data dir (encrypted snapshot)
  edge warm   hub stopped, edge restarted with --hub-timeout-ms 100:
              process start to /readyz 200 with snapshot_source "disk"
              (link timeout + decrypt + decode + index), RSS
  delta       one key created through the admin API: size of the Deltas
              frame pushed on PUB/SUB (a raw SUB client on the push port)
              and of FetchDeltas{from_version: v - 1}'s reply

    GW_BIN_DIR=build-bench python3 bench/snapshot_scale.py [--keys 1000000] [--json OUT]
"""
import argparse
import json
import os
import sqlite3
import statistics
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "lib"))
os.environ.setdefault("GW_BIN_DIR", os.path.join(HERE, "..", "build-bench"))
os.environ.setdefault("GW_SOURCE_DIR", os.path.join(HERE, ".."))
import gwtest  # noqa: E402


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


def insert_keys(db_path, group_id, n):
    db = sqlite3.connect(db_path)
    cols = [r[1] for r in db.execute("PRAGMA table_info(api_keys)")]
    now = int(time.time())
    t0 = time.monotonic()
    db.execute("PRAGMA synchronous = OFF")
    rows = ((os.urandom(32), "aicp_" + os.urandom(4).hex(), f"bulk-{i}", group_id, 1, 0, now) for i in range(n))
    db.executemany("INSERT INTO api_keys (key_hash, prefix, name, group_id, enabled, expires_at, created_at) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    db.commit()
    count = db.execute("SELECT count(*) FROM api_keys").fetchone()[0]
    db.close()
    return count, time.monotonic() - t0, cols


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--fetches", type=int, default=3, help="FetchSnapshot calls after the first")
    ap.add_argument("--json")
    args = ap.parse_args()
    res = {"keys": args.keys}

    with gwtest.Workdir("bench-snapshot") as wd:
        fake = gwtest.FakeProvider(wd)
        hub = gwtest.Hub(wd, edge_listen=False, link="tcp")
        edge = None
        try:
            key_id, key = hub.setup_group(fake.url, api_key="sk-bench-upstream")
            _, k = hub.api("GET", f"/api/keys/{key_id}", expect=200)
            eid, secret = hub.enrol_edge("snap-edge", "bench")
            raw_id, raw_secret = hub.enrol_edge("snap-raw", "bench")
            assert hub.stop() == 0
            count, secs, _ = insert_keys(os.path.join(hub.data, "hub.db"), k["group_id"], args.keys - 1)
            res["keys_in_store"] = count
            res["insert_s"] = round(secs, 2)
            hub._start()
            res["hub_rss_idle_kib"] = rss_kib(hub.proc.p.pid)

            # Hub build + wire size, from a raw link client.
            c = gwtest.SpClient(hub.link_port, timeout=600)
            gwtest.link_hello(c, raw_id, raw_secret)
            times, sizes = [], []
            for _ in range(1 + args.fetches):
                t0 = time.monotonic()
                rep = c.request(gwtest.pb_field(3, gwtest.pb_field(1, raw_id) + gwtest.pb_field(2, 0)))
                times.append(time.monotonic() - t0)
                sizes.append(len(rep))
            env = gwtest.pb_decode(rep)
            if 4 not in env:
                raise AssertionError(f"FetchSnapshot: no Snapshot in the reply: {list(env)}")
            res["snapshot_wire_bytes"] = sizes[0]
            res["hub_build_first_ms"] = round(times[0] * 1000, 1)
            if len(times) > 1:
                res["hub_build_next_median_ms"] = round(statistics.median(times[1:]) * 1000, 1)
            res["hub_rss_after_build_kib"] = rss_kib(hub.proc.p.pid)
            c.close()

            # Edge cold start from the hub.
            edge_t0 = time.monotonic()
            edge = gwtest.RemoteEdge(wd, hub, eid, secret, region="bench", name="snapedge",
                                     extra=["--hub-max-msg-bytes", str(1 << 30), "--heartbeat-ms", "5000"])
            body = edge.wait_ready(min_version=hub.config_version(), seconds=600)
            res["edge_cold_ready_ms"] = round((time.monotonic() - edge_t0) * 1000, 1)
            res["edge_cold_source"] = body.get("snapshot_source")
            res["edge_rss_kib"] = rss_kib(edge.proc.p.pid)
            assert gwtest.Http(edge.port).request("POST", "/v1/messages", gwtest.anthropic_body(),
                                                  {"x-api-key": key, "content-type": "application/json"})[0] == 200
            snap_file = os.path.join(edge.data, "snapshot.bin")

            def written():
                # Written to snapshot.bin.tmp, fsynced, renamed: done when no
                # .tmp is left and the file holds at least the wire bytes.
                names = os.listdir(edge.data)
                if any(n.endswith(".tmp") for n in names) or "snapshot.bin" not in names:
                    return None
                size = os.path.getsize(snap_file)
                return size if size >= res["snapshot_wire_bytes"] else None
            res["disk_bytes"] = gwtest.wait_until("snapshot written to disk", written, 120)

            # One key change: the pushed delta and the fetched one.
            sub = gwtest.SpClient(hub.link_port + 1, proto=gwtest.SP_SUB, timeout=30)
            v0 = hub.config_version()
            hub.api("POST", "/api/keys", {"group_id": k["group_id"], "name": "one-more"}, expect=201)
            n = struct.unpack(">Q", sub._recv_exact(8))[0]
            sub._recv_exact(n)
            res["delta_push_bytes"] = n
            sub.close()
            c = gwtest.SpClient(hub.link_port, timeout=60)
            gwtest.link_hello(c, raw_id, raw_secret)
            rep = c.request(gwtest.pb_field(8, gwtest.pb_field(1, raw_id) + gwtest.pb_field(2, v0)))
            res["delta_fetch_bytes"] = len(rep)
            c.close()
            edge.wait_ready(min_version=v0 + 1, seconds=30)

            # Edge warm start from disk, hub down.
            assert edge.stop() == 0
            assert hub.stop() == 0
            # The edge falls back to its disk copy once the hub stays silent
            # for a link timeout: keep that short so the figure is the load.
            edge.argv += ["--hub-timeout-ms", "100"]
            res["edge_disk_hub_timeout_ms"] = 100
            t0 = time.monotonic()
            edge.start()
            body = edge.wait_ready(source="disk", seconds=600)
            res["edge_disk_ready_ms"] = round((time.monotonic() - t0) * 1000, 1)
            res["edge_disk_rss_kib"] = rss_kib(edge.proc.p.pid)
            loads = [line for line in edge.proc.output().splitlines() if "snapshot" in line.lower()]
            res["edge_log_snapshot_lines"] = loads[-5:]
            edge.stop()
        finally:
            if edge is not None and edge.proc is not None:
                edge.stop()
            if hub.proc.alive():
                hub.proc.stop()
            fake.stop()
    print(json.dumps(res, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
