-- fixed_window: the cheapest algorithm (one small hash, O(1)), for limits where a burst of up to
-- 2L across a window boundary is acceptable. The window index is stored next to the count so a
-- stale count from an earlier window is recognised without relying on the key's TTL, which runs
-- on Redis's clock and not necessarily on the caller's `now`.
-- Arithmetic: integers below 2^53, so doubles and math.floor are exact.

local function fixed_window_check(key, limit, window_ms, cost, now_us)
  local now_ms = math.floor(now_us / 1000)
  local idx = math.floor(now_ms / window_ms)
  local st = redis.call('HMGET', key, 'w', 'k')
  local n = 0
  if tonumber(st[1]) == idx then
    n = tonumber(st[2]) or 0
  end
  local reset = (idx + 1) * window_ms - now_ms
  if n + cost <= limit then
    return true, limit - n - cost, 0, reset, { idx, n + cost, reset }
  end
  local retry = reset
  if cost > limit then
    retry = window_ms
  end
  return false, math.max(0, limit - n), retry, reset, nil
end

local function fixed_window_commit(key, limit, window_ms, cost, now_us, state)
  redis.call('HSET', key, 'w', string.format('%.0f', state[1]), 'k', string.format('%.0f', state[2]))
  redis.call('PEXPIRE', key, string.format('%.0f', state[3]))
end
