-- Registers (or renews) worker ARGV[2] with its description ARGV[3] and a
-- lease of ARGV[4] microseconds from now.
local worker = ARGV[2]
redis.call('HSET', P .. 'workers', worker, ARGV[3])
redis.call('HSET', P .. 'heartbeats', worker, NOW_S)
redis.call('ZADD', P .. 'leases', int(NOW + tonumber(ARGV[4])), worker)
return 1
