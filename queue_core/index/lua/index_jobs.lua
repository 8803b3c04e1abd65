-- index_jobs.lua: index jobs of one type and wake its workers, in one command.
--
-- KEYS[1]  {ns:type}:ready      zset (score = rank * 2^41 + due ms, member = id(16))
-- KEYS[2]  {ns:type}:scheduled  zset (score = due ms, member = id(16) .. rank(2))
-- KEYS[3]  {ns:type}:wake       zset: gets member 'w' when jobs are scheduled, which wakes
--          a worker blocked in BZPOPMIN (a scheduled job is not in the ready set yet)
-- ARGV[1]  the type's wake-up channel
-- ARGV[2]  how many ready pairs follow (n); then n score/member pairs for the ready set,
--          then score/member pairs for the scheduled set
--
-- Returns the number of members added. One script instead of a ZADD, a ZADD and a PUBLISH
-- in a pipeline: the enqueue path pays for one command, not three.

local n_ready = tonumber(ARGV[2])
local added = 0
local first_scheduled = 3 + 2 * n_ready
if n_ready > 0 then
  added = added + redis.call('ZADD', KEYS[1], unpack(ARGV, 3, first_scheduled - 1))
end
if #ARGV >= first_scheduled then
  added = added + redis.call('ZADD', KEYS[2], unpack(ARGV, first_scheduled, #ARGV))
  redis.call('ZADD', KEYS[3], 0, 'w')
end
redis.call('PUBLISH', ARGV[1], '1')
return added
