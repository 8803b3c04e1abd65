-- finish_rebuild.lua: mark a job type's index complete, unless Redis lost data meanwhile.
--
-- KEYS[1]  {ns:type}:rebuild  string: the token set when the rebuild began
-- KEYS[2]  {ns:type}:epoch    string: present while the index is known to be complete
-- ARGV[1]  the rebuild's token
--
-- Returns 1 when the epoch was set; 0 when the marker is gone or changed (a FLUSHALL or a
-- restart during the rebuild): the index may miss jobs, so it stays untrusted.

if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[1])
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
