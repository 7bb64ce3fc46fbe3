-- Cancel one task. Queued: its record says so and its id goes into the cancelled set;
-- the id stays in its ready list (removing it would scan the list) and the claim
-- script drops it. Scheduled: it leaves the scheduled set. Either way it never runs.
-- Prefetched or running: its worker is told on the cancel channel (and again at its next heartbeat).
-- KEYS[FIRST_OWN_KEY] the task's record. ARGV[2] id, ARGV[3] ttl_ms of the record.
-- Returns 1 when the task was queued, scheduled, prefetched or running and is now cancelled, else 0.
local id, ttl_ms = ARGV[2], tonumber(ARGV[3])
local record = KEYS[FIRST_OWN_KEY]
local f = redis.call('HMGET', record, 'state', 'key', 'limit')
if CLAIMED[f[1]] then
  redis.call('HSET', record, 'state', STATE_CANCELLED)
  publish(CANCEL_CHANNEL, id)
  return 1
end
if f[1] == STATE_QUEUED then
  redis.call('SADD', CANCELLED, id)
elseif f[1] == STATE_SCHEDULED then
  redis.call('ZREM', SCHEDULED, id)
else
  return 0
end
if f[3] then redis.call('ZREM', LIMITED, id) end -- a limit held it back: not any more
redis.call('HSET', record, 'state', STATE_CANCELLED, 'finished_ms', clock_ms())
retire(record, ttl_ms)
if f[2] and redis.call('HGET', DEDUPE, f[2]) == id then redis.call('HDEL', DEDUPE, f[2]) end
publish(DONE_CHANNEL, id)
return 1
