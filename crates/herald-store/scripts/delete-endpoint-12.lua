--[[
  delete-endpoint-12.lua: delete an endpoint: its configuration, state and subscriptions go,
  a tombstone stays (`deleted`, and `changed` set to the same time), and its queued jobs move to the dead-letter store ("endpoint deleted").

  KEYS[1]   endpoints  HASH  endpoint id -> endpoint JSON
  KEYS[2]   disabled   HASH  endpoint id -> why and when it was disabled (JSON)
  KEYS[3]   strikes    HASH  endpoint id -> consecutive strikes
  KEYS[4]   deleted    HASH  endpoint id -> when it was deleted (ms)
  KEYS[5]   q          ZSET  "<shard prefix>:q:<endpoint id>": the endpoint's queue
  KEYS[6]   dead       ZSET  job id -> time it was discarded (ms)
  KEYS[7]   errors     HASH  job id -> last error
  KEYS[8]   attempts   LIST  "<shard prefix>:attempts:<endpoint id>"
  KEYS[9]   subs       HASH  "<shard prefix>:subs:<endpoint id>"
  KEYS[10]  ready      ZSET  endpoint id -> when a claim may next serve it (ms)
  KEYS[11]  flow       HASH  endpoint id -> flow record
  KEYS[12]  changed    HASH  endpoint id -> when an operator last changed it (ms)

  ARGV[1]  endpoint id
  ARGV[2]  most queued jobs to move in this call (call again while some remain)

  Jobs in flight at the time settle and count the endpoint's `busy` entry down (it is left
  alone: the leases it counts still exist); a failed one goes to the dead-letter store ("endpoint
  deleted"), never back into the queue, even if the id was set again meanwhile, and strikes
  nothing (fail-12.lua, expire-9.lua, release-9.lua).

  Returns {existed, moved, remaining}.
]]

local endpoints, disabled, strikes, deleted, q, dead, errors, attempts, subs, ready, flow,
  changed = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9],
  KEYS[10], KEYS[11], KEYS[12]
local endpoint = ARGV[1]
local existed = redis.call('HDEL', endpoints, endpoint)
local now = now_ms()
if existed == 1 then
  redis.call('HDEL', disabled, endpoint)
  redis.call('HDEL', strikes, endpoint)
  redis.call('HDEL', flow, endpoint)
  redis.call('HSET', deleted, endpoint, now)
  redis.call('HSET', changed, endpoint, now)
  redis.call('DEL', attempts, subs)
end
local ids = redis.call('ZRANGE', q, 0, tonumber(ARGV[2]) - 1)
for _, id in ipairs(ids) do
  redis.call('ZADD', dead, now, id)
  redis.call('HSET', errors, id, 'endpoint deleted: ' .. endpoint)
  redis.call('ZREM', q, id)
end
local remaining = redis.call('ZCARD', q)
if remaining == 0 then redis.call('ZREM', ready, endpoint) end
return {existed, #ids, remaining}
