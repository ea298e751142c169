-- sliding_log: the exact algorithm, as a ring of the last L admission timestamps (one slot per
-- admitted unit). "At most L in any window W" holds for a new unit iff the L-th most recent
-- admission is at least W old, so the oldest slot of a ring of L decides in O(1); the slots are
-- in time order, so `remaining` is a binary search. The window is (now - W, now]: a slot exactly
-- W old no longer counts, which is what makes a client that waits retry_ms get in.
-- Layout of the string (little endian): a 34-byte header - base µs (8 bytes), floor µs (8),
-- newest µs (8), head (3), hint (3), n (3), width (1) - then n slots, each the µs offset of an
-- admission from base (4 or 8 bytes; 0 = empty). `head` is the oldest slot, `newest` the time in
-- the slot before it, `hint` the first live slot at the latest admission (where the search for
-- `remaining` starts in a large ring). A slot at or before `floor` (the window start of the
-- latest admission) is dead for good, as the sorted set this replaces deleted it. Time is clamped
-- to the newest slot, so slots stay in order even if TIME steps back after a failover.
-- Cost: a ring of up to 512 bytes is read with one GETRANGE, a larger one reads its header and a
-- few slots near the hint; an admission writes its slots and the header with SETRANGE, then
-- PEXPIRE (Lua strings cost per byte, so nothing larger is built). Every `local function` here
-- is created anew on every script call, so there are only four.
-- Arithmetic: every value is an integer below 2^53, so doubles are exact.
-- The full specification and the proof are in README.md ("sliding_log").

local SL_HEADER = 34
local SL_HEADER_FORMAT = '<I8I8I8I3I3I3I1' -- base, floor, newest, head, hint, n, width
local SL_WHOLE = 512 -- rings up to this many bytes are read with one GETRANGE
local SL_CHUNK = 8 -- slots a larger ring reads around its hint
local SL_NARROW_MAX = 100000 -- more slots than this: 8-byte slots, never rebased
local SL_NARROW_SPAN = 2147483648 -- 2^31 µs (35.8 min): the longest window of 4-byte slots

