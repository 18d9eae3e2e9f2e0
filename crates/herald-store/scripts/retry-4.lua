--[[
  retry-4.lua: settle failed attempts of one shard that will be tried again later.

  KEYS[1]  inflight  ZSET  job id -> lease deadline (ms)
  KEYS[2]  leases    HASH  job id -> fencing token of the current lease
  KEYS[3]  queue     ZSET  job id -> next attempt time (ms)
  KEYS[4]  errors    HASH  job id -> last error

  ARGV     groups of four: job id, fencing token, delay in ms from now, error line

  A group is applied only while the token is the job's current lease (see ack-4.lua).

  Returns {next_due_ms, flag...}: the earliest next attempt time set by this call (-1 when
  none was applied), then one integer per group: 1 applied, 0 refused (stale token).
]]

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {-1}
for i = 1, #ARGV, 4 do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[2], id) == ARGV[i + 1] then
    local due = now + math.max(0, math.floor(tonumber(ARGV[i + 2]) or 0))
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('ZADD', KEYS[3], due, id)
    redis.call('HSET', KEYS[4], id, ARGV[i + 3])
    if out[1] == -1 or due < out[1] then out[1] = due end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
