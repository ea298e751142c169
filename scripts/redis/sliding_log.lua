-- sliding_log: the exact algorithm, as a ring of the last L admission timestamps (one slot per
-- admitted unit). "At most L in any window W" holds for a new unit iff the L-th most recent
-- admission is at least W old, so the oldest slot of a ring of L decides in O(1); the slots are
-- in time order, so `remaining` is a binary search. The window is (now - W, now]: a slot exactly
-- W old no longer counts, which is what makes a client that waits retry_ms get in.
-- Layout of the string (little endian): base µs (8 bytes), floor µs (8), head (3), width (1),
-- then the slots, each the µs offset of an admission from base (width 4 or 8 bytes, 0 = empty).
-- `head` is the oldest slot. A slot at or before `floor` (the window start of the latest
-- admission) is dead for good, as the sorted set this replaces deleted it. Time is clamped to
-- the newest slot, so slots stay in order even if TIME steps back after a failover.
-- Arithmetic: every value is an integer below 2^53, so doubles are exact.
-- The full specification and the proof are in README.md ("sliding_log").

local SL_HEADER = 20
local SL_READ_WHOLE = 8192 -- rings up to this many bytes are read with one GETRANGE
local SL_NARROW_MAX = 100000 -- more slots than this: 8-byte slots, never rebased
local SL_NARROW_SPAN = 2147483648 -- 2^31 µs (35.8 min): the longest window of 4-byte slots

local function sl_format(width)
  if width == 4 then
    return '<I4'
  end
  return '<I8'
end

-- The ring stored at key, or nil when there is none (an absent or unrecognisable value).
local function sl_read(key)
  local s = redis.call('GETRANGE', key, 0, SL_READ_WHOLE - 1)
  if #s < SL_HEADER then
    return nil
  end
  local len = #s
  if len == SL_READ_WHOLE then
    len = redis.call('STRLEN', key)
  end
  local base, floor, head, width = struct.unpack('<I8I8I3I1', s)
  if (width ~= 4 and width ~= 8) or (len - SL_HEADER) % width ~= 0 then
    return nil
  end
  local n = (len - SL_HEADER) / width
  if n < 1 or head >= n then
    return nil
  end
  return { key = key, s = s, whole = (len == #s), base = base, floor = floor, head = head,
    width = width, n = n, fmt = sl_format(width) }
end

-- The raw bytes of `count` slots from logical index i (0 = oldest), across the wrap.
local function sl_bytes(ring, i, count)
  local out = {}
  while count > 0 do
    local p = (ring.head + i) % ring.n
    local run = math.min(count, ring.n - p)
    local from = SL_HEADER + p * ring.width
    local to = from + run * ring.width - 1
    if ring.whole then
      out[#out + 1] = string.sub(ring.s, from + 1, to + 1)
    else
      out[#out + 1] = redis.call('GETRANGE', ring.key, from, to)
    end
    i, count = i + run, count - run
  end
  return table.concat(out)
end

-- The admission time (µs) in logical slot i; an empty slot reads as `base`.
local function sl_at(ring, i)
  local p = (ring.head + i) % ring.n
  local from = SL_HEADER + p * ring.width
  if ring.whole then
    return ring.base + struct.unpack(ring.fmt, ring.s, from + 1)
  end
  return ring.base + struct.unpack(ring.fmt, redis.call('GETRANGE', ring.key, from, from + ring.width - 1))
end

-- The first logical slot later than lo (n when none): slots are in time order.
local function sl_first_live(ring, lo)
  local a, b = 0, ring.n
  while a < b do
    local m = math.floor((a + b) / 2)
    if sl_at(ring, m) > lo then
      b = m
    else
      a = m + 1
    end
  end
  return a
end

local function sliding_log_check(key, limit, window_ms, cost, now_us)
  local win_us = window_ms * 1000
  local ring = sl_read(key)
  local eff, i0, live = now_us, 0, 0
  if ring ~= nil then
    -- Clamp to the newest admission: a clock that stepped back still writes in order.
    eff = math.max(now_us, sl_at(ring, ring.n - 1))
    i0 = sl_first_live(ring, math.max(ring.floor, eff - win_us))
    live = ring.n - i0
  end
  if live + cost <= limit then
    local oldest = eff
    if live > 0 then
      oldest = sl_at(ring, i0)
    end
    return true, limit - live - cost, 0, math.ceil((oldest + win_us - now_us) / 1000),
      { ring = ring, eff = eff, i0 = i0, live = live }
  end
  local reset = 0
  if live > 0 then
    reset = math.ceil((sl_at(ring, i0) + win_us - now_us) / 1000)
  end
  local retry = window_ms
  if cost <= limit then
    -- The k = live + cost - limit oldest live slots must leave the window first.
    retry = math.ceil((sl_at(ring, i0 + live + cost - limit - 1) + win_us - now_us) / 1000)
  end
  return false, math.max(0, limit - live), retry, reset, nil
end

local function sl_zeros(bytes)
  local z = '\0'
  while #z < bytes do
    z = z .. z
  end
  return string.sub(z, 1, bytes)
end

-- A new ring of `limit` slots: empty slots, the live ones of the old ring, `cost` new ones.
-- Used for a new key, a changed limit, and when offsets outgrow their base or width.
local function sl_rebuild(key, ring, st, limit, cost, floor, ttl)
  local width = 8
  if limit <= SL_NARROW_MAX and st.eff - floor < SL_NARROW_SPAN then
    width = 4
  end
  local base, fmt, kept = floor, sl_format(width), ''
  if st.live > 0 then
    kept = sl_bytes(ring, st.i0, st.live)
    if ring.width == width and st.eff - ring.base < 2 ^ (8 * width) then
      base = ring.base
    else
      local parts = {}
      for j = 0, st.live - 1 do
        parts[j + 1] = struct.pack(fmt, ring.base + struct.unpack(ring.fmt, kept, j * ring.width + 1) - base)
      end
      kept = table.concat(parts)
    end
  end
  local value = struct.pack('<I8I8I3I1', base, floor, 0, width) ..
    sl_zeros((limit - cost - st.live) * width) .. kept .. string.rep(struct.pack(fmt, st.eff - base), cost)
  redis.call('SET', key, value, 'PX', ttl)
end

local function sliding_log_commit(key, limit, window_ms, cost, now_us, state)
  local ring, eff = state.ring, state.eff
  local floor = math.max(0, eff - window_ms * 1000)
  if ring ~= nil and ring.floor > floor then
    floor = ring.floor
  end
  local ttl = string.format('%.0f', math.ceil((eff + window_ms * 1000 - now_us) / 1000))
  if ring == nil or ring.n ~= limit or eff - ring.base >= 2 ^ (8 * ring.width) then
    return sl_rebuild(key, ring, state, limit, cost, floor, ttl)
  end
  -- The `cost` oldest slots are dead (the check admitted only if they were): overwrite them.
  local slot = struct.pack(ring.fmt, eff - ring.base)
  local run = math.min(cost, ring.n - ring.head)
  redis.call('SETRANGE', key, SL_HEADER + ring.head * ring.width, string.rep(slot, run))
  if cost > run then
    redis.call('SETRANGE', key, SL_HEADER, string.rep(slot, cost - run))
  end
  redis.call('SETRANGE', key, 8, struct.pack('<I8I3', floor, (ring.head + cost) % ring.n))
  redis.call('PEXPIRE', key, ttl)
end
