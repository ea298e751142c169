-- peek: what every limit would answer a request of cost 0, for the admin API's usage read-out.
-- It runs each algorithm's check and never its commit, so it charges nothing and records
-- nothing (no check writes; the sliding log's ring is only read). Same calling convention as
-- ratelimit.lua without the cost:
--   KEYS[i] = store key of limit i; ARGV[1] = now (µs, or 0 for Redis TIME);
--   ARGV[3i-1], ARGV[3i], ARGV[3i+1] = algorithm code, limit, window in ms.
-- Returns { n, then per limit: remaining, reset_ms }.

if redis.replicate_commands then
  redis.replicate_commands()
end

local nlimits = #KEYS
if #ARGV ~= 1 + 3 * nlimits then
  return redis.error_reply('tollgate: expected ' .. (1 + 3 * nlimits) .. ' arguments, got ' .. #ARGV)
end
local now_us = tonumber(ARGV[1])
if now_us == nil then
  return redis.error_reply('tollgate: now must be a number')
end
if now_us == 0 then
  local t = redis.call('TIME')
  now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local checks = { sliding_log_check, sliding_window_check, fixed_window_check, token_bucket_check }
local out = { nlimits }
for i = 1, nlimits do
  local code = tonumber(ARGV[3 * i - 1])
  local limit = tonumber(ARGV[3 * i])
  local window_ms = tonumber(ARGV[3 * i + 1])
  if code == nil or checks[code] == nil or limit == nil or window_ms == nil then
    return redis.error_reply('tollgate: bad algorithm, limit or window for limit ' .. i)
  end
  if limit < 0 then
    limit = 0
  end
  if window_ms < 1 then
    window_ms = 1
  end
  local _, remaining, _, reset_ms = checks[code](KEYS[i], limit, window_ms, 0, now_us)
  out[#out + 1] = remaining
  out[#out + 1] = reset_ms
end
return out
