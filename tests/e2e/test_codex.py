# SPDX-License-Identifier: Apache-2.0
"""End to end with the real Codex CLI (npm @openai/codex, pinned in
package.json; its native binary comes from the optional dependency
@openai/codex-linux-x64): `codex exec` with a custom model provider whose
base_url is AiCarpool's edge (wire_api "responses", key from env_key) prints
the fake provider's answer, reports the usage the provider reported, and the
hub's usage rows match it exactly."""
import json
import os

from e2e_common import Stack, base_env, client_bin, gwtest, run

CONFIG = """\
model = "gpt-5.5"
model_provider = "aicarpool"
check_for_update_on_startup = false

[model_providers.aicarpool]
name = "AiCarpool"
base_url = "{base_url}/v1"
env_key = "AICARPOOL_KEY"
wire_api = "responses"

[analytics]
enabled = false

[history]
persistence = "none"
"""


def run_codex(stack, key, prompt, json_events):
    home = stack.tmpdir("codex-home-")
    os.makedirs(os.path.join(home, ".codex"))
    with open(os.path.join(home, ".codex", "config.toml"), "w") as f:
        f.write(CONFIG.format(base_url=stack.base_url))
    work = stack.tmpdir("codex-work-")
    env = base_env(home)
    env["AICARPOOL_KEY"] = key
    argv = [client_bin("codex"), "exec", "--skip-git-repo-check"] + (["--json"] if json_events else []) + [prompt]
    return run(argv, env, work, timeout=120)


def test_codex_exec():
    with Stack("e2e-codex") as stack:
        # Plain output: the final answer is what codex prints on stdout.
        rc, out, err = run_codex(stack, stack.key, "say hello", json_events=False)
        assert rc == 0, (rc, out, err[-4000:])
        assert out.strip() == gwtest.FAKE_TEXT, (out, err[-4000:])
        records = stack.new_records()
        assert [r["target"] for r in records] == ["/v1/responses"], records
        assert records[0]["stream"] is True, records
        assert records[0]["headers"].get("authorization") == "Bearer sk-upstream-for-e2e-clients", records[0]
        stack.check_billed(records)

        # JSON events: the agent message and the turn's usage as codex saw it.
        rc, out, err = run_codex(stack, stack.key, "say hello again", json_events=True)
        assert rc == 0, (rc, out, err[-4000:])
        events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        messages = [e["item"]["text"] for e in events
                    if e.get("type") == "item.completed" and e["item"].get("type") == "agent_message"]
        assert messages == [gwtest.FAKE_TEXT], events
        turns = [e for e in events if e.get("type") == "turn.completed"]
        assert len(turns) == 1, events
        records = stack.new_records()
        assert len(records) == 1 and records[0]["target"] == "/v1/responses", records
        u = records[0]["usage"]
        seen = turns[0]["usage"]
        assert seen["input_tokens"] == u["input_tokens"], (seen, u)
        assert seen["output_tokens"] == u["output_tokens"], (seen, u)
        assert seen["cached_input_tokens"] == u["cached_tokens"], (seen, u)
        assert seen["reasoning_output_tokens"] == u["reasoning_tokens"], (seen, u)
        stack.check_billed(records)

        # A key the gateway does not know: codex fails (after its 5 retries, ~6 s)
        # and nothing reaches the provider.
        rc, out, err = run_codex(stack, "aicp_not_a_real_key", "say hello", json_events=False)
        assert rc != 0 and "401 Unauthorized" in err, (rc, out, err[-4000:])
        assert gwtest.FAKE_TEXT not in out, out
        assert stack.new_records() == [], "a request with a bad key reached the provider"


if __name__ == "__main__":
    gwtest.run_main([test_codex_exec])
