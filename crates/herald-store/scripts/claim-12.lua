--[[
  claim-12.lua: lease due jobs of one shard to a worker, endpoint by endpoint, within each
  endpoint's in-flight limit, adaptive limit, rate and pause, and within the worker's two lanes:
  endpoints judged slow (the `slow` field of their flow record) take jobs only from the slow
  lane's budget, the others only from the main one. Sent with prelude/flow.lua prepended.

  KEYS[1]     ready      ZSET  endpoint id -> when it may next be served (ms; 1e15: at its limit)
  KEYS[2]     busy       HASH  endpoint id -> deliveries in flight
  KEYS[3]     flow       HASH  endpoint id -> flow record (see prelude/flow.lua)
  KEYS[4]     inflight   ZSET  job id -> lease deadline (ms)
  KEYS[5]     leases     HASH  job id -> the current lease: "<fencing token> <attempt>"
  KEYS[6]     jobs       HASH  job id -> job record "1 <attempts> <enqueued_ms> <endpoint>\n<payload>"
  KEYS[7]     errors     HASH  job id -> last error
  KEYS[8]     endpoints  HASH  endpoint id -> endpoint JSON
  KEYS[9]     dead       ZSET  job id -> time it was discarded (ms)
  KEYS[10]    seq        STRING counter that issues fencing tokens, kept at or above the Redis
                               time in µs
  KEYS[11]    disabled   HASH  endpoint id -> why and when it was disabled (JSON)
  KEYS[12]    deleted    HASH  endpoint id -> when it was last deleted (ms)
  KEYS[12+i]  q          ZSET  "<shard prefix>:q:<endpoint i>": the queue of candidate i

  ARGV[1]     most jobs to claim for endpoints not judged slow (the main lane)
  ARGV[2]     lease length in ms
  ARGV[3]     in-flight limit of an endpoint without a flow record
  ARGV[4]     most candidates to return
  ARGV[5]     the Redis time (ms) after which the worker no longer waits for the reply; 0: none
  ARGV[6]     most jobs to claim for endpoints judged slow (the slow lane); -1: no lanes, slow
              endpoints take from ARGV[1] like the others
  ARGV[7]     ms a slow endpoint waits before it is looked at again when ARGV[6] is 0
  ARGV[7+i]   candidate endpoint i, in the order of its queue key

  A call that Redis runs after ARGV[5] (it was held up: Redis paused, or a slow network) leases
  nothing and changes nothing: the worker gave up on it, so jobs leased now would sit on leases
  nobody holds until they expired, each charged an attempt. It answers no job, the candidates
  it was given, and now as next_ready_ms.

  The worker names the endpoints to serve (candidates): those this script answered last time,
  from the head of `ready`. Each is checked afresh (it may have been served meanwhile by
  another worker: then it has nothing due, or is at its limit). Each servable candidate may
  take a share of its lane's budget, ceil(budget ÷ servable candidates of the lane), capped by
  its free slots (limit − in flight) and what its rate allows now; it takes its due jobs in due
  order. With lanes, an endpoint judged slow with nothing in flight takes one job (a probe)
  from the main lane: an endpoint judged slow by mistake (one slow answer) gets its next
  delivery at once, whose quick answer judges it fast again, rather than waiting behind
  receivers that hang for a slow-lane slot; one that still hangs holds a main-lane slot for
  HERALD_SLOW_AFTER once per round of timeouts. A slow endpoint with deliveries in flight, met
  with no room in the slow lane, keeps its jobs and waits ARGV[7] ms before the next look (it
  goes behind the others), counted as held by cause "slow". Its ready score then becomes
  now if more of its jobs are due (so it goes behind the endpoints that waited), else the due
  time of its next job, BLOCKED at its limit, the next rate slot, or it leaves `ready` when its
  queue is empty.

  A candidate that no longer exists has its jobs (up to most jobs per call) discarded as
  "endpoint deleted" or "unknown endpoint"; so has a job enqueued before its endpoint was last
  deleted (it was in flight then, and came back as a retry), even if the id was set again
  since: a new owner of the id never receives the old owner's payloads; a disabled one leaves `ready` (its jobs wait in its
  queue until it is enabled); a paused one waits until its pause ends. A job whose record is
  unreadable is discarded.

  Returns {now_ms, next_ready_ms, next_lease_deadline_ms, discarded_gone, discarded_malformed,
  held_in_flight, held_adaptive, held_rate, held_pause, held_slow, P, S, C, candidate 1 ..
  candidate C, job...}:
  next_* are -1 when nothing is waiting (an endpoint at its limit waits for a settlement, not
  for time); discarded_* count the jobs this call sent to the dead-letter store because their
  endpoint was deleted or unknown, or their record unreadable;
  held_* count the endpoints this call held back with due work, by cause; the last S jobs are
  of the slow lane, and the P before them are main-lane probes of endpoints judged slow (both
  0 without lanes); the candidates are
  the endpoints whose turn has come, oldest first, for the next call; each leased job adds
  four entries: id, lease ("<token> <attempt>"; settling scripts take it back as is), the job
  record as stored, and the endpoint JSON ("" when an earlier job of the reply carried it).
]]

