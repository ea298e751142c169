-- token_bucket: GCRA, a token bucket stored as one number (the theoretical arrival time, µs), so
-- there is no refill loop and no second field to keep consistent. It allows bursts of up to L and
-- then a steady L per W. T (the emission interval) is floored to whole µs so every value stays
-- an integer below 2^53 and exact in doubles; that makes the sustained rate at most 1 µs per
-- request faster than L/W, never slower.

local function token_bucket_check(key, limit, window_ms, cost, now_us)
  local T = math.max(1, math.floor(window_ms * 1000 / math.max(limit, 1)))
  local tau = T * limit
  local tat = tonumber(redis.call('GET', key)) or 0
  if tat < now_us then
    tat = now_us
  end
  local new = tat + cost * T
  if new - now_us <= tau then
    return true, math.floor((tau - (new - now_us)) / T), 0, math.ceil((new - now_us) / 1000), new
  end
  local retry = math.ceil((new - tau - now_us) / 1000)
  if cost > limit then
    retry = window_ms
  end
  return false, math.max(0, math.floor((tau - (tat - now_us)) / T)), retry,
    math.ceil((tat - now_us) / 1000), nil
end

local function token_bucket_commit(key, limit, window_ms, cost, now_us, state)
  redis.call('SET', key, string.format('%.0f', state), 'PX',
    string.format('%.0f', math.ceil((state - now_us) / 1000) + 1))
end
