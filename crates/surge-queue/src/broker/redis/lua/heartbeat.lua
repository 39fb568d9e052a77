-- Renews the lease of worker ARGV[2] to ARGV[3] microseconds from now if it
-- has not expired. Returns 0 when it had, else 1 followed by the ids of the
-- worker's running tasks whose cancellation was asked.
local worker = ARGV[2]
local lease = redis.call('ZSCORE', P .. 'leases', worker)
if not lease or tonumber(lease) <= NOW then return { 0 } end
redis.call('ZADD', P .. 'leases', int(NOW + tonumber(ARGV[3])), worker)
redis.call('HSET', P .. 'heartbeats', worker, NOW_S)
local out = { 1 }
for _, id in ipairs(redis.call('SMEMBERS', P .. 'running:' .. worker)) do
  local t = redis.call('HMGET', P .. 't:' .. id, 'state', 'worker', 'cancel')
  if t[1] == 'running' and t[2] == worker and t[3] == '1' then out[#out + 1] = id end
end
return out
