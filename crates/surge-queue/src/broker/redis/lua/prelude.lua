-- Prepended to every script body (see scripts.rs).
--
-- ARGV[1] is the key prefix ("{namespace}:"). Every timestamp is an integer
-- number of microseconds since the Unix epoch, and "now" is Redis TIME: the
-- one clock every decision uses. Numbers are written back with int(): Lua's
-- own number-to-text conversion would print 1.7e+15.
local P = ARGV[1]

local function int(x)
  return string.format('%.0f', x)
end

local clock = redis.call('TIME')
local NOW = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local NOW_S = int(NOW)

-- The fields of a task hash, in the order scripts return them; codec.rs
-- (FIELDS) decodes them in this order.
local FIELDS = {
  'kind', 'args', 'queue', 'prio', 'state', 'attempts', 'max_retries',
  'run_at', 'unique', 'group', 'options', 'worker', 'epoch', 'cancel',
  'progress', 'result', 'error', 'created_at', 'started_at', 'finished_at',
  'expires_at',
}
local F_QUEUE, F_STATE, F_ATTEMPTS, F_WORKER, F_EPOCH, F_PROGRESS, F_STARTED =
  3, 5, 6, 12, 13, 15, 19

local LIVE = { pending = true, scheduled = true, running = true, retrying = true }

-- Count changes per "state:queue", applied once per script by done().
local deltas = {}
local function count(queue, state, d)
  local f = state .. ':' .. queue
  deltas[f] = (deltas[f] or 0) + d
end

-- Queues that got a task due now: done() publishes one wake-up each.
local wake = {}

-- Terminal tasks to file for prune, added in one ZADD (every 500 tasks, to
-- stay well inside Lua's unpack limit).
local expiring = { 'ZADD', P .. 'expiring' }
local function flush_expiring()
  if #expiring > 2 then
    redis.call(unpack(expiring))
    expiring = { 'ZADD', P .. 'expiring' }
  end
end

local function done()
  flush_expiring()
  for f, d in pairs(deltas) do
    if d ~= 0 and redis.call('HINCRBY', P .. 'counts', f, d) == 0 then
      redis.call('HDEL', P .. 'counts', f)
    end
  end
  for queue in pairs(wake) do
    redis.call('PUBLISH', P .. 'wake', queue)
  end
end

-- A ready set orders by score = -priority, then by member: the run_at in 16
-- hex digits followed by the 32 hex digits of the id (UUIDv7, so by time).
local function ready_member(run_at, id)
  if run_at < 0 then run_at = 0 end
  return string.format('%016x', run_at) .. id
end

-- Puts a waiting task in its queue's ready set when due, else in the
-- queue's delayed set (promoted by claim.lua when due). Waiters are woken
-- when it is due, and when it is now the queue's earliest ETA (they sleep
-- until the earliest ETA they saw, which has just moved closer).
local function place(id, queue, prio, run_at)
  if run_at <= NOW then
    redis.call('ZADD', P .. 'ready:' .. queue, -prio, ready_member(run_at, id))
    wake[queue] = true
  else
    local dkey = P .. 'delayed:' .. queue
    redis.call('ZADD', dkey, run_at, id)
    if not wake[queue] and redis.call('ZRANGE', dkey, 0, 0)[1] == id then
      wake[queue] = true
    end
  end
end

-- Stores the submission a[i .. i+9] (codec.rs: push_new_task): id, kind,
-- args, queue, priority, run_at, max_retries, unique key, group, options;
-- '' stands for none. Returns the id that holds it and 1 if it was created.
local function enqueue(a, i)
  local id, queue, unique, group = a[i], a[i + 3], a[i + 7], a[i + 8]
  local key = P .. 't:' .. id
  if redis.call('EXISTS', key) == 1 then return id, 0 end
  if unique ~= '' then
    local ukey = P .. 'u:' .. unique
    local holder = redis.call('GET', ukey)
    if holder and LIVE[redis.call('HGET', P .. 't:' .. holder, 'state')] then
      return holder, 0
    end
    redis.call('SET', ukey, id)
  end
  local run_at = tonumber(a[i + 5])
  local state = 'pending'
  if run_at > NOW then state = 'scheduled' end
  local h = { 'HSET', key, 'kind', a[i + 1], 'args', a[i + 2], 'queue', queue,
    'prio', a[i + 4], 'state', state, 'attempts', '0', 'max_retries', a[i + 6],
    'run_at', a[i + 5], 'options', a[i + 9], 'epoch', '0', 'created_at', NOW_S }
  if unique ~= '' then
    h[#h + 1] = 'unique'
    h[#h + 1] = unique
  end
  if group ~= '' then
    h[#h + 1] = 'group'
    h[#h + 1] = group
    redis.call('ZADD', P .. 'g:' .. group, 0, id)
  end
  redis.call(unpack(h))
  redis.call('ZADD', P .. 'created', 0, id)
  place(id, queue, tonumber(a[i + 4]), run_at)
  count(queue, state, 1)
  return id, 1
end

-- What every move to a terminal state does besides setting the fields:
-- releases the unique key, settles the chord of the task's group (a success
-- counts down and the last one enqueues the callback; anything else fails
-- the chord by deleting it) and files the task for prune by expires_at.
local function ended(key, id, unique, group, state, expires_at)
  if unique then
    redis.call('HDEL', key, 'unique')
    local ukey = P .. 'u:' .. unique
    if redis.call('GET', ukey) == id then redis.call('DEL', ukey) end
  end
  if group then
    local ckey = P .. 'c:' .. group
    if state ~= 'succeeded' then
      redis.call('DEL', ckey)
    elseif redis.call('EXISTS', ckey) == 1
        and redis.call('HINCRBY', ckey, 'remaining', -1) <= 0 then
      local callback = redis.call('HMGET', ckey, '1', '2', '3', '4', '5', '6', '7', '8', '9', '10')
      redis.call('DEL', ckey)
      enqueue(callback, 1)
    end
  end
  if expires_at then
    expiring[#expiring + 1] = expires_at
    expiring[#expiring + 1] = id
    if #expiring >= 1002 then flush_expiring() end
  end
end
