-- wrk script for bench/load.sh: POST /v1/users/{user}/verify with a right,
-- fresh TOTP code, each user once, from the "user code" lines in $BENCH_CODES
-- (bench/totp_users.py). Thread k of T takes lines k, k+T, ...; a thread that
-- runs out starts over, and those repeats are replays (answered valid:false),
-- which RESULT valid=N < requests shows.
dofile(os.getenv("BENCH_LIB"))

local users, codes = {}, {}
local pos, step = 1, 1
local headers = {
  ["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY"),
  ["Content-Type"] = "application/json",
}

function init(args)
  for line in io.lines(os.getenv("BENCH_CODES")) do
    local user, code = line:match("^(%S+) (%d+)$")
    if user then
      table.insert(users, user)
      table.insert(codes, code)
    end
  end
  assert(#users > 0, "no users in " .. os.getenv("BENCH_CODES"))
  step = tonumber(os.getenv("BENCH_THREADS") or "1")
  pos = 1 + thread_index
end

function request()
  if pos > #users then pos = 1 + thread_index end
  local i = pos
  pos = pos + step
  return wrk.format("POST", "/v1/users/" .. users[i] .. "/verify", headers,
                    '{"code":"' .. codes[i] .. '"}')
end
