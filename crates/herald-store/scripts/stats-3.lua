--[[
  stats-3.lua: count one shard's jobs by state, at one instant of the Redis clock.

  KEYS[1]  queue     ZSET  job id -> next attempt time (ms)
  KEYS[2]  inflight  ZSET  job id -> lease deadline (ms)
  KEYS[3]  dead      ZSET  job id -> time it was discarded (ms)

  ARGV     none

  Returns {now_ms, due, scheduled, in_flight, dead}: due jobs have a next attempt time at or
  before now, scheduled ones after it.
]]

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZCOUNT', KEYS[1], '-inf', now)
return {now, due, redis.call('ZCARD', KEYS[1]) - due, redis.call('ZCARD', KEYS[2]),
  redis.call('ZCARD', KEYS[3])}
