--[[
  resume-6.lua: (re)activate an endpoint: optionally store its new configuration, clear its
  disabled state and strikes, and make its parked jobs due at once, attempt counts kept.

  KEYS[1]  endpoints  HASH  endpoint id -> endpoint JSON
  KEYS[2]  disabled   HASH  endpoint id -> why and when it was disabled (JSON)
  KEYS[3]  strikes    HASH  endpoint id -> consecutive strikes
  KEYS[4]  deleted    HASH  endpoint id -> when it was deleted (ms)
  KEYS[5]  queue      ZSET  job id -> next attempt time (ms)
  KEYS[6]  parked     ZSET  "<shard prefix>:parked:<endpoint id>": job id -> enqueued time

  ARGV[1]  endpoint id
  ARGV[2]  endpoint JSON to store ("" keeps the stored one: enable only)
  ARGV[3]  most parked jobs to move in this call (call again while some remain)

  Returns {created, moved, remaining}: created is 1 when the endpoint did not exist before,
  or {-1} when ARGV[2] is "" and the endpoint does not exist.
]]

local endpoint = ARGV[1]
local created = 0
if ARGV[2] ~= '' then
  created = redis.call('HSET', KEYS[1], endpoint, ARGV[2])
  redis.call('HDEL', KEYS[4], endpoint)
elseif redis.call('HEXISTS', KEYS[1], endpoint) == 0 then
  return {-1}
end
redis.call('HDEL', KEYS[2], endpoint)
redis.call('HDEL', KEYS[3], endpoint)

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGE', KEYS[6], 0, tonumber(ARGV[3]) - 1)
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[5], now, id)
  redis.call('ZREM', KEYS[6], id)
end
return {created, #ids, redis.call('ZCARD', KEYS[6])}
