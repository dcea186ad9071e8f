# SPDX-License-Identifier: Apache-2.0
"""Helpers for AiCarpool's integration and end-to-end tests.

Starts the real programs (hub with its in-process edge, fake provider) as
processes on loopback with OS-chosen ports, waits for events with deadlines
(never sleeps to synchronise), and talks HTTP with the standard library only.
"""
import http.client
import json
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

    def __init__(self, workdir, db=None, extra=None):
        self.data = os.path.join(workdir, "hub-data")
        argv = [HUB_BIN, "--data", self.data, "--listen", "127.0.0.1:0", "--edge-listen", "127.0.0.1:0"]
        if db:
            argv += ["--db", db]
        argv += extra or []
        self.proc = Proc("hub", argv, env={"AICARPOOL_ADMIN_PASSWORD": ADMIN_PASSWORD}, cwd=workdir)
        ports = json.loads(read_file_when_ready(os.path.join(self.data, "ports.json"), self.proc))
        self.admin = Http(ports["admin"])
        self.edge = Http(ports["edge"])
        self.edge_port = ports["edge"]
        _, tok = self.admin.json("POST", "/api/auth/login", {"username": "admin", "password": ADMIN_PASSWORD}, expect=200)
        self.token = tok["access_token"]

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
        """Waits until the edge's snapshot has the hub's current config version."""
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
