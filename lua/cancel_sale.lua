#!lua
--[[
CANCEL_SALE: mark a sale cancelled so the purchase script refuses it.

KEYS[1]  {sale:<id>}:meta  hash

Reply: 1 when the sale was open and is now cancelled, 0 when it was already
cancelled, -1 when Redis holds no such sale.
]]

local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  return -1
end
if state == 'cancelled' then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'cancelled')
return 1
