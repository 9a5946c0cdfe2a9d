#!lua
--[[
LEASE_RENEW: extend the lease only while we still own it.

KEYS[1]  the lease key
ARGV[1]  our token ("<instance>:<epoch>")
ARGV[2]  lease time to live in ms

Reply: 1 when renewed, 0 when the lease expired or belongs to another instance.
]]

if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
