#!lua
--[[
SEED_SALE: write (or re-write) a sale's hot state without ever resetting stock
that Redis still holds.

KEYS[1]  {sale:<id>}:meta    hash
KEYS[2]  {sale:<id>}:stock   string
KEYS[3]  {sale:<id>}:seq     string
KEYS[4]  {sale:<id>}:orders  stream (its consumer group is created here)

ARGV[1] start ms   ARGV[2] end ms   ARGV[3] maxPerUser   ARGV[4] maxPerTransaction
ARGV[5] price cents   ARGV[6] totalUnits   ARGV[7] stock to set when none is held
ARGV[8] lowest order sequence to continue from   ARGV[9] consumer group name
ARGV[10] most accounts that may buy from one client IP (0: no cap)

The state field is only set when absent, so seeding never re-opens a cancelled sale.

Reply: 1 when the stock key was created, 0 when Redis already held it.
]]

redis.call('HSET', KEYS[1], 'start', ARGV[1], 'end', ARGV[2], 'maxUser', ARGV[3],
  'maxTx', ARGV[4], 'price', ARGV[5], 'total', ARGV[6], 'maxIpAccts', ARGV[10])
redis.call('HSETNX', KEYS[1], 'state', 'open')
local created = redis.call('SET', KEYS[2], ARGV[7], 'NX')
local seq = tonumber(redis.call('GET', KEYS[3]) or '0')
if seq < tonumber(ARGV[8]) then
  redis.call('SET', KEYS[3], ARGV[8])
end
redis.pcall('XGROUP', 'CREATE', KEYS[4], ARGV[9], '0', 'MKSTREAM')
if created then
  return 1
end
return 0
