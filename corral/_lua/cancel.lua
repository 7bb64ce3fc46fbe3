-- Cancel one task. Queued or scheduled: it will never run. Running: its
-- worker is told on the cancel channel (and again at its next heartbeat).
-- KEYS[1..10] ready lists, KEYS[11] scheduled, KEYS[12] dedupe hash.
-- ARGV[1] key prefix, ARGV[2] id, ARGV[3] ttl_ms, ARGV[4] cancel channel, ARGV[5] done channel.
-- Returns 1 when the task was queued, scheduled or running and is now cancelled, else 0.
local prefix, id, ttl_ms = ARGV[1], ARGV[2], tonumber(ARGV[3])
local task_key = prefix .. 't:' .. id
local f = redis.call('HMGET', task_key, 'state', 'prio', 'key')
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if f[1] == 'running' then
  redis.call('HSET', task_key, 'state', 'cancelled')
  redis.call('PUBLISH', ARGV[4], id)
  return 1
end
if f[1] == 'queued' then
  local p = tonumber(f[2]) or 0
  if p >= 0 and p <= 9 then redis.call('LREM', KEYS[math.floor(p) + 1], 0, id) end
elseif f[1] == 'scheduled' then
  redis.call('ZREM', KEYS[11], id)
else
  return 0
end
redis.call('HSET', task_key, 'state', 'cancelled', 'finished_ms', now_ms)
redis.call('PEXPIRE', task_key, ttl_ms)
if f[3] and redis.call('HGET', KEYS[12], f[3]) == id then redis.call('HDEL', KEYS[12], f[3]) end
redis.call('PUBLISH', ARGV[5], id)
return 1
