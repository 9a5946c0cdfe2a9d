#!lua
--[[
UNLOCK: delete a lock key only when it still holds our token.

KEYS[1]  the lock key
ARGV[1]  the token written by SET NX

Reply: 1 when deleted, 0 when the lock had expired or belongs to someone else.
]]

if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
