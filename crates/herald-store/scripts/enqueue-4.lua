--[[
  enqueue-4.lua: add one delivery job to an endpoint's shard.

  All keys live in the endpoint's shard and share its hash tag, e.g. for namespace "herald"
  and shard 3: "herald:v1:{herald.3}:queue". The shard is FNV-1a-32(endpoint id) mod shards.

  KEYS[1]  queue      ZSET  job id -> next attempt time (ms since the Unix epoch, Redis clock)
  KEYS[2]  jobs       HASH  job id -> job record (see below)
  KEYS[3]  endpoints  HASH  endpoint id -> endpoint JSON
  KEYS[4]  idem key   STRING "<shard prefix>:idem:<idempotency key>" -> job id; only read or
                      written when ARGV[5] is not empty (pass the key anyway: any key of the
                      shard will do when there is no idempotency key)

  ARGV[1]  job id: unique, 1..64 bytes of [0-9A-Za-z_-]; a ULID is recommended
  ARGV[2]  endpoint id: 1..128 bytes of [A-Za-z0-9._:-]; must exist in KEYS[3]
  ARGV[3]  payload: the JSON body to POST, stored as given
  ARGV[4]  delay in ms before the first attempt (0: due at once)
  ARGV[5]  idempotency key ("" for none)
  ARGV[6]  idempotency key lifetime in ms (used when ARGV[5] is not empty)

  Job record: "1 <attempts> <enqueued_ms> <endpoint id>\n<payload>", where 1 is the record
  format version and attempts counts the attempts started so far (0 here).

  Returns {1, job id, due_ms} when enqueued, {0, first job id, 0} when the idempotency key was
  already used (nothing written), or {code} with a negative code:
    -1  unknown endpoint
    -2  duplicate job id
    -3  invalid argument (job id, endpoint id, delay, payload)
]]

local id, endpoint, payload = ARGV[1], ARGV[2], ARGV[3]
local delay = tonumber(ARGV[4])
if not string.match(id, '^[0-9A-Za-z_-]+$') or #id > 64
  or not string.match(endpoint, '^[A-Za-z0-9._:-]+$') or #endpoint > 128
  or not delay or delay < 0 or #payload == 0 then
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
local due = now + math.floor(delay)

redis.call('HSET', KEYS[2], id, '1 0 ' .. now .. ' ' .. endpoint .. '\n' .. payload)
redis.call('ZADD', KEYS[1], due, id)
if ARGV[5] ~= '' then
  redis.call('SET', KEYS[4], id, 'PX', math.max(1, tonumber(ARGV[6]) or 86400000))
end
return {1, id, due}
