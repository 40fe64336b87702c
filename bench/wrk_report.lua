-- wrk helper for bench/load.sh: prints one machine-readable RESULT line at the
-- end, so that a run full of 4xx/5xx answers is never mistaken for a success.
--   RESULT requests=N seconds=S rps=R p50_ms=A p99_ms=B max_ms=C errors=E
--          http_errors=H answers=ok:N[,error:H] busy_ticks=T
-- (errors = socket errors and timeouts; http_errors = answers with a status of
-- 400 or more, which wrk counts itself; busy_ticks = CPU ticks the whole
-- machine spent busy during the measured run, -1 if unknown)
-- There is no response() callback: with one, wrk hands every answer's headers
-- and body to Lua, and for the check's answers that cost wrk about 5 us more
-- per request than for nginx's (most likely LuaJIT interning each body), CPU taken
-- from the cores the server runs on. What the answers said (no wrong code
-- accepted, every right code accepted) is read from otpd's store instead
-- (bench/store_counts.py).
-- Used as is for GET /healthz and nginx; bench/wrk_check.lua and
-- bench/wrk_verify.lua add the request side.

local threads = {}
local counter = 0

-- The machine's busy CPU ticks so far (/proc/stat: user, nice, system, irq,
-- softirq, steal), or -1 where there is no /proc/stat.
local function busy_ticks()
  local f = io.open("/proc/stat")
  if not f then return -1 end
  local line = f:read("*l")
  f:close()
  local v = {}
  for n in line:gmatch("%d+") do table.insert(v, tonumber(n)) end
  return v[1] + v[2] + v[3] + v[6] + v[7] + v[8]
end

-- Called at the end of every thread's init: wrk runs the threads' inits one
-- after the other and starts its clock right after the last, so the last
-- thread's mark is where the measured run begins (and the requests' formatting
-- in init is left out of busy_ticks).
function mark_start()
  busy_start = busy_ticks()
end

function init(args)
  mark_start()
end

function setup(thread)
  thread:set("thread_index", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local start = threads[#threads]:get("busy_start") or -1
  local busy = (start < 0) and -1 or busy_ticks() - start
  local e = summary.errors
  local secs = summary.duration / 1e6
  local answers = "ok:" .. (summary.requests - e.status)
  if e.status > 0 then answers = answers .. ",error:" .. e.status end
  io.write(string.format(
      "RESULT requests=%d seconds=%.3f rps=%.1f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f " ..
      "errors=%d http_errors=%d answers=%s busy_ticks=%d\n",
      summary.requests, secs, summary.requests / secs,
      latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
      e.connect + e.read + e.write + e.timeout, e.status, answers, busy))
end
