-- Stores progress ARGV[4] of task ARGV[2] if it is running attempt ARGV[3].
-- Returns 1 if stored.
local key = P .. 't:' .. ARGV[2]
local t = redis.call('HMGET', key, 'state', 'epoch')
if t[1] ~= 'running' or t[2] ~= ARGV[3] then return 0 end
redis.call('HSET', key, 'progress', ARGV[4])
return 1
