#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Usage ingest: how many usage records per second the hub applies from 2
edges, into SQLite and (when GW_TEST_MYSQL_DSN is set) into MariaDB.

Two edges are enrolled through POST /api/edges; each is played by a process
speaking the link protocol directly (tests/lib/gwtest.SpClient over tcp://
on loopback: Hello with the HMAC proof, then UsageBatch after UsageBatch,
each waiting for its UsageAck, exactly as an edge replaying its journal
does). Records are pre-encoded, so the client costs little next to the hub;
each carries a unique request id, the real key and account ids and a priced
model. A run lasts --seconds; the rate is records acknowledged (not
duplicate) / wall time. Afterwards the rows are counted in the database
itself, which must equal the records acknowledged.

    GW_BIN_DIR=build-bench python3 bench/ingest.py [--seconds 10] [--batch 1000] [--store sqlite|mysql|both]
"""
import argparse
import json
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "lib"))
os.environ.setdefault("GW_BIN_DIR", os.path.join(HERE, "..", "build-bench"))
os.environ.setdefault("GW_SOURCE_DIR", os.path.join(HERE, ".."))
import gwtest  # noqa: E402


def edge_worker(port, edge_id, secret, key_id, account_id, batch, seconds, run_tag, q):
    c = gwtest.SpClient(port, timeout=120)
    reply = gwtest.link_hello(c, edge_id, secret)
    seq = reply.get(2, [0])[0] + 1
    tail = gwtest.pb_usage_record("x", key_id, account_id)[len(gwtest.pb_field(1, "x")):]
    head = gwtest.pb_field(1, edge_id)
    acked = dup = errors = 0
    lat = []
    t_start = time.monotonic()
    t_end = t_start + seconds
    while time.monotonic() < t_end:
        recs = b"".join(gwtest.pb_field(3, gwtest.pb_field(1, f"{run_tag}-{edge_id}-{seq}-{i}") + tail)
                        for i in range(batch))
        msg = gwtest.pb_field(5, head + gwtest.pb_field(2, seq) + recs)
        t0 = time.monotonic()
        env = gwtest.pb_decode(c.request(msg))
        lat.append(time.monotonic() - t0)
        if 6 not in env:
            errors += 1
            q.put({"edge": edge_id, "error": repr(env)[:300]})
            break
        ack = gwtest.pb_decode(env[6][0])
        if ack[1][0] != seq:
            errors += 1
            break
        if ack.get(2, [0])[0]:
            dup += 1
        else:
            acked += batch
        seq += 1
    wall = time.monotonic() - t_start
    c.close()
    lat.sort()
    q.put({"edge": edge_id, "records": acked, "duplicates": dup, "errors": errors, "wall_s": wall,
           "batches": len(lat), "batch_p50_ms": 1000 * lat[len(lat) // 2] if lat else None,
           "batch_p99_ms": 1000 * lat[int(len(lat) * 0.99)] if lat else None})


def count_rows_sqlite(db_path, edge_ids):
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    n = db.execute(f"SELECT count(*) FROM usage_log WHERE edge_id IN ({','.join('?' * len(edge_ids))})",
                   edge_ids).fetchone()[0]
    db.close()
    return n


def count_rows_mysql(dsn, edge_ids):
    u = urllib.parse.urlparse(dsn)
    ids = ",".join("'" + e.replace("'", "") + "'" for e in edge_ids)
    r = subprocess.run(["mysql", "-h", u.hostname, "-P", str(u.port or 3306), "-u", urllib.parse.unquote(u.username),
                        f"-p{urllib.parse.unquote(u.password or '')}", "-N", "-B", u.path.lstrip("/"),
                        "-e", f"SELECT count(*) FROM usage_log WHERE edge_id IN ({ids})"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.decode())
    return int(r.stdout.split()[0])


def run(store, dsn, seconds, batch):
    with gwtest.Workdir(f"bench-ingest-{store}") as wd:
        fake = gwtest.FakeProvider(wd)
        hub = gwtest.Hub(wd, db=dsn, edge_listen=False, link="tcp", extra=["--log-level", "warn"])
        try:
            key_id, _ = hub.setup_group(fake.url, api_key="sk-bench-upstream")
            _, accts = hub.api("GET", "/api/accounts", expect=200)
            items = accts["items"] if isinstance(accts, dict) else accts
            account_id = items[-1]["id"]
            edges = [hub.enrol_edge(f"ingest-{store}-{i}-{time.monotonic_ns()}", "bench") for i in range(2)]
            q = multiprocessing.Queue()
            tag = f"r{time.time_ns()}"
            procs = [multiprocessing.Process(target=edge_worker,
                                             args=(hub.link_port, eid, sec, key_id, account_id, batch, seconds, tag, q))
                     for eid, sec in edges]
            t0 = time.monotonic()
            for p in procs:
                p.start()
            results = [q.get(timeout=seconds + 300) for _ in procs]
            for p in procs:
                p.join()
            wall = time.monotonic() - t0
            hub_rss = 0
            with open(f"/proc/{hub.proc.p.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        hub_rss = int(line.split()[1])
            assert hub.stop() == 0
            ids = [e for e, _ in edges]
            if store == "sqlite":
                rows = count_rows_sqlite(os.path.join(hub.data, "hub.db"), ids)
            else:
                rows = count_rows_mysql(dsn, ids)
            acked = sum(r.get("records", 0) for r in results)
            per_edge_wall = max(r.get("wall_s", wall) for r in results)
            out = {"store": store, "batch": batch, "seconds": seconds, "records_acked": acked,
                   "rows_in_db": rows, "records_per_s": round(acked / per_edge_wall),
                   "hub_rss_kib": hub_rss, "edges": results}
            if rows != acked:
                out["MISMATCH"] = True
            return out
        finally:
            if hub.proc.alive():
                hub.proc.stop()
            fake.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--store", choices=("sqlite", "mysql", "both"), default="both")
    ap.add_argument("--json")
    args = ap.parse_args()
    out = []
    if args.store in ("sqlite", "both"):
        out.append(run("sqlite", None, args.seconds, args.batch))
    if args.store in ("mysql", "both"):
        dsn = gwtest.mysql_dsn()
        if not dsn:
            print("GW_TEST_MYSQL_DSN not set: MariaDB run skipped", file=sys.stderr)
        else:
            out.append(run("mysql", dsn, args.seconds, args.batch))
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 1 if any(r.get("MISMATCH") for r in out) else 0


if __name__ == "__main__":
    sys.exit(main())
