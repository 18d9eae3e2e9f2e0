--[[
  check-job-9.lua: `herald check` looks again at one job that its walk saw out of place, in one
  Redis instant (the walk itself reads while workers run), and with ARGV[2] = 1 makes the safe
  repair of what it finds.

  KEYS[1]    jobs      HASH  job id -> job record "1 <attempts> <enqueued_ms> <endpoint>\n<payload>"
  KEYS[2]    inflight  ZSET  job id -> lease deadline (ms)
  KEYS[3]    leases    HASH  job id -> the current lease: "<fencing token> <attempt>"
  KEYS[4]    dead      ZSET  job id -> time it was discarded (ms)
  KEYS[5]    errors    HASH  job id -> last error, or why it was discarded
  KEYS[6]    ready     ZSET  endpoint id -> when a claim may next serve it (ms)
  KEYS[7]    disabled  HASH  endpoint id -> why and when it was disabled (JSON)
  KEYS[8]    deleted   HASH  endpoint id -> when it was last deleted (ms)
  KEYS[9]    endpoints HASH  endpoint id -> endpoint JSON
  KEYS[9+i]  q         ZSET  "<shard prefix>:q:<endpoint id>": the queue of ARGV[2+i]

  ARGV[1]    job id
  ARGV[2]    1: repair what has a safe repair; 0: only look
  ARGV[2+i]  the endpoint of KEYS[9+i]: the record's endpoint first (when the record names
             one), then any other queue the walk saw the job in

  Returns the violations found, each a pair {code, detail}:
    stranded             a record in no place: no queue, not in flight, not dead. Repair: back
                         into its endpoint's queue, due now, and `ready` unless it is disabled
                         (an unreadable record goes to the dead-letter store, as a worker would
                         send it)
    duplicated           in two places or more (no safe repair)
    misfiled             in the queue of another endpoint than its record names (no safe repair)
    orphan_member        in a queue, `inflight` or `dead` without a record. Repair: removed
    orphan_lease         a lease without the job in `inflight`. Repair: removed
    lease_missing        in `inflight` without a lease (no repair needed: its lease deadline
                         passes and expire-9.lua takes it back, counting the attempt)
    dead_without_reason  dead with no line in `errors`. Repair: a line saying it was lost
    orphan_error         a line in `errors` without a record. Repair: removed
    old_owner_job        queued for an endpoint that exists, and enqueued at or before the
                         id's last deletion: a job of the old owner in the new owner's queue
                         (issue 18). Repair: to the dead-letter store, "endpoint deleted: <id>",
                         as a claim would send it
]]

local jobs, inflight, leases, dead, errors, ready, disabled, deleted, endpoints =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local id, fix = ARGV[1], ARGV[2] == '1'
local BLOCKED = 1e15
local now = now_ms()

local out = {}
local function found(code, detail) out[#out + 1] = code; out[#out + 1] = detail end

local rec = redis.call('HGET', jobs, id)
local rec_e = rec and string.match(rec, '^1 %d+ %d+ ([^\n ]+)\n')
local queued = {}
for i = 10, #KEYS do
  if redis.call('ZSCORE', KEYS[i], id) then queued[#queued + 1] = i end
end
local in_flight = redis.call('ZSCORE', inflight, id)
local lease = redis.call('HGET', leases, id)
local dead_at = redis.call('ZSCORE', dead, id)
local err = redis.call('HEXISTS', errors, id) == 1
local places = #queued + (in_flight and 1 or 0) + (dead_at and 1 or 0)

if not rec then
  if places > 0 then
    local where = {}
    for _, i in ipairs(queued) do where[#where + 1] = 'the queue of ' .. ARGV[i - 7] end
    if in_flight then where[#where + 1] = 'inflight' end
    if dead_at then where[#where + 1] = 'dead' end
    found('orphan_member', 'listed in ' .. table.concat(where, ', ') .. ' without a record')
    if fix then
      for _, i in ipairs(queued) do redis.call('ZREM', KEYS[i], id) end
      redis.call('ZREM', inflight, id)
      redis.call('ZREM', dead, id)
    end
  end
  if lease then
    found('orphan_lease', 'a lease without a record')
    if fix then redis.call('HDEL', leases, id) end
  end
  if err then
    found('orphan_error', 'an error line without a record')
    if fix then redis.call('HDEL', errors, id) end
  end
  return out
end

if places == 0 then
  if rec_e then
    found('stranded', 'a record of endpoint ' .. rec_e .. ' in no queue, not in flight, not dead')
    if fix and ARGV[3] == rec_e then
      redis.call('HDEL', leases, id)
      redis.call('ZADD', KEYS[10], now, id)
      if redis.call('HEXISTS', disabled, rec_e) == 0 then
        local s = tonumber(redis.call('ZSCORE', ready, rec_e))
        if not s or (s > now and s < BLOCKED) then redis.call('ZADD', ready, now, rec_e) end
      end
    end
  else
    found('stranded', 'an unreadable record in no queue, not in flight, not dead')
    if fix then
      redis.call('HDEL', leases, id)
      redis.call('ZADD', dead, now, id)
      redis.call('HSET', errors, id, 'malformed: the job record header is unreadable')
    end
  end
  return out
end

if places > 1 then
  local where = {}
  for _, i in ipairs(queued) do where[#where + 1] = 'the queue of ' .. ARGV[i - 7] end
  if in_flight then where[#where + 1] = 'inflight' end
  if dead_at then where[#where + 1] = 'dead' end
  found('duplicated', 'in ' .. table.concat(where, ' and '))
end
if rec_e then
  for _, i in ipairs(queued) do
    if ARGV[i - 7] ~= rec_e then
      found('misfiled', 'in the queue of ' .. ARGV[i - 7] .. ', its record names ' .. rec_e)
    end
  end
end
if in_flight and not lease then
  found('lease_missing', 'in flight without a lease')
end
if lease and not in_flight then
  found('orphan_lease', 'a lease (' .. lease .. ') for a job that is not in flight')
  if fix then redis.call('HDEL', leases, id) end
end
if rec_e and places == 1 and #queued == 1 and ARGV[queued[1] - 7] == rec_e
    and redis.call('HEXISTS', endpoints, rec_e) == 1 then
  local enqueued = tonumber(string.match(rec, '^1 %d+ (%d+) '))
  local gone = tonumber(redis.call('HGET', deleted, rec_e))
  if gone and enqueued and enqueued <= gone then
    found('old_owner_job', 'enqueued before ' .. rec_e .. ' was deleted, and queued for its new owner')
    if fix then
      redis.call('ZREM', KEYS[queued[1]], id)
      redis.call('ZADD', dead, now, id)
      redis.call('HSET', errors, id, 'endpoint deleted: ' .. rec_e)
    end
  end
end
if dead_at and not err then
  found('dead_without_reason', 'dead with no reason recorded')
  if fix then redis.call('HSET', errors, id, 'unknown: no reason was recorded') end
end
return out
