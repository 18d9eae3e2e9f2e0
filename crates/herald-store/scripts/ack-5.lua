--[[
  ack-5.lua: settle delivered jobs of one shard: they leave the store, their endpoint's strike
  count goes back to zero, and the attempt is added to the endpoint's attempt log.

  KEYS[1]    inflight  ZSET  job id -> lease deadline (ms)
  KEYS[2]    leases    HASH  job id -> the current lease: "<fencing token> <attempt>"
  KEYS[3]    jobs      HASH  job id -> job record
  KEYS[4]    errors    HASH  job id -> last error
  KEYS[5]    strikes   HASH  endpoint id -> consecutive strikes
  KEYS[5+i]  attempts  LIST  "<shard prefix>:attempts:<endpoint id>" of the i-th job: attempt
                             log, newest first

  ARGV[1]  attempt log length to keep per endpoint
  ARGV     then groups of four: job id, lease ("<token> <attempt>", as the claim issued it),
           endpoint id, attempt log entry (JSON text, "" to log nothing)

  A group is applied only while its lease is the job's current lease; otherwise (the lease
  expired and the job was put back or claimed again) it is refused and nothing changes. The
  lease carries a fencing token from one counter (seq), so no two leases are ever equal.

  Returns one integer per group: 1 applied, 0 refused (stale lease).
]]

local keep = tonumber(ARGV[1])
local out = {}
local i = 0
for g = 2, #ARGV, 4 do
  i = i + 1
  local id, endpoint, entry = ARGV[g], ARGV[g + 2], ARGV[g + 3]
  if redis.call('HGET', KEYS[2], id) == ARGV[g + 1] then
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('HDEL', KEYS[3], id)
    redis.call('HDEL', KEYS[4], id)
    redis.call('HDEL', KEYS[5], endpoint)
    if entry ~= '' then
      redis.call('LPUSH', KEYS[5 + i], entry)
      redis.call('LTRIM', KEYS[5 + i], 0, keep - 1)
    end
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
