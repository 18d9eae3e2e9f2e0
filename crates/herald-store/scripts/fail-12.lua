--[[
  fail-12.lua: settle failed attempts of one shard: each job is either scheduled for a retry in
  its endpoint's queue or discarded into the dead-letter store; its endpoint's slots come free,
  and its strikes, adaptive limit and pause are updated in the same step. Sent with
  prelude/flow.lua prepended.

  KEYS[1]      inflight  ZSET  job id -> lease deadline (ms)
  KEYS[2]      leases    HASH  job id -> the current lease: "<fencing token> <attempt>"
  KEYS[3]      jobs      HASH  job id -> job record "1 <attempts> <enqueued_ms> <endpoint>\n<payload>"
  KEYS[4]      errors    HASH  job id -> last error (for a discarded job: the reason)
  KEYS[5]      dead      ZSET  job id -> time it was discarded (ms)
  KEYS[6]      strikes   HASH  endpoint id -> consecutive strikes
  KEYS[7]      disabled  HASH  endpoint id -> why and when it was disabled (JSON)
  KEYS[8]      busy      HASH  endpoint id -> deliveries in flight
  KEYS[9]      ready     ZSET  endpoint id -> when it may next be served (ms)
  KEYS[10]     flow      HASH  endpoint id -> flow record (see prelude/flow.lua)
  KEYS[11]     changed   HASH  endpoint id -> when an operator last changed it (ms)
  KEYS[12]     deleted   HASH  endpoint id -> when it was last deleted (ms)
  KEYS[11+2i]  q         ZSET  "<shard prefix>:q:<endpoint id>" of the i-th job: its queue
  KEYS[12+2i]  attempts  LIST  attempt log of the i-th job's endpoint (see ack-8.lua)

  ARGV[1]  strikes that disable an endpoint
  ARGV[2]  attempt log length to keep per endpoint
  ARGV[3]  in-flight limit of an endpoint without a flow record
  ARGV     then groups of ten: job id, lease ("<token> <attempt>", as the claim issued it),
           delay in ms before the retry (negative: discard), error line (the reason when
           discarded), endpoint id, strike (0: none, 1: one strike, 2: disable at once, e.g.
           410 Gone), attempt log entry (JSON text, "" to log nothing), the Redis time in ms
           at which the job was claimed, congested (1: the attempt timed out or was answered
           5xx or 429; 0: not), pause in ms (0: none; a Retry-After of 429 or 503)

  A group is applied only while the lease is the job's current lease (see ack-8.lua). The
  lease's attempt number goes into the job record's attempt count. A discarded job keeps its
  record for inspection and replay; dead-trim-3.lua bounds the store.

  An attempt speaks of the endpoint only as it was when the job was claimed. A strike, a
  disable, a cut and a pause apply only when the job was claimed after the endpoint's last
  change (`changed`: set, enabled, secret rotated, deleted; a claim in the same millisecond
  counts as before it): the late failure of an attempt made against the old URL never undoes
  an operator's fix. A job enqueued at or before its endpoint's last deletion (an old owner's,
  in flight at the delete) is discarded as "endpoint deleted: <id>" instead of being retried,
  and its attempt is not logged: it never lands in the queue of a new owner of the id.

  Congestion halves the endpoint's adaptive limit (at least 1), once per round: only a job
  claimed after the last cut cuts again, so the deliveries already under way when a receiver
  starts failing count as one signal. A pause holds the endpoint's whole queue until then.

  Returns {next_due_ms, unblocked, flag...}: the earliest retry time set by this call (-1 when
  none), the endpoints that were at their limit and may be served again, then one integer per
  group: 0 refused (stale lease), 1 applied, 2 applied and the endpoint was disabled by it.
]]

local inflight, leases, jobs, errors, dead, strikes, disabled, busy, ready, flow, changed,
  deleted = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9],
  KEYS[10], KEYS[11], KEYS[12]
