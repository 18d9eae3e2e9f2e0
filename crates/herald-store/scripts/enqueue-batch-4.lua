--[[
  enqueue-batch-4.lua: add many delivery jobs of one shard, none with an idempotency key.

  Per job it does what enqueue-6.lua does for a job without an idempotency key, with the same
  codes, record and due time; it reads the clock once, looks each endpoint up once, and writes
  the jobs with a few commands for the whole call. Jobs are taken in order: of two jobs with the
  same id, the first one written wins and the second one answers -2.

  All keys live in the shard and share its hash tag, e.g. for namespace "herald" and shard 3:
  "herald:v2:{herald.3}:jobs". Every endpoint of the call must belong to that shard.

  KEYS[1]    jobs       HASH  job id -> job record (see below)
  KEYS[2]    endpoints  HASH  endpoint id -> endpoint JSON
  KEYS[3]    disabled   HASH  endpoint id -> why and when it was disabled (JSON)
  KEYS[4]    ready      ZSET  endpoint id -> when a claim may next serve it (ms)
  KEYS[4+k]  q          ZSET  "<shard prefix>:q:<endpoint k>": endpoint k's queue, job id ->
                              next attempt time (ms since the Unix epoch, Redis clock), one key
                              for each endpoint of the call, k = 1 .. E (E = #KEYS - 4)

  ARGV[k]    endpoint k's id, k = 1 .. E, in the order of the queue keys: 1..128 bytes of
             [A-Za-z0-9._:-]; must exist in KEYS[2]
  then 4 arguments per job, in order:
             job id: unique, 1..64 bytes of [0-9A-Za-z_-]; a ULID is recommended
             endpoint number k (1 .. E) of the job's endpoint
             payload: the JSON body to POST, stored as given
             delay in ms before the first attempt: decimal digits only (0: due at once; at
             most 10000000000000, over 300 years)

  Job record: "1 <attempts> <enqueued_ms> <endpoint id>\n<payload>", where 1 is the record
  format version and attempts counts the attempts made so far (0 here).

  Each job goes into its endpoint's queue, and each endpoint into `ready` no later than its
  earliest new job (one ZADD LT for the call). A job for a disabled endpoint is parked: it waits in the queue, spending no
  attempt, and `ready` is left alone until the endpoint is enabled again or its URL is set
  again.

  Returns {now_ms, code of job 1, code of job 2, ...}, where now_ms is the Redis time of the
  enqueue and a code is:
     1  queued, due at now_ms + delay
     2  parked
    -1  unknown endpoint
    -2  duplicate job id (in the store, or earlier in this call)
    -3  invalid argument (job id, endpoint id or number, payload, delay); nothing written
  A call whose arguments cannot be read as E endpoints and groups of 4 answers an error and
  writes nothing.
]]

local E = #KEYS - 4
if E < 0 or #ARGV < E or (#ARGV - E) % 4 ~= 0 then
  return redis.error_reply('enqueue-batch-4.lua: expected 4 + E keys, E endpoint ids, then 4 arguments per job')
end

-- unpack() is limited by the Lua stack: long argument lists go in slices.
local SLICE = 1000
local function hmget(key, list)
  local out = {}
  for i = 1, #list, SLICE do
    local part = redis.call('HMGET', key, unpack(list, i, math.min(i + SLICE - 1, #list)))
    for j = 1, #part do out[i + j - 1] = part[j] end
  end
  return out
end
local function write(cmd, key, list)
  for i = 1, #list, SLICE do
    redis.call(cmd, key, unpack(list, i, math.min(i + SLICE - 1, #list)))
  end
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_s = string.format('%d', now)

-- Each endpoint once: its state ('q' queue, 'p' park, -1 unknown, -3 invalid) and the record
-- header of its jobs.
local state, head = {}, {}
if E > 0 then
  local ids = {}
  for k = 1, E do ids[k] = ARGV[k] end
  local known, off = hmget(KEYS[2], ids), hmget(KEYS[3], ids)
  for k = 1, E do
    local ep = ids[k]
    if not string.match(ep, '^[A-Za-z0-9._:-]+$') or #ep > 128 then
      state[k] = -3
    elseif not known[k] then
      state[k] = -1
    else
      state[k] = off[k] and 'p' or 'q'
      head[k] = '1 0 ' .. now_s .. ' ' .. ep .. '\n'
    end
  end
end

-- First pass: arguments and endpoints. Jobs that may be written are checked against the store
-- in one HMGET.
local n = (#ARGV - E) / 4
local reply, cand, cand_ids, cand_k, cand_due = {now}, {}, {}, {}, {}
-- Scores as strings, one per distinct delay: a number would be formatted again for every job.
local due_of = {}
for j = 1, n do
  local b = E + 4 * j - 4
  local id, k, delay = ARGV[b + 1], tonumber(ARGV[b + 2]), ARGV[b + 4]
  local st = k and state[k]
  local due = due_of[delay]
  if not due then
    -- Decimal digits only (not 1e3, 0x10 or 1.5); 1e13 ms is over 300 years.
    local d = string.match(delay, '^%d+$') and #delay <= 14 and tonumber(delay)
    if d and d <= 1e13 then
      due = string.format('%d', now + math.floor(d))
    else
      due = false
    end
    due_of[delay] = due
  end
  if not st or not due or #id > 64 or not string.match(id, '^[0-9A-Za-z_-]+$')
    or #ARGV[b + 3] == 0 then
    reply[j + 1] = -3
  elseif st == -3 or st == -1 then
    reply[j + 1] = st
  else
    local c = #cand + 1
    cand[c], cand_ids[c], cand_k[c], cand_due[c] = j, id, k, due
  end
end

-- Second pass: write what is new.
local exists = hmget(KEYS[1], cand_ids)
-- Per endpoint k: its new queue entries and, when it is enabled, its earliest new due time.
local seen, records, queued, earliest = {}, {}, {}, {}
for c = 1, #cand do
  local j, id, k = cand[c], cand_ids[c], cand_k[c]
  if exists[c] or seen[id] then
    reply[j + 1] = -2
  else
    seen[id] = true
    records[#records + 1] = id
    records[#records + 1] = head[k] .. ARGV[E + 4 * j - 1]
    local due = cand_due[c]
    local q = queued[k]
    if not q then q = {}; queued[k] = q end
    q[#q + 1] = due
    q[#q + 1] = id
    if state[k] == 'p' then
      reply[j + 1] = 2
    else
      local d = tonumber(due)
      if not earliest[k] or d < earliest[k] then earliest[k] = d end
      reply[j + 1] = 1
    end
  end
end

write('HSET', KEYS[1], records)
local offers = {}
for k = 1, E do
  if queued[k] then write('ZADD', KEYS[4 + k], queued[k]) end
  if earliest[k] then
    offers[#offers + 1] = string.format('%d', earliest[k])
    offers[#offers + 1] = ARGV[k]
  end
end
for i = 1, #offers, SLICE do
  redis.call('ZADD', KEYS[4], 'LT', unpack(offers, i, math.min(i + SLICE - 1, #offers)))
end
return reply
