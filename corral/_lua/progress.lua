-- Record the latest progress of running tasks, batched: one call per queue per flush.
-- KEYS[1..n] the task records; ARGV[2i-1], ARGV[2i] fraction and message of KEYS[i].
-- A record that is no longer running (finished, or expired and gone) is left alone,
-- so a late flush never brings a deleted record back. Returns how many were written.
local written = 0
for i = 1, #KEYS do
  if redis.call('HGET', KEYS[i], 'state') == 'running' then
    redis.call('HSET', KEYS[i], 'progress', ARGV[2 * i - 1], 'progress_message', ARGV[2 * i])
    written = written + 1
  end
end
return written
