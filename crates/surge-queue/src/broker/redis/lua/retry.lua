-- Puts task ARGV[2] back to pending, due now, with no attempts, error,
-- result or expiry, if it is dead, failed or cancelled. Returns its state
-- before, or nil when there is no such task.
local id = ARGV[2]
local key = P .. 't:' .. id
local t = redis.call('HMGET', key, 'state', 'queue', 'prio')
local state, queue = t[1], t[2]
if not state then return false end
if state == 'dead' or state == 'failed' or state == 'cancelled' then
  redis.call('HSET', key, 'state', 'pending', 'run_at', NOW_S, 'attempts', '0')
  redis.call('HDEL', key, 'error', 'result', 'finished_at', 'expires_at', 'progress', 'cancel')
  redis.call('ZREM', P .. 'expiring', id)
  place(id, queue, tonumber(t[3]), NOW)
  count(queue, state, -1)
  count(queue, 'pending', 1)
end
done()
return state
