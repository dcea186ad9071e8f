# SPDX-License-Identifier: Apache-2.0
"""Building blocks of the AiCarpool benchmarks (bench/run): the canned
Anthropic upstream (nginx), the nginx reverse-proxy baseline, the system under
test (aicarpool-hub + aicarpool-edge with auth, routing and metering on), CPU
and RSS readings from /proc, wrk runs, and the raw-socket clients that measure
time to first event and memory per idle keep-alive connection. Standard
library only."""
import errno
import http.client
import json
import os
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

# Canned provider answers. Usage numbers are fixed so the metered rows can be
# checked: input 25, output 12, cache read 7, cache write 3 (5m) + 2 (1h).
MODEL = "claude-sonnet-4-5-20250929"
USAGE = {"input_tokens": 25, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 7,
         "cache_creation": {"ephemeral_5m_input_tokens": 3, "ephemeral_1h_input_tokens": 2},
         "output_tokens": 12, "service_tier": "standard"}
TEXT = "Hello! How can I help you with your code today? Ask me anything."
ACCOUNT_SECRET = "sk-ant-bench-account-credential-0123456789"

# Response headers a real Anthropic answer carries (values shortened); both
# proxies pass them through, so they cost the same parsing work for each.
UPSTREAM_HEADERS = [
    ("request-id", "req_011CUbenchmark0000000000"),
    ("anthropic-organization-id", "00000000-0000-0000-0000-000000000000"),
    ("anthropic-ratelimit-requests-limit", "4000"),
    ("anthropic-ratelimit-requests-remaining", "3999"),
    ("anthropic-ratelimit-requests-reset", "2025-01-01T00:00:01Z"),
    ("anthropic-ratelimit-input-tokens-limit", "400000"),
    ("anthropic-ratelimit-input-tokens-remaining", "400000"),
    ("anthropic-ratelimit-input-tokens-reset", "2025-01-01T00:00:01Z"),
    ("anthropic-ratelimit-output-tokens-limit", "80000"),
    ("anthropic-ratelimit-output-tokens-remaining", "80000"),
    ("anthropic-ratelimit-output-tokens-reset", "2025-01-01T00:00:01Z"),
    ("via", "1.1 google"),
]


def canned_message():
    msg = {"id": "msg_01BenchmarkCannedAnswer0001", "type": "message", "role": "assistant", "model": MODEL,
           "content": [{"type": "text", "text": TEXT}], "stop_reason": "end_turn", "stop_sequence": None,
           "usage": USAGE}
    return json.dumps(msg, separators=(",", ":"))


