-- ratelimit: the entry point. One script call decides a batch of requests, one after the other,
-- in the order given. For each request it checks every limit first and only then records the
-- request in all of them, so a request denied by one limit never consumes another limit's
-- budget, and nothing interleaves between check and commit: the whole batch is one atomic step,
-- exactly as if its requests had arrived back to back. A batch is what the gateway found waiting
-- when its previous call returned (one request at low load), so batching changes no answer and
-- adds no wait; it only spares Redis the fixed cost of one script call per request.
-- Every key is passed in KEYS; within a request they share the identity's hash tag (Redis Cluster
-- gets batches of one request, see src/limiter/store/redis/batch.rs). Time comes from the caller
-- (tests, replays) or from Redis TIME, never from math.random or anything else that would make a
-- replica compute a different answer; with TIME the writes are replicated as effects (the default
-- since Redis 5, enabled explicitly for older servers).
-- Inputs outside the contract are clamped rather than rejected (cost and window at least 1),
-- because an error here would turn into the store-failure policy for every request of the tier;
-- the in-process store clamps the same way. Malformed input is refused before anything is
-- written, so an error never leaves half a batch recorded.
--
-- ARGV: nrequests, then per request: now_us, cost, nlimits, then per limit: algorithm code, limit,
-- window_ms. now_us 0: Redis TIME; -1: Redis TIME, and the time used is appended to that
-- request's answer, so that a caller splitting a request over hash slots can refund this call
-- exactly (refund.lua). KEYS: every limit's key, request by request.
-- Returns, per request: allowed_all, nlimits, then per limit: allowed, remaining, retry_ms,
-- reset_ms (then the time used, for now_us -1).

if redis.replicate_commands then
  redis.replicate_commands()
end

local checks = { sliding_log_check, sliding_window_check, fixed_window_check, token_bucket_check }
local commits = { sliding_log_commit, sliding_window_commit, fixed_window_commit, token_bucket_commit }

-- Parses every request first: { now_us, cost, key (index of its first key), codes, limits, windows }.
local function parse()
  local nreq = tonumber(ARGV[1])
  if nreq == nil or nreq < 1 then
    return nil, 'tollgate: the first argument is the number of requests'
  end
  local requests, a, k = {}, 2, 1
  local server_now = nil
  for r = 1, nreq do
    local now_us, cost, n = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
    if now_us == nil or cost == nil or n == nil or n < 0 then
      return nil, 'tollgate: request ' .. r .. ': now, cost and limit count must be numbers'
    end
    local report = (now_us == -1)
    if now_us <= 0 then
      if server_now == nil then
        local t = redis.call('TIME')
        server_now = tonumber(t[1]) * 1000000 + tonumber(t[2])
      end
      now_us = server_now
    end
    if cost < 1 then
      cost = 1
    end
    local req = { now_us = now_us, cost = cost, report = report, key = k, codes = {}, limits = {}, windows = {} }
    for i = 1, n do
      local p = a + 3 * i
      local code, limit, window_ms = tonumber(ARGV[p]), tonumber(ARGV[p + 1]), tonumber(ARGV[p + 2])
      if code == nil or checks[code] == nil or limit == nil or window_ms == nil then
        return nil, 'tollgate: request ' .. r .. ': bad algorithm, limit or window for limit ' .. i
      end
      req.codes[i] = code
      req.limits[i] = math.max(limit, 0)
      req.windows[i] = math.max(window_ms, 1)
    end
    requests[r] = req
    a = a + 3 + 3 * n
    k = k + n
  end
  if a - 1 ~= #ARGV or k - 1 ~= #KEYS then
    return nil, 'tollgate: expected ' .. (a - 1) .. ' arguments and ' .. (k - 1) .. ' keys, got '
      .. #ARGV .. ' and ' .. #KEYS
  end
  return requests
end

-- Decides one request: checks every limit, then commits all or none. Appends to `out`.
local function decide(req, out)
  local n = #req.codes
  local head = #out + 1
  out[head] = 1
  out[head + 1] = n
  local states = {}
  for i = 1, n do
    local allowed, remaining, retry_ms, reset_ms, state =
      checks[req.codes[i]](KEYS[req.key + i - 1], req.limits[i], req.windows[i], req.cost, req.now_us)
    states[i] = state
    local a = 0
    if allowed then
      a = 1
    else
      out[head] = 0
    end
    out[#out + 1] = a
    out[#out + 1] = remaining
    out[#out + 1] = retry_ms
    out[#out + 1] = reset_ms
  end
  if out[head] == 1 then
    for i = 1, n do
      commits[req.codes[i]](KEYS[req.key + i - 1], req.limits[i], req.windows[i], req.cost, req.now_us, states[i])
    end
  end
  if req.report then
    out[#out + 1] = req.now_us
  end
end

local requests, err = parse()
if requests == nil then
  return redis.error_reply(err)
end
local out = {}
for r = 1, #requests do
  decide(requests[r], out)
end
return out