local now = now_ms()
local disable_after = tonumber(ARGV[1])
local keep = tonumber(ARGV[2])
local default_max = tonumber(ARGV[3])
local out = {-1, 0}
-- Per endpoint, in order of first appearance: slots freed, earliest retry, flow changes, and
-- its last change and deletion, read when first needed.
local touched, order = {}, {}

-- Whether an attempt claimed at `claimed` was made against the endpoint as it is now.
local function current(t, e, claimed)
  if t.changed == nil then t.changed = tonumber(redis.call('HGET', changed, e)) or -1 end
  return claimed > t.changed
end

local i = 0
for g = 4, #ARGV, 10 do
  i = i + 1
  local id, delay, err = ARGV[g], tonumber(ARGV[g + 2]), ARGV[g + 3]
  local endpoint, strike, entry = ARGV[g + 4], ARGV[g + 5], ARGV[g + 6]
  local claimed, congested, pause = tonumber(ARGV[g + 7]), ARGV[g + 8] == '1',
    tonumber(ARGV[g + 9])
  local q, log = KEYS[11 + 2 * i], KEYS[12 + 2 * i]
  if redis.call('HGET', leases, id) ~= ARGV[g + 1] then
    out[i + 2] = 0
  else
    redis.call('ZREM', inflight, id)
    redis.call('HDEL', leases, id)
    local rec = redis.call('HGET', jobs, id)
    local version, rest = string.match(rec or '', '^(%d+) %d+( .*)$')
    local attempt = string.match(ARGV[g + 1], '^%d+ (%d+)$')
    if version and attempt then
      redis.call('HSET', jobs, id, version .. ' ' .. attempt .. rest)
    end
    local t = touched[endpoint]
    if not t then
      t = {freed = 0}
      touched[endpoint] = t
      order[#order + 1] = endpoint
    end
    t.freed = t.freed + 1
    if t.gone == nil then t.gone = tonumber(redis.call('HGET', deleted, endpoint)) or false end
    local enqueued = tonumber(string.match(rest or '', '^ (%d+) '))
    local old_owner = t.gone and enqueued and enqueued <= t.gone
    if old_owner then
      err, delay, entry = 'endpoint deleted: ' .. endpoint, -1, ''
    end
    redis.call('HSET', errors, id, err)
    if delay < 0 then
      redis.call('ZADD', dead, now, id)
    else
      local due = now + math.floor(delay)
      redis.call('ZADD', q, due, id)
      if out[1] == -1 or due < out[1] then out[1] = due end
      if not t.due or due < t.due then t.due = due end
    end
    if entry ~= '' then
      redis.call('LPUSH', log, entry)
      redis.call('LTRIM', log, 0, keep - 1)
    end
    local flag = 1
    if strike ~= '0' and current(t, endpoint, claimed)
        and redis.call('HEXISTS', disabled, endpoint) == 0 then
      local count = redis.call('HINCRBY', strikes, endpoint, 1)
      local why
      if strike == '2' then
        why = 'the receiver answered 410 Gone'
      elseif count >= disable_after then
        why = count .. ' consecutive failed attempts; last: ' .. err
      end
      if why then
        redis.call('HSET', disabled, endpoint,
          cjson.encode({reason = why, at_ms = now, strikes = count, claimed_ms = claimed}))
        flag = 2
      end
    end
    if (congested or pause > 0) and current(t, endpoint, claimed) then
      t.f = t.f or flow_get(flow, endpoint, default_max)
      if congested and claimed >= t.f.cut then
        t.f.cwnd = math.max(1, math.floor(limit_of(t.f) / 2))
        t.f.cut = now
      end
      if pause > 0 then
        t.f.paused = math.max(t.f.paused, now + math.floor(pause))
        t.paused = true
      end
    end
    out[i + 2] = flag
  end
end

for _, e in ipairs(order) do
  local t = touched[e]
  if t.f then flow_put(flow, e, t.f, now) end
  out[2] = out[2] + free_slots(busy, ready, e, t.freed, now)
  if redis.call('HEXISTS', disabled, e) == 0 then
    if t.paused then
      redis.call('ZADD', ready, t.f.paused, e)
    elseif t.due then
      offer(ready, e, t.due)
    end
  end
end
return out
