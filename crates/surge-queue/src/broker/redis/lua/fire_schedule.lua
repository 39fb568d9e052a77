-- Fires tick ARGV[3] of schedule ARGV[2]: only if its next tick is still
-- ARGV[3], moves it to ARGV[4], records the tick as the last one and
-- enqueues the submission ARGV[5 .. 14]. Returns 1 if it fired.
local name = ARGV[2]
if redis.call('HGET', P .. 'schedule:next', name) ~= ARGV[3] then return 0 end
redis.call('HSET', P .. 'schedule:next', name, ARGV[4])
redis.call('HSET', P .. 'schedule:last', name, ARGV[3])
enqueue(ARGV, 5)
done()
return 1
