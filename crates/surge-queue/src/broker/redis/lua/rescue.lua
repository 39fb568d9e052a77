-- Rescues the running tasks of expired leases, at most ARGV[3] of them:
-- back to retrying, due now, with error ARGV[4], or dead when no attempt is
-- left. Forgets workers whose lease expired more than ARGV[2] microseconds
-- ago and hold nothing. Returns requeued, dead, 1 if the budget ran out
-- (call again), then the ids of the dead tasks.
local forget, budget, err = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local requeued, dead = 0, 0
local dead_ids = {}
local expired = redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', NOW, 'WITHSCORES')
for j = 1, #expired, 2 do
  local worker, lease = expired[j], tonumber(expired[j + 1])
  local rkey = P .. 'running:' .. worker
  if budget > 0 then
    local ids = redis.call('SPOP', rkey, budget)
    budget = budget - #ids
    for _, id in ipairs(ids) do
      local key = P .. 't:' .. id
      local t = redis.call('HMGET', key, 'state', 'worker', 'queue', 'prio', 'attempts',
        'max_retries', 'unique', 'group')
      if t[1] == 'running' and t[2] == worker then
        local queue = t[3]
        if tonumber(t[5]) > tonumber(t[6]) then
          -- Kept a week for a person to look at (as the engine keeps dead
          -- tasks), then pruned.
          local keep = int(NOW + 7 * 86400 * 1000000)
          redis.call('HSET', key, 'state', 'dead', 'error', err, 'finished_at', NOW_S,
            'expires_at', keep)
          ended(key, id, t[7], t[8], 'dead', keep)
          count(queue, 'dead', 1)
          dead = dead + 1
          dead_ids[#dead_ids + 1] = id
        else
          redis.call('HSET', key, 'state', 'retrying', 'error', err, 'run_at', NOW_S)
          place(id, queue, tonumber(t[4]), NOW)
          count(queue, 'retrying', 1)
          requeued = requeued + 1
        end
        count(queue, 'running', -1)
      end
    end
  end
  if lease + forget < NOW and redis.call('EXISTS', rkey) == 0 then
    redis.call('ZREM', P .. 'leases', worker)
    redis.call('HDEL', P .. 'workers', worker)
    redis.call('HDEL', P .. 'heartbeats', worker)
  end
end
done()
local more = 0
if budget <= 0 then more = 1 end
local reply = { requeued, dead, more }
for _, id in ipairs(dead_ids) do reply[#reply + 1] = id end
return reply
