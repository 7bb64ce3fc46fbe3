-- Record the latest progress of running tasks, batched: one call per queue per flush.
-- Records from FIRST_OWN_KEY on; ARGV[2i], ARGV[2i+1] the fraction and message of the
-- i-th record (i from 1). A record that is no longer running (finished, or expired and
-- gone) is left alone, so a late flush never brings a deleted record back.
-- Returns how many were written.
local written = 0
for i = 1, #KEYS - FIRST_OWN_KEY + 1 do
  local record = KEYS[FIRST_OWN_KEY + i - 1]
  if redis.call('HGET', record, 'state') == 'running' then
    redis.call('HSET', record, 'progress', ARGV[2 * i], 'progress_message', ARGV[2 * i + 1])
    written = written + 1
  end
end
return written
