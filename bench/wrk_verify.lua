-- wrk script for bench/load.sh: POST /v1/users/{user}/verify with a right,
-- fresh TOTP code, each user once, from the "user code" lines in $BENCH_CODES
-- (bench/totp_users.py). Thread k of T takes lines k, k+T, ...; a thread that
-- runs out starts over, and those repeats are replays (answered valid:false),
-- which load.sh sees in the store: fewer factors moved to a new step than
-- there were answers (bench/store_counts.py).
-- The requests are formatted once, in init (see wrk_check.lua).
dofile(os.getenv("BENCH_LIB"))

local requests, pos = {}, 0

function init(args)
  local lines = {}
  for line in io.lines(os.getenv("BENCH_CODES")) do
    local user, code = line:match("^(%S+) (%d+)$")
    if user then table.insert(lines, {user, code}) end
  end
  local step = tonumber(os.getenv("BENCH_THREADS") or "1")
  local headers = {
    ["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY"),
    ["Content-Type"] = "application/json",
  }
  for i = 1 + thread_index, #lines, step do
    table.insert(requests, wrk.format("POST", "/v1/users/" .. lines[i][1] .. "/verify", headers,
                                      '{"code":"' .. lines[i][2] .. '"}'))
  end
  assert(#requests > 0, "no users for this thread in " .. os.getenv("BENCH_CODES"))
  mark_start()
end

function request()
  pos = pos + 1
  if pos > #requests then pos = 1 end
  return requests[pos]
end
