--[[
  release-4.lua: hand leased jobs of one shard back unattempted (a worker shutting down whose
  deliveries could not finish in its grace period). The job is due again at once and the
  attempt it was claimed for is not counted.

  KEYS[1]  inflight  ZSET  job id -> lease deadline (ms)
  KEYS[2]  leases    HASH  job id -> fencing token of the current lease
  KEYS[3]  queue     ZSET  job id -> next attempt time (ms)
  KEYS[4]  jobs      HASH  job id -> job record "1 <attempts> <enqueued_ms> <endpoint>\n<payload>"

  ARGV     pairs: job id, fencing token

  A pair is applied only while the token is the job's current lease (see ack-5.lua).

  Returns one integer per pair: 1 applied, 0 refused (stale token).
]]

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i = 1, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[2], id) == ARGV[i + 1] then
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    local rec = redis.call('HGET', KEYS[4], id)
    local version, attempts, rest = string.match(rec or '', '^(%d+) (%d+)( .*)$')
    if version then
      redis.call('HSET', KEYS[4], id,
        version .. ' ' .. math.max(0, tonumber(attempts) - 1) .. rest)
    end
    redis.call('ZADD', KEYS[3], now, id)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
