-- refund: gives back exactly what one admitted call of ratelimit.lua recorded, for Redis Cluster
-- requests whose budgets span hash slots. Such a request is decided by one ratelimit call per
-- slot; when any slot refuses, the slots that admitted are refunded with this script, so a
-- refused request is charged by none of its budgets ("a refused request costs nothing").
-- ARGV: the `now_us` the admitting call used (it appends it to its answer when called with
-- now = -1), the cost, then algorithm, limit and window of each limit, as for ratelimit.lua.
-- What is removed is what that call added, whatever happened since:
--   sliding_log: `cost` slots of the ring recorded at exactly now_us (slots of one time count
--     alike), the ring kept in time order;
--   fixed_window / sliding_window: `cost` off the count of the window the call recorded in, if
--     that window is still the stored one (or, for sliding_window, the previous one);
--   token_bucket: `cost * T` off the theoretical arrival time (never below the present).
-- Returns the number of limits refunded.

if redis.replicate_commands then
  redis.replicate_commands()
end

local nlimits = #KEYS
if #ARGV ~= 2 + 3 * nlimits then
  return redis.error_reply('tollgate refund: expected ' .. (2 + 3 * nlimits) .. ' arguments, got ' .. #ARGV)
end
local at_us = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
if at_us == nil or cost == nil or at_us <= 0 then
  return redis.error_reply('tollgate refund: the time of the charge and the cost must be numbers')
end
if cost < 1 then
  cost = 1
end
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])

-- The ring of sliding_log.lua (its header is documented there and in README.md).
local SL_HEADER = 34
local SL_HEADER_FORMAT = '<I8I8I8I3I3I3I1' -- base, floor, newest, head, hint, n, width

-- Takes up to `cost` slots recorded at exactly at_us out of the ring, keeping it in time order:
-- the slots newer than them (admitted since, usually none) move back by as many places, the
-- head moves back too, and the freed places become empty slots at the oldest end. The places
-- older than the refunded slots are not touched, so a refund costs O(slots admitted since).
local function refund_sliding_log(key, limit, window_ms)
  local h = redis.call('GETRANGE', key, 0, SL_HEADER - 1)
  if #h < SL_HEADER then
    return 0
  end
  local base, floor, newest, head, hint, n, width = struct.unpack(SL_HEADER_FORMAT, h)
  if (width ~= 4 and width ~= 8) or n < 1 or head >= n or hint >= n or newest < at_us then
    return 0
  end
  local fmt = (width == 4 and '<I4' or '<I8')
  local function pos(i)
    return SL_HEADER + ((head + i) % n) * width
  end
  local function raw(i)
    return redis.call('GETRANGE', key, pos(i), pos(i) + width - 1)
  end
  local function at(i)
    return base + struct.unpack(fmt, raw(i))
  end
  local last = n - 1
  while last >= 0 and at(last) > at_us do
    last = last - 1
  end
  local found = 0
  while found < cost and last - found >= 0 and at(last - found) == at_us do
    found = found + 1
  end
  if found == 0 then
    return 0
  end
  -- Ascending, so every slot is read before its place is written.
  for t = last + 1, n - 1 do
    redis.call('SETRANGE', key, pos(t - found), raw(t))
  end
  local empty = struct.pack(fmt, 0)
  for t = n - found, n - 1 do
    redis.call('SETRANGE', key, pos(t), empty)
  end
  local new_head = (head - found) % n
  if last + 1 <= n - 1 then
    -- newest is unchanged: a slot newer than the refunded ones is still the newest.
  elseif last - found >= 0 then
    newest = at(last - found)
  else
    newest = floor
  end
  redis.call('SETRANGE', key, 0, struct.pack(SL_HEADER_FORMAT, base, floor, newest, new_head, hint, n, width))
  return 1
end

local function refund_counter(key, window_ms, field_of)
  local idx = math.floor(math.floor(at_us / 1000) / window_ms)
  local st = redis.call('HMGET', key, 'w', 'k', 'p')
  local field = field_of(tonumber(st[1]), idx)
  if field == nil then
    return 0
  end
  local n = tonumber(st[field == 'k' and 2 or 3]) or 0
  redis.call('HSET', key, field, string.format('%.0f', math.max(0, n - cost)))
  return 1
end

local function refund_fixed_window(key, limit, window_ms)
  return refund_counter(key, window_ms, function(w, idx)
    if w == idx then
      return 'k'
    end
    return nil
  end)
end

local function refund_sliding_window(key, limit, window_ms)
  return refund_counter(key, window_ms, function(w, idx)
    if w == idx then
      return 'k'
    elseif w == idx + 1 then
      return 'p'
    end
    return nil
  end)
end

local function refund_token_bucket(key, limit, window_ms)
  local T = math.max(1, math.floor(window_ms * 1000 / math.max(limit, 1)))
  local tat = tonumber(redis.call('GET', key))
  if tat == nil then
    return 0
  end
  local new = tat - cost * T
  if new <= now_us then
    redis.call('DEL', key)
  else
    redis.call('SET', key, string.format('%.0f', new), 'PX',
      string.format('%.0f', math.ceil((new - now_us) / 1000) + 1))
  end
  return 1
end

local refunds = { refund_sliding_log, refund_sliding_window, refund_fixed_window, refund_token_bucket }
local done = 0
for i = 1, nlimits do
  local code = tonumber(ARGV[3 * i])
  local limit = tonumber(ARGV[3 * i + 1])
  local window_ms = tonumber(ARGV[3 * i + 2])
  if code == nil or refunds[code] == nil or limit == nil or window_ms == nil then
    return redis.error_reply('tollgate refund: bad algorithm, limit or window for limit ' .. i)
  end
  if window_ms < 1 then
    window_ms = 1
  end
  done = done + refunds[code](KEYS[i], limit, window_ms)
end
return done
