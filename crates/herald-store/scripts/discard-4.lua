--[[
  discard-4.lua: settle jobs of one shard that will not be tried again: they move to the
  dead-letter store with their reason, record kept for inspection and replay.

  KEYS[1]  inflight  ZSET  job id -> lease deadline (ms)
  KEYS[2]  leases    HASH  job id -> fencing token of the current lease
  KEYS[3]  dead      ZSET  job id -> time it was discarded (ms)
  KEYS[4]  errors    HASH  job id -> last error (here: the reason for discarding)

  ARGV     groups of three: job id, fencing token, reason

  A group is applied only while the token is the job's current lease (see ack-4.lua). The
  dead-letter store is bounded by dead-trim-3.lua, which workers run periodically.

  Returns one integer per group: 1 applied, 0 refused (stale token).
]]

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i = 1, #ARGV, 3 do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[2], id) == ARGV[i + 1] then
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('ZADD', KEYS[3], now, id)
    redis.call('HSET', KEYS[4], id, ARGV[i + 2])
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
