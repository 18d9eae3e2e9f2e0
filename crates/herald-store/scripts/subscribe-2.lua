--[[
  subscribe-2.lua: record a subscription in the endpoint's own list, only while the endpoint
  exists (a subscription written after a concurrent delete would outlive the endpoint). The
  caller then writes the service's subscriber index, which publishers read.

  KEYS[1]  endpoints  HASH  endpoint id -> endpoint JSON
  KEYS[2]  subs       HASH  "<shard prefix>:subs:<endpoint id>": service slug -> subscription JSON

  ARGV[1]  endpoint id
  ARGV[2]  service slug
  ARGV[3]  subscription JSON

  Returns 1 written; -1 the endpoint does not exist (nothing written).
]]

if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return -1 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
