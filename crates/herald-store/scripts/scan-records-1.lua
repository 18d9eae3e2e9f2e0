--[[
  scan-records-1.lua: one step of a walk over a shard's job records, for `herald check`: the
  ids and headers of a few records, without their payloads (which never leave Redis).

  KEYS[1]  jobs  HASH  job id -> job record "1 <attempts> <enqueued_ms> <endpoint>\n<payload>"

  ARGV[1]  the HSCAN cursor: "0" to start, then the cursor the previous step answered
  ARGV[2]  the HSCAN COUNT hint

  Returns {next cursor ("0": the walk is done), id 1, header 1, id 2, header 2, …}: a header
  is the record up to its first newline, at most 256 bytes (an unreadable record's first 256
  bytes). As with HSCAN, a record present for the whole walk is returned at least once.
]]

local step = redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', tonumber(ARGV[2]))
local out = {step[1]}
local fields = step[2]
for i = 1, #fields, 2 do
  local rec = fields[i + 1]
  local nl = string.find(rec, '\n', 1, true)
  local head = nl and string.sub(rec, 1, nl - 1) or rec
  out[#out + 1] = fields[i]
  out[#out + 1] = string.sub(head, 1, 256)
end
return out
