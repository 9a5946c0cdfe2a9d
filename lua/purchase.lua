#!lua
--[[
PURCHASE: buy units of one flash sale in one atomic step.

Every key carries the sale's hash tag, so the script touches one Cluster slot.

KEYS[1]  {sale:<id>}:meta     hash  start, end (unix ms), maxUser, maxTx, price (cents), total, state ("open"|"cancelled")
KEYS[2]  {sale:<id>}:stock    string  units left
KEYS[3]  {sale:<id>}:buyers   hash  <userId> -> units bought; t:<userId> -> first purchase (unix ms)
KEYS[4]  {sale:<id>}:lb       zset  <userId> scored by the order sequence of the buyer's first purchase
KEYS[5]  {sale:<id>}:seq      string  last order sequence number
KEYS[6]  {sale:<id>}:orders   stream  accepted orders, drained to MongoDB by the write-behind;
         one field per entry, o = "<seq>:<userId>:<qty>:<unit price cents>:<unix ms>:<ip>"
         (one field, not six: cheaper to append, read and decode; the IP
         comes last because an IPv6 address holds colons)
KEYS[7]  {sale:<id>}:idem:<userId>:<key>  string  the first reply for an Idempotency-Key
         (pass any key of the same slot when ARGV[4] is 0). That a key is not
         reused on another sale is checked by the caller before this script,
         on {user:<userId>}:idem:<key> (another slot, so not here).
KEYS[8]  {sale:<id>}:ip:<ipKey>  set  accounts that bought from this client IP (IPv6 by /64)
KEYS[9]  {sale:<id>}:att:<userId>  string  the buyer's attempts in the current window

ARGV[1]  user id
ARGV[2]  quantity, a positive integer (the caller has already validated it)
ARGV[3]  client IP, recorded with the order
ARGV[4]  idempotency TTL in seconds; 0 when the request has no Idempotency-Key
ARGV[5]  attempts allowed per buyer per window (0: no limit)
ARGV[6]  the attempts window in ms

The sale's meta field maxIpAccts caps how many distinct accounts may buy from
one client IP (0: no cap).

The time is read from Redis (TIME), never from the caller.
Every check runs before the first write, so an error can never leave half a purchase.
The Idempotency-Key is looked up before the attempts window is counted: a
retry gets its first order back even when the window is spent, and a replay
is not an attempt.

Reply: an array of integers; the first is the outcome.
  {0, seq, remaining, purchasedAtMs, unitPriceCents, userTotal}  ACCEPTED
  {1}                                                          NOT_FOUND (no such sale in Redis)
  {2, startMs, nowMs}                                          NOT_STARTED
  {3, endMs, cancelled}                                        ENDED (cancelled: 1 when cancelled, 0 when time ended)
  {4}                                                          SOLD_OUT
  {5, available}                                               INSUFFICIENT_STOCK
  {6, maxPerTransaction}                                       TRANSACTION_LIMIT
  {7, remainingAllowance, maxPerUser}                          USER_LIMIT
  {8, seq, remaining, purchasedAtMs, unitPriceCents, quantity} DUPLICATE (the first order for this key)
  {9, firstQuantity}                                           IDEMPOTENCY_MISMATCH (same key, other quantity)
  {10, limit, retryAfterMs}                                    ATTEMPT_LIMIT (too many attempts by this buyer)
  {11, maxAccountsPerIp}                                       IP_ACCOUNT_LIMIT (too many accounts from this IP)

Only ATTEMPT_LIMIT's counter is written on a refusal; every other refusal
writes nothing. DUPLICATE writes only its key's own expiry, unchanged: a
write on this connection, so a WAIT after the reply (REDIS_ACK_REPLICAS)
also covers the first order, written earlier in the replication stream.
]]

local meta = redis.call('HMGET', KEYS[1], 'start', 'end', 'maxUser', 'maxTx', 'price', 'state', 'maxIpAccts')
if not meta[1] then
  return {1}
end
local user = ARGV[1]
local qty = tonumber(ARGV[2])
local idem_ttl = tonumber(ARGV[4])

-- A retry of an order gets it back before anything can refuse it.
if idem_ttl > 0 then
  local prev = redis.call('GET', KEYS[7])
  if prev then
    local seq, rem, ts, price, pq = string.match(prev, '^(%d+):(%d+):(%d+):(%d+):(%d+)$')
    if tonumber(pq) ~= qty then
      return {9, tonumber(pq)}
    end
    local left = redis.call('PTTL', KEYS[7])
    if left > 0 then
      redis.call('PEXPIRE', KEYS[7], left)
    end
    return {8, tonumber(seq), tonumber(rem), tonumber(ts), tonumber(price), tonumber(pq)}
  end
end

-- Attempts per buyer per window hold across every instance.
local max_attempts = tonumber(ARGV[5])
if max_attempts > 0 then
  local n = redis.call('INCR', KEYS[9])
  if n == 1 then
    redis.call('PEXPIRE', KEYS[9], ARGV[6])
  end
  if n > max_attempts then
    local ttl = redis.call('PTTL', KEYS[9])
    if ttl < 0 then
      redis.call('PEXPIRE', KEYS[9], ARGV[6])
      ttl = tonumber(ARGV[6])
    end
    return {10, max_attempts, ttl}
  end
end

local end_ms = tonumber(meta[2])
if meta[6] == 'cancelled' then
  return {3, end_ms, 1}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local start_ms = tonumber(meta[1])
if now < start_ms then
  return {2, start_ms, now}
end
if now >= end_ms then
  return {3, end_ms, 0}
end

local stock = tonumber(redis.call('GET', KEYS[2]) or '0')
if stock <= 0 then
  return {4}
end
local max_tx = tonumber(meta[4])
if qty > max_tx then
  return {6, max_tx}
end
local max_user = tonumber(meta[3])
local bought = tonumber(redis.call('HGET', KEYS[3], user) or '0')
if bought + qty > max_user then
  return {7, max_user - bought, max_user}
end
if qty > stock then
  return {5, stock}
end
local max_ip_accts = tonumber(meta[7] or '0')
if max_ip_accts > 0 and redis.call('SISMEMBER', KEYS[8], user) == 0
    and redis.call('SCARD', KEYS[8]) >= max_ip_accts then
  return {11, max_ip_accts}
end

-- All checks passed: record the purchase.
local remaining = redis.call('DECRBY', KEYS[2], qty)
redis.call('HINCRBY', KEYS[3], user, qty)
local seq = redis.call('INCR', KEYS[5])
if bought == 0 then
  redis.call('HSET', KEYS[3], 't:' .. user, now)
  redis.call('ZADD', KEYS[4], 'NX', seq, user)
end
if max_ip_accts > 0 then
  redis.call('SADD', KEYS[8], user)
end
local price = meta[5]
redis.call('XADD', KEYS[6], '*', 'o', seq .. ':' .. user .. ':' .. qty .. ':' .. price .. ':' .. now .. ':' .. ARGV[3])
if idem_ttl > 0 then
  redis.call('SET', KEYS[7], seq .. ':' .. remaining .. ':' .. now .. ':' .. price .. ':' .. qty, 'EX', idem_ttl)
end
return {0, seq, remaining, now, tonumber(price), bought + qty}
