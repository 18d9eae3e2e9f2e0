--[[
  update-endpoint-2.lua: replace an endpoint's JSON only if it is still what the caller read
  (compare and set), so that two operators changing one endpoint at once never lose each
  other's change (a rotated secret already shown, say), and a change never brings back an
  endpoint deleted meanwhile. A write is a change of the endpoint (`changed` becomes now): the failures of
  attempts claimed before it, signed with the old secrets, no longer strike it (fail-12.lua).

  KEYS[1]  endpoints  HASH  endpoint id -> endpoint JSON
  KEYS[2]  changed    HASH  endpoint id -> when an operator last changed it (ms)

  ARGV[1]  endpoint id
  ARGV[2]  the endpoint JSON as the caller read it
  ARGV[3]  the new endpoint JSON

  Returns 1 written; 0 the stored JSON changed meanwhile (nothing written: read it again and
  redo the change); -1 the endpoint does not exist (nothing written).
]]

local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return -1 end
if current ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], now_ms())
return 1
