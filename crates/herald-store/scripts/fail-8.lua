--[[
  fail-8.lua: settle failed attempts of one shard: each job is either scheduled for a retry or
  discarded into the dead-letter store, and its endpoint's strikes are updated in the same step.

  KEYS[1]    inflight  ZSET  job id -> lease deadline (ms)
  KEYS[2]    leases    HASH  job id -> the current lease: "<fencing token> <attempt>"
  KEYS[3]    queue     ZSET  job id -> next attempt time (ms)
  KEYS[4]    errors    HASH  job id -> last error (for a discarded job: the reason)
  KEYS[5]    dead      ZSET  job id -> time it was discarded (ms)
  KEYS[6]    strikes   HASH  endpoint id -> consecutive strikes
  KEYS[7]    disabled  HASH  endpoint id -> why and when it was disabled (JSON)
  KEYS[8]    jobs      HASH  job id -> job record "1 <attempts> <enqueued_ms> <endpoint>\n<payload>"
  KEYS[8+i]  attempts  LIST  attempt log of the i-th job's endpoint (see ack-5.lua); any key
                             of the shard when the group logs nothing

  ARGV[1]  strikes that disable an endpoint
  ARGV[2]  attempt log length to keep per endpoint
  ARGV     then groups of seven: job id, lease ("<token> <attempt>", as the claim issued it),
           delay in ms before the retry (negative: discard), error line (the reason when
           discarded), endpoint id ("" to leave endpoint state alone), strike (0: none, 1: one strike, 2: disable at once, e.g. 410 Gone),
           attempt log entry (JSON text, "" to log nothing)

  A group is applied only while the lease is the job's current lease (see ack-5.lua). The
  lease's attempt number goes into the job record's attempt count (see claim-10.lua). A
  discarded job keeps its record for inspection and replay; dead-trim-3.lua bounds the store.

  Returns {next_due_ms, flag...}: the earliest retry time set by this call (-1 when none), then
  one integer per group: 0 refused (stale lease), 1 applied, 2 applied and the endpoint was
  disabled by it.
]]

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local disable_after = tonumber(ARGV[1])
local keep = tonumber(ARGV[2])
local out = {-1}
local i = 0
for g = 3, #ARGV, 7 do
  i = i + 1
  local id, delay, err = ARGV[g], tonumber(ARGV[g + 2]), ARGV[g + 3]
  local endpoint, strike, entry = ARGV[g + 4], ARGV[g + 5], ARGV[g + 6]
  if redis.call('HGET', KEYS[2], id) ~= ARGV[g + 1] then
    out[i + 1] = 0
  else
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('HSET', KEYS[4], id, err)
    local rec = redis.call('HGET', KEYS[8], id)
    local version, rest = string.match(rec or '', '^(%d+) %d+( .*)$')
    local attempt = string.match(ARGV[g + 1], '^%d+ (%d+)$')
    if version and attempt then
      redis.call('HSET', KEYS[8], id, version .. ' ' .. attempt .. rest)
    end
    if delay < 0 then
      redis.call('ZADD', KEYS[5], now, id)
    else
      local due = now + math.floor(delay)
      redis.call('ZADD', KEYS[3], due, id)
      if out[1] == -1 or due < out[1] then out[1] = due end
    end
    if entry ~= '' then
      redis.call('LPUSH', KEYS[8 + i], entry)
      redis.call('LTRIM', KEYS[8 + i], 0, keep - 1)
    end
    local flag = 1
    if endpoint ~= '' and strike ~= '0' and redis.call('HEXISTS', KEYS[7], endpoint) == 0 then
      local strikes = redis.call('HINCRBY', KEYS[6], endpoint, 1)
      local why
      if strike == '2' then
        why = 'the receiver answered 410 Gone'
      elseif strikes >= disable_after then
        why = strikes .. ' consecutive failed attempts; last: ' .. err
      end
      if why then
        redis.call('HSET', KEYS[7], endpoint,
          cjson.encode({reason = why, at_ms = now, strikes = strikes}))
        flag = 2
      end
    end
    out[i + 1] = flag
  end
end
return out
