-- Enqueue one or more tasks of one queue, with de-duplication by key.
-- KEYS[1..10] ready lists by priority 0..9, KEYS[11] scheduled zset, KEYS[12] dedupe-key hash.
-- ARGV[1] key prefix, ARGV[2] wake channel, then groups of six:
--   id, name, payload, priority, delay_ms, dedupe key ('' for none).
-- Returns the id that stands for each task: its own, or the live task with the same key.
local prefix, wake_channel = ARGV[1], ARGV[2]
local scheduled, dedupe = KEYS[11], KEYS[12]
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local live = {queued = true, scheduled = true, running = true}
local ids, wake = {}, false

for i = 3, #ARGV, 6 do
  local id, name, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local priority, delay_ms, key = tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4]), ARGV[i + 5]
  local existing = false
  if key ~= '' then
    local other = redis.call('HGET', dedupe, key)
    if other and live[redis.call('HGET', prefix .. 't:' .. other, 'state')] then
      existing = other
    end
  end
  if existing then
    ids[#ids + 1] = existing
  else
    local task_key = prefix .. 't:' .. id
    local ready_ms = now_ms + delay_ms
    local state = 'queued'
    if delay_ms > 0 then state = 'scheduled' end
    redis.call('HSET', task_key, 'name', name, 'payload', payload, 'prio', priority,
      'state', state, 'enq_ms', now_ms, 'ready_ms', ready_ms, 'attempts', 0)
    if delay_ms > 0 then
      redis.call('ZADD', scheduled, ready_ms, id)
      wake = true
    elseif redis.call('RPUSH', KEYS[priority + 1], id) == 1 then
      -- Workers that found the queue empty wait for this; a non-empty list needs no wake.
      wake = true
    end
    if key ~= '' then
      redis.call('HSET', dedupe, key, id)
      redis.call('HSET', task_key, 'key', key)
    end
    ids[#ids + 1] = id
  end
end
if wake then redis.call('PUBLISH', wake_channel, '') end
return ids
