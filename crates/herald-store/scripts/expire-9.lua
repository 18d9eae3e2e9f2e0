--[[
  expire-9.lua: take back the jobs of one shard whose lease ran out (their worker died, hung, or
  lost its connection): each expired lease counts as a failed attempt ("lease_expired"), the
  job goes back to its endpoint's queue, due at once, or to the dead-letter store when that was
  its last attempt (the second time: see below), and its endpoint's slot comes free. A job
  enqueued at or before its endpoint's last deletion (an old owner's, in flight at the delete)
  goes to the dead-letter store as "endpoint deleted: <id>", never into the queue of a new
  owner of the id. Sent with prelude/flow.lua prepended.

  KEYS[1]    inflight  ZSET  job id -> lease deadline (ms)
  KEYS[2]    leases    HASH  job id -> the current lease: "<fencing token> <attempt>"
  KEYS[3]    jobs      HASH  job id -> job record "1 <attempts> <enqueued_ms> <endpoint>\n<payload>"
  KEYS[4]    errors    HASH  job id -> last error
  KEYS[5]    dead      ZSET  job id -> time it was discarded (ms)
  KEYS[6]    busy      HASH  endpoint id -> deliveries in flight
  KEYS[7]    ready     ZSET  endpoint id -> when it may next be served (ms)
  KEYS[8]    disabled  HASH  endpoint id -> why and when it was disabled (JSON)
  KEYS[9]    deleted   HASH  endpoint id -> when it was last deleted (ms)
  KEYS[9+i]  q         ZSET  "<shard prefix>:q:<endpoint id>" of the i-th job: its queue

  The job's last allowed attempt is the exception: its worker may have died (or lost the
  claim's reply) before sending it, so the first time its lease expires it is put back without
  counting it (the error line ends with "; not counted: the last attempt is given once more");
  the second time, the job goes to the dead-letter store. A job that brings down every worker
  that takes it therefore still ends, one attempt later.

  ARGV[1]  attempts allowed in all (retries + 1)
  ARGV     then pairs: job id, its endpoint id (as its record names it)

  The caller finds the expired jobs (ZRANGEBYSCORE inflight -inf <now>) and their endpoints
  (from their records); this script checks again that each lease has expired, so a job settled
  or claimed meanwhile is left alone. A job whose record is gone only loses its lease.

  Returns {expired, discarded, unblocked}: leases taken back, jobs of them sent to the
  dead-letter store, endpoints that were at their limit and may be served again.
]]

local inflight, leases, jobs, errors, dead, busy, ready, disabled, deleted =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local now = now_ms()
local max_attempts = tonumber(ARGV[1])
local RETRY_NOTE = '; not counted: the last attempt is given once more'
local out = {0, 0, 0}
local i = 0
for g = 2, #ARGV, 2 do
  i = i + 1
  local id, e = ARGV[g], ARGV[g + 1]
  local until_ms = tonumber(redis.call('ZSCORE', inflight, id))
  if until_ms and until_ms <= now then
    redis.call('ZREM', inflight, id)
    local held = redis.call('HGET', leases, id)
    redis.call('HDEL', leases, id)
    out[1] = out[1] + 1
    local rec = redis.call('HGET', jobs, id)
    if rec then
      local version, counted, rest = string.match(rec, '^(%d+) (%d+)( .*)$')
      -- The lease's attempt number is the one that just failed; it becomes the record's count.
      local attempts = tonumber(string.match(held or '', '^%d+ (%d+)$') or counted) or max_attempts
      if version and tonumber(counted) ~= attempts then
        redis.call('HSET', jobs, id, version .. ' ' .. attempts .. rest)
      end
      local why = 'lease_expired: the worker did not settle attempt ' .. attempts ..
        ' before its lease ran out'
      local again = false
      if attempts >= max_attempts then
        -- A worker that dies (or loses a claim's reply) may never have sent the job: its last
        -- attempt is given once more, not counted; a second expiry of it ends the job, so a
        -- job that brings down every worker still ends.
        local last = redis.call('HGET', errors, id) or ''
        again = string.sub(last, -string.len(RETRY_NOTE)) ~= RETRY_NOTE
        if again and version then
          redis.call('HSET', jobs, id, version .. ' ' .. (attempts - 1) .. rest)
        end
      end
      local enqueued = tonumber(string.match(rest or '', '^ (%d+) '))
      local gone = tonumber(redis.call('HGET', deleted, e))
      if gone and enqueued and enqueued <= gone then
        redis.call('ZADD', dead, now, id)
        redis.call('HSET', errors, id, 'endpoint deleted: ' .. e)
        out[2] = out[2] + 1
      elseif attempts >= max_attempts and not again then
        redis.call('ZADD', dead, now, id)
        redis.call('HSET', errors, id, why .. '; retries exhausted')
        out[2] = out[2] + 1
      else
        if again then why = why .. RETRY_NOTE end
        redis.call('ZADD', KEYS[9 + i], now, id)
        redis.call('HSET', errors, id, why)
        if redis.call('HEXISTS', disabled, e) == 0 then offer(ready, e, now) end
      end
      out[3] = out[3] + free_slots(busy, ready, e, 1, now)
    end
  end
end
return out
