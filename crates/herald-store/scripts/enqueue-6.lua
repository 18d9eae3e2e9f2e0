--[[
  enqueue-6.lua: add one delivery job to an endpoint's shard.

  All keys live in the endpoint's shard and share its hash tag, e.g. for namespace "herald",
  shard 3 and endpoint "dash-1": "herald:v2:{herald.3}:q:dash-1". The shard is
  FNV-1a-32(endpoint id) mod shards.

  KEYS[1]  q          ZSET  "<shard prefix>:q:<endpoint id>": the endpoint's queue, job id ->
                      next attempt time (ms since the Unix epoch, Redis clock)
  KEYS[2]  jobs       HASH  job id -> job record (see below)
  KEYS[3]  endpoints  HASH  endpoint id -> endpoint JSON
  KEYS[4]  idem key   STRING "<shard prefix>:idem:<endpoint id>/<idempotency key>" -> job id;
                      only read or written when ARGV[5] is not empty (pass "<shard
                      prefix>:idem:" otherwise)
  KEYS[5]  disabled   HASH  endpoint id -> why and when it was disabled (JSON)
  KEYS[6]  ready      ZSET  endpoint id -> when a claim may next serve it (ms)

  ARGV[1]  job id: unique, 1..64 bytes of [0-9A-Za-z_-]; a ULID is recommended
  ARGV[2]  endpoint id: 1..128 bytes of [A-Za-z0-9._:-]; must exist in KEYS[3]
  ARGV[3]  payload: the JSON body to POST, stored as given
  ARGV[4]  delay in ms before the first attempt: decimal digits only (0: due at once; at most
           10000000000000, over 300 years)
  ARGV[5]  idempotency key ("" for none); keys are per endpoint
  ARGV[6]  idempotency key lifetime in ms: decimal digits only, at least 1 (used when ARGV[5] is
           not empty)

  Job record: "1 <attempts> <enqueued_ms> <endpoint id>\n<payload>", where 1 is the record
  format version and attempts counts the attempts made so far (0 here).

  The job goes into its endpoint's queue, and the endpoint into `ready` no later than the job's
  due time (ZADD LT: an endpoint blocked at its in-flight limit is blocked again by the next
  claim that looks at it). A job for a disabled endpoint is parked: it waits in the queue, spending no attempt,
  and `ready` is left alone until the endpoint is enabled again or its URL is set again.

  Returns {1, job id, due_ms} when queued, {2, job id, 0} when parked, {0, first job id, 0}
  when the idempotency key was already used (nothing written), or {code} with a negative code:
    -1  unknown endpoint
    -2  duplicate job id
    -3  invalid argument (job id, endpoint id, payload, delay, idempotency lifetime); checked
        before anything is written
]]

local id, endpoint, payload = ARGV[1], ARGV[2], ARGV[3]
-- A whole number of ms in decimal digits (not 1e3, 0x10 or 1.5), from min to 1e13 (over 300
-- years); nil otherwise.
local function ms(text, min)
  if not string.match(text, '^%d+$') or #text > 14 then return nil end
  local x = tonumber(text)
  if x < min or x > 1e13 then return nil end
  return x
end
local delay, ttl = ms(ARGV[4], 0), ms(ARGV[6], 1)
if not string.match(id, '^[0-9A-Za-z_-]+$') or #id > 64
  or not string.match(endpoint, '^[A-Za-z0-9._:-]+$') or #endpoint > 128
  or #payload == 0 or not delay or (ARGV[5] ~= '' and not ttl) then
  return {-3}
end

if ARGV[5] ~= '' then
  local first = redis.call('GET', KEYS[4])
  if first then
    return {0, first, 0}
  end
end

if redis.call('HEXISTS', KEYS[3], endpoint) == 0 then
  return {-1}
end
if redis.call('HEXISTS', KEYS[2], id) == 1 then
  return {-2}
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

redis.call('HSET', KEYS[2], id, '1 0 ' .. now .. ' ' .. endpoint .. '\n' .. payload)
if ARGV[5] ~= '' then
  redis.call('SET', KEYS[4], id, 'PX', math.floor(ttl))
end
local due = now + math.floor(delay)
redis.call('ZADD', KEYS[1], due, id)
if redis.call('HEXISTS', KEYS[5], endpoint) == 1 then
  return {2, id, 0}
end
redis.call('ZADD', KEYS[6], 'LT', due, endpoint)
return {1, id, due}
