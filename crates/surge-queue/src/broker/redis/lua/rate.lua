-- Takes a token from the bucket ARGV[2] holding at most ARGV[4] tokens and
-- refilling at ARGV[3] per second (a missing bucket is full). Returns 0 when
-- a token was taken, else the microseconds until one will be there.
local key = P .. 'rate:' .. ARGV[2]
local rate, burst = tonumber(ARGV[3]), tonumber(ARGV[4])
local b = redis.call('HMGET', key, 'tokens', 'at')
local tokens, at = tonumber(b[1]) or burst, tonumber(b[2]) or NOW
tokens = math.min(burst, tokens + math.max(0, NOW - at) * rate / 1000000)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.max(1, math.ceil((1 - tokens) * 1000000 / rate))
end
redis.call('HSET', key, 'tokens', string.format('%.17g', tokens), 'at', NOW_S)
-- Gone once full again (a missing bucket is a full one); at most 30 days.
local full_ms = math.ceil((burst - tokens) * 1000 / rate) + 1000
redis.call('PEXPIRE', key, int(math.min(full_ms, 2592000000)))
return wait
