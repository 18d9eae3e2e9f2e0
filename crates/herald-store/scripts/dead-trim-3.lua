--[[
  dead-trim-3.lua: bound one shard's dead-letter store by age and by count, or purge it.

  KEYS[1]  dead    ZSET  job id -> time it was discarded (ms)
  KEYS[2]  jobs    HASH  job id -> job record
  KEYS[3]  errors  HASH  job id -> last error

  ARGV[1]  most entries to keep (0 purges everything)
  ARGV[2]  oldest age to keep, in ms (entries discarded longer ago are removed)
  ARGV[3]  most entries to remove in this call (keeps the script short; call again while
           it returns that many)

  Oldest entries go first. Returns the number of entries removed.
]]

local now = now_ms()
local keep = tonumber(ARGV[1])
local budget = tonumber(ARGV[3])
local removed = 0

local function remove(ids)
  for _, id in ipairs(ids) do
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('HDEL', KEYS[3], id)
    removed = removed + 1
  end
end

remove(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[2])),
  'LIMIT', 0, budget))
local excess = redis.call('ZCARD', KEYS[1]) - keep
if excess > 0 and removed < budget then
  remove(redis.call('ZRANGE', KEYS[1], 0, math.min(excess, budget - removed) - 1))
end
return removed
