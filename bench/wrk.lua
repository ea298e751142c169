-- The wrk script of scripts/bench.sh. What each request carries comes from the environment:
--   WRK_KEY=k                       the same x-api-key on every request
--   WRK_KEY_PREFIX=p WRK_KEYS=n     x-api-key round-robin over p0000 .. p<n-1> (requests built once)
--   WRK_XFF=n [WRK_XFF_DONE=file]   a new X-Forwarded-For client address on each of n requests
--                                   (10.a.b.c); then `file` is created and the last one repeats
--   none of these                   a plain GET
--   WRK_PATH                        the path (default /bench: tollgate-echo's 2-byte answer)
--   WRK_CLOSE=1                     `Connection: close`: a new connection (and TLS handshake) per request
-- done() prints one machine-readable line, "WRKJSON {...}", with the totals and the p50, p90,
-- p99 and p99.9 latencies in microseconds.

local path = os.getenv("WRK_PATH") or "/bench"
local key = os.getenv("WRK_KEY")
local prefix = os.getenv("WRK_KEY_PREFIX")
local nkeys = tonumber(os.getenv("WRK_KEYS") or "") or 0
local xff = tonumber(os.getenv("WRK_XFF") or "") or 0
local xff_done = os.getenv("WRK_XFF_DONE")

if key and key ~= "" then
  wrk.headers["x-api-key"] = key
end
if os.getenv("WRK_CLOSE") == "1" then
  wrk.headers["Connection"] = "close"
end

if prefix and nkeys > 0 then
  local reqs, i = {}, 0
  function init(args)
    for k = 0, nkeys - 1 do
      reqs[k + 1] = wrk.format("GET", path, { ["x-api-key"] = string.format("%s%04d", prefix, k) })
    end
  end
  function request()
    i = i % nkeys + 1
    return reqs[i]
  end
elseif xff > 0 then
  local n, last = 0, nil
  function request()
    if n >= xff then
      if xff_done and n == xff then
        local f = io.open(xff_done, "w")
        if f then f:write(n, "\n") f:close() end
        n = n + 1
      end
      return last
    end
    n = n + 1
    local ip = string.format("10.%d.%d.%d", math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
    last = wrk.format("GET", path, { ["X-Forwarded-For"] = ip })
    return last
  end
else
  wrk.path = path
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"p999_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.mean, latency.max))
end
