-- sliding_log: the exact algorithm. A sorted set of admission timestamps (score = µs) is the only
-- way to promise "never more than L in any window of length W", boundaries included, so this is
-- the default despite costing one member per admitted unit. The window is (now - W, now]: an
-- entry exactly W old no longer counts, which is what makes a client that waits retry_ms get in.
-- Timestamps are µs so two requests in the same millisecond still order correctly; members are
-- "<now_us>-<j>" only to stay unique when two requests share a microsecond.
-- Arithmetic: every value is an integer below 2^53 (now_us is ~2^51), so doubles are exact and
-- math.ceil of an exact quotient of two such integers is exact too.

local function sliding_log_check(key, limit, window_ms, cost, now_us)
  local win_us = window_ms * 1000
  -- Inclusive max: an entry at exactly now - W is outside (now - W, now].
  redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%.0f', now_us - win_us))
  local n = redis.call('ZCARD', key)
  local oldest = nil
  if n > 0 then
    oldest = tonumber(redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2])
  end
  if n + cost <= limit then
    if oldest == nil or oldest > now_us then
      oldest = now_us
    end
    return true, limit - n - cost, 0, math.ceil((oldest + win_us - now_us) / 1000), nil
  end
  local reset = 0
  if oldest ~= nil then
    reset = math.ceil((oldest + win_us - now_us) / 1000)
  end
  local retry = window_ms
  if cost <= limit then
    -- The k oldest entries must leave the window before `cost` more fit.
    local k = n + cost - limit
    local s = tonumber(redis.call('ZRANGE', key, k - 1, k - 1, 'WITHSCORES')[2])
    retry = math.ceil((s + win_us - now_us) / 1000)
  end
  return false, math.max(0, limit - n), retry, reset, nil
end

local function sliding_log_commit(key, limit, window_ms, cost, now_us, state)
  local ts = string.format('%.0f', now_us)
  local j = 0
  for _ = 1, cost do
    while redis.call('ZADD', key, 'NX', ts, ts .. '-' .. j) == 0 do
      j = j + 1
    end
    j = j + 1
  end
  redis.call('PEXPIRE', key, string.format('%.0f', window_ms))
end
