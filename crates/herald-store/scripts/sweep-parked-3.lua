--[[
  sweep-parked-3.lua: discard the jobs of a disabled endpoint that have waited past the retry
  window: those whose next attempt was due longer ago than the window.

  KEYS[1]  q       ZSET  "<shard prefix>:q:<endpoint id>" of a disabled endpoint: its queue
  KEYS[2]  dead    ZSET  job id -> time it was discarded (ms)
  KEYS[3]  errors  HASH  job id -> last error

  ARGV[1]  the retry window in ms
  ARGV[2]  most jobs to discard in this call

  The caller passes only queues of disabled endpoints. Returns the number of jobs discarded.
]]

local now = now_ms()
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[1])),
  'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[2], now, id)
  redis.call('HSET', KEYS[3], id, 'parked longer than the retry window: the endpoint stayed disabled')
  redis.call('ZREM', KEYS[1], id)
end
return #ids
