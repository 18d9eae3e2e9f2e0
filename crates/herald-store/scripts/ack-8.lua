--[[
  ack-8.lua: settle delivered jobs of one shard: they leave the store, their endpoint's strike
  count goes back to zero, its slots come free, its adaptive limit grows, and the attempt is
  added to its attempt log. Sent with prelude/flow.lua prepended.

  KEYS[1]    inflight  ZSET  job id -> lease deadline (ms)
  KEYS[2]    leases    HASH  job id -> the current lease: "<fencing token> <attempt>"
  KEYS[3]    jobs      HASH  job id -> job record
  KEYS[4]    errors    HASH  job id -> last error
  KEYS[5]    strikes   HASH  endpoint id -> consecutive strikes
  KEYS[6]    busy      HASH  endpoint id -> deliveries in flight
  KEYS[7]    ready     ZSET  endpoint id -> when it may next be served (ms)
  KEYS[8]    flow      HASH  endpoint id -> flow record (see prelude/flow.lua)
  KEYS[8+i]  attempts  LIST  "<shard prefix>:attempts:<endpoint id>" of the i-th job: attempt
                             log, newest first

  ARGV[1]  attempt log length to keep per endpoint
  ARGV     then groups of four: job id, lease ("<token> <attempt>", as the claim issued it),
           endpoint id, attempt log entry (JSON text, "" to log nothing)

  A group is applied only while its lease is the job's current lease; otherwise (the lease
  expired and the job was put back or claimed again) it is refused and nothing changes. The
  lease carries a fencing token from one counter (seq), so no two leases are ever equal.

  Each success grows its endpoint's adaptive limit by 1 / (the limit in force), up to the
  configured maximum: about one more slot per round of successful deliveries.

  Returns {unblocked, flag...}: unblocked counts the endpoints that were at their limit and may
  be served again (a claim should look at the shard), then one flag per group: 1 applied, 0
  refused (stale lease).
]]

local inflight, leases, jobs, errors, strikes, busy, ready, flow =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local keep = tonumber(ARGV[1])
local out = {0}
local freed, order = {}, {}
local i = 0
for g = 2, #ARGV, 4 do
  i = i + 1
  local id, endpoint, entry = ARGV[g], ARGV[g + 2], ARGV[g + 3]
  if redis.call('HGET', leases, id) == ARGV[g + 1] then
    redis.call('ZREM', inflight, id)
    redis.call('HDEL', leases, id)
    redis.call('HDEL', jobs, id)
    redis.call('HDEL', errors, id)
    if not freed[endpoint] then
      freed[endpoint] = 0
      order[#order + 1] = endpoint
    end
    freed[endpoint] = freed[endpoint] + 1
    if entry ~= '' then
      redis.call('LPUSH', KEYS[8 + i], entry)
      redis.call('LTRIM', KEYS[8 + i], 0, keep - 1)
    end
    out[i + 1] = 1
  else
    out[i + 1] = 0
  end
end

local now = now_ms()
for _, e in ipairs(order) do
  local n = freed[e]
  redis.call('HDEL', strikes, e)
  local f, stored = flow_get(flow, e, 0)
  -- The limit before this call's growth: growth never hides a block.
  local lim = limit_of(f)
  out[1] = out[1] + free_slots(busy, ready, e, n, now, stored and lim or nil)
  if f.cwnd < f.max then
    f.cwnd = math.min(f.max, f.cwnd + n / lim)
    flow_put(flow, e, f, now)
  end
end
return out
