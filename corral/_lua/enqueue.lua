-- Enqueue one or more tasks of one queue, with de-duplication by key.
-- KEYS from FIRST_OWN_KEY: the record key of each task, in order.
-- ARGV[2..] groups of six: id, name, payload, priority, delay_ms, dedupe key ('' for none).
-- Returns the id that stands for each task: its own, or the live task with the same key.
local now_ms = clock_ms()
local live = {[STATE_QUEUED] = true, [STATE_SCHEDULED] = true, [STATE_PREFETCHED] = true,
  [STATE_RUNNING] = true}
local ids, wake = {}, false

for i = 2, #ARGV, 6 do
  local id, name, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local priority, delay_ms, key = priority_of(ARGV[i + 3]), tonumber(ARGV[i + 4]), ARGV[i + 5]
  local record = KEYS[FIRST_OWN_KEY + (i - 2) / 6]
  local existing = false
  if key ~= '' then
    local other = redis.call('HGET', DEDUPE, key)
    if other and live[redis.call('HGET', task_key(other), 'state')] then
      existing = other
    end
  end
  if existing then
    ids[#ids + 1] = existing
  else
    local ready_ms = now_ms + delay_ms
    local state = STATE_QUEUED
    if delay_ms > 0 then state = STATE_SCHEDULED end
    redis.call('HSET', record, 'name', name, 'payload', payload, 'prio', priority,
      'state', state, 'enq_ms', now_ms, 'ready_ms', ready_ms, 'attempts', 0)
    if delay_ms > 0 then
      redis.call('ZADD', SCHEDULED, ready_ms, id)
      wake = true
    elseif redis.call('RPUSH', ready_list(priority), id) == 1 then
      -- Workers that found the queue empty wait for this; a non-empty list needs no wake.
      wake = true
    end
    if key ~= '' then
      redis.call('HSET', DEDUPE, key, id)
      redis.call('HSET', record, 'key', key)
    end
    ids[#ids + 1] = id
  end
end
if wake then publish(WAKE_CHANNEL, '') end
return ids
