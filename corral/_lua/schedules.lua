-- Register the periodic tasks of one queue: store each definition, and give a new
-- schedule its first last tick (now: ticks before it was registered are not missed).
-- KEYS from FIRST_OWN_KEY: the schedules hash, the last-ticks hash.
-- ARGV[2] '1' to remove the queue's other schedules (the app that serves a queue owns
-- its schedules: one dropped from the code stops ticking); ARGV[3..] pairs: name,
-- definition (JSON). A change is published on the wake channel (the operator caches
-- the schedules it ticks). Returns Redis's clock in ms.
local SCHEDULES, TICKS = KEYS[FIRST_OWN_KEY], KEYS[FIRST_OWN_KEY + 1]
local now_ms = clock_ms()
local kept, changed = {}, false
for i = 3, #ARGV, 2 do
  if redis.call('HGET', SCHEDULES, ARGV[i]) ~= ARGV[i + 1] then changed = true end
  redis.call('HSET', SCHEDULES, ARGV[i], ARGV[i + 1])
  redis.call('HSETNX', TICKS, ARGV[i], now_ms)
  kept[ARGV[i]] = true
end
if ARGV[2] == '1' then
  for _, name in ipairs(redis.call('HKEYS', SCHEDULES)) do
    if not kept[name] then
      redis.call('HDEL', SCHEDULES, name)
      redis.call('HDEL', TICKS, name)
      changed = true
    end
  end
end
if changed then publish(WAKE_CHANNEL, SCHEDULES_CHANGED) end
return now_ms
