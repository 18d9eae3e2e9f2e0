--[[
  slow-1.lua: record what workers saw of endpoints' speed: an endpoint whose delivery outlasted
  HERALD_SLOW_AFTER is judged slow (claims then serve it from the workers' slow lanes only);
  one judged slow whose delivery came back quicker than that is judged fast again. Sent with
  prelude/flow.lua prepended.

  KEYS[1]  flow  HASH  endpoint id -> flow record (see prelude/flow.lua); its `slow` field

  ARGV     pairs: endpoint id, 1 (slow) or 0 (fast again)

  An endpoint without a flow record (deleted meanwhile) is left alone: no record is made for it.
  Setting an endpoint again (resume-8.lua) writes a fresh record, judged fast.

  Returns the number of endpoints whose judgement changed.
]]

local flow = KEYS[1]
local now = now_ms()
local changed = 0
for i = 1, #ARGV, 2 do
  local e, slow = ARGV[i], tonumber(ARGV[i + 1])
  local f, stored = flow_get(flow, e, 1)
  if stored and f.slow ~= slow then
    f.slow = slow
    flow_put(flow, e, f, now)
    changed = changed + 1
  end
end
return changed
