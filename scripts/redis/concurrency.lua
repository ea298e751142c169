-- concurrency: leases on in-flight requests, Stripe's "concurrent requests limiter".
-- KEYS[1]: the identity's lease set, a sorted set of request tokens scored by the instant (ms)
-- their lease runs out. ARGV: now_us (0: Redis TIME), op (1 acquire, 2 release), token, max,
-- lease_ms.
-- acquire: leases past their instant are dropped first (a replica that died holding them leaks
-- nothing for longer than the lease); then the token gets a lease when fewer than `max` are held.
-- Returns {1, held} when admitted, {0, held, retry_ms} when full (retry_ms: until the earliest
-- lease runs out, a bound, since a release usually comes much sooner).
-- release: removes the token; returns {1} when it held a lease, {0} otherwise (already expired).
-- The key expires with its longest lease, so an identity that stops sending leaves nothing.

if redis.replicate_commands then
  redis.replicate_commands()
end

local now_us = tonumber(ARGV[1])
local op = tonumber(ARGV[2])
local token = ARGV[3]
if now_us == nil or op == nil or token == nil then
  return redis.error_reply('tollgate concurrency: now, op and token are required')
end
if now_us <= 0 then
  local t = redis.call('TIME')
  now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local now_ms = math.floor(now_us / 1000)
local key = KEYS[1]

if op == 2 then
  return { redis.call('ZREM', key, token) }
end

local max = tonumber(ARGV[4])
local lease_ms = tonumber(ARGV[5])
if op ~= 1 or max == nil or lease_ms == nil or max < 1 or lease_ms < 1 then
  return redis.error_reply('tollgate concurrency: acquire needs max and lease_ms of at least 1')
end
redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%.0f', now_ms))
local held = redis.call('ZCARD', key)
if held >= max then
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  local retry = lease_ms
  if first[2] then
    retry = math.max(1, tonumber(first[2]) - now_ms)
  end
  return { 0, held, retry }
end
local until_ms = now_ms + lease_ms
redis.call('ZADD', key, string.format('%.0f', until_ms), token)
-- The key lives as long as its longest lease (leases are all `lease_ms` long, so the newest).
redis.call('PEXPIRE', key, lease_ms)
return { 1, held + 1 }
