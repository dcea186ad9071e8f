#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""AiCarpool benchmarks (run through bench/run): the edge with auth, routing
and metering on against nginx as a plain reverse proxy, in front of the same
canned nginx upstream, in interleaved rounds of one run, the proxy under test
alone on one CPU and everything else on the other. Prints a results block,
writes it as Markdown and JSON, and exits non-zero when a run was invalid
(errors, bad streams, missing usage rows), never because a target was missed."""
import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True   # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as bl  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LUA = os.path.join(HERE, "wrk", "post.lua")

# Targets of DESIGN.md "Performance budget" / issue 3.
T_RATIO = 1.25          # edge/nginx for CPU per request, added latency, stream CPU, TTFE
T_RPS = 0.8             # edge/nginx requests/s
T_IDLE_CONN_KIB = 4.0   # RSS per idle keep-alive connection
T_IDLE_RSS_MIB = 32.0   # idle edge


def parse_args(argv):
    p = argparse.ArgumentParser(prog="bench/run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true",
                   help="tiny run (about 10 s) that checks the harness end to end; results go to the work dir")
    p.add_argument("--bin-dir", default=os.environ.get("GW_BIN_DIR"), help="build dir with hub/ and edge/ binaries")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per measure (default 3)")
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    p.add_argument("--conns", type=int, default=64, help="connections of the throughput runs (default 64)")
    p.add_argument("--stream-conns", type=int, default=16, help="connections of the streaming CPU runs (default 16)")
    p.add_argument("--lat-conns", type=int, default=4, help="connections of the latency runs (default 4)")
    p.add_argument("--lat-delay-ms", type=int, default=4,
                   help="pause between answer and next request per latency connection (default 4)")
    p.add_argument("--ttfe-streams", type=int, default=2000, help="sequential streams per TTFE sample (default 2000)")
    p.add_argument("--idle-conns", type=int, default=10000, help="idle keep-alive connections (default 10000)")
    p.add_argument("--keys", type=int, default=0,
                   help="extra gateway keys created before the edge starts (snapshot size for the idle RSS)")
    p.add_argument("--body-pad", type=int, default=0, help="extra ' x' words in the request body (default 0)")
    p.add_argument("--only", default="memory,throughput,latency,stream,ttfe",
                   help="comma list of measures: memory,throughput,latency,stream,ttfe,profile")
    p.add_argument("--profile", action="store_true", help="also profile the edge with perf (non-streaming load)")
    p.add_argument("--quiet-logs", action="store_true",
                   help="edge --log-level warn and nginx access_log off (default: both log every request)")
    p.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    p.add_argument("--nice", type=int, default=-5 if os.geteuid() == 0 else 0,
                   help="niceness added to every benchmark process, so other work on a shared machine "
                        "disturbs less (default -5 as root, else 0)")
    p.add_argument("--out", default=None,
                   help="results dir (default bench/results; a smoke run writes nothing unless given)")
    p.add_argument("--keep", action="store_true", help="keep the work dir (configs, logs)")
    a = p.parse_args(argv)
    if a.smoke:
        a.rounds, a.duration = 1, 1
        a.ttfe_streams = min(a.ttfe_streams, 30)
        a.idle_conns = min(a.idle_conns, 200)
    a.measures = [m.strip() for m in a.only.split(",") if m.strip()]
    if a.profile and "profile" not in a.measures:
        a.measures.append("profile")
    for m in a.measures:
        if m not in ("memory", "throughput", "latency", "stream", "ttfe", "profile"):
            p.error(f"unknown measure {m}")
    return a


def cpu_stat():
    """Per-CPU (busy, total) jiffies from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                parts = line.split()
                vals = [int(x) for x in parts[1:]]
                idle = vals[3] + vals[4]
                out[int(parts[0][3:])] = (sum(vals[:8]) - idle, sum(vals[:8]))
    return out


