-- publish_events.lua: tell live readers of job changes, many at once, in one command.
--
-- KEYS     none (pub/sub channels are not keys)
-- ARGV     channel, payload, channel, payload, ...  (channels from queue_core.keys)
--
-- Returns the number of messages published. A channel nobody listens to costs Redis one
-- dictionary lookup; the worker pays one command per batch instead of one per message.

for i = 1, #ARGV, 2 do
  redis.call('PUBLISH', ARGV[i], ARGV[i + 1])
end
return #ARGV / 2
