--[[
  release-5.lua: hand leased jobs of one shard back unattempted (a worker shutting down): each
  is due again at once in its endpoint's queue, its attempt not counted, its slot free. Sent
  with prelude/flow.lua prepended.

  KEYS[1]    inflight  ZSET  job id -> lease deadline (ms)
  KEYS[2]    leases    HASH  job id -> the current lease: "<fencing token> <attempt>"
  KEYS[3]    busy      HASH  endpoint id -> deliveries in flight
  KEYS[4]    ready     ZSET  endpoint id -> when it may next be served (ms)
  KEYS[5]    disabled  HASH  endpoint id -> why and when it was disabled (JSON)
  KEYS[5+i]  q         ZSET  "<shard prefix>:q:<endpoint id>" of the i-th job: its queue

  ARGV     groups of three: job id, lease ("<token> <attempt>", as the claim issued it),
           endpoint id

  Returns {unblocked, flag...}: the endpoints that were at their limit and may be served again,
  then per job 1 handed back, 0 stale lease.
]]

local inflight, leases, busy, ready, disabled = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now = now_ms()
local out = {0}
local i = 0
for g = 1, #ARGV, 3 do
  i = i + 1
  local id, e = ARGV[g], ARGV[g + 2]
  if redis.call('HGET', leases, id) == ARGV[g + 1] then
    redis.call('ZREM', inflight, id)
    redis.call('HDEL', leases, id)
    redis.call('ZADD', KEYS[5 + i], now, id)
    out[1] = out[1] + free_slots(busy, ready, e, 1, now)
    if redis.call('HEXISTS', disabled, e) == 0 then offer(ready, e, now) end
    out[i + 1] = 1
  else
    out[i + 1] = 0
  end
end
return out
