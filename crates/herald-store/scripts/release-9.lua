--[[
  release-9.lua: hand leased jobs of one shard back unattempted (a worker shutting down): each
  is due again at once in its endpoint's queue, its attempt not counted, its slot free; but a
  job enqueued at or before its endpoint's last deletion (an old owner's, claimed before the
  delete) goes to the dead-letter store as "endpoint deleted: <id>", never into the queue of a
  new owner of the id. Sent with prelude/flow.lua prepended.

  KEYS[1]    inflight  ZSET  job id -> lease deadline (ms)
  KEYS[2]    leases    HASH  job id -> the current lease: "<fencing token> <attempt>"
  KEYS[3]    busy      HASH  endpoint id -> deliveries in flight
  KEYS[4]    ready     ZSET  endpoint id -> when it may next be served (ms)
  KEYS[5]    disabled  HASH  endpoint id -> why and when it was disabled (JSON)
  KEYS[6]    jobs      HASH  job id -> job record "1 <attempts> <enqueued_ms> <endpoint>\n<payload>"
  KEYS[7]    deleted   HASH  endpoint id -> when it was last deleted (ms)
  KEYS[8]    dead      ZSET  job id -> time it was discarded (ms)
  KEYS[9]    errors    HASH  job id -> last error (for a discarded job: the reason)
  KEYS[9+i]  q         ZSET  "<shard prefix>:q:<endpoint id>" of the i-th job: its queue

  ARGV     groups of three: job id, lease ("<token> <attempt>", as the claim issued it),
           endpoint id

  Returns {unblocked, flag...}: the endpoints that were at their limit and may be served again,
  then per job 1 handed back (or discarded as an old owner's), 0 stale lease.
]]

local inflight, leases, busy, ready, disabled, jobs, deleted, dead, errors =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local now = now_ms()
local out = {0}
local i = 0
for g = 1, #ARGV, 3 do
  i = i + 1
  local id, e = ARGV[g], ARGV[g + 2]
  if redis.call('HGET', leases, id) == ARGV[g + 1] then
    redis.call('ZREM', inflight, id)
    redis.call('HDEL', leases, id)
    out[1] = out[1] + free_slots(busy, ready, e, 1, now)
    local enqueued = tonumber(string.match(redis.call('HGET', jobs, id) or '', '^%d+ %d+ (%d+) '))
    local gone = tonumber(redis.call('HGET', deleted, e))
    if gone and enqueued and enqueued <= gone then
      redis.call('ZADD', dead, now, id)
      redis.call('HSET', errors, id, 'endpoint deleted: ' .. e)
    else
      redis.call('ZADD', KEYS[9 + i], now, id)
      if redis.call('HEXISTS', disabled, e) == 0 then offer(ready, e, now) end
    end
    out[i + 1] = 1
  else
    out[i + 1] = 0
  end
end
return out
