-- Removes worker ARGV[2]. If it still holds running tasks its lease is kept,
-- expired since the epoch, so that the next rescue hands them out again and
-- then forgets the worker.
local worker = ARGV[2]
redis.call('HDEL', P .. 'workers', worker)
redis.call('HDEL', P .. 'heartbeats', worker)
if redis.call('EXISTS', P .. 'running:' .. worker) == 1 then
  redis.call('ZADD', P .. 'leases', 0, worker)
else
  redis.call('ZREM', P .. 'leases', worker)
end
return 1
