# SPDX-License-Identifier: Apache-2.0
"""HTTPS at the edge: scripts/make-certs makes a test CA and a server
certificate, the hub runs its in-process edge with --edge-tls-cert/--edge-tls-key,
and real requests go through TLS. A client that trusts the test CA gets its
answer (streaming and not) and exact usage rows; one that does not trust it
fails verification; plain HTTP on the TLS port gets a 400; a half-configured
or unreadable TLS setup stops the hub at start."""
import http.client
import json
import os
import ssl
import subprocess
import sys
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import gwtest  # noqa: E402
from gwtest import FAKE_TEXT, fake_usage  # noqa: E402

MAKE_CERTS = os.path.join(gwtest.SOURCE_DIR, "scripts", "make-certs")


class Https:
    """gwtest.Http's request() over TLS with a given SSL context."""

    def __init__(self, port, context, host="127.0.0.1"):
        self.host, self.port, self.context = host, port, context

    def request(self, method, path, body=None, headers=None, timeout=60):
        conn = http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=self.context)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            self.last_version = conn.sock.version() if conn.sock else None
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()


def make_certs(wd):
    out = subprocess.run([MAKE_CERTS, os.path.join(wd, "certs")], check=True, capture_output=True, text=True)
    paths = {os.path.basename(p): p for p in out.stdout.split()}
    for name in ("ca.pem", "server.pem", "server.key", "hub.pem", "edge.pem", "hub-bundle.pem"):
        assert os.path.getsize(paths[name]) > 0, name
    return paths


def request_body(text="Say hello over TLS", stream=False, max_tokens=256):
    body = {"model": "claude-sonnet-4-5-20250929", "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": text}]}
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":")).encode()


def test_https_edge():
    with gwtest.Workdir("tls") as wd:
        certs = make_certs(wd)
        fake = gwtest.FakeProvider(wd)
        hub = gwtest.Hub(wd, extra=["--edge-tls-cert", certs["server.pem"], "--edge-tls-key", certs["server.key"]])
        try:
            trusted = ssl.create_default_context(cafile=certs["ca.pem"])
            edge = Https(hub.edge_port, trusted)
            hub.edge = edge  # readiness probes go over HTTPS too
            assert "edge: https://127.0.0.1:%d" % hub.edge_port in hub.proc.output(), hub.proc.output()
            key_id, key = hub.setup_group(fake.url)
            hdrs = {"x-api-key": key, "content-type": "application/json", "anthropic-version": "2023-06-01"}

            body = request_body()
            status, _, data = edge.request("POST", "/v1/messages", body, hdrs)
            assert status == 200, (status, data)
            assert json.loads(data)["content"][0]["text"] == FAKE_TEXT, data
            assert edge.last_version in ("TLSv1.2", "TLSv1.3"), edge.last_version

            # The certificate also names localhost.
            sbody = request_body("Stream over TLS", stream=True)
            status, rh, sdata = Https(hub.edge_port, trusted, host="localhost").request("POST", "/v1/messages", sbody, hdrs)
            assert status == 200 and rh["content-type"].startswith("text/event-stream"), (status, sdata)
            events = gwtest.parse_sse(sdata)
            assert [e for e, _ in events][-1] == "message_stop", events
            text = "".join(d["delta"]["text"] for e, d in events if e == "content_block_delta")
            assert text.strip() == FAKE_TEXT, text

            rows = hub.usage(key_id, 2)
            by_in = {r["input_tokens"]: r for r in rows}
            for b in (body, sbody):
                want = fake_usage(len(b))
                row = by_in[want["input_tokens"]]
                for field, value in want.items():
                    assert row[field] == value, (field, row)
                assert row["partial"] in (False, 0), row

            # A client without the test CA refuses the server.
            try:
                Https(hub.edge_port, ssl.create_default_context()).request("GET", "/healthz")
                raise AssertionError("verification should have failed without the test CA")
            except ssl.SSLCertVerificationError as exc:
                assert exc.verify_code in (19, 20, 21), exc  # self-signed in chain / unknown issuer
            # A TLS 1.1 client is refused (when this Python can still offer TLS 1.1).
            old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            old.load_verify_locations(certs["ca.pem"])
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    old.maximum_version = ssl.TLSVersion.TLSv1_1
                    old.minimum_version = ssl.TLSVersion.TLSv1
                old.set_ciphers("DEFAULT:@SECLEVEL=0")
                can_offer = True
            except (ValueError, ssl.SSLError):
                can_offer = False
            if can_offer:
                try:
                    Https(hub.edge_port, old).request("GET", "/healthz")
                    raise AssertionError("a TLS 1.1 handshake succeeded")
                except ssl.SSLError:
                    pass

            # Plain HTTP on the TLS port: told so, in plain text, then closed.
            raw = gwtest.raw_http(hub.edge_port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert raw.startswith(b"HTTP/1.1 400"), raw[:200]
            assert b"HTTPS" in raw, raw

            # The server survived all of it.
            status, _, data = edge.request("GET", "/healthz")
            assert status == 200, (status, data)
            assert len(hub.usage(key_id, 2)) == 2
        finally:
            hub_rc = hub.stop()
            fake.stop()
        assert hub_rc == 0, f"hub exit status {hub_rc}:\n{hub.proc.output()[-4000:]}"


def run_hub_expect_failure(wd, extra, needle):
    data = os.path.join(wd, "bad-data")
    p = subprocess.run([gwtest.HUB_BIN, "--data", data, "--listen", "127.0.0.1:0", "--edge-listen", "127.0.0.1:0"]
                       + extra, capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, AICARPOOL_ADMIN_PASSWORD=gwtest.ADMIN_PASSWORD))
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert needle in out, out
    return out


def test_bad_tls_config():
    with gwtest.Workdir("tls-bad") as wd:
        certs = make_certs(wd)
        run_hub_expect_failure(wd, ["--edge-tls-cert", certs["server.pem"]], "edge-tls-key")
        missing = os.path.join(wd, "nope.pem")
        run_hub_expect_failure(wd, ["--edge-tls-cert", missing, "--edge-tls-key", certs["server.key"]], missing)
        # The key of another certificate.
        run_hub_expect_failure(wd, ["--edge-tls-cert", certs["server.pem"], "--edge-tls-key", certs["edge.key"]],
                               "private key")


if __name__ == "__main__":
    gwtest.run_main([test_https_edge, test_bad_tls_config])
