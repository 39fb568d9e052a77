-- Applies a batch of completions. ARGV[2..] holds, per completion: id,
-- epoch, worker, outcome, payload, at, n, then n follow-up submissions of 10
-- fields each. outcome is a terminal state (payload: the result or error;
-- at: expires_at), 'retrying' (payload: the error; at: run_at) or 'requeue'
-- (at: run_at). Returns 1 or 0 per completion: whether it applied (the task
-- is running with this epoch and worker, and the worker's lease is valid).
local valid = {}
local function lease_ok(worker)
  local v = valid[worker]
  if v == nil then
    local lease = redis.call('ZSCORE', P .. 'leases', worker)
    v = lease ~= false and tonumber(lease) > NOW
    valid[worker] = v
  end
  return v
end

-- Per worker, the SREM of its finished tasks from its running set (flushed
-- every 1000 ids to stay well inside Lua's unpack limit).
local freed = {}
local function free(worker, id)
  local f = freed[worker]
  if not f then
    f = { 'SREM', P .. 'running:' .. worker }
    freed[worker] = f
  end
  f[#f + 1] = id
  if #f >= 1002 then
    redis.call(unpack(f))
    freed[worker] = nil
  end
end

local out = {}
local i = 2
while i <= #ARGV do
  local id, epoch, worker, outcome, payload, at =
    ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  local follow_ups, n = i + 7, tonumber(ARGV[i + 6])
  i = follow_ups + 10 * n
  local applied = 0
  if lease_ok(worker) then
    local key = P .. 't:' .. id
    local t = redis.call('HMGET', key, 'state', 'epoch', 'worker', 'queue', 'prio',
      'attempts', 'unique', 'group')
    if t[1] == 'running' and t[2] == epoch and t[3] == worker then
      applied = 1
      local queue, state = t[4], outcome
      if outcome == 'retrying' then
        redis.call('HSET', key, 'state', state, 'error', payload, 'run_at', at)
        place(id, queue, tonumber(t[5]), tonumber(at))
      elseif outcome == 'requeue' then
        local run_at = tonumber(at)
        state = 'pending'
        if run_at > NOW then state = 'scheduled' end
        local attempts = math.max(0, tonumber(t[6]) - 1)
        redis.call('HSET', key, 'state', state, 'run_at', at, 'attempts', int(attempts))
        place(id, queue, tonumber(t[5]), run_at)
      else
        local h = { 'HSET', key, 'state', state, 'finished_at', NOW_S, 'expires_at', at }
        if state == 'succeeded' then
          h[#h + 1] = 'result'
          h[#h + 1] = payload
        elseif state ~= 'cancelled' then
          h[#h + 1] = 'error'
          h[#h + 1] = payload
        end
        redis.call(unpack(h))
        ended(key, id, t[7], t[8], state, at)
      end
      count(queue, 'running', -1)
      count(queue, state, 1)
      free(worker, id)
      for k = 0, n - 1 do enqueue(ARGV, follow_ups + 10 * k) end
    end
  end
  out[#out + 1] = applied
end
for _, f in pairs(freed) do redis.call(unpack(f)) end
done()
return out
