--[[
  delete-endpoint-9.lua: delete an endpoint. Its parked jobs go to the dead-letter store with
  the reason "endpoint deleted"; queued jobs follow as they come due (claim-10.lua reads the
  tombstone), so nothing vanishes silently.

  KEYS[1]  endpoints  HASH  endpoint id -> endpoint JSON
  KEYS[2]  disabled   HASH  endpoint id -> why and when it was disabled (JSON)
  KEYS[3]  strikes    HASH  endpoint id -> consecutive strikes
  KEYS[4]  deleted    HASH  endpoint id -> when it was deleted (ms): the tombstone
  KEYS[5]  parked     ZSET  "<shard prefix>:parked:<endpoint id>"
  KEYS[6]  dead       ZSET  job id -> time it was discarded (ms)
  KEYS[7]  errors     HASH  job id -> last error
  KEYS[8]  attempts   LIST  "<shard prefix>:attempts:<endpoint id>"
  KEYS[9]  subs       HASH  "<shard prefix>:subs:<endpoint id>": service slug -> subscription

  ARGV[1]  endpoint id
  ARGV[2]  most parked jobs to move in this call (call again while some remain)

  Returns {existed, moved, remaining}: existed is 1 when this call deleted the endpoint.
]]

local endpoint = ARGV[1]
local existed = redis.call('HDEL', KEYS[1], endpoint)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if existed == 1 then
  redis.call('HDEL', KEYS[2], endpoint)
  redis.call('HDEL', KEYS[3], endpoint)
  redis.call('HSET', KEYS[4], endpoint, now)
  redis.call('DEL', KEYS[8], KEYS[9])
end
local ids = redis.call('ZRANGE', KEYS[5], 0, tonumber(ARGV[2]) - 1)
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[6], now, id)
  redis.call('HSET', KEYS[7], id, 'endpoint deleted: ' .. endpoint)
  redis.call('ZREM', KEYS[5], id)
end
return {existed, #ids, redis.call('ZCARD', KEYS[5])}
