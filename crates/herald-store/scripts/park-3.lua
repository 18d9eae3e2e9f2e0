--[[
  park-3.lua: set aside leased jobs whose endpoint is disabled. A parked job spends no attempt;
  it waits in its endpoint's parked set until the endpoint is enabled again (resume-6.lua) or
  it is older than the retry window (sweep-parked-3.lua).

  KEYS[1]    inflight  ZSET  job id -> lease deadline (ms)
  KEYS[2]    leases    HASH  job id -> the current lease: "<fencing token> <attempt>"
  KEYS[3]    jobs      HASH  job id -> job record "1 <attempts> <enqueued_ms> <endpoint>\n<payload>"
  KEYS[3+i]  parked    ZSET  "<shard prefix>:parked:<endpoint id>" of the i-th job:
                             job id -> enqueued time (ms)

  ARGV     pairs: job id, lease ("<token> <attempt>", as the claim issued it)

  A pair is applied only while the lease is the job's current lease (see ack-5.lua).

  Returns one integer per pair: 1 parked, 0 refused (stale lease).
]]

local out = {}
local i = 0
for g = 1, #ARGV, 2 do
  i = i + 1
  local id = ARGV[g]
  if redis.call('HGET', KEYS[2], id) == ARGV[g + 1] then
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    local rec = redis.call('HGET', KEYS[3], id) or ''
    local enqueued = tonumber(string.match(rec, '^%d+ %d+ (%d+) ')) or 0
    redis.call('ZADD', KEYS[3 + i], enqueued, id)
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
