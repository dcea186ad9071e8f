# SPDX-License-Identifier: Apache-2.0
"""Helpers for AiCarpool's integration and end-to-end tests.

Starts the real programs (hub with its in-process edge, fake provider) as
processes on loopback with OS-chosen ports, waits for events with deadlines
(never sleeps to synchronise), and talks HTTP with the standard library only.
"""
import hashlib
import hmac
import http.client
import json
import re
import ssl
import struct
import threading
import math
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse

BIN_DIR = os.environ.get("GW_BIN_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
SOURCE_DIR = os.environ.get("GW_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
HUB_BIN = os.path.join(BIN_DIR, "hub", "aicarpool-hub")
FAKE_BIN = os.path.join(BIN_DIR, "tests", "fakes", "aicarpool-fakeprovider")
EDGE_BIN = os.path.join(BIN_DIR, "edge", "aicarpool-edge")
ADMIN_PASSWORD = "integration-Test-pw-1"

# The fake provider's answer and how it derives usage from the request body
# (tests/fakes/README.md). Tests compute expected usage with this.
FAKE_TEXT = "Hello from the AiCarpool fake provider."


def fake_usage(body_len, max_tokens=None):
    # Six words of text plus one end-of-turn token (tests/fakes/README.md).
    full = len(FAKE_TEXT.split(" ")) + 1
    out = full if max_tokens is None or max_tokens >= full else max_tokens
    cache_write = body_len % 13
    return {
        "input_tokens": math.ceil(body_len / 4),
        "output_tokens": out,
        "cache_read_tokens": body_len % 97,
        "cache_write_1h_tokens": cache_write // 2,
        "cache_write_5m_tokens": cache_write - cache_write // 2,
    }



def fake_usage_openai(body_len):
    """The usage row the edge should record for a fake OpenAI answer (Chat
    Completions or Responses): OpenAI's prompt count includes the cached
    tokens, the row's input does not (tests/fakes/README.md)."""
    cached = body_len % 97
    return {
        "input_tokens": math.ceil(body_len / 4),
        "output_tokens": len(FAKE_TEXT.split(" ")) + 1,
        "cache_read_tokens": cached,
        "cache_write_1h_tokens": 0,
        "cache_write_5m_tokens": 0,
        "reasoning_tokens": 0,
    }


def fake_usage_gemini(body_len):
    """The usage row the edge should record for a fake Gemini answer:
    input = promptTokenCount - cachedContentTokenCount, output =
    candidatesTokenCount + thoughtsTokenCount, reasoning = thoughts."""
    thoughts = body_len % 5
    return {
        "input_tokens": math.ceil(body_len / 4),
        "output_tokens": len(FAKE_TEXT.split(" ")) + 1 + thoughts,
        "cache_read_tokens": body_len % 97,
        "cache_write_1h_tokens": 0,
        "cache_write_5m_tokens": 0,
        "reasoning_tokens": thoughts,
    }


def fake_url(base, faults=None, label=None):
    """An account base URL on the fake provider: `label` becomes /acct/<label>
    (recorded as "account"), `faults` (a list of scenario items or one
    comma-separated string) becomes /fault/<items>, applied to every request
    sent under that base URL."""
    url = base.rstrip("/")
    if label:
        url += f"/acct/{label}"
    if faults:
        items = faults if isinstance(faults, str) else ",".join(faults)
        url += f"/fault/{items}"
    return url

class Deadline:
    def __init__(self, seconds):
        self.end = time.monotonic() + seconds

    def left(self):
        return max(0.0, self.end - time.monotonic())

    def expired(self):
        return time.monotonic() >= self.end


def wait_until(what, probe, seconds=30.0, interval=0.05):
    """Calls probe() until it returns a truthy value or the deadline passes.
    Between probes it blocks in select() on nothing for `interval`: the event
    we wait for is in another process and has no descriptor we could watch."""
    deadline = Deadline(seconds)
    last = None
    while True:
        try:
            last = probe()
            if last:
                return last
        except (OSError, http.client.HTTPException, ValueError) as exc:
            last = exc
        if deadline.expired():
            raise AssertionError(f"timed out after {seconds}s waiting for {what}; last: {last!r}")
        select.select([], [], [], min(interval, deadline.left()))


class Proc:
    def __init__(self, name, argv, env=None, cwd=None):
        self.name = name
        self.log_path = os.path.join(cwd or tempfile.gettempdir(), f"{name}.log")
        self.log = open(self.log_path, "wb")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=full_env, cwd=cwd)

    def alive(self):
        return self.p.poll() is None

    def output(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
                raise AssertionError(f"{self.name} did not stop within {timeout}s:\n{self.output()[-4000:]}")
        self.log.close()
        return self.p.returncode


def read_file_when_ready(path, proc, seconds=30):
    def probe():
        if not proc.alive():
            raise AssertionError(f"{proc.name} exited early ({proc.p.returncode}):\n{proc.output()[-4000:]}")
        if os.path.exists(path) and os.path.getsize(path) > 0:
            with open(path) as f:
                return f.read()
        return None
    return wait_until(f"{path} from {proc.name}", probe, seconds)


class Http:
    def __init__(self, port, host="127.0.0.1"):
        self.host, self.port = host, port

    def request(self, method, path, body=None, headers=None, timeout=60):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
                headers = dict(headers or {})
                headers.setdefault("content-type", "application/json")
            elif isinstance(body, str):
                body = body.encode()
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def json(self, method, path, body=None, headers=None, expect=None):
        status, hdrs, data = self.request(method, path, body, headers)
        if expect is not None and status != expect:
            raise AssertionError(f"{method} {path}: want {expect}, got {status}: {data[:2000]!r}")
        return status, (json.loads(data) if data else None)


class FakeProvider:
    def __init__(self, workdir):
        port_file = os.path.join(workdir, "fake.port")
        self.proc = Proc("fakeprovider", [FAKE_BIN, "--listen", "127.0.0.1:0", "--port-file", port_file], cwd=workdir)
        self.port = int(read_file_when_ready(port_file, self.proc).strip())
        self.http = Http(self.port)
        self.url = f"http://127.0.0.1:{self.port}"

    def requests(self):
        _, data = self.http.json("GET", "/_fake/requests", expect=200)
        return data

    def clear(self):
        self.http.request("DELETE", "/_fake/requests")

    def stats(self):
        """Counts per /acct/ label ("" without one): GET /_fake/stats."""
        _, data = self.http.json("GET", "/_fake/stats", expect=200)
        return data["accounts"]

    def stop(self):
        return self.proc.stop()


class Hub:
    """aicarpool-hub with its in-process edge, on OS-chosen ports."""

    def __init__(self, workdir, db=None, extra=None, edge_listen=True, link=None, env=None):
        """edge_listen=False: no in-process edge (distributed mode); link:
        None, or "tcp" / "tls" to listen for remote edges on a loopback port
        chosen here (with mutual TLS from `Certs` in workdir for "tls"; the
        push channel takes the hub's default, the link port + 1)."""
        self.workdir = workdir
        self.data = os.path.join(workdir, "hub-data")
        self.base_argv = [HUB_BIN, "--data", self.data, "--listen", "127.0.0.1:0"]
        if edge_listen:
            self.base_argv += ["--edge-listen", "127.0.0.1:0"]
        if db:
            self.base_argv += ["--db", db]
        self.base_argv += extra or []
        self.env = {"AICARPOOL_ADMIN_PASSWORD": ADMIN_PASSWORD}
        self.env.update(env or {})
        self.link_kind = link
        self.link_url = self.push_url = None
        self.link_port = None
        self.certs = Certs(workdir) if link == "tls" else None
        self.runs = 0
        self._start()

    def _link_argv(self, port):
        scheme = "tls+tcp" if self.link_kind == "tls" else "tcp"
        argv = ["--link", f"{scheme}://127.0.0.1:{port}"]
        if self.certs:
            # NNG 1.5's TLS (mbedtls) matches the server name against DNS
            # names only, never an IP SAN: edges must dial "localhost" (a SAN
            # of make-certs' hub certificate), for the push channel too.
            argv += ["--link-cert", self.certs.hub_bundle, "--link-ca", self.certs.ca,
                     "--push-advertise", f"tls+tcp://localhost:{port + 1}"]
        return argv

    def _start(self):
        """Starts (or restarts) the process on the same data dir. The link
        port is kept across restarts (edges dial it); a fresh one is picked
        only the first time, retrying when another process took it between
        the probe and the hub's bind."""
        ports_file = os.path.join(self.data, "ports.json")
        first = self.link_port is None
        for attempt in range(5):
            if os.path.exists(ports_file):
                os.unlink(ports_file)
            argv = list(self.base_argv)
            if self.link_kind:
                if self.link_port is None or (first and attempt > 0):
                    self.link_port = free_port_pair()
                argv += self._link_argv(self.link_port)
            self.runs += 1
            self.proc = Proc("hub" if self.runs == 1 else f"hub.{self.runs}", argv, env=self.env, cwd=self.workdir)
            try:
                ports = json.loads(read_file_when_ready(ports_file, self.proc))
                break
            except AssertionError:
                out = self.proc.output()
                if self.link_kind and ("in use" in out.lower() or "EADDRINUSE" in out) and attempt < 4:
                    self.proc.stop()
                    continue
                raise
        if self.link_kind == "tls":
            self.link_url = f"tls+tcp://localhost:{self.link_port}"
            self.push_url = f"tls+tcp://localhost:{self.link_port + 1}"
        elif self.link_kind:
            self.link_url = f"tcp://127.0.0.1:{self.link_port}"
            self.push_url = f"tcp://127.0.0.1:{self.link_port + 1}"
        self.admin = Http(ports["admin"])
        if "edge" in ports and ports["edge"]:
            self.edge = Http(ports["edge"])
            self.edge_port = ports["edge"]
        else:
            self.edge = None
            self.edge_port = None
        _, tok = self.admin.json("POST", "/api/auth/login", {"username": "admin", "password": ADMIN_PASSWORD}, expect=200)
        self.token = tok["access_token"]

    def restart(self, sig=signal.SIGTERM):
        """Stops the hub (sig) and starts it again on the same data and link."""
        self.proc.stop(sig)
        self._start()

    def enrol_edge(self, name, region):
        """POST /api/edges: returns (edge id, enrolment secret)."""
        _, e = self.api("POST", "/api/edges", {"name": name, "region": region}, expect=201)
        assert e.get("id") and e.get("secret"), e
        return e["id"], e["secret"]

    def edges(self):
        """GET /api/edges as a dict id -> entry."""
        _, data = self.api("GET", "/api/edges", expect=200)
        items = data["items"] if isinstance(data, dict) else data
        return {e["id"]: e for e in items}

    def config_version(self):
        _, st = self.api("GET", "/api/status", expect=200)
        return st["config_version"]

    def all_usage(self, key_id=None):
        """Every usage row (of key_id, or all), paging through /api/usage."""
        rows, offset = [], 0
        while True:
            q = f"/api/usage?limit=1000&offset={offset}" + (f"&key_id={key_id}" if key_id else "")
            _, data = self.api("GET", q, expect=200)
            rows += data["items"]
            if len(data["items"]) < 1000:
                return rows
            offset += 1000

    def api(self, method, path, body=None, expect=None):
        return self.admin.json(method, path, body, {"authorization": f"Bearer {self.token}"}, expect=expect)

    def setup_group(self, upstream_url, kind="anthropic", api_key="sk-upstream-account-secret", name=None):
        """Creates group, account, binding and key; returns (key_id, key)."""
        name = name or f"g-{os.getpid()}-{time.monotonic_ns()}"
        _, group = self.api("POST", "/api/groups", {"name": name}, expect=201)
        _, acct = self.api("POST", "/api/accounts", {"name": f"acct-{name}", "kind": kind, "base_url": upstream_url,
                                                       "api_key": api_key, "priority": 1, "weight": 1}, expect=201)
        assert "api_key" not in acct and api_key not in json.dumps(acct), acct
        self.api("POST", f"/api/groups/{group['id']}/bindings", {"account_id": acct["id"]}, expect=201)
        _, key = self.api("POST", "/api/keys", {"group_id": group["id"], "name": f"key-{name}"}, expect=201)
        assert key["key"].startswith("aicp_"), key
        self.wait_edge_current()
        return key["id"], key["key"]

    def wait_edge_current(self, seconds=15):
        """Waits until the edge's snapshot has the hub's current config version
        (nothing to wait for without an in-process edge)."""
        if self.edge is None:
            return
        _, st = self.api("GET", "/api/status", expect=200)
        want = st["config_version"]

        def probe():
            status, _, data = self.edge.request("GET", "/readyz")
            return status == 200 and json.loads(data).get("snapshot_version", 0) >= want
        wait_until(f"edge snapshot >= {want}", probe, seconds)

    def usage(self, key_id, want_rows, seconds=20):
        def probe():
            _, data = self.api("GET", f"/api/usage?key_id={key_id}&limit=1000", expect=200)
            items = data["items"]
            return items if len(items) >= want_rows else None
        return wait_until(f"{want_rows} usage rows for key {key_id}", probe, seconds)

    def stop(self):
        return self.proc.stop()


class Workdir:
    def __init__(self, name):
        self.path = tempfile.mkdtemp(prefix=f"aicarpool-{name}-")
        self.keep = False

    def __enter__(self):
        return self.path

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None and not self.keep:
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            print(f"test files kept in {self.path}")
        return False


def raw_http(port, data, read_timeout=10):
    """Sends raw bytes, returns everything the server answers until it closes
    (or the timeout passes)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=read_timeout)
    try:
        s.sendall(data)
        chunks = []
        while True:
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            if not b:
                break
            chunks.append(b)
            if b"\r\n\r\n" in b"".join(chunks) and b"content-length: 0" in b"".join(chunks).lower():
                break
        return b"".join(chunks)
    finally:
        s.close()


def parse_sse(data):
    events = []
    for block in data.decode().replace("\r\n", "\n").split("\n\n"):
        ev, lines = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                ev = line[6:].strip()
            elif line.startswith("data:"):
                lines.append(line[5:].lstrip(" "))
        if ev or lines:
            events.append((ev, json.loads("\n".join(lines)) if lines else None))
    return events



def parse_sse_raw(data):
    """SSE blocks as (event name or None, data text) pairs, without parsing
    the data as JSON (OpenAI streams end with `data: [DONE]`)."""
    events = []
    for block in data.decode().replace("\r\n", "\n").split("\n\n"):
        ev, lines = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                ev = line[6:].strip()
            elif line.startswith("data:"):
                lines.append(line[5:].lstrip(" "))
        if ev or lines:
            events.append((ev, "\n".join(lines) if lines else None))
    return events

# ---------------------------------------------------------------------------
# Distributed mode: remote edges, certificates, load, a raw link client.

def free_port():
    """A loopback TCP port that was free a moment ago (bind to 0, close).
    The caller starts its server right away and retries on EADDRINUSE."""
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def free_port_pair():
    """A port P with P and P + 1 both free a moment ago (the hub's link and
    its default push address)."""
    for _ in range(100):
        a = socket.socket()
        b = socket.socket()
        try:
            a.bind(("127.0.0.1", 0))
            p = a.getsockname()[1]
            if p >= 65535:
                continue
            try:
                b.bind(("127.0.0.1", p + 1))
            except OSError:
                continue
            return p
        finally:
            a.close()
            b.close()
    raise AssertionError("no free pair of loopback ports")


class Certs:
    """scripts/make-certs DIR: the test CA, hub and edge link certificates.
    `other` makes a second, unrelated CA (for wrong-CA tests)."""

    def __init__(self, workdir, name="pki"):
        self.dir = os.path.join(workdir, name)
        script = os.path.join(SOURCE_DIR, "scripts", "make-certs")
        r = subprocess.run([script, self.dir], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        if r.returncode != 0:
            raise AssertionError(f"make-certs failed: {r.stderr.decode()}")
        self.ca = os.path.join(self.dir, "ca.pem")
        self.hub_bundle = os.path.join(self.dir, "hub-bundle.pem")
        self.edge_bundle = os.path.join(self.dir, "edge-bundle.pem")
        self.edge_cert = os.path.join(self.dir, "edge.pem")
        self.edge_key = os.path.join(self.dir, "edge.key")


_LISTEN_RE = re.compile(r"edge listening on \S+:(\d+) ")


class RemoteEdge:
    """aicarpool-edge as its own process dialling the hub's link. Restartable
    on the same --data dir; the client port is taken from its EDGE-LISTEN log
    line (the edge has no port file), so it changes on each restart."""

    def __init__(self, workdir, hub, edge_id, secret, region="eu-test", name=None, certs=None,
                 extra=None, secret_in_env=True, hub_url=None):
        self.workdir = workdir
        self.name = name or f"edge-{edge_id}"
        self.data = os.path.join(workdir, f"{self.name}-data")
        self.edge_id, self.secret, self.region = edge_id, secret, region
        certs = certs if certs is not None else hub.certs
        self.argv = [EDGE_BIN, "--hub", hub_url or hub.link_url, "--listen", "127.0.0.1:0", "--data", self.data,
                     "--edge-id", edge_id, "--region", region, "--workers", "1",
                     "--heartbeat-ms", "200", "--log-level", "info"]
        if certs is not None:
            self.argv += ["--link-cert", certs.edge_bundle, "--link-ca", certs.ca]
        self.env = {}
        if secret_in_env:
            self.env["AICARPOOL_ENROL_SECRET"] = secret
        else:
            self.argv += ["--enrol-secret", secret]
        self.argv += extra or []
        self.runs = 0
        self.proc = None
        self.start()

    def start(self, wait_port=True):
        self.runs += 1
        self.proc = Proc(self.name if self.runs == 1 else f"{self.name}.{self.runs}", self.argv, env=self.env,
                         cwd=self.workdir)
        self.port = None
        self.http = None
        if wait_port:
            def probe():
                m = _LISTEN_RE.search(self.proc.output())
                if m:
                    return int(m.group(1))
                if not self.proc.alive():
                    raise AssertionError(f"{self.proc.name} exited ({self.proc.p.returncode}):\n{self.proc.output()[-4000:]}")
                return None
            self.port = wait_until(f"{self.name} listening", probe, 30)
            self.http = Http(self.port)

    def readyz(self):
        status, _, data = self.http.request("GET", "/readyz", timeout=5)
        body = json.loads(data) if data else {}
        return status, body

    def wait_ready(self, min_version=0, source=None, seconds=30):
        def probe():
            if not self.proc.alive():
                raise AssertionError(f"{self.proc.name} exited ({self.proc.p.returncode}):\n{self.proc.output()[-4000:]}")
            status, body = self.readyz()
            if status != 200 or body.get("snapshot_version", 0) < min_version:
                return None
            if source is not None and body.get("snapshot_source") != source:
                return None
            return body
        return wait_until(f"{self.name} ready (version >= {min_version}, source {source})", probe, seconds)

    def kill(self):
        """SIGKILL: no flush, no goodbye."""
        self.proc.p.kill()
        self.proc.p.wait()
        self.proc.log.close()

    def pause(self):
        self.proc.p.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.p.send_signal(signal.SIGCONT)

    def stop(self, sig=signal.SIGTERM):
        if self.proc is None:
            return None
        if self.proc.p.poll() is None:
            self.proc.p.send_signal(signal.SIGCONT)
        return self.proc.stop(sig)


def anthropic_body(text="Say hello", stream=False, max_tokens=256):
    body = {"model": "claude-sonnet-4-5-20250929", "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": text}]}
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":")).encode()


def complete_anthropic(status, data, stream):
    """True when the client received the whole answer: 200 and the full
    message (non-streaming) or a stream that ends with message_stop."""
    if status != 200:
        return False
    try:
        if stream:
            events = parse_sse(data)
            return bool(events) and events[-1][0] == "message_stop"
        return json.loads(data)["content"][0]["text"] == FAKE_TEXT
    except (ValueError, KeyError, IndexError):
        return False


class Load(threading.Thread):
    """Sends Anthropic requests in a loop to whatever port port_fn() returns
    (it may change when an edge restarts) until stop() is called. Records
    the request id of every response it received completely (`complete`),
    of every request that was cut or refused (`broken`, with the id when a
    response head carried one) and the connection errors (`errors`)."""

    def __init__(self, port_fn, key, stream=False, scenario=None, name="load", timeout=30):
        super().__init__(name=name, daemon=True)
        self.port_fn, self.key, self.stream, self.scenario = port_fn, key, stream, scenario
        self.timeout = timeout
        self.complete = {}  # request id -> body length
        self.broken = []    # (request id or None, status or exception text)
        self.errors = 0
        self.statuses = {}
        self._stop_ev = threading.Event()
        self.sent = 0

    def stop(self):
        self._stop_ev.set()

    def run(self):
        i = 0
        while not self._stop_ev.is_set():
            i += 1
            body = anthropic_body(f"{self.name} request {i}", stream=self.stream)
            hdrs = {"x-api-key": self.key, "content-type": "application/json", "anthropic-version": "2023-06-01"}
            if self.scenario:
                hdrs["x-fake-scenario"] = self.scenario
            port = self.port_fn()
            if port is None:
                self._stop_ev.wait(0.02)
                continue
            rid = None
            self.sent += 1
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=self.timeout)
            try:
                conn.request("POST", "/v1/messages", body=body, headers=hdrs)
                resp = conn.getresponse()
                rid = resp.getheader("x-aicarpool-request-id")
                data = resp.read()
                self.statuses[resp.status] = self.statuses.get(resp.status, 0) + 1
                if complete_anthropic(resp.status, data, self.stream) and rid:
                    self.complete[rid] = len(body)
                else:
                    self.broken.append((rid, resp.status))
            except (OSError, http.client.HTTPException) as exc:
                self.errors += 1
                self.broken.append((rid, repr(exc)))
                self._stop_ev.wait(0.02)
            finally:
                conn.close()


def check_usage_exact(rows, loads, allow_partial_for_broken=True):
    """The exactly-once rule, precisely: every request whose response a
    client received completely has exactly one usage row, not partial, with
    the usage the fake provider derives from its body; no request id has two
    rows; any other row belongs to a request that was interrupted (a cut
    stream or a connection lost when an edge died) and is marked partial.
    Returns (complete, partial_rows)."""
    by_id = {}
    for r in rows:
        rid = r["request_id"]
        assert rid not in by_id, f"duplicate usage row for {rid}: {by_id.get(rid)} and {r}"
        by_id[rid] = r
    complete = {}
    for ld in loads:
        complete.update(ld.complete)
    for rid, body_len in complete.items():
        assert rid in by_id, f"no usage row for completed request {rid}"
        row = by_id[rid]
        assert row["partial"] in (False, 0), row
        want = fake_usage(body_len)
        assert row["input_tokens"] == want["input_tokens"] and row["output_tokens"] == want["output_tokens"], (row, want)
    broken_ids = {rid for ld in loads for rid, _ in ld.broken if rid}
    extra = [r for rid, r in by_id.items() if rid not in complete]
    for r in extra:
        assert allow_partial_for_broken, f"unexpected usage row {r}"
        # A stream the client saw cut, or a request that never answered
        # completely: only a partial row is allowed (or a full row when the
        # edge finished metering before the client lost the bytes in flight,
        # which only happens for requests the client saw broken).
        assert r["partial"] in (True, 1) or r["request_id"] in broken_ids, f"row for a request no client completed: {r}"
    return len(complete), len(extra)


# Raw link client: NNG's SP-over-TCP framing and the few protobuf messages
# of proto/carpool.proto it needs, hand-encoded (stdlib only). Used to send
# garbage and oversized frames and, in bench/ingest.py, usage batches.

SP_REQ, SP_REP, SP_PUB, SP_SUB = 0x30, 0x31, 0x20, 0x21


def pb_varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_field(num, value):
    """Encodes one field: int -> varint, bool -> varint, str/bytes -> length-delimited."""
    if isinstance(value, bool):
        return pb_varint(num << 3) + pb_varint(int(value))
    if isinstance(value, int):
        return pb_varint(num << 3) + pb_varint(value)
    if isinstance(value, str):
        value = value.encode()
    return pb_varint((num << 3) | 2) + pb_varint(len(value)) + value


def pb_decode(data):
    """A message as {field number: [values]} (varints as int, length-delimited as bytes)."""
    out, i = {}, 0
    while i < len(data):
        key, i = _pb_read_varint(data, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _pb_read_varint(data, i)
        elif wt == 2:
            n, i = _pb_read_varint(data, i)
            v, i = data[i:i + n], i + n
        elif wt == 1:
            v, i = data[i:i + 8], i + 8
        elif wt == 5:
            v, i = data[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wt}")
        out.setdefault(num, []).append(v)
    return out


def _pb_read_varint(data, i):
    n = shift = 0
    while True:
        b = data[i]
        i += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, i
        shift += 7


def pb_usage_record(request_id, key_id, account_id=0, model="claude-sonnet-4-5-20250929", input_tokens=10,
                    output_tokens=7, status=200, time_ms=None):
    return b"".join([pb_field(1, request_id), pb_field(2, key_id), pb_field(3, account_id), pb_field(4, model),
                     pb_field(5, "anthropic"), pb_field(6, input_tokens), pb_field(7, output_tokens),
                     pb_field(12, status), pb_field(13, 5), pb_field(14, time_ms or int(time.time() * 1000))])


class SpClient:
    """A REQ socket speaking NNG's TCP transport (optionally inside TLS):
    8-byte header exchange, then frames of a 64-bit big-endian length and
    the body; REQ bodies start with a 32-bit request id (high bit set)."""

    def __init__(self, port, proto=SP_REQ, tls_ctx=None, timeout=10):
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock = tls_ctx.wrap_socket(raw, server_hostname="localhost") if tls_ctx else raw
        self.sock.sendall(b"\x00SP\x00" + struct.pack(">H", proto) + b"\x00\x00")
        self.peer_header = self._recv_exact(8)
        self.req_id = 0x80000000 | (os.getpid() & 0xFFFF) << 8

    def _recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            b = self.sock.recv(n - len(buf))
            if not b:
                raise ConnectionError("link closed")
            buf += b
        return buf

    def send_frame(self, body):
        self.sock.sendall(struct.pack(">Q", len(body)) + body)

    def request(self, payload):
        self.req_id = 0x80000000 | ((self.req_id + 1) & 0x7FFFFFFF)
        self.send_frame(struct.pack(">I", self.req_id) + payload)
        while True:
            n = struct.unpack(">Q", self._recv_exact(8))[0]
            if n > 256 << 20:
                raise ValueError(f"reply of {n} bytes")
            body = self._recv_exact(n)
            if struct.unpack(">I", body[:4])[0] == self.req_id:
                return body[4:]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def link_hello(client, edge_id, secret, region="bench", version="bench"):
    """The enrolment handshake of proto/carpool.proto on a raw SpClient.
    Returns the decoded HelloReply ({field: [values]})."""
    hello = pb_field(1, edge_id) + pb_field(2, region) + pb_field(3, version)
    rep = pb_decode(client.request(pb_field(1, hello)))
    if 2 not in rep:
        raise AssertionError(f"Hello: no HelloReply: {rep}")
    r1 = pb_decode(rep[2][0])
    nonce = r1[3][0]
    proof = hmac.new(secret.encode(), b"aicarpool-hello\x00" + nonce + edge_id.encode(), hashlib.sha256).digest()
    rep = pb_decode(client.request(pb_field(1, hello + pb_field(4, proof))))
    if 2 not in rep:
        raise AssertionError(f"Hello with proof refused: {rep}")
    r2 = pb_decode(rep[2][0])
    if not r2.get(4, [0])[0]:
        raise AssertionError(f"not authenticated: {r2}")
    return r2


def mysql_dsn():
    return os.environ.get("GW_TEST_MYSQL_DSN")


def run_main(tests):
    """Runs test functions, prints one line each and the closing line."""
    import traceback
    passed = failed = skipped = 0
    for t in tests:
        try:
            r = t()
            if r == "skip":
                skipped += 1
                print(f"SKIP {t.__name__}")
            else:
                passed += 1
                print(f"PASS {t.__name__}")
        except Exception:
            failed += 1
            print(f"FAIL {t.__name__}")
            traceback.print_exc()
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    raise SystemExit(1 if failed else 0)
