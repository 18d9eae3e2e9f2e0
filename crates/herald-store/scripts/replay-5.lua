--[[
  replay-5.lua: give dead jobs of one shard a fresh start: each goes back to its endpoint's
  queue, due at once, with its attempt count reset to 0 and its last error cleared.

  KEYS[1]    dead      ZSET  job id -> time it was discarded (ms)
  KEYS[2]    jobs      HASH  job id -> job record "1 <attempts> <enqueued_ms> <endpoint>\n<payload>"
  KEYS[3]    errors    HASH  job id -> last error
  KEYS[4]    ready     ZSET  endpoint id -> when a claim may next serve it (ms)
  KEYS[5]    disabled  HASH  endpoint id -> why and when it was disabled (JSON)
  KEYS[5+i]  q         ZSET  "<shard prefix>:q:<endpoint id>" of the i-th job: its queue

  ARGV     pairs: job id, its endpoint id (as its record names it)

  Returns per job: 1 replayed, 0 not dead, -1 unreadable record or another endpoint than the
  one named (left in the dead-letter store).
]]

local dead, jobs, errors, ready, disabled = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now = now_ms()
local out = {}
local i = 0
for g = 1, #ARGV, 2 do
  i = i + 1
  local id, e = ARGV[g], ARGV[g + 1]
  if not redis.call('ZSCORE', dead, id) then
    out[i] = 0
  else
    local rec = redis.call('HGET', jobs, id)
    local version, rest, named = string.match(rec or '', '^(%d+) %d+( %d+ (%S+)\n.*)$')
    if version ~= '1' or named ~= e then
      out[i] = -1
    else
      redis.call('HSET', jobs, id, version .. ' 0' .. rest)
      redis.call('ZREM', dead, id)
      redis.call('HDEL', errors, id)
      redis.call('ZADD', KEYS[5 + i], now, id)
      if redis.call('HEXISTS', disabled, e) == 0 then
        local score = tonumber(redis.call('ZSCORE', ready, e))
        if not score or (score > now and score < 1e15) then
          redis.call('ZADD', ready, now, e)
        end
      end
      out[i] = 1
    end
  end
end
return out