class Bench:
    def __init__(self, args, workdir):
        self.a = args
        self.wd = workdir
        self.errors = []
        self.rounds = {}   # measure -> list of per-round dicts
        self.counts = {"plain": 0, "stream": 0}   # answers clients got from the edge, per key
        cpus = sorted(os.sched_getaffinity(0))
        if args.no_pin or len(cpus) < 2:
            self.load_cpu = self.proxy_cpu = None
            if not args.no_pin:
                print("bench: fewer than 2 CPUs available: not pinning", file=sys.stderr)
        else:
            self.load_cpu, self.proxy_cpu = cpus[0], cpus[1]
            os.sched_setaffinity(0, {self.load_cpu})
        if args.nice:
            try:
                os.nice(args.nice)
            except OSError as exc:
                print(f"bench: cannot change niceness: {exc}", file=sys.stderr)
        self.nofile = bl.nofile_limit()
        if args.idle_conns + 200 > self.nofile:
            args.idle_conns = max(100, self.nofile - 200)
            print(f"bench: open-file limit {self.nofile}: idle connections lowered to {args.idle_conns}",
                  file=sys.stderr)
        self.body_plain = bl.request_body(False, args.body_pad)
        self.body_stream = bl.request_body(True, args.body_pad)
        for name, body in (("plain", self.body_plain), ("stream", self.body_stream)):
            with open(os.path.join(workdir, f"body-{name}.json"), "wb") as f:
                f.write(body)

    # ---- setup -----------------------------------------------------------------

    def start(self):
        a = self.a
        self.up_port, self.ng_port = bl.free_port(), bl.free_port()
        self.upstream = bl.Nginx("upstream", self.wd, bl.upstream_block(self.up_port), self.load_cpu, self.nofile)
        self.upstream.wait_ready(self.up_port)
        access = "off" if a.quiet_logs else os.path.join(self.wd, "baseline", "access.log")
        self.baseline = bl.Nginx("baseline", self.wd, bl.baseline_block(self.ng_port, self.up_port, access),
                                 self.proxy_cpu, self.nofile)
        self.baseline.wait_ready(self.ng_port)
        self.gw = bl.Gateway(self.wd, a.bin_dir, self.up_port, self.proxy_cpu, self.load_cpu, a.quiet_logs,
                             a.idle_conns + 1000, a.keys)
        self.edge_idle_rss = bl.rss_kib(self.gw.edge.pid)
        self.ports = {"direct": self.up_port, "nginx": self.ng_port, "edge": self.gw.port}
        self.pids = {"nginx": self.baseline.pids(), "edge": [self.gw.edge.pid]}
        # Sanity: every path answers as expected through every target.
        for t in ("direct", "nginx", "edge"):
            bl.ttfe(self.ports[t], "/stream/v1/messages", self.gw.key_stream["key"], self.body_stream, 2)
            socks = bl.open_idle(self.ports[t], "/v1/messages", self.gw.key_plain["key"], self.body_plain, 2)
            bl.close_all(socks)
            if t == "edge":
                self.counts["stream"] += 2
                self.counts["plain"] += 2

    def stop(self):
        rcs = {}
        for name, obj in (("gateway", getattr(self, "gw", None)), ("baseline", getattr(self, "baseline", None)),
                          ("upstream", getattr(self, "upstream", None))):
            if obj is not None:
                rcs[name] = obj.stop()
        return rcs

    # ---- runs ------------------------------------------------------------------

    def key_for(self, stream):
        return self.gw.key_stream if stream else self.gw.key_plain

    def wrk(self, target, stream, conns, duration, delay_ms=0, tag="run"):
        """One wrk run against a target with CPU accounting of the proxy, the
        load side (wrk, upstream nginx, hub) and the whole proxy CPU."""
        path = "/stream/v1/messages" if stream else "/v1/messages"
        url = f"http://127.0.0.1:{self.ports[target]}{path}"
        env = {"BENCH_BODY_FILE": os.path.join(self.wd, f"body-{'stream' if stream else 'plain'}.json"),
               "BENCH_KEY": self.key_for(stream)["key"], "BENCH_DELAY_MS": str(delay_ms)}
        pids = self.pids.get(target, [])
        side = self.upstream.pids() + [self.gw.hub.pid]
        hub = [self.gw.hub.pid]
        c0, s0, h0, st0 = bl.cpu_seconds(pids), bl.cpu_seconds(side), bl.cpu_seconds(hub), cpu_stat()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        res = bl.run_wrk(LUA, url, conns, duration, self.load_cpu, os.path.join(self.wd, f"wrk-{tag}.json"), env)
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        c1, s1, h1, st1 = bl.cpu_seconds(pids), bl.cpu_seconds(side), bl.cpu_seconds(hub), cpu_stat()
        secs = res["duration_us"] / 1e6
        n = res["requests"]
        errs = sum(res["errors"].values())
        if errs:
            self.errors.append(f"{tag} {target}: wrk errors {res['errors']} in {n} requests")
        if n == 0:
            self.errors.append(f"{tag} {target}: no request completed")
        if target == "edge":
            self.counts["stream" if stream else "plain"] += n - res["errors"]["status"]
        out = {"target": target, "requests": n, "seconds": secs, "rps": n / secs if secs else 0,
               "errors": res["errors"], "latency_us": res["latency_us"], "wrk": " ".join(res["argv"])}
        if pids:
            out["proxy_cpu_s"] = c1 - c0
            out["proxy_cpu_us_per_req"] = (c1 - c0) * 1e6 / n if n else None
            out["proxy_cpu_util"] = (c1 - c0) / secs if secs else None
        wrk_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        out["load_side_cpu_util"] = (s1 - s0 + wrk_cpu) / secs if secs else None
        # The hub ingests the edge's usage records (on the load CPU).
        out["hub_cpu_us_per_req"] = (h1 - h0) * 1e6 / n if n else None
        if self.proxy_cpu is not None:
            b0, t0 = st0[self.proxy_cpu]
            b1, t1 = st1[self.proxy_cpu]
            busy = (b1 - b0) / bl.CLK_TCK
            # CPU time spent on the proxy core by anything but the proxy: the
            # noise of a shared machine, reported next to every run.
            out["foreign_on_proxy_cpu_util"] = max(0.0, busy - (c1 - c0)) / secs if secs else None
            lb0, _ = st0[self.load_cpu]
            lb1, _ = st1[self.load_cpu]
            out["load_cpu_busy_util"] = (lb1 - lb0) / bl.CLK_TCK / secs if secs else None
        return out

    def warm(self, targets, stream):
        if self.a.smoke:
            return
        for t in targets:
            self.wrk(t, stream, self.a.conns if not stream else self.a.stream_conns, 1, tag="warm")

    def m_throughput(self):
        self.warm(["nginx", "edge"], False)
        rows = []
        for r in range(self.a.rounds):
            row = {}
            for t in ("nginx", "edge"):
                row[t] = self.wrk(t, False, self.a.conns, self.a.duration, tag=f"tput-{r}-{t}")
                log(f"throughput round {r + 1} {t}: {row[t]['rps']:.0f} req/s, "
                    f"{row[t]['proxy_cpu_us_per_req']:.1f} us CPU/req, proxy util {row[t]['proxy_cpu_util']:.2f}")
            rows.append(row)
        self.rounds["throughput"] = rows

    def m_latency(self):
        rows = []
        for r in range(self.a.rounds):
            row = {}
            for t in ("direct", "nginx", "edge"):
                row[t] = self.wrk(t, False, self.a.lat_conns, self.a.duration, self.a.lat_delay_ms, tag=f"lat-{r}-{t}")
            for t in ("nginx", "edge"):
                row[t]["added_p50_us"] = row[t]["latency_us"]["p50"] - row["direct"]["latency_us"]["p50"]
                row[t]["added_p99_us"] = row[t]["latency_us"]["p99"] - row["direct"]["latency_us"]["p99"]
            log(f"latency round {r + 1}: p50 direct/nginx/edge "
                + "/".join(str(row[t]["latency_us"]["p50"]) for t in ("direct", "nginx", "edge"))
                + " us, p99 " + "/".join(str(row[t]["latency_us"]["p99"]) for t in ("direct", "nginx", "edge"))
                + f" us at {row['edge']['rps']:.0f} req/s")
            rows.append(row)
        self.rounds["latency"] = rows

    def m_stream(self):
        self.warm(["nginx", "edge"], True)
        rows = []
        for r in range(self.a.rounds):
            row = {}
            for t in ("nginx", "edge"):
                row[t] = self.wrk(t, True, self.a.stream_conns, self.a.duration, tag=f"stream-{r}-{t}")
                log(f"stream round {r + 1} {t}: {row[t]['rps']:.0f} streams/s, "
                    f"{row[t]['proxy_cpu_us_per_req']:.1f} us CPU/stream")
            rows.append(row)
        self.rounds["stream"] = rows

    def m_ttfe(self):
        key = self.gw.key_stream["key"]
        rows = []
        for r in range(self.a.rounds):
            row = {}
            for t in ("direct", "nginx", "edge"):
                bl.ttfe(self.ports[t], "/stream/v1/messages", key, self.body_stream, 20)   # warm the connection paths
                firsts, totals = bl.ttfe(self.ports[t], "/stream/v1/messages", key, self.body_stream,
                                         self.a.ttfe_streams)
                if t == "edge":
                    self.counts["stream"] += 20 + len(firsts)
                row[t] = {"streams": len(firsts), "ttfe_p50_us": bl.median(firsts),
                          "ttfe_p90_us": bl.percentile(firsts, 90), "ttfe_p99_us": bl.percentile(firsts, 99),
                          "total_p50_us": bl.median(totals)}
            for t in ("nginx", "edge"):
                row[t]["added_ttfe_p50_us"] = row[t]["ttfe_p50_us"] - row["direct"]["ttfe_p50_us"]
                row[t]["added_ttfe_p99_us"] = row[t]["ttfe_p99_us"] - row["direct"]["ttfe_p99_us"]
            log(f"ttfe round {r + 1}: p50 direct/nginx/edge "
                + "/".join(f"{row[t]['ttfe_p50_us']:.0f}" for t in ("direct", "nginx", "edge")) + " us")
            rows.append(row)
        self.rounds["ttfe"] = rows

    def m_memory(self):
        n = self.a.idle_conns
        row = {}
        for t in ("nginx", "edge"):
            pid_list = self.pids[t][1:] if t == "nginx" else self.pids[t]   # nginx: the worker
            # Warm the request path with a few connections, so pools and
            # buffers that do not scale with connections exist already.
            bl.close_all(bl.open_idle(self.ports[t], "/v1/messages", self.gw.key_plain["key"], self.body_plain, 100))
            time.sleep(0.5)
            rss0 = sum(bl.rss_kib(p) for p in pid_list)
            t0 = time.monotonic()
            socks = bl.open_idle(self.ports[t], "/v1/messages", self.gw.key_plain["key"], self.body_plain, n)
            took = time.monotonic() - t0
            try:
                time.sleep(1.0)   # let the proxy settle (timers, deferred frees) before reading RSS
                rss1 = sum(bl.rss_kib(p) for p in pid_list)
            finally:
                bl.close_all(socks)
            if t == "edge":
                self.counts["plain"] += 100 + n
            row[t] = {"connections": n, "rss_before_kib": rss0, "rss_open_kib": rss1,
                      "kib_per_conn": (rss1 - rss0) / n, "open_seconds": took}
            log(f"memory {t}: {n} idle connections, RSS {rss0} -> {rss1} KiB, {(rss1 - rss0) / n:.2f} KiB/conn")
        self.rounds["memory"] = [row]

    def m_profile(self):
        """Where the edge's time goes under the non-streaming load, next to
        nginx: CPU and context switches per request by thread, system calls
        per request (strace -c), and a perf profile of the edge (DWARF call
        graphs, so inclusive costs of the edge's own functions show)."""
        a, parts = self.a, []
        dur = max(3, a.duration)
        # 1. Threads: CPU and context switches per request.
        lines = ["| proxy | thread | CPU us/req | voluntary cs/req | involuntary cs/req |",
                 "| --- | --- | ---: | ---: | ---: |"]
        edge_tid_us = {}
        for t in ("nginx", "edge"):
            before = {p: bl.threads(p) for p in self.pids[t]}
            run = self.wrk(t, False, a.conns, dur, tag=f"prof-threads-{t}")
            n = max(1, run["requests"])
            agg = {}
            for p in self.pids[t]:
                after = bl.threads(p)
                for tid, (comm, cpu, vcs, ivcs) in after.items():
                    c0, v0, i0 = before[p].get(tid, (comm, 0, 0, 0))[1:]
                    if t == "edge":
                        edge_tid_us[tid] = (cpu - c0) * 1e6 / n
                    # Pool threads (nng:task) summed; the others one row each.
                    label = comm if ":" in comm else f"{comm} [{tid}]"
                    g = agg.setdefault(label, [0, 0, 0, 0])
                    g[0] += cpu - c0
                    g[1] += vcs - v0
                    g[2] += ivcs - i0
                    g[3] += 1
            for comm, (cpu, vcs, ivcs, cnt) in sorted(agg.items(), key=lambda kv: -kv[1][0]):
                if cpu == 0 and vcs + ivcs < n / 100:
                    continue
                name = comm + (f" (x{cnt})" if cnt > 1 else "")
                lines.append(f"| {t} | {name} | {cpu * 1e6 / n:.1f} | {vcs / n:.2f} | {ivcs / n:.2f} |")
        parts.append("### Threads (non-streaming load)\n\n" + "\n".join(lines))
        # 2. System calls per request.
        if bl.which("strace"):
            cols = {}
            for t in ("nginx", "edge"):
                pid = self.pids[t][-1]
                out = os.path.join(self.wd, f"strace-{t}.txt")
                st = subprocess.Popen(["strace", "-c", "-f", "-o", out, "-p", str(pid)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(0.5)
                run = self.wrk(t, False, a.conns, 3, tag=f"prof-strace-{t}")
                st.send_signal(2)
                st.wait()
                cols[t] = (bl.parse_strace(out), max(1, run["requests"]))
            names = sorted(set(cols["nginx"][0]) | set(cols["edge"][0]),
                           key=lambda k: -(cols["edge"][0].get(k, 0) / cols["edge"][1]))
            lines = ["| system call | nginx per request | edge per request |", "| --- | ---: | ---: |"]
            tot = {"nginx": 0.0, "edge": 0.0}
            for k in names:
                v = {t: cols[t][0].get(k, 0) / cols[t][1] for t in cols}
                tot = {t: tot[t] + v[t] for t in tot}
                if max(v.values()) >= 0.01:
                    lines.append(f"| {k} | {v['nginx']:.2f} | {v['edge']:.2f} |")
            lines.append(f"| **total** | **{tot['nginx']:.2f}** | **{tot['edge']:.2f}** |")
            parts.append("### System calls per request (strace -c -f, 3 s of load; strace slows the proxy, the "
                         "counts per request are what matters)\n\n" + "\n".join(lines))
        # 3. perf profile of the edge.
        if bl.which("perf"):
            data = os.path.join(self.wd, "perf.data")
            rec = subprocess.Popen(bl.pin(self.load_cpu) + [
                "perf", "record", "-F", "999", "-e", "cpu-clock", "--call-graph", "dwarf,16384",
                "-p", str(self.gw.edge.pid), "-o", data, "--", "sleep", "4"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.2)
            self.wrk("edge", False, a.conns, 5, tag="prof-perf")
            rec.wait()
            # Samples are shared out within each thread and scaled by that
            # thread's CPU per request measured without perf (the threads
            # table above): in a VM, cpu-clock samples taken with interrupts
            # off land on whichever thread runs next, and perf's own cost
            # inflates some threads, so perf's split between threads is
            # biased; the split inside one thread much less.
            buckets = {}
            for tid, per in bl.profile_buckets(data).items():
                tot = sum(per.values())
                for name, cnt in per.items():
                    buckets[name] = buckets.get(name, 0.0) + edge_tid_us.get(tid, 0.0) * cnt / tot
            total = sum(buckets.values()) or 1.0
            lines = ["| where | share of edge CPU | us per request |", "| --- | ---: | ---: |"]
            for name, us in sorted(buckets.items(), key=lambda kv: -kv[1]):
                lines.append(f"| {name} | {100.0 * us / total:.1f}% | {us:.1f} |")
            lines.append(f"| **total** | 100% | {total:.1f} |")
            parts.append("### Where the edge's CPU goes (perf samples by call chain, first matching rule of "
                         "PROFILE_BUCKETS in bench/benchlib.py)\n\n" + "\n".join(lines))

            def report(extra, keep, limit):
                r = subprocess.run(["perf", "report", "-i", data, "--stdio", "-g", "none", "--percent-limit", "0.5"]
                                   + extra, capture_output=True, text=True)
                rows = [ln.rstrip() for ln in r.stdout.splitlines()
                        if ln.strip() and not ln.startswith("#") and keep(ln)]
                return "\n".join(rows[:limit])
            parts.append("### perf: self time by shared object\n\n```\n"
                         + report(["--no-children", "--sort", "dso"], lambda ln: True, 15) + "\n```")
            parts.append("### perf: self time by function\n\n```\n"
                         + report(["--no-children", "--sort", "sym"], lambda ln: True, 30) + "\n```")
            parts.append("### perf: inclusive time of user-space functions (children)\n\n```\n"
                         + report(["--children", "--sort", "sym"],
                                  lambda ln: "[k]" not in ln and "[.] 0x0000" not in ln, 60) + "\n```")
        else:
            parts.append("perf not installed: no profile")
        self.profile = "\n\n".join(parts)
        log("profile done")

    def check_metering(self):
        """Waits until the hub has at least one usage row per answer the
        clients got from the edge (in-flight requests wrk abandoned at the end
        of a run may add rows), and checks the newest row's tokens."""
        out = {}
        for name, key in (("plain", self.gw.key_plain), ("stream", self.gw.key_stream)):
            want = self.counts[name]
            deadline = time.monotonic() + (20 if self.a.smoke else 180)
            while True:
                got, newest = self.gw.usage_rows(key["id"])
                if got >= want or time.monotonic() > deadline:
                    break
                time.sleep(1.0)
            out[name] = {"answers_counted": want, "usage_rows": got}
            if got < want:
                self.errors.append(f"metering: {got} usage rows for {want} answers of key {name}")
            if newest is not None:
                exp = bl.USAGE
                ok = (newest["input_tokens"] == exp["input_tokens"] and newest["output_tokens"] == exp["output_tokens"]
                      and newest["cache_read_tokens"] == exp["cache_read_input_tokens"]
                      and newest["cache_write_5m_tokens"] == exp["cache_creation"]["ephemeral_5m_input_tokens"]
                      and newest["cache_write_1h_tokens"] == exp["cache_creation"]["ephemeral_1h_input_tokens"])
                out[name]["newest_row_exact"] = ok
                if not ok:
                    self.errors.append(f"metering: newest {name} row has unexpected usage {newest}")
        return out


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# ---- summary -------------------------------------------------------------------

def med(rows, target, field):
    return bl.median([r[target][field] for r in rows if r[target].get(field) is not None])


def summarise(b):
    s = {"rows": []}
    R = b.rounds

    def row(name, nginx, edge, rat, target, direction, unit, note=""):
        met = None
        if rat is not None and target is not None:
            met = rat >= target if direction == ">=" else rat <= target
        s["rows"].append({"measure": name, "nginx": nginx, "edge": edge, "ratio": rat,
                          "target": f"{direction} {target}" if target is not None else "-", "met": met,
                          "unit": unit, "note": note})

    if "throughput" in R:
        rows = R["throughput"]
        n_rps, e_rps = med(rows, "nginx", "rps"), med(rows, "edge", "rps")
        row("non-streaming requests/s measured", n_rps, e_rps, bl.ratio(e_rps, n_rps), T_RPS, ">=", "req/s",
            f"{b.a.conns} connections; bounded by the load CPU when proxy utilisation < 0.95")
        n_c, e_c = med(rows, "nginx", "proxy_cpu_us_per_req"), med(rows, "edge", "proxy_cpu_us_per_req")
        row("non-streaming CPU per request", n_c, e_c, bl.ratio(e_c, n_c), T_RATIO, "<=", "us")
        row("non-streaming requests/s per proxy core (1 / CPU per request)", 1e6 / n_c, 1e6 / e_c,
            bl.ratio(n_c, e_c), T_RPS, ">=", "req/s")
    if "latency" in R:
        rows = R["latency"]
        for p in ("p50", "p99"):
            n_a, e_a = med(rows, "nginx", f"added_{p}_us"), med(rows, "edge", f"added_{p}_us")
            d = med(rows, "direct", "rps")
            row(f"added latency {p}", n_a, e_a, bl.ratio(e_a, n_a), T_RATIO, "<=", "us",
                f"direct {p} {bl.median([r['direct']['latency_us'][p] for r in rows])} us at ~{d:.0f} req/s")
    if "stream" in R:
        rows = R["stream"]
        n_c, e_c = med(rows, "nginx", "proxy_cpu_us_per_req"), med(rows, "edge", "proxy_cpu_us_per_req")
        row("streaming CPU per stream", n_c, e_c, bl.ratio(e_c, n_c), T_RATIO, "<=", "us",
            f"{b.a.stream_conns} connections")
    if "ttfe" in R:
        rows = R["ttfe"]
        n_a, e_a = med(rows, "nginx", "added_ttfe_p50_us"), med(rows, "edge", "added_ttfe_p50_us")
        row("added time to first event (median)", n_a, e_a, bl.ratio(e_a, n_a), T_RATIO, "<=", "us",
            f"direct {med(rows, 'direct', 'ttfe_p50_us'):.0f} us")
        n_a, e_a = med(rows, "nginx", "added_ttfe_p99_us"), med(rows, "edge", "added_ttfe_p99_us")
        row("added time to first event (p99)", n_a, e_a, bl.ratio(e_a, n_a), None, "info", "us", "no target")
    if "memory" in R:
        m = R["memory"][0]
        n_k, e_k = m["nginx"]["kib_per_conn"], m["edge"]["kib_per_conn"]
        s["rows"].append({"measure": f"RSS per idle keep-alive connection ({m['edge']['connections']} open)",
                          "nginx": n_k, "edge": e_k, "ratio": bl.ratio(e_k, n_k),
                          "target": f"edge <= {T_IDLE_CONN_KIB} KiB", "met": e_k <= T_IDLE_CONN_KIB, "unit": "KiB",
                          "note": ""})
    s["rows"].append({"measure": f"idle edge RSS (after start, snapshot with {b.a.keys + 2} keys loaded)",
                      "nginx": None,
                      "edge": b.edge_idle_rss / 1024, "ratio": None, "target": f"<= {T_IDLE_RSS_MIB:.0f} MiB",
                      "met": b.edge_idle_rss / 1024 <= T_IDLE_RSS_MIB, "unit": "MiB", "note": ""})
    return s


def fmt(v, unit=""):
    if v is None:
        return "-"
    if isinstance(v, float):
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def render(b, s, meta):
    L = []
    L.append(f"# AiCarpool benchmark {meta['stamp']}{' (smoke)' if b.a.smoke else ''}")
    L.append("")
    L.append(f"Command: `{meta['command']}`")
    L.append("")
    L.append(f"Code: {meta['git']}; build: {meta['bin_dir']}; edge: `{meta['edge_argv']}`")
    L.append(f"Machine: {meta['cpu_model']}, {meta['ncpu']} CPUs, kernel {meta['kernel']}; "
             f"load average at start {meta['loadavg_start']}, at end {meta['loadavg_end']}")
    L.append(f"Tools: {meta['nginx']}, {meta['wrk']}; pinning: proxy on CPU {b.proxy_cpu}, "
             f"wrk + upstream nginx + hub + python clients on CPU {b.load_cpu}")
    L.append(f"Niceness of all benchmark processes: {b.a.nice:+d}. "
             f"Rounds: {b.a.rounds} x {b.a.duration} s per run, interleaved nginx/edge (latency and TTFE also "
             f"direct); medians over rounds. Logs: {'off' if b.a.quiet_logs else 'on (nginx access_log, edge info)'}")
    L.append("")
    L.append("| measure | nginx | edge | edge/nginx | target | met |")
    L.append("| --- | ---: | ---: | ---: | --- | --- |")
    for r in s["rows"]:
        met = "-" if r["met"] is None else ("yes" if r["met"] else "**no**")
        unit = f" {r['unit']}" if r["unit"] else ""
        note = f" ({r['note']})" if r["note"] else ""
        L.append(f"| {r['measure']}{note} | {fmt(r['nginx'])}{unit if r['nginx'] is not None else ''} | "
                 f"{fmt(r['edge'])}{unit} | {fmt(r['ratio'])} | {r['target']} | {met} |")
    L.append("")
    ctx = []
    R = b.rounds
    for m in ("throughput", "stream"):
        if m in R:
            for t in ("nginx", "edge"):
                ctx.append(f"{m} {t}: proxy CPU utilisation {fmt(med(R[m], t, 'proxy_cpu_util'))}, "
                           f"load-side CPU {fmt(med(R[m], t, 'load_side_cpu_util'))} "
                           f"(load CPU busy in total {fmt(med(R[m], t, 'load_cpu_busy_util'))}), "
                           f"foreign load on the proxy CPU {fmt(med(R[m], t, 'foreign_on_proxy_cpu_util'))}, "
                           f"hub CPU per request {fmt(med(R[m], t, 'hub_cpu_us_per_req'))} us")
    if "latency" in R:
        for t in ("direct", "nginx", "edge"):
            ctx.append(f"latency {t}: p50 {fmt(bl.median([r[t]['latency_us']['p50'] for r in R['latency']]))} us, "
                       f"p99 {fmt(bl.median([r[t]['latency_us']['p99'] for r in R['latency']]))} us, "
                       f"{fmt(med(R['latency'], t, 'rps'))} req/s")
    if "ttfe" in R:
        for t in ("direct", "nginx", "edge"):
            ctx.append(f"ttfe {t}: p50 {fmt(med(R['ttfe'], t, 'ttfe_p50_us'))} us, "
                       f"p99 {fmt(med(R['ttfe'], t, 'ttfe_p99_us'))} us, "
                       f"whole stream p50 {fmt(med(R['ttfe'], t, 'total_p50_us'))} us")
    if "memory" in R:
        for t in ("nginx", "edge"):
            m = R["memory"][0][t]
            ctx.append(f"memory {t}: RSS {m['rss_before_kib']} -> {m['rss_open_kib']} KiB with "
                       f"{m['connections']} idle connections")
    ctx.append(f"edge RSS: idle {b.edge_idle_rss} KiB, at the end {meta.get('edge_rss_end_kib')} KiB")
    met = meta.get("metering", {})
    for k, v in met.items():
        ctx.append(f"metering ({k} key): {v['usage_rows']} usage rows for {v['answers_counted']} answers counted by "
                   f"clients; newest row exact: {v.get('newest_row_exact')}")
    L.append("Context (medians):")
    L.append("")
    L += [f"- {c}" for c in ctx]
    if b.errors:
        L.append("")
        L.append("INVALID RUN:")
        L += [f"- {e}" for e in b.errors]
    if getattr(b, "profile", None):
        L.append("")
        L.append("## Profile of the edge (non-streaming load)")
        L.append("")
        L.append(b.profile)
    return "\n".join(L) + "\n"


def tool_version(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True)
        return (r.stdout + r.stderr).strip().splitlines()[0]
    except OSError:
        return "?"


def git_desc():
    try:
        head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return f"{head}{' + uncommitted changes' if dirty else ''}"
    except OSError:
        return "?"


def main(argv):
    a = parse_args(argv)
    if not a.bin_dir:
        a.bin_dir = os.path.join(ROOT, "build-bench")
    for tool in ("nginx", "wrk") + (("taskset",) if not a.no_pin else ()):
        if not bl.which(tool):
            print(f"bench: {tool} not found (scripts/setup installs nginx and wrk)", file=sys.stderr)
            return 2
    wd = tempfile.mkdtemp(prefix="aicarpool-bench-")
    os.chmod(wd, 0o755)
    stamp = time.strftime("%Y-%m-%d-%H%M%S")
    meta = {"stamp": stamp, "command": os.environ.get("BENCH_COMMAND", "bench/bench.py " + shlex.join(argv)),
            "git": git_desc(), "bin_dir": a.bin_dir, "ncpu": os.cpu_count(), "kernel": platform.release(),
            "cpu_model": next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                               if ln.startswith("model name")), "?"),
            "loadavg_start": open("/proc/loadavg").read().split()[:3],
            "nginx": tool_version(["nginx", "-v"]), "wrk": tool_version(["wrk", "-v"]), "workdir": wd}
    b = Bench(a, wd)
    rc = 0
    try:
        log(f"work dir {wd}")
        b.start()
        meta["edge_argv"] = " ".join(b.gw.edge_argv)
        meta["edge_workers_flag"] = b.gw.workers_flag
        log(f"upstream :{b.up_port}, nginx :{b.ng_port}, edge :{b.gw.port}; idle edge RSS {b.edge_idle_rss} KiB")
        for m in ("memory", "throughput", "latency", "stream", "ttfe", "profile"):
            if m in a.measures:
                getattr(b, f"m_{m}")()
        meta["edge_rss_end_kib"] = bl.rss_kib(b.gw.edge.pid)
        meta["metering"] = b.check_metering()
    except (bl.BenchError, OSError, subprocess.SubprocessError) as exc:
        b.errors.append(f"aborted: {exc}")
        rc = 1
    finally:
        rcs = b.stop()
        meta["exit_status"] = rcs
        meta["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    if b.errors:
        rc = 1
    if not b.rounds and not hasattr(b, "edge_idle_rss"):
        print("\n".join(b.errors), file=sys.stderr)
        print(f"bench: files kept in {wd}", file=sys.stderr)
        return rc
    s = summarise(b)
    text = render(b, s, meta)
    print(text)
    if a.smoke and a.out is None:
        out = None   # a smoke run only checks the harness: nothing written
    else:
        out = a.out or os.path.join(HERE, "results")
    if out is not None:
        os.makedirs(out, exist_ok=True)
        base = os.path.join(out, stamp + ("-smoke" if a.smoke else ""))
        with open(base + ".md", "w") as f:
            f.write(text)
        with open(base + ".json", "w") as f:
            json.dump({"meta": meta, "args": vars(a), "summary": s, "rounds": b.rounds, "errors": b.errors,
                       "profile": getattr(b, "profile", None)}, f, indent=1, default=str)
        log(f"results: {base}.md and {base}.json")
    if rc == 0 and not a.keep:
        subprocess.run(["rm", "-rf", wd])
    else:
        log(f"files kept in {wd}")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
