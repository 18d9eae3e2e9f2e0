--[[
  resume-8.lua: (re)activate an endpoint: optionally store its new configuration and flow
  settings, clear its disabled state and strikes, and let claims serve its queue again. Its
  parked jobs keep their due times and attempt counts: those already due are due at once. An
  id set again after a delete keeps its tombstone (`deleted`): claims discard the jobs enqueued
  before it. Either way the endpoint's last change (`changed`) becomes now: the failures of
  attempts claimed until then no longer strike, disable, cut or pause it (see fail-12.lua).

  KEYS[1]  endpoints  HASH  endpoint id -> endpoint JSON
  KEYS[2]  disabled   HASH  endpoint id -> why and when it was disabled (JSON)
  KEYS[3]  strikes    HASH  endpoint id -> consecutive strikes
  KEYS[4]  deleted    HASH  endpoint id -> when it was last deleted (ms); kept when the id is
                            set again (claims discard the jobs enqueued up to then)
  KEYS[5]  ready      ZSET  endpoint id -> when a claim may next serve it (ms)
  KEYS[6]  flow       HASH  endpoint id -> "<max> <interval_ms> <burst> <cwnd> <cut_ms> <tat_ms>
                            <paused_ms>", or "<max>" alone (see prelude/flow.lua)
  KEYS[7]  q          ZSET  "<shard prefix>:q:<endpoint id>": the endpoint's queue
  KEYS[8]  changed    HASH  endpoint id -> when an operator last changed it (ms)

  ARGV[1]  endpoint id
  ARGV[2]  endpoint JSON to store ("" keeps the stored one: enable only)
  ARGV[3]  with ARGV[2]: the flow settings "<max in flight> <interval_ms> <burst>" (interval 0:
           no rate). Setting an endpoint starts its adaptive limit at the maximum and clears
           a pause; enabling only leaves them as they are.
  ARGV[4]  with ARGV[2]: the endpoint JSON the caller read before making ARGV[2] ("" when the
           endpoint did not exist): ARGV[2] is written only if that is still what is stored

  Returns {created, queued}: created is 1 when the endpoint did not exist before, queued the
  jobs in its queue; or {-1} when ARGV[2] is "" and the endpoint does not exist; or {-2},
  nothing written, when the id was deleted in this very millisecond: a job enqueued for the new
  endpoint in that millisecond could not be told from the old one's, so call again a
  millisecond later; or {-3}, nothing written, when the stored JSON is no longer ARGV[4] (an
  operator changed or deleted the endpoint meanwhile): read it again and redo the change.
]]

local endpoints, disabled, strikes, deleted, ready, flow, q, changed =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local endpoint = ARGV[1]
local created = 0
local now = now_ms()
if ARGV[2] ~= '' then
  local max, interval, burst = string.match(ARGV[3], '^(%d+) ([%d.e+-]+) (%d+)$')
  if not max or tonumber(max) < 1 or tonumber(burst) < 1 then
    return redis.error_reply('resume-8.lua: flow settings must be "<max> <interval_ms> <burst>"')
  end
  local gone = tonumber(redis.call('HGET', deleted, endpoint))
  if gone and gone >= now and redis.call('HEXISTS', endpoints, endpoint) == 0 then
    return {-2}
  end
  if (redis.call('HGET', endpoints, endpoint) or '') ~= ARGV[4] then
    return {-3}
  end
  created = redis.call('HSET', endpoints, endpoint, ARGV[2])
  -- The rate clock (tat) is kept, so that setting an endpoint again does not reset its rate.
  local tat = string.match(redis.call('HGET', flow, endpoint) or '', '^%S+ %S+ %S+ %S+ %S+ (%S+) ')
  if tonumber(interval) == 0 then
    -- No rate, no pause, the adaptive limit at the maximum: the short form.
    redis.call('HSET', flow, endpoint, max)
  else
    redis.call('HSET', flow, endpoint,
      max .. ' ' .. interval .. ' ' .. burst .. ' ' .. max .. ' 0 ' .. (tat or '0') .. ' 0')
  end
elseif redis.call('HEXISTS', endpoints, endpoint) == 0 then
  return {-1}
end
redis.call('HDEL', disabled, endpoint)
redis.call('HDEL', strikes, endpoint)
redis.call('HSET', changed, endpoint, now)

local queued = redis.call('ZCARD', q)
if queued > 0 then
  redis.call('ZADD', ready, now, endpoint)
end
return {created, queued}