local ready, busy, flow, inflight, leases, jobs, errors, endpoints, dead, seq, disabled, deleted =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10],
  KEYS[11], KEYS[12]
local now = now_ms()
local want = tonumber(ARGV[1])
local deadline = now + tonumber(ARGV[2])
local default_max = tonumber(ARGV[3])
local most_candidates = tonumber(ARGV[4])
local valid_until = tonumber(ARGV[5])
local slow_want = tonumber(ARGV[6])
local slow_wait = tonumber(ARGV[7])
local FIRST = 8
if valid_until > 0 and now > valid_until then
  local late = {now, now, -1, 0, 0, 0, 0, 0, 0, 0, 0, 0, #ARGV - FIRST + 1}
  for i = FIRST, #ARGV do late[#late + 1] = ARGV[i] end
  return late
end
-- Jobs discarded, by cause: their endpoint is gone (deleted or unknown), their record is
-- unreadable.
local discarded = {0, 0}
local GONE, MALFORMED = 1, 2
local held = {0, 0, 0, 0, 0}
local IN_FLIGHT, ADAPTIVE, RATE, PAUSE, SLOW = 1, 2, 3, 4, 5
-- The lanes, each with its budget, its servable candidates and the jobs it leased; the jobs
-- of main-lane probes of endpoints judged slow are answered apart (PROBES).
local MAIN, SLOW_LANE, PROBES = 1, 2, 3
local lanes = slow_want >= 0
local budget = {want, math.max(slow_want, 0)}

local function bury(id, reason, cause)
  redis.call('ZADD', dead, now, id)
  redis.call('HSET', errors, id, reason)
  discarded[cause] = discarded[cause] + 1
end

-- The cause that holds back an endpoint at its limit.
local function at_limit(f)
  if limit_of(f) < f.max then return ADAPTIVE end
  return IN_FLIGHT
end

-- First pass: which candidates can be served now, and how many jobs each may take at most.
local servable = {{}, {}}
for i = FIRST, #ARGV do
  local e, q = ARGV[i], KEYS[13 + i - FIRST]
  do
    local json = redis.call('HGET', endpoints, e)
    if not json then
      local why = 'unknown endpoint: ' .. e .. ' does not exist'
      if redis.call('HEXISTS', deleted, e) == 1 then why = 'endpoint deleted: ' .. e end
      for _, id in ipairs(redis.call('ZRANGE', q, 0, want - 1)) do
        redis.call('ZREM', q, id)
        bury(id, why, GONE)
      end
      if redis.call('EXISTS', q) == 0 then redis.call('ZREM', ready, e) end
    elseif redis.call('HEXISTS', disabled, e) == 1 then
      redis.call('ZREM', ready, e)
    else
      local f = flow_get(flow, e, default_max)
      local n = tonumber(redis.call('HGET', busy, e) or '0')
      local lim = limit_of(f)
      local allowed, next_slot = rate_allows(f, now)
      local lane = MAIN
      if lanes and f.slow == 1 and n > 0 then lane = SLOW_LANE end
      if f.paused > now then
        redis.call('ZADD', ready, f.paused, e)
        held[PAUSE] = held[PAUSE] + 1
      elseif n >= lim then
        redis.call('ZADD', ready, BLOCKED, e)
        held[at_limit(f)] = held[at_limit(f)] + 1
      elseif allowed <= 0 then
        redis.call('ZADD', ready, next_slot, e)
        held[RATE] = held[RATE] + 1
      elseif lane == SLOW_LANE and budget[lane] <= 0 then
        redis.call('ZADD', ready, now + slow_wait, e)
        held[SLOW] = held[SLOW] + 1
      else
        local s = servable[lane]
        local cap = math.min(lim - n, allowed)
        if lanes and n == 0 and f.slow == 1 then cap = 1 end
        s[#s + 1] = {e = e, q = q, json = json, f = f, busy = n, lim = lim, cap = cap,
          probe = lanes and f.slow == 1, gone = tonumber(redis.call('HGET', deleted, e))}
      end
    end
  end
end

local out = {now, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0, 0}

-- Second pass: lease each servable endpoint's share of its lane's due jobs. One INCRBY
-- reserves a token for every job that may be leased; tokens not used are simply never issued.
local jobs_out = {{}, {}, {}}
local reserve = budget[MAIN] + budget[SLOW_LANE]
if #servable[MAIN] + #servable[SLOW_LANE] > 0 then
  -- Tokens never fall behind the Redis clock (1000 per ms): if Redis loses its latest writes
  -- (a crash with `appendfsync everysec`, a failover), `seq` rolls back, but the time has moved
  -- on, so no token issued before the loss is issued again to another lease.
  local top = redis.call('INCRBY', seq, reserve)
  if top - reserve < now * 1000 then
    top = now * 1000 + reserve
    redis.call('SET', seq, string.format('%.0f', top))
  end
  local next_token = top - reserve
  for lane = MAIN, SLOW_LANE do
    local left = budget[lane]
    local share = math.ceil(left / math.max(#servable[lane], 1))
    for _, s in ipairs(servable[lane]) do
      if left <= 0 then break end
      local e, f = s.e, s.f
      local out_lane = jobs_out[lane]
      if s.probe and lane == MAIN then out_lane = jobs_out[PROBES] end
      local ask = math.min(share, s.cap, left)
      -- One more than it may take: if that one is there, more is due.
      local ids = redis.call('ZRANGEBYSCORE', s.q, '-inf', now, 'LIMIT', 0, ask + 1)
      local more = #ids > ask
      if more then ids[#ids] = nil end
      local taken = 0
      for _, id in ipairs(ids) do
        redis.call('ZREM', s.q, id)
        local rec = redis.call('HGET', jobs, id)
        if rec then
          local version, attempts, enqueued = string.match(rec, '^(%d+) (%d+) (%d+) %S+\n')
          if version ~= '1' then
            bury(id, 'malformed: the job record header is unreadable', MALFORMED)
          elseif s.gone and tonumber(enqueued) <= s.gone then
            bury(id, 'endpoint deleted: ' .. e, GONE)
          else
            next_token = next_token + 1
            local lease = string.format('%.0f %d', next_token, tonumber(attempts) + 1)
            redis.call('ZADD', inflight, deadline, id)
            redis.call('HSET', leases, id, lease)
            local n = #out_lane
            out_lane[n + 1] = id
            out_lane[n + 2] = lease
            out_lane[n + 3] = rec
            out_lane[n + 4] = ''
            if taken == 0 then out_lane[n + 4] = s.json end
            taken = taken + 1
          end
        end
      end
      left = left - taken
      if taken > 0 then
        redis.call('HINCRBY', busy, e, taken)
        if f.interval > 0 then
          rate_take(f, now, taken)
          flow_put(flow, e, f, now)
        end
      end
      -- Its next turn: now if more is due (it goes behind the endpoints that waited), else
      -- when its next job is due.
      local at = now
      if not more then
        at = tonumber(redis.call('ZRANGE', s.q, 0, 0, 'WITHSCORES')[2])
      end
      if not at then
        redis.call('ZREM', ready, e)
      else
        if s.busy + taken >= s.lim then
          at = BLOCKED
          if more then held[at_limit(f)] = held[at_limit(f)] + 1 end
        else
          local allowed, next_slot = rate_allows(f, now)
          if allowed <= 0 and next_slot > at then
            at = next_slot
            if more then held[RATE] = held[RATE] + 1 end
          end
        end
        redis.call('ZADD', ready, at, e)
      end
    end
  end
end

local first = redis.call('ZRANGE', ready, 0, 0, 'WITHSCORES')
if first[2] and tonumber(first[2]) < BLOCKED then out[2] = tonumber(first[2]) end
local lease_first = redis.call('ZRANGE', inflight, 0, 0, 'WITHSCORES')
if lease_first[2] then out[3] = tonumber(lease_first[2]) end
out[4], out[5] = discarded[GONE], discarded[MALFORMED]
for c = 1, 5 do out[5 + c] = held[c] end
out[11] = #jobs_out[PROBES] / 4
out[12] = #jobs_out[SLOW_LANE] / 4
local candidates = redis.call('ZRANGEBYSCORE', ready, '-inf', now, 'LIMIT', 0, most_candidates)
out[13] = #candidates
for _, e in ipairs(candidates) do out[#out + 1] = e end
for _, group in ipairs({MAIN, PROBES, SLOW_LANE}) do
  for _, v in ipairs(jobs_out[group]) do out[#out + 1] = v end
end
return out