def canned_sse():
    """The event sequence of a real streamed Messages answer: message_start
    with the input usage, a text block in word deltas, message_delta with the
    final usage, message_stop."""
    start_usage = dict(USAGE, output_tokens=1)
    events = [("message_start", {"type": "message_start", "message": {
        "id": "msg_01BenchmarkCannedStream001", "type": "message", "role": "assistant", "model": MODEL,
        "content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage}}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        ("ping", {"type": "ping"})]
    words = TEXT.split(" ")
    for i, w in enumerate(words):
        piece = w + (" " if i + 1 < len(words) else "")
        events.append(("content_block_delta", {"type": "content_block_delta", "index": 0,
                                               "delta": {"type": "text_delta", "text": piece}}))
    events += [("content_block_stop", {"type": "content_block_stop", "index": 0}),
               ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                  "usage": {"output_tokens": USAGE["output_tokens"]}}),
               ("message_stop", {"type": "message_stop"})]
    return "".join(f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n" for name, data in events)


def request_body(stream, pad=0):
    body = {"model": MODEL, "max_tokens": 1024,
            "messages": [{"role": "user", "content": "Say hello" + (" x" * pad)}]}
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":")).encode()


def nginx_quote(text):
    """A single-quoted nginx string. `return` text is a complex value, so a
    '$' would start a variable: the canned bodies must not contain one."""
    if "$" in text:
        raise ValueError("canned nginx text must not contain '$'")
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def nofile_limit():
    import resource
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class BenchError(Exception):
    pass


def wait_until(what, probe, seconds=30.0, interval=0.05):
    end = time.monotonic() + seconds
    last = None
    while True:
        try:
            last = probe()
            if last:
                return last
        except (OSError, http.client.HTTPException, ValueError) as exc:
            last = exc
        if time.monotonic() >= end:
            raise BenchError(f"timed out after {seconds}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


def http_json(port, method, path, body=None, headers=None, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        hdrs = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["content-type"] = "application/json"
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, (json.loads(raw) if raw else None)
    finally:
        conn.close()


# ---- processes ----------------------------------------------------------------

def _die_with_parent():
    """Child setup: SIGTERM when the bench process dies, so an interrupted
    run leaves no proxy behind."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG


class Proc:
    """A child process with its output in a log file."""

    def __init__(self, name, argv, workdir, env=None):
        self.name = name
        self.argv = argv
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.log = open(self.log_path, "wb")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=full_env, cwd=workdir,
                                  preexec_fn=_die_with_parent)
        self.pid = self.p.pid

    def alive(self):
        return self.p.poll() is None

    def check(self):
        if not self.alive():
            raise BenchError(f"{self.name} exited ({self.p.returncode}):\n{self.tail()}")

    def tail(self, n=3000):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")[-n:]

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()
        return self.p.returncode


def pin(cpu):
    """taskset prefix pinning a command to one CPU; empty when pinning is off."""
    return [] if cpu is None else ["taskset", "-c", str(cpu)]


def children_of(pid):
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        if int(st[st.rindex(")") + 2:].split()[1]) == pid:
            kids.append(int(d))
    return kids


def cpu_seconds(pids):
    """utime + stime of the processes (all their threads, living and exited)."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
        fields = st[st.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchError(f"no VmRSS for {pid}")


def threads(pid):
    """{tid: (name, cpu seconds, voluntary, involuntary context switches)}."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                st = f.read()
            fields = st[st.rindex(")") + 2:].split()
            cs = {}
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if "ctxt_switches" in line:
                        k, v = line.split(":")
                        cs[k] = int(v)
            out[tid] = (st[st.index("(") + 1:st.rindex(")")], (int(fields[11]) + int(fields[12])) / CLK_TCK,
                        cs.get("voluntary_ctxt_switches", 0), cs.get("nonvoluntary_ctxt_switches", 0))
        except OSError:
            pass
    return out


def parse_strace(path):
    """{syscall: calls} from an `strace -c` summary."""
    out = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
                try:
                    out[parts[-1]] = int(parts[3])
                except ValueError:
                    pass
    return out


# Where a perf sample of the edge goes: the first rule (in this order) whose
# pattern names a frame of the sample's call chain, or whose thread name
# starts with the pattern given as "thread:...".
PROFILE_BUCKETS = [
    ("hub link: NNG library threads", ["thread:nng:"]),
    ("hub link: usage batches (hublink thread)", ["hublink_thread"]),
    ("usage record hand-off to the hublink thread (mutex, wake-up)", ["edge_hublink_push_usage"]),
    ("access log line (format + write)", ["gw_log_write", "gw_log_req"]),
    ("writes to the client (gw_http -> uv_write -> write)", ["conn_write_raw", "uv_write2", "uv_try_write"]),
    ("JSON (request body scan, response metering)", ["cJSON_", "gw_json_"]),
    ("curl handle setup / teardown per request",
     ["curl_easy_init", "curl_easy_cleanup", "curl_easy_setopt", "curl_multi_add_handle",
      "curl_multi_remove_handle", "curl_slist_", "edge_upstream_start"]),
    ("curl socket callback (uv_poll init/start/stop, epoll_ctl)", ["upstream_socket_cb"]),
    ("libcurl transfer (upstream send/recv, response parsing, connection checks)",
     ["curl_multi_socket_action"]),
    ("client request: read, parse, pipeline (auth, route, headers)",
     ["conn_on_read", "http_parser_execute", "edge_req_"]),
    ("request/transfer completion (timers, frees)", ["upstream_settle", "upstream_timer_cb", "upstream_req_"]),
    ("event loop (epoll_wait, timers, idle)", ["uv__io_poll", "uv_run", "epoll_wait"]),
]


def profile_buckets(perf_data):
    """{tid: {bucket: samples}} of a perf.data recorded with call graphs."""
    r = subprocess.run(["perf", "script", "-i", perf_data, "-F", "comm,tid,ip,sym"], capture_output=True,
                       text=True)
    counts = {}

    def classify(comm, frames):
        for name, pats in PROFILE_BUCKETS:
            for pat in pats:
                if pat.startswith("thread:"):
                    if comm.startswith(pat[7:]):
                        return name
                elif any(pat in f for f in frames):
                    return name
        return "other"
    head, frames = None, []
    for line in r.stdout.splitlines() + [""]:
        if not line.strip():
            if head is not None:
                comm, tid = head
                b = classify(comm, frames)
                per = counts.setdefault(tid, {})
                per[b] = per.get(b, 0) + 1
            head, frames = None, []
        elif line[0] not in " \t":
            f = line.split()
            head = (" ".join(f[:-1]), f[-1]) if len(f) >= 2 else ("", "0")
        else:
            parts = line.split(None, 1)
            frames.append(parts[1] if len(parts) > 1 else "")
    return counts


class Nginx:
    """One nginx (master + 1 worker) with its own config, pid, logs and temp
    paths in a directory of the work dir, running in the foreground."""

    def __init__(self, name, workdir, http_block, cpu, nofile):
        self.name = name
        self.dir = os.path.join(workdir, name)
        os.makedirs(os.path.join(self.dir, "tmp"), exist_ok=True)
        d = self.dir
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf = f"""# generated by bench/benchlib.py
{user}worker_processes 1;
worker_rlimit_nofile {nofile};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections {max(1024, nofile - 64)}; }}
http {{
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    types {{ }}
    default_type application/json;
{http_block}
}}
"""
        self.conf_path = os.path.join(d, "nginx.conf")
        with open(self.conf_path, "w") as f:
            f.write(conf)
        self.proc = Proc(name, pin(cpu) + ["nginx", "-p", d, "-e", f"{d}/error.log", "-c", self.conf_path,
                                           "-g", "daemon off;"], workdir)
        self.master = self.proc.pid

    def wait_ready(self, port):
        def probe():
            self.proc.check()
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
            return children_of(self.master)
        self.workers = wait_until(f"{self.name} listening", probe, 20)

    def pids(self):
        return [self.master] + self.workers

    def stop(self):
        return self.proc.stop(signal.SIGQUIT)


def upstream_block(port):
    sse = canned_sse()
    hdrs = "".join(f"        add_header {k} \"{v}\";\n" for k, v in UPSTREAM_HEADERS)
    return f"""    access_log off;
    server {{
        listen 127.0.0.1:{port} backlog=8192;
        location = /v1/messages {{
{hdrs}            return 200 {nginx_quote(canned_message())};
        }}
        location = /stream/v1/messages {{
            default_type text/event-stream;
{hdrs}            add_header cache-control no-cache;
            return 200 {nginx_quote(sse)};
        }}
        location / {{
            return 404 '{{"type":"error","error":{{"type":"not_found_error","message":"not found"}}}}';
        }}
    }}
"""


def baseline_block(port, upstream_port, access_log):
    proxy = f"""proxy_pass http://anthropic;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header x-api-key "{ACCOUNT_SECRET}";
            proxy_set_header Authorization "";"""
    return f"""    access_log {access_log};
    upstream anthropic {{
        server 127.0.0.1:{upstream_port};
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=8192;
        client_max_body_size 32m;
        location / {{
            {proxy}
        }}
        location /stream/ {{
            {proxy}
            proxy_buffering off;
        }}
    }}
"""


class Gateway:
    """aicarpool-hub (control plane, on the load CPU) and a standalone
    aicarpool-edge (the proxy under test) dialled to it over tcp://, with two
    groups: one whose account answers JSON and one whose account answers SSE
    (its base URL ends in /stream). The edge authenticates every request,
    routes it through the snapshot and meters it to the hub."""

    PASSWORD = "bench-Admin-pw-1"

    def __init__(self, workdir, bin_dir, upstream_port, edge_cpu, hub_cpu, quiet_logs, max_conns, extra_keys=0):
        hub_bin = os.path.join(bin_dir, "hub", "aicarpool-hub")
        edge_bin = os.path.join(bin_dir, "edge", "aicarpool-edge")
        for b in (hub_bin, edge_bin):
            if not os.access(b, os.X_OK):
                raise BenchError(f"{b} not found: build aicarpool-hub and aicarpool-edge first")
        self.admin_port, link_port, self.port = free_port(), free_port(), free_port()
        level = ["--log-level", "warn"] if quiet_logs else []
        self.hub = Proc("hub", pin(hub_cpu) + [
            hub_bin, "--data", os.path.join(workdir, "hub-data"), "--listen", f"127.0.0.1:{self.admin_port}",
            "--link", f"tcp://127.0.0.1:{link_port}"] + level, workdir,
            env={"AICARPOOL_ADMIN_PASSWORD": self.PASSWORD})

        def hub_up():
            self.hub.check()
            return http_json(self.admin_port, "GET", "/healthz")[0] == 200
        wait_until("hub /healthz", hub_up, 30)
        _, tok = http_json(self.admin_port, "POST", "/api/auth/login", {"username": "admin", "password": self.PASSWORD})
        self.auth = {"authorization": f"Bearer {tok['access_token']}"}
        self.key_plain = self._group("bench-json", f"http://127.0.0.1:{upstream_port}")
        self.key_stream = self._group("bench-sse", f"http://127.0.0.1:{upstream_port}/stream")
        if extra_keys:
            self._extra_keys(extra_keys)

        edge_help = subprocess.run([edge_bin, "--help"], capture_output=True, text=True).stdout
        extra = []
        if "--workers" in edge_help:
            extra += ["--workers", "1"]
        self.workers_flag = "--workers" in edge_help
        if "--max-connections" in edge_help:
            extra += ["--max-connections", str(max_conns)]
        self.edge = Proc("edge", pin(edge_cpu) + [
            edge_bin, "--listen", f"127.0.0.1:{self.port}", "--hub", f"tcp://127.0.0.1:{link_port}",
            "--edge-id", "bench"] + extra + level, workdir)
        self.edge_argv = self.edge.argv
        _, st = self.api("GET", "/api/status")
        want = st["config_version"]

        def edge_current():
            self.edge.check()
            status, data = http_json(self.port, "GET", "/readyz")
            return status == 200 and data.get("snapshot_version", 0) >= want
        wait_until(f"edge snapshot >= {want}", edge_current, 30)

    def api(self, method, path, body=None):
        status, data = http_json(self.admin_port, method, path, body, self.auth)
        if status >= 300:
            raise BenchError(f"{method} {path}: {status} {data}")
        return status, data

    def _group(self, name, base_url):
        _, g = self.api("POST", "/api/groups", {"name": name})
        _, a = self.api("POST", "/api/accounts", {"name": f"acct-{name}", "kind": "anthropic", "base_url": base_url,
                                                  "api_key": ACCOUNT_SECRET, "priority": 1, "weight": 1})
        self.api("POST", f"/api/groups/{g['id']}/bindings", {"account_id": a["id"]})
        _, k = self.api("POST", "/api/keys", {"group_id": g["id"], "name": f"key-{name}"})
        if not hasattr(self, "group_plain"):
            self.group_plain = g["id"]
        return {"id": k["id"], "key": k["key"]}

    def _extra_keys(self, n, threads=8):
        """n more keys in the JSON group, so the edge's snapshot is realistic
        in size (DESIGN.md: idle edge <= 32 MiB with 100k keys)."""
        import threading
        errors = []

        def work(count):
            conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=30)
            try:
                for _ in range(count):
                    body = json.dumps({"group_id": self.group_plain, "name": "bench-extra"}).encode()
                    conn.request("POST", "/api/keys", body=body,
                                 headers=dict(self.auth, **{"content-type": "application/json"}))
                    r = conn.getresponse()
                    r.read()
                    if r.status != 201:
                        errors.append(r.status)
                        return
            except (OSError, http.client.HTTPException) as exc:
                errors.append(repr(exc))
            finally:
                conn.close()
        ts = [threading.Thread(target=work, args=(n // threads + (1 if i < n % threads else 0),))
              for i in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        if errors:
            raise BenchError(f"creating extra keys: {errors[:3]}")

    def usage_rows(self, key_id):
        """Number of usage rows of a key (binary search over offset)."""
        def has(n):
            _, d = self.api("GET", f"/api/usage?key_id={key_id}&limit=1&offset={n - 1}")
            return len(d["items"]) == 1
        if not has(1):
            return 0, None
        lo, hi = 1, 2
        while has(hi):
            lo, hi = hi, hi * 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if has(mid):
                lo = mid
            else:
                hi = mid
        _, d = self.api("GET", f"/api/usage?key_id={key_id}&limit=1")
        return lo, d["items"][0]

    def stop(self):
        rc_edge = self.edge.stop()
        rc_hub = self.hub.stop()
        return rc_edge, rc_hub


# ---- load --------------------------------------------------------------------

def run_wrk(lua, url, conns, duration, cpu, out_path, env, timeout_s=10):
    """One wrk run (1 thread); returns the summary the Lua done() wrote."""
    if os.path.exists(out_path):
        os.unlink(out_path)
    argv = pin(cpu) + ["wrk", "-t1", f"-c{conns}", f"-d{duration}s", f"--timeout", f"{timeout_s}s", "-s", lua, url]
    full_env = dict(os.environ)
    full_env.update(env)
    full_env["BENCH_OUT"] = out_path
    r = subprocess.run(argv, capture_output=True, text=True, env=full_env, timeout=duration + 60)
    if r.returncode != 0 or not os.path.exists(out_path):
        raise BenchError(f"wrk failed ({r.returncode}): {r.stdout[-2000:]} {r.stderr[-2000:]}")
    with open(out_path) as f:
        res = json.load(f)
    res["argv"] = argv
    return res


def http_request(path, key, body, host="127.0.0.1"):
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nx-api-key: {key}\r\n"
            f"anthropic-version: 2023-06-01\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode() + body


class Response:
    """Incremental parser for one HTTP/1.1 response (content-length or chunked)."""

    def __init__(self):
        self.buf = bytearray()
        self.head_end = -1
        self.status = 0
        self.length = None
        self.chunked = False

    def feed(self, data):
        """Returns True once the whole response is in."""
        self.buf += data
        if self.head_end < 0:
            i = self.buf.find(b"\r\n\r\n")
            if i < 0:
                return False
            self.head_end = i + 4
            head = bytes(self.buf[:i]).decode("latin-1").split("\r\n")
            self.status = int(head[0].split(" ")[1])
            for line in head[1:]:
                k, _, v = line.partition(":")
                k = k.strip().lower()
                if k == "content-length":
                    self.length = int(v.strip())
                elif k == "transfer-encoding" and "chunked" in v.lower():
                    self.chunked = True
        body_len = len(self.buf) - self.head_end
        if self.chunked:
            return self.buf.endswith(b"\r\n0\r\n\r\n") or (body_len == 5 and self.buf.endswith(b"0\r\n\r\n"))
        if self.length is not None:
            return body_len >= self.length
        return False

    def body(self):
        raw = bytes(self.buf[self.head_end:])
        if not self.chunked:
            return raw
        out, i = bytearray(), 0
        while True:
            j = raw.index(b"\r\n", i)
            n = int(raw[i:j].split(b";")[0], 16)
            if n == 0:
                return bytes(out)
            out += raw[j + 2:j + 2 + n]
            i = j + 2 + n + 2


def ttfe(port, path, key, body, n):
    """Sequential streams on one keep-alive connection. For each: time from
    the first byte of the request leaving to the end of the first complete SSE
    event (first blank line after a data: line), and to the end of the
    response. Returns two lists in microseconds. Checks each stream is whole."""
    req = http_request(path, key, body)
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    firsts, totals = [], []
    try:
        for _ in range(n):
            r = Response()
            t0 = time.perf_counter_ns()
            s.sendall(req)
            t_first = None
            while True:
                data = s.recv(65536)
                if not data:
                    raise BenchError("connection closed mid-stream")
                done = r.feed(data)
                if t_first is None and r.head_end >= 0:
                    d = r.buf.find(b"data:", r.head_end)
                    if d >= 0 and r.buf.find(b"\n\n", d) >= 0:
                        t_first = time.perf_counter_ns()
                if done:
                    break
            t_end = time.perf_counter_ns()
            if r.status != 200 or b"event: message_stop" not in r.body():
                raise BenchError(f"bad stream: status {r.status}: {bytes(r.buf[:300])!r}")
            firsts.append((t_first - t0) / 1000)
            totals.append((t_end - t0) / 1000)
    finally:
        s.close()
    return firsts, totals


def open_idle(port, path, key, body, n, concurrency=200, source_ips=64):
    """Opens n connections, sends one request on each (at most `concurrency`
    in flight), reads each whole answer (must be 200) and keeps the sockets
    open and idle. Source addresses are spread over 127.0.0.2.. so repeated
    runs do not run out of ephemeral ports. Returns the open sockets."""
    req = http_request(path, key, body)
    sel = selectors.DefaultSelector()
    done_socks, started, inflight = [], 0, 0
    deadline = time.monotonic() + 120
    try:
        while len(done_socks) < n:
            while started < n and inflight < concurrency:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.bind((f"127.0.0.{2 + started % source_ips}", 0))
                s.setblocking(False)
                err = s.connect_ex(("127.0.0.1", port))
                if err not in (0, errno.EINPROGRESS):
                    raise BenchError(f"connect #{started}: {os.strerror(err)}")
                sel.register(s, selectors.EVENT_WRITE, [req, Response()])
                started += 1
                inflight += 1
            if time.monotonic() > deadline:
                raise BenchError(f"idle connections: only {len(done_socks)} of {n} answered in time")
            for k, ev in sel.select(timeout=1.0):
                s, st = k.fileobj, k.data
                if ev & selectors.EVENT_WRITE:
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise BenchError(f"connect: {os.strerror(err)}")
                    sent = s.send(st[0])
                    st[0] = st[0][sent:]
                    if not st[0]:
                        sel.modify(s, selectors.EVENT_READ, st)
                    continue
                data = s.recv(65536)
                if not data:
                    raise BenchError("connection closed before the answer")
                if st[1].feed(data):
                    if st[1].status != 200:
                        raise BenchError(f"idle-connection request got {st[1].status}: {bytes(st[1].buf[:300])!r}")
                    sel.unregister(s)
                    done_socks.append(s)
                    inflight -= 1
    except BaseException:
        close_all(done_socks)
        for k in list(sel.get_map().values()):
            k.fileobj.close()
        raise
    finally:
        sel.close()
    return done_socks


def close_all(socks):
    for s in socks:
        s.close()


# ---- maths -------------------------------------------------------------------

def median(xs):
    return statistics.median(xs) if xs else None


def percentile(xs, p):
    if not xs:
        return None
    ys = sorted(xs)
    k = max(0, min(len(ys) - 1, int(round(p / 100.0 * len(ys) + 0.5)) - 1))
    return ys[k]


def ratio(a, b):
    if a is None or b is None or b <= 0:
        return None
    return a / b


def which(tool):
    return shutil.which(tool)
