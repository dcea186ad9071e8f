-- SPDX-License-Identifier: Apache-2.0
-- wrk script of bench/run: POSTs the body in $BENCH_BODY_FILE with the
-- gateway key $BENCH_KEY (as x-api-key, like Claude Code), optionally waits
-- $BENCH_DELAY_MS between the answer and the next request on a connection
-- (the fixed moderate rate of the latency measure), and writes the summary
-- and latency percentiles (microseconds) as JSON to $BENCH_OUT.

local f = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
local body = f:read("*a")
f:close()

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["anthropic-version"] = "2023-06-01"
wrk.headers["x-api-key"] = os.getenv("BENCH_KEY") or "none"

local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
if delay_ms > 0 then
    function delay()
        return delay_ms
    end
end

function done(summary, latency, requests)
    local out = assert(io.open(os.getenv("BENCH_OUT"), "w"))
    local e = summary.errors
    out:write(string.format(
        '{"duration_us": %d, "requests": %d, "bytes": %d, ' ..
        '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
        '"latency_us": {"mean": %.1f, "stdev": %.1f, "min": %d, "max": %d, ' ..
        '"p50": %d, "p90": %d, "p99": %d, "p999": %d}}\n',
        summary.duration, summary.requests, summary.bytes,
        e.connect, e.read, e.write, e.status, e.timeout,
        latency.mean, latency.stdev, latency.min, latency.max,
        latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9)))
    out:close()
end
