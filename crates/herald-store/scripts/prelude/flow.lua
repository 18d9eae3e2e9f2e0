--[[
  prelude/flow.lua: shared by the worker-side scripts (claim, ack, fail, release, expire), which
  are sent to Redis with prelude/clock.lua (now_ms) and this file prepended. Producers' scripts (enqueue-6.lua,
  enqueue-batch-4.lua) stand alone.

  An endpoint's flow control lives in three keys of its shard:
    ready  ZSET  endpoint id -> when a claim may next serve it (ms). BLOCKED (1e15) means "at
                 its in-flight limit": only a settlement that frees one of its slots brings it
                 back. Absent: nothing queued, or disabled.
    busy   HASH  endpoint id -> its deliveries in flight, fleet-wide (leases held).
    flow   HASH  endpoint id -> "<max> <interval_ms> <burst> <cwnd> <cut_ms> <tat_ms> <paused_ms>
                 [<slow>]":
                 max in flight (configured); the rate as one job per interval_ms with a burst
                 of `burst` (interval 0: no rate); the adaptive limit cwnd (a float, 1..max);
                 the Redis time of its last cut; the rate's theoretical arrival time (GCRA);
                 the time until which a Retry-After paused it (0: none); 1 when the endpoint
                 is judged slow (a delivery to it outlasted the workers' HERALD_SLOW_AFTER, and
                 none has come back quicker since: claims serve it from the workers' slow lane
                 only), 0 or absent otherwise. An endpoint with no rate, no pause, not slow and
                 its adaptive limit at the maximum is stored as "<max>" alone, which is what
                 most claims and acks read.
]]

local BLOCKED = 1e15

local function flow_plain(max)
  return {max = max, interval = 0, burst = 1, cwnd = max, cut = 0, tat = 0, paused = 0,
    slow = 0}
end

-- The flow record of endpoint e, or the defaults of an endpoint without one (`stored` is
-- false then).
local function flow_get(key, e, default_max)
  local s = redis.call('HGET', key, e)
  if s then
    local max = tonumber(s)
    if max then return flow_plain(max), true end
    local m, iv, b, c, cut, tat, p, rest = string.match(s,
      '^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+)(.*)$')
    if m then
      return {max = tonumber(m), interval = tonumber(iv), burst = tonumber(b),
        cwnd = tonumber(c), cut = tonumber(cut), tat = tonumber(tat), paused = tonumber(p),
        slow = tonumber(string.match(rest, '^ (%d+)$') or '0')}, true
    end
  end
  return flow_plain(default_max), false
end

local function flow_put(key, e, f, now)
  if f.interval == 0 and f.cwnd >= f.max and f.paused <= now and f.slow == 0 then
    redis.call('HSET', key, e, string.format('%d', f.max))
    return
  end
  redis.call('HSET', key, e, table.concat({string.format('%d', f.max), tostring(f.interval),
    string.format('%d', f.burst), tostring(f.cwnd), string.format('%d', f.cut),
    tostring(f.tat), string.format('%d', f.paused), string.format('%d', f.slow)}, ' '))
end

-- The in-flight limit in force: the adaptive limit, within 1 .. max.
local function limit_of(f)
  return math.max(1, math.min(f.max, math.floor(f.cwnd)))
end

-- Jobs the rate lets through at `now` (GCRA with a burst of f.burst), and when the next one
-- may go if none may now.
local function rate_allows(f, now)
  if f.interval <= 0 then return math.huge, now end
  local tau = (f.burst - 1) * f.interval
  local n = math.floor((now + tau - math.max(f.tat, now)) / f.interval) + 1
  if n > 0 then return n, now end
  return 0, math.ceil(f.tat - tau)
end

-- n jobs of endpoint e went out at `now`: advance its rate clock.
local function rate_take(f, now, n)
  f.tat = math.max(f.tat, now) + n * f.interval
end

-- Endpoint e may have work to serve at `at`: bring its ready score forward, never back, and
-- never past BLOCKED (only freed slots unblock an endpoint).
local function offer(ready, e, at)
  local s = redis.call('ZSCORE', ready, e)
  if not s then
    redis.call('ZADD', ready, at, e)
  else
    s = tonumber(s)
    if s > at and s < BLOCKED then redis.call('ZADD', ready, at, e) end
  end
end

-- n of endpoint e's slots came free: count them, and let the next claim look at e again if
-- it was blocked at its limit. Returns 1 when it was blocked. With `lim`, the limit in force
-- (before any growth by the caller), e is looked at only if its count had reached it: a claim
-- blocks an endpoint only then.
local function free_slots(busy, ready, e, n, now, lim)
  local left = redis.call('HINCRBY', busy, e, -n)
  if left <= 0 then redis.call('HDEL', busy, e) end
  if lim and left + n < lim then return 0 end
  local s = redis.call('ZSCORE', ready, e)
  if s and tonumber(s) >= BLOCKED then
    redis.call('ZADD', ready, now, e)
    return 1
  end
  return 0
end

