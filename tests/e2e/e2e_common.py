# SPDX-License-Identifier: Apache-2.0
"""Shared pieces of the end-to-end tests: a fake provider plus a hub (with its
in-process edge) and one gateway key on a `mock` account, the pinned clients in
tests/e2e/node_modules, and the check that a client's requests were billed
exactly: every request the fake provider answered has one usage row at the hub
whose token counts equal the usage the fake reported, converted per dialect."""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import gwtest  # noqa: E402

E2E_DIR = os.path.dirname(os.path.abspath(__file__))
NODE_BIN = os.path.join(E2E_DIR, "node_modules", ".bin")
UPSTREAM_KEY = "sk-upstream-for-e2e-clients"

# Hub usage-row fields compared against what the fake provider reported.
ROW_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_5m_tokens",
              "cache_write_1h_tokens", "reasoning_tokens")


def client_bin(name):
    path = os.path.join(NODE_BIN, name)
    if not os.path.exists(path):
        raise AssertionError(f"{path} missing: run scripts/setup (npm ci in tests/e2e)")
    return path


def base_env(home):
    """A minimal environment: no proxy, no inherited credentials or config;
    temporary files (crash reports and the like) stay inside the test's home."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": home,
        "TMPDIR": home,
        "NO_PROXY": "127.0.0.1,localhost",
        "NO_COLOR": "1",
        "TERM": "dumb",
    }


def run(argv, env, cwd, timeout=120):
    p = subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def row_from_record(rec):
    """The usage row the hub must hold for one fake-provider request record,
    from the usage the fake reported in the record's dialect (field names as in
    tests/fakes/README.md, "Request records"). OpenAI and Gemini count cached
    tokens inside the prompt; the hub's input_tokens excludes them. Gemini's
    thoughts are output tokens, and are also reported as reasoning. The result
    is checked against gwtest's formulas for the body length the fake saw."""
    u = rec["usage"]
    target = rec["target"].split("?")[0]
    if target.endswith("/messages"):
        row = {"dialect": "anthropic",
               "input_tokens": u["input_tokens"], "output_tokens": u["output_tokens"],
               "cache_read_tokens": u["cache_read_input_tokens"],
               "cache_write_5m_tokens": u["ephemeral_5m_input_tokens"],
               "cache_write_1h_tokens": u["ephemeral_1h_input_tokens"], "reasoning_tokens": 0}
        # The fake's only free parameter is max_tokens, which cuts the output.
        want = dict(gwtest.fake_usage(rec["body_len"], max_tokens=u["output_tokens"]), reasoning_tokens=0)
    elif target.endswith("/chat/completions") or target.endswith("/responses"):
        prompt = u["prompt_tokens"] if "prompt_tokens" in u else u["input_tokens"]
        output = u["completion_tokens"] if "completion_tokens" in u else u["output_tokens"]
        row = {"dialect": "openai", "input_tokens": prompt - u["cached_tokens"], "output_tokens": output,
               "cache_read_tokens": u["cached_tokens"], "cache_write_5m_tokens": 0,
               "cache_write_1h_tokens": 0, "reasoning_tokens": u["reasoning_tokens"]}
        want = gwtest.fake_usage_openai(rec["body_len"])
    elif ":generateContent" in target or ":streamGenerateContent" in target:
        cached = u["cachedContentTokenCount"]
        row = {"dialect": "gemini", "input_tokens": u["promptTokenCount"] - cached,
               "output_tokens": u["candidatesTokenCount"] + u["thoughtsTokenCount"],
               "cache_read_tokens": cached, "cache_write_5m_tokens": 0, "cache_write_1h_tokens": 0,
               "reasoning_tokens": u["thoughtsTokenCount"]}
        want = gwtest.fake_usage_gemini(rec["body_len"])
    else:
        raise AssertionError(f"no usage conversion for {rec['target']}")
    assert {f: row[f] for f in ROW_FIELDS} == {f: want[f] for f in ROW_FIELDS}, (rec, row, want)
    return row


class Stack:
    """Fake provider + hub + one gateway key bound to a `mock` account."""

    def __init__(self, name):
        self.wd = gwtest.Workdir(name)
        self.path = self.wd.__enter__()
        self.fake = gwtest.FakeProvider(self.path)
        self.hub = None
        try:
            self.hub = gwtest.Hub(self.path)
            self.key_id, self.key = self.hub.setup_group(self.fake.url, kind="mock", api_key=UPSTREAM_KEY)
        except BaseException as exc:
            self.__exit__(type(exc), exc, None)
            raise
        self.base_url = f"http://127.0.0.1:{self.hub.edge_port}"
        self.billed = set()  # request ids of usage rows already matched

    def tmpdir(self, prefix):
        return tempfile.mkdtemp(prefix=prefix, dir=self.path)

    def new_records(self):
        """The fake's request records since the last call (clears the list)."""
        recs = self.fake.requests()
        self.fake.clear()
        return recs

    def check_billed(self, records):
        """Every record was answered 200, carried the account's key and not the
        gateway key, and has exactly one new usage row with the same usage."""
        assert records, "the fake provider saw no request"
        for r in records:
            assert r["status"] == 200 and r["usage"] is not None and r["completed"] is True, r
            hdrs = json.dumps(r["headers"])
            assert UPSTREAM_KEY in hdrs, r["headers"]
            assert self.key not in hdrs and self.key not in r["target"], r
        want_total = len(self.billed) + len(records)
        rows = self.hub.usage(self.key_id, want_total)
        assert len(rows) == want_total, (len(rows), want_total, rows)
        fresh = [r for r in rows if r["request_id"] not in self.billed]
        assert len(fresh) == len(records), (fresh, records)
        got = sorted(tuple([r["dialect"]] + [r[f] for f in ROW_FIELDS]) for r in fresh)
        want = sorted(tuple([w["dialect"]] + [w[f] for f in ROW_FIELDS]) for w in map(row_from_record, records))
        assert got == want, f"usage rows {got} != provider-reported {want}"
        for r in fresh:
            assert r["status"] == 200 and r["partial"] is False, r
            self.billed.add(r["request_id"])
        return fresh

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        """Stops both programs; the hub must exit cleanly (a sanitizer report
        makes it fail). The files stay in the work dir when anything failed."""
        rc = 0
        try:
            if self.hub is not None:
                rc = self.hub.stop()
        finally:
            self.fake.stop()
            self.wd.__exit__(exc_type or (AssertionError if rc != 0 else None), None, None)
        if exc_type is None:
            assert rc == 0, self.hub.proc.output()[-4000:]
        return False
