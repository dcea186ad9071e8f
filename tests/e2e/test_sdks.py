# SPDX-License-Identifier: Apache-2.0
"""End to end with the official SDKs from npm (pinned in package.json):
@anthropic-ai/sdk, openai and @google/genai, plain and streaming calls, each
driven by a small node script (anthropic_sdk.mjs, openai_sdk.mjs,
genai_sdk.mjs) pointed at AiCarpool's edge with a gateway key. Each call must
return the fake provider's answer with the usage the provider reported, and the
hub must hold one usage row per call with exactly that usage."""
import json
import os

from e2e_common import E2E_DIR, Stack, base_env, gwtest, run

NODE = "node"


def node_case(stack, script, case, *args):
    env = base_env(stack.tmpdir("sdk-home-"))
    env.update({"AICARPOOL_BASE_URL": stack.base_url, "AICARPOOL_KEY": stack.key})
    rc, out, err = run([NODE, os.path.join(E2E_DIR, script), case, *args], env, E2E_DIR, timeout=60)
    lines = out.strip().splitlines()
    result = json.loads(lines[-1]) if lines else None
    return rc, result, err


def call_ok(stack, script, case, *args, path):
    """Runs one SDK call that must succeed; returns (result, the one fake record)."""
    rc, result, err = node_case(stack, script, case, *args)
    assert rc == 0 and result is not None and "error" not in result, (script, case, rc, result, err[-3000:])
    records = stack.new_records()
    assert len(records) == 1, (case, records)
    assert path in records[0]["target"], (case, path, records[0]["target"])
    stack.check_billed(records)
    return result, records[0]


def call_bad_key(stack, script, case, *args):
    """The same call with a key the gateway does not know: the SDK raises its
    own API error class with status 401 and nothing reaches the provider."""
    env = base_env(stack.tmpdir("sdk-home-"))
    env.update({"AICARPOOL_BASE_URL": stack.base_url, "AICARPOOL_KEY": "aicp_not_a_real_key"})
    rc, out, err = run([NODE, os.path.join(E2E_DIR, script), case, *args], env, E2E_DIR, timeout=60)
    assert rc == 3, (script, case, rc, out, err[-3000:])
    result = json.loads(out.strip().splitlines()[-1])
    assert result["error"]["status"] == 401, result
    assert stack.new_records() == [], "a request with a bad key reached the provider"
    return result


def anthropic_usage_seen(u):
    """Messages usage as the SDK returned it, flattened like the fake's record."""
    cc = u.get("cache_creation") or {}
    return {"input_tokens": u["input_tokens"], "output_tokens": u["output_tokens"],
            "cache_read_input_tokens": u["cache_read_input_tokens"],
            "cache_creation_input_tokens": u["cache_creation_input_tokens"],
            "ephemeral_5m_input_tokens": cc.get("ephemeral_5m_input_tokens"),
            "ephemeral_1h_input_tokens": cc.get("ephemeral_1h_input_tokens")}


def openai_chat_seen(u):
    """Chat Completions usage as the SDK returned it, flattened like the fake's record."""
    return {"prompt_tokens": u["prompt_tokens"], "completion_tokens": u["completion_tokens"],
            "total_tokens": u["total_tokens"],
            "cached_tokens": (u.get("prompt_tokens_details") or {}).get("cached_tokens", 0),
            "reasoning_tokens": (u.get("completion_tokens_details") or {}).get("reasoning_tokens", 0)}


def openai_responses_seen(u):
    return {"input_tokens": u["input_tokens"], "output_tokens": u["output_tokens"],
            "total_tokens": u["total_tokens"],
            "cached_tokens": (u.get("input_tokens_details") or {}).get("cached_tokens", 0),
            "reasoning_tokens": (u.get("output_tokens_details") or {}).get("reasoning_tokens", 0)}


GEMINI_USAGE_FIELDS = ("promptTokenCount", "cachedContentTokenCount", "candidatesTokenCount",
                       "thoughtsTokenCount", "totalTokenCount")


def gemini_seen(u):
    """usageMetadata as the SDK returned it (zero counts may be absent)."""
    return {k: u.get(k, 0) for k in GEMINI_USAGE_FIELDS}


