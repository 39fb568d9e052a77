-- Creates the chord of group ARGV[2] with ARGV[3] members and the callback
-- submission ARGV[4 .. 13], kept as hash fields '1' .. '10'. A chord of no
-- members has nothing to wait for: its callback is enqueued now.
local ckey = P .. 'c:' .. ARGV[2]
redis.call('DEL', ckey)
if tonumber(ARGV[3]) == 0 then
  enqueue(ARGV, 4)
else
  local h = { 'HSET', ckey, 'remaining', ARGV[3] }
  for k = 1, 10 do
    h[#h + 1] = tostring(k)
    h[#h + 1] = ARGV[3 + k]
  end
  redis.call(unpack(h))
end
done()
return 1
