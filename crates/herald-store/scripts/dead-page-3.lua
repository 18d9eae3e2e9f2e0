--[[
  dead-page-3.lua: walk one shard's dead-letter store, newest first, from a position on, and
  return the entries that match a filter: a page of the dead-letter listing, or one batch of a
  replay or purge by filter. Reads only.

  KEYS[1]  dead    ZSET  job id -> time it was discarded (ms)
  KEYS[2]  jobs    HASH  job id -> job record "1 <attempts> <enqueued_ms> <endpoint>\n<payload>"
  KEYS[3]  errors  HASH  job id -> last error (for a dead job: why it was discarded)

  ARGV[1]  latest discard time to look at (ms), or "+inf"
  ARGV[2]  "" or a job id: of the entries discarded at exactly ARGV[1], only those whose id
           sorts before this one (byte-wise) are looked at. With ARGV[1], the position where
           the previous call stopped: the order is time descending, then id descending.
  ARGV[3]  earliest discard time to look at (ms), or "-inf"
  ARGV[4]  "" or an endpoint id: only jobs of this endpoint match
  ARGV[5]  "" or lower-case text: only jobs whose reason, lower-cased, contains it match
  ARGV[6]  most matches to return (at least 1)
  ARGV[7]  most entries to examine, matching or not (at least 1): bounds the time one call
           holds Redis however rare the matches are

  Returns {done, last_time, last_id, then 4 entries per match: id, discard time, the record's
  header line ("" when the record is missing or unreadable), the reason ("" when none)}.
  done is 1 when every entry of the range was examined; otherwise last_time and last_id are
  the last entry examined: the next call starts after it (as ARGV[1] and ARGV[2]).
]]

local dead, jobs, errors = KEYS[1], KEYS[2], KEYS[3]
local hi, after, lo = ARGV[1], ARGV[2], ARGV[3]
local endpoint, reason = ARGV[4], ARGV[5]
local want, budget = tonumber(ARGV[6]), tonumber(ARGV[7])
local hi_time = tonumber(hi)

-- Byte-wise a < b, as Redis orders members of equal score (Lua's own comparison follows the
-- server's locale).
local function before(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      return x < y
    end
  end
  return #a < #b
end

local out = {1, '', ''}
local found, examined, offset = 0, 0, 0
local batch = math.min(math.max(want, 32), 512)
while true do
  local entries = redis.call('ZRANGE', dead, hi, lo, 'BYSCORE', 'REV', 'LIMIT', offset, batch,
    'WITHSCORES')
  if #entries == 0 then
    return out
  end
  offset = offset + #entries / 2
  for i = 1, #entries, 2 do
    local id, at = entries[i], entries[i + 1]
    -- Entries at the starting time up to the starting id were seen by the previous call.
    if after == '' or tonumber(at) ~= hi_time or before(id, after) then
      examined = examined + 1
      local record = redis.call('HGET', jobs, id)
      local header = record and string.match(record, '^(1 %d+ %d+ %S+)\n') or ''
      local match = endpoint == '' or string.match(header, '^1 %d+ %d+ (%S+)$') == endpoint
      local why = redis.call('HGET', errors, id) or ''
      if match and reason ~= '' then
        match = string.find(string.lower(why), reason, 1, true) ~= nil
      end
      if match then
        found = found + 1
        out[#out + 1] = id
        out[#out + 1] = at
        out[#out + 1] = header
        out[#out + 1] = why
      end
      if found >= want or examined >= budget then
        out[1], out[2], out[3] = 0, at, id
        return out
      end
    end
  end
end
