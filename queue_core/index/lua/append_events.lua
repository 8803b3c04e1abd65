-- append_events.lua: append what handlers emitted to their jobs' streams and announce each
-- event, in one command per job type.
--
-- KEYS     the event streams ({ns:type}:events:<job id>), all of one job type
-- ARGV[1]  MAXLEN: events a stream keeps at most (the oldest are trimmed, approximately)
-- ARGV[2]  TTL in seconds: a stream expires this long after its last event
-- ARGV[3..] triples: index into KEYS (1-based), the job's channel, the event as JSON text
--
-- Returns the number of events appended. Each is published on its job's channel as
-- {"kind":"event","id":<stream id>,"data":<the event>} so that a live reader needs no
-- blocking read of its own; a reader that comes late reads the stream (XRANGE).

local maxlen, ttl = ARGV[1], tonumber(ARGV[2])
local touched = {}
for i = 3, #ARGV, 3 do
  local key = KEYS[tonumber(ARGV[i])]
  local id = redis.call('XADD', key, 'MAXLEN', '~', maxlen, '*', 'd', ARGV[i + 2])
  redis.call('PUBLISH', ARGV[i + 1], '{"kind":"event","id":"' .. id .. '","data":' .. ARGV[i + 2] .. '}')
  touched[key] = true
end
for key in pairs(touched) do
  redis.call('EXPIRE', key, ttl)
end
return (#ARGV - 2) / 3
