--[[
  stats-4.lua: what one shard holds, for `herald stats` and the workers' queue-depth sampler,
  in one call (an idle deployment then costs one call per shard).

  KEYS[1]  ready     ZSET  endpoint id -> when a claim may next serve it (ms; 1e15: at its limit)
  KEYS[2]  disabled  HASH  endpoint id -> why and when it was disabled (JSON)
  KEYS[3]  inflight  ZSET  job id -> lease deadline (ms)
  KEYS[4]  dead      ZSET  job id -> time it was discarded (ms)

  Returns {in_flight, dead, D, disabled endpoint 1 .. D, then endpoint, score pairs of
  `ready`}. The caller then reads each such endpoint's queue (ZCOUNT, ZCARD, and the head
  with ZRANGE 0 0 for the oldest due job), whose keys it builds: every endpoint with queued
  jobs is in `ready` or disabled.
]]

local out = {redis.call('ZCARD', KEYS[3]), redis.call('ZCARD', KEYS[4])}
local disabled = redis.call('HKEYS', KEYS[2])
out[3] = #disabled
for _, e in ipairs(disabled) do out[#out + 1] = e end
for _, v in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')) do out[#out + 1] = v end
return out
