-- claim_ready.lua: promote due scheduled jobs, then pop a batch of ready ids, atomically.
--
-- KEYS[1]  {ns:type}:scheduled  zset  score = due ms since EPOCH, member = id(16) .. rank(2)
-- KEYS[2]  {ns:type}:ready      zset  score = rank * 2^41 + due ms, member = id(16)
-- KEYS[3]  {ns:type}:epoch      string, present while this index is known to be complete
-- ARGV[1]  now, ms since EPOCH (the worker's estimate of Postgres' clock)
-- ARGV[2]  how many ids to pop at most
-- ARGV[3]  how many due scheduled jobs to promote at most in this call
--
-- Returns { wait_ms, id, score, id, score, ... }: popped ids in claim order with their ready
-- scores (so a caller that cannot confirm them can put them back). wait_ms is 0 when ready
-- jobs remain, the ms until the next scheduled job is due, -1 when nothing is scheduled, and
-- -2 (with no ids) when the epoch key is gone: Redis lost this index (restart, FLUSHALL) and
-- it must be rebuilt from Postgres before it can be trusted again.
-- Scores pass through string.format('%.0f'): Lua's default number format keeps only 14
-- digits, and these scores have up to 16.

if redis.call('EXISTS', KEYS[3]) == 0 then
  return { -2 }
end

local now = tonumber(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[3]))
if #due > 0 then
  local adds, rems = {}, {}
  for i = 1, #due, 2 do
    local member = due[i]
    local rank = string.byte(member, 17) * 256 + string.byte(member, 18)
    adds[#adds + 1] = string.format('%.0f', rank * 2199023255552 + tonumber(due[i + 1]))
    adds[#adds + 1] = string.sub(member, 1, 16)
    rems[#rems + 1] = member
  end
  redis.call('ZADD', KEYS[2], unpack(adds))
  redis.call('ZREM', KEYS[1], unpack(rems))
end

local result = { 0 }
local popped = redis.call('ZPOPMIN', KEYS[2], tonumber(ARGV[2]))
for i = 1, #popped do
  result[#result + 1] = popped[i]
end

if redis.call('ZCARD', KEYS[2]) == 0 then
  local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if #nxt == 0 then
    result[1] = -1
  else
    result[1] = math.max(tonumber(nxt[2]) - now, 1)
  end
end
return result
