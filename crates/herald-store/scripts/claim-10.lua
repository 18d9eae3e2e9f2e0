--[[
  claim-10.lua: lease up to a batch of due jobs of one shard to a worker, after putting back
  the jobs whose lease expired.

  KEYS[1]  queue      ZSET  job id -> next attempt time (ms)
  KEYS[2]  inflight   ZSET  job id -> lease deadline (ms)
  KEYS[3]  leases     HASH  job id -> the current lease: "<fencing token> <attempt>"
  KEYS[4]  jobs       HASH  job id -> job record "1 <attempts> <enqueued_ms> <endpoint>\n<payload>"
  KEYS[5]  errors     HASH  job id -> last error
  KEYS[6]  endpoints  HASH  endpoint id -> endpoint JSON
  KEYS[7]  dead       ZSET  job id -> time it was discarded (ms)
  KEYS[8]  seq        STRING counter that issues fencing tokens
  KEYS[9]  disabled   HASH  endpoint id -> why and when it was disabled (JSON)
  KEYS[10] deleted    HASH  endpoint id -> when it was deleted (ms)

  ARGV[1]  most jobs to claim
  ARGV[2]  lease length in ms
  ARGV[3]  attempts allowed in all (retries + 1): an expired lease that used the last one
           sends the job to the dead-letter store
  ARGV[4]  most expired leases to put back in this call

  The record counts the attempts made before the current lease; the lease carries the number
  of the attempt it was issued for (the record's count + 1), so a claim writes nothing into the
  record. fail-8.lua, and an expired lease here, write the attempt into the record.

  An expired lease counts as a failed attempt ("lease_expired"), so a job that crashes every
  worker that takes it ends in the dead-letter store instead of looping. A job whose record is
  unreadable, or whose endpoint no longer exists, goes to the dead-letter store with that
  reason instead of being leased.

  A job of a disabled endpoint is leased without counting an attempt (its lease carries the
  record's count) and marked "disabled": the worker parks it (park-3.lua) instead of
  delivering it.

  Returns {now_ms, next_due_ms, next_lease_deadline_ms, expired, discarded, job...} where
  next_* are -1 when the set is empty, expired counts the leases put back or discarded,
  discarded counts jobs sent to the dead-letter store by this call, and each leased job adds
  five entries: id, lease ("<token> <attempt>"; settling scripts take it back as is), the job
  record as stored, the endpoint JSON ("" when an earlier job of the same reply carried it),
  and "active" or "disabled".
]]

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local max_jobs = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
local max_attempts = tonumber(ARGV[3])
local discarded = 0

local function bury(id, reason)
  redis.call('ZADD', KEYS[7], now, id)
  redis.call('HSET', KEYS[5], id, reason)
  discarded = discarded + 1
end

local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[2], id)
  local held = redis.call('HGET', KEYS[3], id)
  redis.call('HDEL', KEYS[3], id)
  local rec = redis.call('HGET', KEYS[4], id)
  if rec then
    local version, counted, rest = string.match(rec, '^(%d+) (%d+)( .*)$')
    -- The lease's attempt number is the one that just failed; it becomes the record's count.
    -- A lease without one (written by an older claim script) left the count in the record.
    local attempts = tonumber(string.match(held or '', '^%d+ (%d+)$') or counted) or max_attempts
    if version and tonumber(counted) ~= attempts then
      redis.call('HSET', KEYS[4], id, version .. ' ' .. attempts .. rest)
    end
    local why = 'lease_expired: the worker did not settle attempt ' .. attempts .. ' before its lease ran out'
    if attempts >= max_attempts then
      bury(id, why .. '; retries exhausted')
    else
      redis.call('ZADD', KEYS[1], now, id)
      redis.call('HSET', KEYS[5], id, why)
    end
  end
end

local out = {now, -1, -1, #expired, 0}
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, max_jobs)
-- One INCRBY reserves a token for every job of the batch; tokens of jobs that are not leased
-- are simply never used.
local next_token = 0
if #ids > 0 then
  next_token = redis.call('INCRBY', KEYS[8], #ids) - #ids
end
-- Endpoint id -> {endpoint JSON or false, disabled, JSON already in the reply}: each endpoint
-- is read once per batch, and its JSON sent once.
local endpoints = {}
local deadline = now + lease
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local rec = redis.call('HGET', KEYS[4], id)
  if rec then
    local version, attempts, endpoint = string.match(rec, '^(%d+) (%d+) %d+ (%S+)\n')
    if version ~= '1' then
      bury(id, 'malformed: the job record header is unreadable')
    else
      local cached = endpoints[endpoint]
      if not cached then
        local json = redis.call('HGET', KEYS[6], endpoint)
        cached = {json, json and redis.call('HEXISTS', KEYS[9], endpoint) == 1, false}
        endpoints[endpoint] = cached
      end
      if not cached[1] then
        if redis.call('HEXISTS', KEYS[10], endpoint) == 1 then
          bury(id, 'endpoint deleted: ' .. endpoint)
        else
          bury(id, 'unknown endpoint: ' .. endpoint .. ' does not exist')
        end
      else
        local state = 'active'
        attempts = tonumber(attempts)
        if cached[2] then
          state = 'disabled'
        else
          attempts = attempts + 1
        end
        next_token = next_token + 1
        local held = next_token .. ' ' .. attempts
        redis.call('ZADD', KEYS[2], deadline, id)
        redis.call('HSET', KEYS[3], id, held)
        local ep = ''
        if not cached[3] then
          ep = cached[1]
          cached[3] = true
        end
        local n = #out
        out[n + 1] = id
        out[n + 2] = held
        out[n + 3] = rec
        out[n + 4] = ep
        out[n + 5] = state
      end
    end
  end
end

local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if first[2] then out[2] = tonumber(first[2]) end
local lease_first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if lease_first[2] then out[3] = tonumber(lease_first[2]) end
out[5] = discarded
return out
