--[[
  release-3.lua: hand leased jobs of one shard back unattempted (a worker shutting down whose
  deliveries could not finish in its grace period). The job is due again at once and the
  attempt it was claimed for is not counted: the record's attempt count was never raised for
  it (see claim-10.lua).

  KEYS[1]  inflight  ZSET  job id -> lease deadline (ms)
  KEYS[2]  leases    HASH  job id -> the current lease: "<fencing token> <attempt>"
  KEYS[3]  queue     ZSET  job id -> next attempt time (ms)

  ARGV     pairs: job id, lease ("<token> <attempt>", as the claim issued it)

  A pair is applied only while the lease is the job's current lease (see ack-5.lua).

  Returns one integer per pair: 1 applied, 0 refused (stale lease).
]]

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i = 1, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('HGET', KEYS[2], id) == ARGV[i + 1] then
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('ZADD', KEYS[3], now, id)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
