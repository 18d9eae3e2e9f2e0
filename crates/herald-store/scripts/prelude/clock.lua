--[[
  prelude/clock.lua: the Redis clock, prepended to every script of the workers and the CLI
  that reads it (before prelude/flow.lua where both are). The producers' scripts
  (enqueue-6.lua, enqueue-batch-4.lua) stand alone, for producers in other languages, and read
  the clock themselves the same way.

  now_ms(): the Redis server's time in ms since the Unix epoch (TIME, microseconds dropped).
]]

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

