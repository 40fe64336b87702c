-- wrk script for bench/load.sh: POST /v1/verifications/{id}/check with a wrong
-- code, spread evenly over the pending verifications listed in $BENCH_IDS.
-- Thread k of T walks ids k, k+T, k+2T, ... from a random start, so no
-- verification receives more than ceil(requests / ids) + 1 checks; load.sh
-- creates enough of them to stay under the app's max_checks.
-- A code is 6 random digits, so "000000" is right with probability 1e-6 per
-- verification; such a hit shows in RESULT valid=N (and as 409s afterwards).
-- The requests are formatted once, in init: wrk.format per request cost wrk
-- ~4 us of CPU each, taken from the cores otpd runs on.
dofile(os.getenv("BENCH_LIB"))

local requests, pos = {}, 0

function init(args)
  local ids = {}
  for line in io.lines(os.getenv("BENCH_IDS")) do
    if line ~= "" then table.insert(ids, line) end
  end
  local step = tonumber(os.getenv("BENCH_THREADS") or "1")
  local headers = {
    ["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY"),
    ["Content-Type"] = "application/json",
  }
  for i = 1 + thread_index, #ids, step do
    table.insert(requests, wrk.format("POST", "/v1/verifications/" .. ids[i] .. "/check",
                                      headers, '{"code":"000000"}'))
  end
  assert(#requests > 0, "no verification ids for this thread in " .. os.getenv("BENCH_IDS"))
  math.randomseed(os.time() + thread_index * 7919)
  pos = math.random(0, #requests - 1)
end

function request()
  pos = pos + 1
  if pos > #requests then pos = 1 end
  return requests[pos]
end
