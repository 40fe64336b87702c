-- wrk script for bench/load.sh: POST /v1/verifications/{id}/check with a wrong
-- code, spread evenly over the pending verifications listed in $BENCH_IDS as
-- "id code" lines (load.sh writes a code that differs from the right one).
-- Thread k of T walks lines k, k+T, k+2T, ... from a random start, so no
-- verification receives more than ceil(requests / ids) + 1 checks; load.sh
-- creates enough of them to stay under the app's max_checks.
-- The requests are formatted once, in init: wrk.format per request cost wrk
-- ~4 us of CPU each, taken from the cores otpd runs on.
dofile(os.getenv("BENCH_LIB"))

local requests, pos = {}, 0

function init(args)
  local ids = {}
  for line in io.lines(os.getenv("BENCH_IDS")) do
    local id, code = line:match("^(%S+) (%d+)$")
    if id then table.insert(ids, {id, code}) end
  end
  local step = tonumber(os.getenv("BENCH_THREADS") or "1")
  local headers = {
    ["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY"),
    ["Content-Type"] = "application/json",
  }
  for i = 1 + thread_index, #ids, step do
    table.insert(requests, wrk.format("POST", "/v1/verifications/" .. ids[i][1] .. "/check",
                                      headers, '{"code":"' .. ids[i][2] .. '"}'))
  end
  assert(#requests > 0, "no verification ids for this thread in " .. os.getenv("BENCH_IDS"))
  math.randomseed(os.time() + thread_index * 7919)
  pos = math.random(0, #requests - 1)
  mark_start()
end

function request()
  pos = pos + 1
  if pos > #requests then pos = 1 end
  return requests[pos]
end
