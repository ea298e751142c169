-- sliding_window: Cloudflare's two-counter estimate. O(1) memory per key like fixed_window, but the
-- previous window's count is weighted by how much of it still overlaps the sliding window, which
-- removes most of fixed_window's 2L boundary burst without sliding_log's per-request storage.
-- The admission test is kept in integers (everything multiplied by W) so it is exact in doubles;
-- a fractional estimate would make Redis and the in-process store disagree at the margin.
-- retry_ms is solved from the same inequality, assuming no other traffic, and is computed as
-- W - floor(a / b) rather than ceil(W - a / b) so that only one exact rounding happens.

local function sliding_window_check(key, limit, window_ms, cost, now_us)
  local W = window_ms
  local now_ms = math.floor(now_us / 1000)
  local idx = math.floor(now_ms / W)
  local e = now_ms - idx * W
  local st = redis.call('HMGET', key, 'w', 'k', 'p')
  local w = tonumber(st[1])
  local cur, prev = 0, 0
  if w == idx then
    cur = tonumber(st[2]) or 0
    prev = tonumber(st[3]) or 0
  elseif w == idx - 1 then
    prev = tonumber(st[2]) or 0
  end
  local reset = W - e
  local used = prev * (W - e) + (cur + cost) * W
  if used <= limit * W then
    return true, math.floor((limit * W - used) / W), 0, reset, { idx, cur + cost, prev }
  end
  local remaining = math.max(0, math.floor((limit * W - prev * (W - e) - cur * W) / W))
  local retry = nil
  if cost > limit then
    retry = W
  else
    if limit - cur - cost >= 0 and prev > 0 then
      -- Later in this window, once prev's weight has shrunk enough.
      local e2 = W - math.floor((limit - cur - cost) * W / prev)
      if e2 < W then
        retry = e2 - e
      end
    end
    if retry == nil then
      -- In the next window, where this window's count becomes the weighted previous one.
      if cur == 0 then
        retry = W - e
      else
        local e3 = math.max(0, W - math.floor((limit - cost) * W / cur))
        retry = (W - e) + e3
      end
    end
  end
  return false, remaining, retry, reset, nil
end

local function sliding_window_commit(key, limit, window_ms, cost, now_us, state)
  redis.call('HSET', key, 'w', string.format('%.0f', state[1]), 'k', string.format('%.0f', state[2]),
    'p', string.format('%.0f', state[3]))
  redis.call('PEXPIRE', key, string.format('%.0f', 2 * window_ms))
end
