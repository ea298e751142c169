-- reset: forgets the counters named in KEYS (the admin API's DELETE /v1/keys/{id}/usage). A
-- script rather than DEL so that it travels the same path as the other scripts, Redis Cluster
-- redirections included; all keys of one identity share a hash slot. Returns { how many existed }.

local n = 0
for i = 1, #KEYS do
  n = n + redis.call('DEL', KEYS[i])
end
return { n }
