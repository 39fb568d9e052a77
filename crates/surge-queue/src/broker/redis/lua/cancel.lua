-- Cancels task ARGV[2] (expires_at ARGV[3]). Returns its state before
-- (waiting: now cancelled; running: cancellation requested; terminal:
-- unchanged), or nil when there is no such task.
local id, expires_at = ARGV[2], ARGV[3]
local key = P .. 't:' .. id
local t = redis.call('HMGET', key, 'state', 'queue', 'prio', 'run_at', 'unique', 'group')
local state, queue = t[1], t[2]
if not state then return false end
if state == 'running' then
  redis.call('HSET', key, 'cancel', '1')
elseif LIVE[state] then
  redis.call('ZREM', P .. 'ready:' .. queue, ready_member(tonumber(t[4]), id))
  redis.call('ZREM', P .. 'delayed:' .. queue, id)
  redis.call('HSET', key, 'state', 'cancelled', 'finished_at', NOW_S, 'expires_at', expires_at)
  ended(key, id, t[5], t[6], 'cancelled', expires_at)
  count(queue, state, -1)
  count(queue, 'cancelled', 1)
end
done()
return state
