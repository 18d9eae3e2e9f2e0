--[[
  ack-4.lua: settle delivered jobs of one shard: they leave the store.

  KEYS[1]  inflight  ZSET  job id -> lease deadline (ms)
  KEYS[2]  leases    HASH  job id -> fencing token of the current lease
  KEYS[3]  jobs      HASH  job id -> job record
  KEYS[4]  errors    HASH  job id -> last error

  ARGV     pairs: job id, fencing token (ARGV[1], ARGV[2], then ARGV[3], ARGV[4], ...)

  A pair is applied only while the token is the job's current lease; otherwise (the lease
  expired and the job was put back or claimed again) it is refused and nothing changes.

  Returns one integer per pair: 1 applied, 0 refused (stale token).
]]

local out = {}
for i = 1, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[2], id) == ARGV[i + 1] then
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('HDEL', KEYS[3], id)
    redis.call('HDEL', KEYS[4], id)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
