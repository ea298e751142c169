-- ratelimit: the entry point. One script call checks every limit of the request's tier and only
-- then records the request in all of them, so a request denied by one limit never consumes
-- another limit's budget, and no other client can interleave between check and commit.
-- Every key is passed in KEYS and shares the identity's hash tag, so the call is Redis Cluster
-- safe. Time comes from the caller (tests, replays) or from Redis TIME, never from math.random or
-- anything else that would make a replica compute a different answer; with TIME the writes are
-- replicated as effects (the default since Redis 5, enabled explicitly for older servers).
-- Inputs outside the contract are clamped rather than rejected (cost and window at least 1),
-- because an error here would turn into the store-failure policy for every request of the tier;
-- the in-process store clamps the same way.

if redis.replicate_commands then
  redis.replicate_commands()
end

local nlimits = #KEYS
if #ARGV ~= 2 + 3 * nlimits then
  return redis.error_reply('tollgate: expected ' .. (2 + 3 * nlimits) .. ' arguments, got ' .. #ARGV)
end

local now_us = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
if now_us == nil or cost == nil then
  return redis.error_reply('tollgate: now and cost must be numbers')
end
-- now 0: Redis TIME. now -1: Redis TIME, and the time used is appended to the answer, so that a
-- caller splitting a request over hash slots can refund this call exactly (refund.lua).
local report_now = (now_us == -1)
if now_us <= 0 then
  local t = redis.call('TIME')
  now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
if cost < 1 then
  cost = 1
end

local checks = { sliding_log_check, sliding_window_check, fixed_window_check, token_bucket_check }
local commits = { sliding_log_commit, sliding_window_commit, fixed_window_commit, token_bucket_commit }

local out = { 1, nlimits }
local codes, limits, windows, states = {}, {}, {}, {}
for i = 1, nlimits do
  local code = tonumber(ARGV[3 * i])
  local limit = tonumber(ARGV[3 * i + 1])
  local window_ms = tonumber(ARGV[3 * i + 2])
  if code == nil or checks[code] == nil or limit == nil or window_ms == nil then
    return redis.error_reply('tollgate: bad algorithm, limit or window for limit ' .. i)
  end
  if limit < 0 then
    limit = 0
  end
  if window_ms < 1 then
    window_ms = 1
  end
  codes[i], limits[i], windows[i] = code, limit, window_ms
  local allowed, remaining, retry_ms, reset_ms, state = checks[code](KEYS[i], limit, window_ms, cost, now_us)
  states[i] = state
  local a = 0
  if allowed then
    a = 1
  else
    out[1] = 0
  end
  out[#out + 1] = a
  out[#out + 1] = remaining
  out[#out + 1] = retry_ms
  out[#out + 1] = reset_ms
end

if out[1] == 1 then
  for i = 1, nlimits do
    commits[codes[i]](KEYS[i], limits[i], windows[i], cost, now_us, states[i])
  end
end

if report_now then
  out[#out + 1] = now_us
end
return out
