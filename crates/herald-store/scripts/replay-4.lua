--[[
  replay-4.lua: move jobs of one shard from the dead-letter store back into the queue, due at
  once, with their attempt count reset to zero so that they get the whole schedule again.
  They keep their job id, hence their webhook-id: a receiver that already processed one will
  recognise it.

  KEYS[1]  dead    ZSET  job id -> time it was discarded (ms)
  KEYS[2]  queue   ZSET  job id -> next attempt time (ms)
  KEYS[3]  jobs    HASH  job id -> job record "1 <attempts> <enqueued_ms> <endpoint>\n<payload>"
  KEYS[4]  errors  HASH  job id -> last error

  ARGV     job ids

  Returns one integer per id: 1 replayed, 0 not in the dead-letter store, -1 its record is
  unreadable (left in the dead-letter store).
]]

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i = 1, #ARGV do
  local id = ARGV[i]
  if not redis.call('ZSCORE', KEYS[1], id) then
    out[i] = 0
  else
    local rec = redis.call('HGET', KEYS[3], id)
    local version, rest = string.match(rec or '', '^(%d+) %d+( .*)$')
    if version ~= '1' then
      out[i] = -1
    else
      redis.call('HSET', KEYS[3], id, version .. ' 0' .. rest)
      redis.call('ZREM', KEYS[1], id)
      redis.call('HDEL', KEYS[4], id)
      redis.call('ZADD', KEYS[2], now, id)
      out[i] = 1
    end
  end
end
return out
