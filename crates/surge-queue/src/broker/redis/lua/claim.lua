-- Claims up to ARGV[3] ready tasks of the queues ARGV[4..] (distinct) for
-- worker ARGV[2], in claim order: priority desc, run_at, id. Returns, per
-- task, its id then its FIELDS as stored after the claim; nothing when the
-- worker's lease is expired or unknown.
local worker, limit = ARGV[2], tonumber(ARGV[3])
local lease = redis.call('ZSCORE', P .. 'leases', worker)
if not lease or tonumber(lease) <= NOW then return {} end

-- Promote due tasks from the delayed sets, at most 256 per call so a
-- backlog of thousands is moved over several claims, never all at once.
local budget = 256
for q = 4, #ARGV do
  if budget <= 0 then break end
  local dkey = P .. 'delayed:' .. ARGV[q]
  local due = redis.call('ZRANGEBYSCORE', dkey, '-inf', NOW, 'LIMIT', 0, budget)
  if #due > 0 then
    local add = { 'ZADD', P .. 'ready:' .. ARGV[q] }
    for _, id in ipairs(due) do
      local t = redis.call('HMGET', P .. 't:' .. id, 'prio', 'run_at')
      if t[1] then
        add[#add + 1] = -tonumber(t[1])
        add[#add + 1] = ready_member(tonumber(t[2]), id)
      end
    end
    if #add > 2 then redis.call(unpack(add)) end
    redis.call('ZREM', dkey, unpack(due))
    budget = budget - #due
  end
end

-- The members to claim, in order. One queue: pop its head. Several: merge
-- their heads (score, then member) and remove what was taken.
local picked = {}
if #ARGV == 4 then
  local popped = redis.call('ZPOPMIN', P .. 'ready:' .. ARGV[4], limit)
  for j = 1, #popped, 2 do picked[#picked + 1] = popped[j] end
else
  local heads = {}
  for q = 4, #ARGV do
    local r = redis.call('ZRANGE', P .. 'ready:' .. ARGV[q], 0, limit - 1, 'WITHSCORES')
    if #r > 0 then heads[#heads + 1] = { key = P .. 'ready:' .. ARGV[q], r = r, pos = 1, taken = {} } end
  end
  while #picked < limit do
    local best, score, member
    for _, h in ipairs(heads) do
      if h.pos < #h.r then
        local m, s = h.r[h.pos], tonumber(h.r[h.pos + 1])
        if not best or s < score or (s == score and m < member) then
          best, score, member = h, s, m
        end
      end
    end
    if not best then break end
    picked[#picked + 1] = member
    best.taken[#best.taken + 1] = member
    best.pos = best.pos + 2
  end
  for _, h in ipairs(heads) do
    if #h.taken > 0 then redis.call('ZREM', h.key, unpack(h.taken)) end
  end
end

local out = {}
local running = { 'SADD', P .. 'running:' .. worker }
for _, member in ipairs(picked) do
  local id = string.sub(member, 17)
  local key = P .. 't:' .. id
  local t = redis.call('HMGET', key, unpack(FIELDS))
  local state = t[F_STATE]
  if state and state ~= 'running' and LIVE[state] then
    local attempts = int(tonumber(t[F_ATTEMPTS]) + 1)
    local epoch = int(tonumber(t[F_EPOCH]) + 1)
    redis.call('HSET', key, 'state', 'running', 'worker', worker,
      'started_at', NOW_S, 'attempts', attempts, 'epoch', epoch)
    if t[F_PROGRESS] then redis.call('HDEL', key, 'progress') end
    t[F_STATE], t[F_WORKER], t[F_STARTED] = 'running', worker, NOW_S
    t[F_ATTEMPTS], t[F_EPOCH], t[F_PROGRESS] = attempts, epoch, false
    count(t[F_QUEUE], state, -1)
    count(t[F_QUEUE], 'running', 1)
    running[#running + 1] = id
    out[#out + 1] = id
    for k = 1, #FIELDS do out[#out + 1] = t[k] end
  end
end
if #running > 2 then redis.call(unpack(running)) end
done()
return out