-- The raw bytes of `count` slots of ring r from logical index i (0 = oldest), across the wrap.
local function sl_bytes(r, i, count)
  local out = {}
  while count > 0 do
    local p = (r.head + i) % r.n
    local run = math.min(count, r.n - p)
    local from = SL_HEADER + p * r.width
    if r.s then
      out[#out + 1] = string.sub(r.s, from + 1, from + run * r.width)
    else
      out[#out + 1] = redis.call('GETRANGE', r.key, from, from + run * r.width - 1)
    end
    i, count = i + run, count - run
  end
  return table.concat(out)
end

-- The admission time (µs) in logical slot i of ring r; an empty slot reads as `base`.
local function sl_at(r, i)
  local from = SL_HEADER + ((r.head + i) % r.n) * r.width
  if r.s then
    return r.base + struct.unpack(r.fmt, r.s, from + 1)
  end
  return r.base + struct.unpack(r.fmt, redis.call('GETRANGE', r.key, from, from + r.width - 1))
end

-- Returns allowed, remaining, retry_ms, reset_ms and, when allowed, the state for the commit:
-- the ring as read (its `n` nil when there was none or it was unrecognisable), `eff` (the clamped
-- clock), `i0` (the first live slot) and `live`.
local function sliding_log_check(key, limit, window_ms, cost, now_us)
  local win_us = window_ms * 1000
  -- A ring expected to be small is read whole; otherwise only its header.
  local span = SL_HEADER
  if SL_HEADER + 4 * limit <= SL_WHOLE then
    span = SL_WHOLE
  end
  local s = redis.call('GETRANGE', key, 0, span - 1)
  local n, live, r = 0, 0, nil
  if #s >= SL_HEADER then
    local base, floor, newest, head, hint, slots, width = struct.unpack(SL_HEADER_FORMAT, s)
    local size = SL_HEADER + slots * width
    if (width == 4 or width == 8) and slots >= 1 and head < slots and hint < slots and (#s == span or #s == size) then
      n = slots
      r = { key = key, eff = now_us, i0 = 0, live = 0, base = base, floor = floor, newest = newest,
        head = head, hint = hint, n = n, width = width, fmt = (width == 4 and '<I4' or '<I8'),
        s = (#s == size and s or nil), oldest = false }
    end
  end
  if n == 0 then
    r = { key = key, eff = now_us, i0 = 0, live = 0, absent = (#s == 0) }
  else
    -- Clamp to the newest admission: a clock that stepped back still writes in order.
    r.eff = math.max(now_us, r.newest)
    local lo = math.max(r.floor, r.eff - win_us)
    -- The first live slot (later than lo) is in [a, b). A large ring looks near its hint first:
    -- the boundary only moves forward between admissions, unless a reload widened the window.
    local a, b, oldest = 0, n, nil
    if r.newest <= lo then
      a = n
    elseif not r.s then
      local from = math.max((r.hint - r.head) % n - 1, 0)
      local count = math.min(SL_CHUNK, n - from)
      local bytes = sl_bytes(r, from, count)
      a = from + count
      for j = 0, count - 1 do
        local t = r.base + struct.unpack(r.fmt, bytes, j * r.width + 1)
        if t > lo then
          a, b, oldest = from + j, from + j, t
          if j == 0 and from > 0 then
            a, b, oldest = 0, from, nil
          end
          break
        end
      end
    end
    while a < b do
      local m = math.floor((a + b) / 2)
      if sl_at(r, m) > lo then
        b = m
      else
        a = m + 1
      end
    end
    r.i0 = a
    live = n - a
    if live > 0 and oldest == nil then
      oldest = sl_at(r, a)
    end
    r.oldest = oldest
  end
  -- The oldest live admission, or now when none is live.
  local oldest = r.oldest or r.eff
  if live + cost <= limit then
    r.live = live
    return true, limit - live - cost, 0, math.ceil((oldest + win_us - now_us) / 1000), r
  end
  local reset = 0
  if live > 0 then
    reset = math.ceil((oldest + win_us - now_us) / 1000)
  end
  local retry = window_ms
  if cost <= limit then
    -- The k = live + cost - limit oldest live slots must leave the window first.
    local k = live + cost - limit
    if k > 1 then
      oldest = sl_at(r, r.i0 + k - 1)
    end
    retry = math.ceil((oldest + win_us - now_us) / 1000)
  end
  return false, math.max(0, limit - live), retry, reset, nil
end

-- Records the admission the check allowed. `r.n` is nil when there was no ring.
local function sliding_log_commit(key, limit, window_ms, cost, now_us, r)
  local eff = r.eff
  local floor = math.max(0, eff - window_ms * 1000)
  if r.n and r.floor > floor then
    floor = r.floor
  end
  local ttl = string.format('%.0f', math.ceil((eff + window_ms * 1000 - now_us) / 1000))
  if r.n == limit and eff - r.base < 2 ^ (8 * r.width) then
    -- The `cost` oldest slots are dead (the check admitted only if they were): overwrite them.
    local n, w, head = r.n, r.width, r.head
    local header = struct.pack(SL_HEADER_FORMAT, r.base, floor, eff, (head + cost) % n,
      (head + r.i0) % n, n, w)
    local slot = struct.pack(r.fmt, eff - r.base)
    local run = math.min(cost, n - head)
    redis.call('SETRANGE', key, SL_HEADER + head * w, string.rep(slot, run))
    if cost > run then
      redis.call('SETRANGE', key, SL_HEADER, string.rep(slot, cost - run))
    end
    redis.call('SETRANGE', key, 0, header)
    redis.call('PEXPIRE', key, ttl)
    return
  end
  local width = 8
  if limit <= SL_NARROW_MAX and eff - floor < SL_NARROW_SPAN then
    width = 4
  end
  local fmt = (width == 4 and '<I4' or '<I8')
  if r.absent then
    -- A new key: SETRANGE past the end of an absent key zero-fills the empty slots in C.
    local empty = limit - cost
    redis.call('SETRANGE', key, SL_HEADER + empty * width, string.rep(struct.pack(fmt, eff - floor), cost))
    redis.call('SETRANGE', key, 0, struct.pack(SL_HEADER_FORMAT, floor, floor, eff, 0, empty, limit, width))
    redis.call('PEXPIRE', key, ttl)
    return
  end
  -- A changed limit, offsets that outgrew their base, or an unrecognisable value: a new ring of
  -- `limit` slots, holding empty slots, the live ones of the old ring, then `cost` new ones.
  local base, kept = floor, ''
  if r.live > 0 then
    kept = sl_bytes(r, r.i0, r.live)
    if r.width == width and eff - r.base < 2 ^ (8 * width) then
      base = r.base
    else
      local parts = {}
      for j = 0, r.live - 1 do
        parts[j + 1] = struct.pack(fmt, r.base + struct.unpack(r.fmt, kept, j * r.width + 1) - base)
      end
      kept = table.concat(parts)
    end
  end
  local empty = limit - cost - r.live
  local zeros = '\0'
  while #zeros < empty * width do
    zeros = zeros .. zeros
  end
  redis.call('SET', key, struct.pack(SL_HEADER_FORMAT, base, floor, eff, 0, empty, limit, width) ..
    string.sub(zeros, 1, empty * width) .. kept .. string.rep(struct.pack(fmt, eff - base), cost),
    'PX', ttl)
end
