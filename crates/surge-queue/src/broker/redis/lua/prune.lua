-- Deletes terminal tasks whose expires_at has passed, looking at most at
-- ARGV[2] of them. Returns how many it deleted and how many it looked at.
local ids = redis.call('ZRANGEBYSCORE', P .. 'expiring', '-inf', NOW, 'LIMIT', 0, tonumber(ARGV[2]))
local deleted = 0
for _, id in ipairs(ids) do
  local key = P .. 't:' .. id
  local t = redis.call('HMGET', key, 'state', 'queue', 'group')
  if t[1] and not LIVE[t[1]] then
    redis.call('DEL', key)
    redis.call('ZREM', P .. 'created', id)
    if t[3] then redis.call('ZREM', P .. 'g:' .. t[3], id) end
    count(t[2], t[1], -1)
    deleted = deleted + 1
  end
end
if #ids > 0 then redis.call('ZREM', P .. 'expiring', unpack(ids)) end
done()
return { deleted, #ids }
