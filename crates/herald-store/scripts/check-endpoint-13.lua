--[[
  check-endpoint-13.lua: `herald check` looks again at one endpoint that its walk saw in an
  inconsistent state, in one Redis instant (the walk itself reads while workers run), and with
  ARGV[2] = 1 makes the safe repair of what it finds.

  KEYS[1]   endpoints  HASH  endpoint id -> endpoint JSON
  KEYS[2]   disabled   HASH  endpoint id -> why and when it was disabled (JSON)
  KEYS[3]   deleted    HASH  endpoint id -> when it was last deleted (ms): its tombstone
  KEYS[4]   ready      ZSET  endpoint id -> when a claim may next serve it (ms; 1e15: blocked)
  KEYS[5]   busy       HASH  endpoint id -> deliveries in flight
  KEYS[6]   flow       HASH  endpoint id -> flow record
  KEYS[7]   strikes    HASH  endpoint id -> consecutive strikes
  KEYS[8]   inflight   ZSET  job id -> lease deadline (ms)
  KEYS[9]   jobs       HASH  job id -> job record "1 <attempts> <enqueued_ms> <endpoint>\n<payload>"
  KEYS[10]  q          ZSET  "<shard prefix>:q:<endpoint id>": the endpoint's queue
  KEYS[11]  attempts   LIST  "<shard prefix>:attempts:<endpoint id>"
  KEYS[12]  subs       HASH  "<shard prefix>:subs:<endpoint id>"
  KEYS[13]  changed    HASH  endpoint id -> when an operator last changed it (ms)

  ARGV[1]  endpoint id
  ARGV[2]  1: repair what has a safe repair; 0: only look

  Reads every job in flight in the shard (a few thousand at most: leases are bounded by the
  fleet's delivery slots) to count the endpoint's.

  Returns the violations found, each a pair {code, detail}:
    queue_not_ready  jobs queued for an endpoint that is not disabled, and the endpoint absent
                     from `ready`: no claim would ever look at them. Repair: into `ready` at
                     the head of its queue
    blocked_idle     blocked at its in-flight limit (1e15 in `ready`) with nothing in flight:
                     no settlement will ever unblock it. Repair: `ready` at now
    busy_count       `busy` differs from the jobs of the endpoint in `inflight`. Repair: set
                     to the count
    leftover_keys    an endpoint that does not exist (deleted, or never created) still has
                     state: disabled, strikes, flow, attempt log or subscriptions. Repair: removed
    stale_disable    disabled by strikes after its last change, by an attempt claimed before
                     it (the disabled record's claimed_ms or, for a record written without
                     one, the newest attempt logged): the failure of an attempt against the
                     old configuration undid the operator's fix (issue 18). No repair: the
                     operator enables it (`herald endpoint enable`)
]]

local endpoints, disabled, deleted, ready, busy, flow, strikes, inflight, jobs, q, attempts, subs,
  changed = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9],
  KEYS[10], KEYS[11], KEYS[12], KEYS[13]
local e, fix = ARGV[1], ARGV[2] == '1'
local BLOCKED = 1e15
local now = now_ms()

local out = {}
local function found(code, detail) out[#out + 1] = code; out[#out + 1] = detail end

local exists = redis.call('HEXISTS', endpoints, e) == 1
local is_disabled = redis.call('HEXISTS', disabled, e) == 1
local queued = redis.call('ZCARD', q)
local score = tonumber(redis.call('ZSCORE', ready, e))
local counted_busy = tonumber(redis.call('HGET', busy, e) or '0')

local counted = 0
for _, id in ipairs(redis.call('ZRANGE', inflight, 0, -1)) do
  local rec = redis.call('HGET', jobs, id)
  if rec and string.match(rec, '^1 %d+ %d+ ([^\n ]+)\n') == e then counted = counted + 1 end
end

if queued > 0 and not is_disabled and not score then
  found('queue_not_ready', queued .. ' queued jobs, and the endpoint is not in ready')
  if fix then
    local head = redis.call('ZRANGE', q, 0, 0, 'WITHSCORES')
    redis.call('ZADD', ready, tonumber(head[2]), e)
  end
end
if score and score >= BLOCKED and counted == 0 then
  found('blocked_idle', 'blocked at its in-flight limit with nothing in flight')
  if fix then redis.call('ZADD', ready, now, e) end
end
if counted_busy ~= counted then
  found('busy_count', 'busy says ' .. counted_busy .. ', ' .. counted .. ' of its jobs are in flight')
  if fix then
    if counted > 0 then redis.call('HSET', busy, e, counted) else redis.call('HDEL', busy, e) end
    if counted == 0 and score and score >= BLOCKED then redis.call('ZADD', ready, now, e) end
  end
end
local last_change = tonumber(redis.call('HGET', changed, e))
if exists and is_disabled and last_change then
  local ok, d = pcall(cjson.decode, redis.call('HGET', disabled, e))
  if ok and type(d) == 'table' and d.strikes and tonumber(d.at_ms)
      and tonumber(d.at_ms) > last_change then
    local claimed = tonumber(d.claimed_ms)
    if not claimed then
      local ok_log, newest = pcall(cjson.decode, redis.call('LINDEX', attempts, 0) or '')
      if ok_log and type(newest) == 'table' then claimed = tonumber(newest.at_ms) end
    end
    if claimed and claimed <= last_change then
      found('stale_disable', 'disabled at ' .. string.format('%d', d.at_ms) ..
        ' by an attempt claimed at ' .. string.format('%d', claimed) ..
        ', before its last change at ' .. string.format('%d', last_change))
    end
  end
end
if not exists then
  local left = {}
  if is_disabled then left[#left + 1] = 'disabled' end
  if redis.call('HEXISTS', strikes, e) == 1 then left[#left + 1] = 'strikes' end
  if redis.call('HEXISTS', flow, e) == 1 then left[#left + 1] = 'flow' end
  if redis.call('EXISTS', attempts) == 1 then left[#left + 1] = 'attempts' end
  if redis.call('EXISTS', subs) == 1 then left[#left + 1] = 'subs' end
  if #left > 0 then
    local what = redis.call('HEXISTS', deleted, e) == 1 and 'deleted' or 'unknown'
    found('leftover_keys', 'the ' .. what .. ' endpoint still has: ' .. table.concat(left, ', '))
    if fix then
      redis.call('HDEL', disabled, e)
      redis.call('HDEL', strikes, e)
      redis.call('HDEL', flow, e)
      redis.call('DEL', attempts, subs)
      -- Its queue, no longer disabled, must be served (and buried) by the claims.
      if queued > 0 and not score then
        local head = redis.call('ZRANGE', q, 0, 0, 'WITHSCORES')
        redis.call('ZADD', ready, tonumber(head[2]), e)
      end
    end
  end
end
return out
