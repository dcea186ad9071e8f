#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Revocation propagation: hub (no in-process edge) + 2 remote edges over
tls+tcp:// with mutual TLS, on loopback. For each of N rounds: create a key,
wait until both edges accept it, DELETE /api/keys/{id}, then time until each
edge refuses it. The refusal is observed two ways: /readyz reporting the
hub's new config version (polled on a kept-alive connection, cheap), then
one real request with the key, which must get 401/403 (a round only counts
when it does). Prints p50/p90/p99/max per edge and over both.

    GW_BIN_DIR=build-bench python3 bench/revocation.py [--rounds 100] [--json OUT]
"""
import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "lib"))
os.environ.setdefault("GW_BIN_DIR", os.path.join(HERE, "..", "build-bench"))
os.environ.setdefault("GW_SOURCE_DIR", os.path.join(HERE, ".."))
import gwtest  # noqa: E402


def percentile(xs, p):
    xs = sorted(xs)
    k = max(0, min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1)))))
    return xs[k]


def key_status(port, key):
    body = gwtest.anthropic_body("revocation probe", max_tokens=1)
    status, _, _ = gwtest.Http(port).request("POST", "/v1/messages", body,
                                             {"x-api-key": key, "content-type": "application/json",
                                              "anthropic-version": "2023-06-01"}, timeout=10)
    return status


def watch_version(port, want, t0, out, idx, limit_s=5.0):
    """Polls /readyz on one kept-alive connection until snapshot_version >=
    want; stores the elapsed seconds since t0 (monotonic) in out[idx]."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        while time.monotonic() - t0 < limit_s:
            conn.request("GET", "/readyz")
            r = conn.getresponse()
            data = r.read()
            if r.status == 200 and json.loads(data).get("snapshot_version", 0) >= want:
                out[idx] = time.monotonic() - t0
                return
    finally:
        conn.close()
    out[idx] = None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--link", choices=("tls", "tcp"), default="tls")
    ap.add_argument("--json", help="write every sample here")
    args = ap.parse_args()

    with gwtest.Workdir("bench-revocation") as wd:
        fake = gwtest.FakeProvider(wd)
        hub = gwtest.Hub(wd, edge_listen=False, link=args.link)
        edges = []
        try:
            for i, region in enumerate(("eu-west", "us-east")):
                eid, secret = hub.enrol_edge(f"bench-edge-{i}", region)
                edges.append(gwtest.RemoteEdge(wd, hub, eid, secret, region=region, name=f"edge{i}",
                                               extra=["--heartbeat-ms", "5000"]))
            key_id, _ = hub.setup_group(gwtest.fake_url(fake.url), api_key="sk-bench-upstream")
            _, k = hub.api("GET", f"/api/keys/{key_id}", expect=200)
            gid = k["group_id"]
            for e in edges:
                e.wait_ready(min_version=hub.config_version())

            samples = [[], []]
            bad = 0
            for r in range(args.rounds):
                _, key = hub.api("POST", "/api/keys", {"group_id": gid, "name": f"rev-{r}"}, expect=201)
                v = hub.config_version()
                for e in edges:
                    e.wait_ready(min_version=v, seconds=10)
                    assert key_status(e.port, key["key"]) == 200
                out = [None, None]
                t0 = time.monotonic()
                threads = [threading.Thread(target=watch_version, args=(e.port, v + 1, t0, out, i))
                           for i, e in enumerate(edges)]
                # The watchers start before the DELETE so their first poll
                # may precede it; they wait for version v + 1, which only the
                # revocation produces (nothing else changes meanwhile).
                for t in threads:
                    t.start()
                status, _ = hub.api("DELETE", f"/api/keys/{key['id']}")
                assert status in (200, 204), status
                for t in threads:
                    t.join()
                for i, e in enumerate(edges):
                    refused = key_status(e.port, key["key"]) in (401, 403)
                    if out[i] is None or not refused:
                        bad += 1
                    else:
                        samples[i].append(out[i])
            both = [max(a, b) for a, b in zip(samples[0], samples[1])]
            res = {"rounds": args.rounds, "link": args.link, "failed": bad}
            for name, xs in (("edge0", samples[0]), ("edge1", samples[1]), ("both", both)):
                if xs:
                    res[name] = {"n": len(xs), "p50_ms": round(percentile(xs, 50) * 1000, 2),
                                 "p90_ms": round(percentile(xs, 90) * 1000, 2),
                                 "p99_ms": round(percentile(xs, 99) * 1000, 2),
                                 "max_ms": round(max(xs) * 1000, 2),
                                 "mean_ms": round(statistics.mean(xs) * 1000, 2)}
            print(json.dumps(res, indent=2))
            if args.json:
                with open(args.json, "w") as f:
                    json.dump({"summary": res, "samples_s": samples}, f)
            for e in edges:
                e.stop()
            hub.stop()
        finally:
            for e in edges:
                e.stop()
            if hub.proc.alive():
                hub.proc.stop()
            fake.stop()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
