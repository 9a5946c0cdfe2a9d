#!lua
--[[
LEASE_ACQUIRE: take the scheduler lease when nobody holds it, with a fencing epoch.

KEYS[1]  the lease key          (same hash tag as KEYS[2])
KEYS[2]  the epoch counter key
ARGV[1]  this instance's id
ARGV[2]  lease time to live in ms

Reply: the new epoch (> 0) when acquired; 0 when another instance holds the
lease. The lease value is "<instance>:<epoch>", the token renew and release check.
]]

if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local epoch = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. epoch, 'PX', ARGV[2])
return epoch
