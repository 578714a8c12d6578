-- wrk script: POST /v1/orders, each request with its own idempotency key.
local thread_id = 0
function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
end

local n = 0
function request()
  n = n + 1
  local key = string.format("bench-%s-%d-%d", os.getenv("BENCH_RUN") or "x", tid, n)
  return wrk.format("POST", "/v1/orders", {
    ["content-type"] = "application/json",
    ["idempotency-key"] = key,
  }, '{"customer_id":"bench","item":"bench item","amount_minor":1000,"currency":"RUB"}')
end

function done(summary, latency, requests)
  local non2xx = summary.errors.status
  io.write(string.format("WRK requests=%d non2xx=%d connect_errors=%d timeouts=%d duration_s=%.1f p50_ms=%.1f p99_ms=%.1f\n",
    summary.requests, non2xx, summary.errors.connect, summary.errors.timeout,
    summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
