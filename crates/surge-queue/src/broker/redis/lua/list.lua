-- One page of `list`: walks index ARGV[2] (a sorted set of ids, newest
-- last) downwards from ARGV[3] ('+' or '(' .. id), looking at most at ARGV[4]
-- ids, and keeps those matching state ARGV[6], kind ARGV[7] and queue
-- ARGV[8] ('' matches any), at most ARGV[5]. Returns the id to continue
-- after ('' when the index is exhausted), then per task its id and FIELDS.
local scan, want = tonumber(ARGV[4]), tonumber(ARGV[5])
local state, kind, queue = ARGV[6], ARGV[7], ARGV[8]
local filtered = state ~= '' or kind ~= '' or queue ~= ''
local ids = redis.call('ZRANGE', P .. ARGV[2], ARGV[3], '-', 'BYLEX', 'REV', 'LIMIT', 0, scan)
local out = { '' }
local found = 0
for _, id in ipairs(ids) do
  local key = P .. 't:' .. id
  local keep = true
  if filtered then
    local t = redis.call('HMGET', key, 'state', 'kind', 'queue')
    keep = (state == '' or t[1] == state) and (kind == '' or t[2] == kind)
      and (queue == '' or t[3] == queue)
  end
  if keep then
    local t = redis.call('HMGET', key, unpack(FIELDS))
    if t[F_STATE] then
      out[#out + 1] = id
      for k = 1, #FIELDS do out[#out + 1] = t[k] end
      found = found + 1
      if found >= want then
        out[1] = id
        return out
      end
    end
  end
end
if #ids >= scan then out[1] = ids[#ids] end
return out
