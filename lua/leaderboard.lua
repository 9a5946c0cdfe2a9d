#!lua flags=no-writes
--[[
LEADERBOARD: one page of a sale's buyers in first-purchase order, with their
totals, in one round trip.

KEYS[1]  {sale:<id>}:stock    string (tells whether the sale exists)
KEYS[2]  {sale:<id>}:lb       zset   <userId> scored by their first order's sequence
KEYS[3]  {sale:<id>}:buyers   hash   <userId> -> units; t:<userId> -> first purchase ms

ARGV[1]  offset (0-based rank)
ARGV[2]  page size

Reply: {exists, user1, units1, firstMs1, user2, units2, firstMs2, ...}
  exists is 0 when Redis holds no such sale (and nothing follows).
Cost: O(log n + page size).
]]

if redis.call('EXISTS', KEYS[1]) == 0 then
  return {0}
end
local offset = tonumber(ARGV[1])
local size = tonumber(ARGV[2])
local users = redis.call('ZRANGE', KEYS[2], offset, offset + size - 1)
local out = {1}
if #users == 0 then
  return out
end
local fields = {}
for i, u in ipairs(users) do
  fields[2 * i - 1] = u
  fields[2 * i] = 't:' .. u
end
local values = redis.call('HMGET', KEYS[3], unpack(fields))
for i, u in ipairs(users) do
  out[#out + 1] = u
  out[#out + 1] = tonumber(values[2 * i - 1] or '0')
  out[#out + 1] = tonumber(values[2 * i] or '0')
end
return out
