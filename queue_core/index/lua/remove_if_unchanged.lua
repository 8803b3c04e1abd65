-- remove_if_unchanged.lua: remove members whose score is still the one the caller saw.
--
-- KEYS[1]  a zset of the index ({ns:type}:ready or {ns:type}:scheduled)
-- ARGV     member, score, member, score, ...  (score as the caller read it)
--
-- Returns the number of members removed. The reconciler decides a member is stale from a
-- snapshot; if a worker re-indexed the job meanwhile (a retry, a release), its score changed
-- and the fresh entry must survive.

local removed = 0
for i = 1, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return removed
