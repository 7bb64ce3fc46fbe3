-- Enqueue one or more tasks of one queue, with de-duplication by key.
-- KEYS from FIRST_OWN_KEY: the record key of each task, in order.
-- ARGV[2..] groups of seven: id, name, payload, priority, delay_ms, dedupe key ('' for
-- none), limits ('' for none; the form is corral/limits.py's).
-- Returns the id that stands for each task: its own, or the live task with the same key.
local now_ms = clock_ms()
local ids, wake = {}, false

local GROUP = 7
for i = 2, #ARGV, GROUP do
  local record = KEYS[FIRST_OWN_KEY + (i - 2) / GROUP]
  local id, woke = enqueue_task(record, ARGV[i], ARGV[i + 1], ARGV[i + 2],
    priority_of(ARGV[i + 3]), tonumber(ARGV[i + 4]), ARGV[i + 5], ARGV[i + 6], now_ms)
  ids[#ids + 1] = id
  wake = wake or woke
end
if wake then publish(WAKE_CHANNEL, '') end
return ids
