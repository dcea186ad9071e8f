# SPDX-License-Identifier: Apache-2.0
"""End to end with the real Claude Code CLI (npm @anthropic-ai/claude-code,
pinned in package.json): `claude -p` pointed at AiCarpool's edge with a
gateway key prints the fake provider's answer, and the hub's usage rows match
exactly what the fake provider reported."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import gwtest  # noqa: E402

CLAUDE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node_modules", ".bin", "claude")


def run_claude(edge_port, key, prompt, extra_env=None, extra_args=None):
    home = tempfile.mkdtemp(prefix="aicarpool-claude-home-")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": home,
        "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{edge_port}",
        "ANTHROPIC_AUTH_TOKEN": key,
        # No traffic but the model request: no telemetry, updates or error reports.
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    env.update(extra_env or {})
    try:
        p = subprocess.run([CLAUDE, "-p", prompt] + (extra_args or []), env=env, cwd=home,
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def check_usage_matches_provider(hub, fake, key_id, n):
    reported = [r for r in fake.requests() if "/v1/messages" in r["target"]]
    assert len(reported) == n, reported
    rows = hub.usage(key_id, n)
    assert len(rows) == n, rows
    got = sorted((r["input_tokens"], r["output_tokens"], r["cache_read_tokens"],
                  r["cache_write_5m_tokens"] + r["cache_write_1h_tokens"]) for r in rows)
    want = sorted((u["input_tokens"], u["output_tokens"], u["cache_read_input_tokens"],
                   u["cache_creation_input_tokens"]) for u in (r["usage"] for r in reported))
    assert got == want, (got, want)
    for r in reported:
        assert r["headers"].get("x-api-key") == "sk-upstream-for-claude-code", r["headers"]
        assert "authorization" not in r["headers"], r["headers"]


def test_claude_code_print():
    if not os.path.exists(CLAUDE):
        raise AssertionError(f"{CLAUDE} missing: run scripts/setup")
    with gwtest.Workdir("e2e-claude") as wd:
        fake = gwtest.FakeProvider(wd)
        hub = gwtest.Hub(wd)
        try:
            key_id, key = hub.setup_group(fake.url, api_key="sk-upstream-for-claude-code")
            rc, out, err = run_claude(hub.edge_port, key, "say hello")
            assert rc == 0, (rc, out, err)
            assert gwtest.FAKE_TEXT in out, (out, err)
            check_usage_matches_provider(hub, fake, key_id, 1)

            # The same through ANTHROPIC_API_KEY (sent as x-api-key), JSON output.
            fake.clear()
            rc, out, err = run_claude(hub.edge_port, "", "say hello again",
                                      extra_env={"ANTHROPIC_AUTH_TOKEN": "", "ANTHROPIC_API_KEY": key},
                                      extra_args=["--output-format", "json"])
            assert rc == 0, (rc, out, err)
            result = json.loads(out.strip().splitlines()[-1])
            assert result["is_error"] is False and gwtest.FAKE_TEXT in result["result"], result
            reported = [r for r in fake.requests() if "/v1/messages" in r["target"]]
            assert len(reported) == 1, reported
            rows = hub.usage(key_id, 2)
            assert len(rows) == 2, rows

            # A wrong key is refused with the Anthropic error the CLI understands.
            rc, out, err = run_claude(hub.edge_port, "aicp_not_a_real_key", "say hello")
            assert rc != 0, (rc, out, err)
        finally:
            hub_rc = hub.stop()
            fake.stop()
        assert hub_rc == 0, hub.proc.output()[-4000:]


if __name__ == "__main__":
    gwtest.run_main([test_claude_code_print])
