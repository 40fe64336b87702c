-- wrk script for bench/load.sh: POST /v1/verifications/{id}/check with a wrong
-- code, spread evenly over the pending verifications listed in $BENCH_IDS.
-- Thread k of T walks ids k, k+T, k+2T, ... from a random start, so no
-- verification receives more than ceil(requests / ids) + 1 checks; load.sh
-- creates enough of them to stay under the app's max_checks.
-- A code is 6 random digits, so "000000" is right with probability 1e-6 per
-- verification; such a hit shows in RESULT valid=N (and as 409s afterwards).
dofile(os.getenv("BENCH_LIB"))

local ids = {}
local pos, step = 1, 1
local headers = {
  ["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY"),
  ["Content-Type"] = "application/json",
}
local body = '{"code":"000000"}'

function init(args)
  for line in io.lines(os.getenv("BENCH_IDS")) do
    if line ~= "" then table.insert(ids, line) end
  end
  assert(#ids > 0, "no verification ids in " .. os.getenv("BENCH_IDS"))
  step = tonumber(os.getenv("BENCH_THREADS") or "1")
  math.randomseed(os.time() + thread_index * 7919)
  pos = 1 + thread_index + step * math.random(0, math.floor(#ids / step))
end

function request()
  if pos > #ids then pos = 1 + thread_index end
  local id = ids[pos]
  pos = pos + step
  return wrk.format("POST", "/v1/verifications/" .. id .. "/check", headers, body)
end
