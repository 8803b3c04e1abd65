-- rate_limit.lua: take `cost` tokens from a per-user bucket, or say how long to wait.
--
-- KEYS[1]  {ns:rate}:<user>  hash { tokens, ts }: tokens left and when they were counted
-- ARGV[1]  refill rate, tokens per second
-- ARGV[2]  bucket size (burst)
-- ARGV[3]  now, ms since the Unix epoch (the API process's clock)
-- ARGV[4]  cost: how many tokens this request takes (jobs enqueued); the caller rejects a
--          cost above the burst, which no wait could ever satisfy
--
-- Returns { 1, 0 } when taken; { 0, ms } when the caller must wait ms before retrying.
-- The key expires once the bucket would be full again, so idle users cost no memory.

local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])

local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
end

if tokens < cost then
  return { 0, math.ceil((cost - tokens) * 1000 / rate) }
end
tokens = tokens - cost
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(math.max(now, ts)))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) * 1000 / rate) + 1000)
return { 1, 0 }
