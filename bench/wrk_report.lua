-- wrk helper for bench/load.sh: prints one machine-readable RESULT line at the
-- end, so that a run full of 4xx/5xx answers is never mistaken for a success.
--   RESULT requests=N seconds=S rps=R p50_ms=A p99_ms=B max_ms=C errors=E
--          http_errors=H answers=ok:N[,error:H]
-- (errors = socket errors and timeouts; http_errors = answers with a status of
-- 400 or more, which wrk counts itself)
-- There is no response() callback: with one, wrk hands every answer's headers
-- and body to Lua, and for the check's answers that cost wrk about 5 us more
-- per request than for nginx's (LuaJIT interns each body string), CPU taken
-- from the cores the server runs on. What the answers said (no wrong code
-- accepted, every right code accepted) is read from otpd's store instead
-- (bench/store_counts.py).
-- Used as is for GET /healthz and nginx; bench/wrk_check.lua and
-- bench/wrk_verify.lua add the request side.

local threads = {}
local counter = 0

function setup(thread)
  thread:set("thread_index", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  local answers = "ok:" .. (summary.requests - e.status)
  if e.status > 0 then answers = answers .. ",error:" .. e.status end
  io.write(string.format(
      "RESULT requests=%d seconds=%.3f rps=%.1f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f " ..
      "errors=%d http_errors=%d answers=%s\n",
      summary.requests, secs, summary.requests / secs,
      latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
      e.connect + e.read + e.write + e.timeout, e.status, answers))
end