def test_anthropic_sdk():
    with Stack("e2e-sdk-anthropic") as stack:
        for case in ("plain", "stream"):
            result, rec = call_ok(stack, "anthropic_sdk.mjs", case, path="/v1/messages")
            assert result["text"] == gwtest.FAKE_TEXT, (case, result)
            assert result["stop_reason"] == "end_turn", (case, result)
            assert rec["stream"] is (case == "stream"), rec
            assert anthropic_usage_seen(result["usage"]) == rec["usage"], (case, result["usage"], rec["usage"])
            assert rec["usage"]["output_tokens"] == 7, rec
            # The SDK sends its key as Authorization: Bearer; the provider gets the account's.
            assert rec["headers"].get("x-api-key") == "sk-upstream-for-e2e-clients" or \
                rec["headers"].get("authorization") == "Bearer sk-upstream-for-e2e-clients", rec["headers"]
        assert result["final_text"] == gwtest.FAKE_TEXT, result
        assert result["events"][0] == "message_start" and result["events"][-1] == "message_stop", result

        # max_tokens 3 cuts the answer: three words, three output tokens, billed as such.
        result, rec = call_ok(stack, "anthropic_sdk.mjs", "stream_raw_max_tokens", path="/v1/messages")
        assert result["text"] == "Hello from the", result
        assert result["stop_reason"] == "max_tokens" and result["usage"]["output_tokens"] == 3, result
        assert anthropic_usage_seen(result["usage"]) == rec["usage"], (result["usage"], rec["usage"])

        err = call_bad_key(stack, "anthropic_sdk.mjs", "plain")
        assert err["error"]["class"] == "AuthenticationError", err
        assert err["error"]["body"]["type"] == "error", err


def test_openai_sdk():
    with Stack("e2e-sdk-openai") as stack:
        result, rec = call_ok(stack, "openai_sdk.mjs", "chat_plain", path="/v1/chat/completions")
        assert result["text"] == gwtest.FAKE_TEXT and result["finish_reason"] == "stop", result
        assert openai_chat_seen(result["usage"]) == rec["usage"], (result["usage"], rec["usage"])

        # Streaming without stream_options: the edge asks upstream for usage (so
        # the row is exact) and hides that extra chunk from the client.
        result, rec = call_ok(stack, "openai_sdk.mjs", "chat_stream", path="/v1/chat/completions")
        assert result["text"] == gwtest.FAKE_TEXT and result["finish_reason"] == "stop", result
        assert result["usage"] is None and result["empty_choice_chunks"] == 0, result
        assert rec["stream"] is True and rec["usage"] is not None, rec

        # Streaming with include_usage: the client gets the usage chunk itself.
        result, rec = call_ok(stack, "openai_sdk.mjs", "chat_stream_usage", path="/v1/chat/completions")
        assert result["text"] == gwtest.FAKE_TEXT and result["finish_reason"] == "stop", result
        assert result["empty_choice_chunks"] == 1, result
        assert openai_chat_seen(result["usage"]) == rec["usage"], (result["usage"], rec["usage"])

        for case in ("responses_plain", "responses_stream"):
            result, rec = call_ok(stack, "openai_sdk.mjs", case, path="/v1/responses")
            assert result["text"] == gwtest.FAKE_TEXT and result["status"] == "completed", (case, result)
            assert openai_responses_seen(result["usage"]) == rec["usage"], (case, result["usage"], rec["usage"])
            assert rec["stream"] is (case == "responses_stream"), rec
        assert result["events"][-1] == "response.completed", result

        err = call_bad_key(stack, "openai_sdk.mjs", "chat_plain")
        assert err["error"]["class"] == "AuthenticationError", err
        err = call_bad_key(stack, "openai_sdk.mjs", "responses_stream")
        assert err["error"]["class"] == "AuthenticationError", err


def test_genai_sdk():
    with Stack("e2e-sdk-genai") as stack:
        # The SDK's default API version (v1beta) and v1, which it also uses:
        # /v1/models/{model}:generateContent must not be taken for OpenAI's /v1/models.
        for version, prefix in (("", "/v1beta/models/"), ("v1", "/v1/models/")):
            for case, method in (("plain", ":generateContent"), ("stream", ":streamGenerateContent")):
                args = (version,) if version else ()
                result, rec = call_ok(stack, "genai_sdk.mjs", case, *args, path=prefix + "gemini-2.5-flash" + method)
                assert result["text"] == gwtest.FAKE_TEXT, (version, case, result)
                assert result["finish_reason"] == "STOP", (version, case, result)
                assert gemini_seen(result["usage"]) == rec["usage"], (version, case, result["usage"], rec["usage"])
                assert rec["stream"] is (case == "stream"), rec
                if case == "stream":
                    assert "alt=sse" in rec["target"], rec
                    assert result["chunks"] >= 2, result
        err = call_bad_key(stack, "genai_sdk.mjs", "plain")
        assert err["error"]["class"] == "ApiError", err
        err = call_bad_key(stack, "genai_sdk.mjs", "stream")
        assert err["error"]["class"] == "ApiError", err


if __name__ == "__main__":
    gwtest.run_main([test_anthropic_sdk, test_openai_sdk, test_genai_sdk])
