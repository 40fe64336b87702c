-- wrk helper for bench/load.sh: counts answers by HTTP status in every thread
-- and prints one machine-readable RESULT line at the end, so that a run full of
-- 409/429/5xx is never mistaken for a success.
--   RESULT requests=N seconds=S rps=R p50_ms=A p99_ms=B max_ms=C errors=E valid=V
--          statuses=200:N,409:M
-- (errors = socket errors and timeouts; valid = answers with "valid":true)
-- Used as is for GET /healthz and nginx; bench/wrk_check.lua adds the request side.

local threads = {}
local counter = 0

function setup(thread)
  thread:set("thread_index", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

statuses = {}

valid = 0

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status == 200 and string.find(body, '"valid":true', 1, true) then valid = valid + 1 end
end

function done(summary, latency, requests)
  local merged, valid_total = {}, 0
  for _, t in ipairs(threads) do
    local s = t:get("statuses") or {}
    for code, n in pairs(s) do merged[code] = (merged[code] or 0) + n end
    valid_total = valid_total + (t:get("valid") or 0)
  end
  local codes = {}
  for code in pairs(merged) do table.insert(codes, code) end
  table.sort(codes)
  local parts = {}
  for _, code in ipairs(codes) do table.insert(parts, code .. ":" .. merged[code]) end
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
      "RESULT requests=%d seconds=%.3f rps=%.1f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f " ..
      "errors=%d valid=%d statuses=%s\n",
      summary.requests, secs, summary.requests / secs,
      latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
      e.connect + e.read + e.write + e.timeout, valid_total, table.concat(parts, ",")))
end
