--[[
  purge-3.lua: delete chosen jobs of one shard from the dead-letter store for good.

  KEYS[1]  dead    ZSET  job id -> time it was discarded (ms)
  KEYS[2]  jobs    HASH  job id -> job record
  KEYS[3]  errors  HASH  job id -> last error

  ARGV     job ids

  Returns one integer per id: 1 deleted, 0 not in the dead-letter store (nothing changed).
]]

local out = {}
for i = 1, #ARGV do
  local id = ARGV[i]
  if redis.call('ZREM', KEYS[1], id) == 1 then
    redis.call('HDEL', KEYS[2], id)
    redis.call('HDEL', KEYS[3], id)
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
