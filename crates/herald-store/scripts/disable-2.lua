--[[
  disable-2.lua: disable an endpoint by hand. Its jobs are parked as they come due.

  KEYS[1]  endpoints  HASH  endpoint id -> endpoint JSON
  KEYS[2]  disabled   HASH  endpoint id -> why and when it was disabled (JSON)

  ARGV[1]  endpoint id
  ARGV[2]  reason

  Returns 1 when disabled now, 0 when it already was, -1 when the endpoint does not exist.
]]

if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return -1
end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then
  return 0
end
local now = now_ms()
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode({reason = ARGV[2], at_ms = now}))
return 1
