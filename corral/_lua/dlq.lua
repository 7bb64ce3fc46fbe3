-- Dead-letter queue maintenance for one queue, one bounded chunk per call (the caller
-- loops): the dead set is a zset, so each id costs O(log n), never a scan.
-- ARGV[2] 'requeue' or 'purge', ARGV[3] 'ids' or 'all'.
--   ids: ARGV[4..] the ids, with their record keys in KEYS from FIRST_OWN_KEY.
--   all: ARGV[4] the highest score to touch ('' on the first call: the highest now, so
--        that tasks dying again meanwhile are not seen twice), ARGV[5] offset (the
--        entries earlier calls left in place), ARGV[6] chunk size. The ids come from
--        the dead set itself.
-- Requeued tasks start again with a fresh attempt count; a record with no payload has
-- nothing to run and stays dead.
-- Returns {changed, left in place, not in the dead-letter queue, highest score}.
local op, mode = ARGV[2], ARGV[3]
local ids, records, until_score = {}, {}, ''
if mode == 'ids' then
  for i = 4, #ARGV do
    ids[#ids + 1] = ARGV[i]
    records[#records + 1] = KEYS[FIRST_OWN_KEY + i - 4]
  end
else
  until_score = ARGV[4]
  if until_score == '' then
    local last = redis.call('ZRANGE', DEAD, -1, -1, 'WITHSCORES')
    until_score = last[2] or '0'
  end
  ids = redis.call('ZRANGEBYSCORE', DEAD, '-inf', until_score, 'LIMIT', tonumber(ARGV[5]),
    tonumber(ARGV[6]))
  for i = 1, #ids do records[i] = task_key(ids[i]) end
end

local changed, kept, missing = 0, 0, 0
for i = 1, #ids do
  local id, record = ids[i], records[i]
  if not redis.call('ZSCORE', DEAD, id) then
    missing = missing + 1
  elseif op == 'purge' then
    redis.call('DEL', record)
    redis.call('ZREM', DEAD, id)
    changed = changed + 1
  else
    local f = redis.call('HMGET', record, 'payload', 'prio')
    if f[1] then
      redis.call('HSET', record, 'state', STATE_QUEUED, 'attempts', 0)
      redis.call('HDEL', record, 'error', 'reason', 'token', 'dead_ms', 'finished_ms')
      redis.call('PERSIST', record) -- a queued task never expires
      redis.call('RPUSH', ready_list(f[2]), id)
      redis.call('ZREM', DEAD, id)
      changed = changed + 1
    elseif redis.call('EXISTS', record) == 0 then
      redis.call('ZREM', DEAD, id) -- the record expired: nothing is left of it
      missing = missing + 1
    else
      kept = kept + 1
    end
  end
end
if op == 'requeue' and changed > 0 then publish(WAKE_CHANNEL, '') end
return {changed, kept, missing, until_score}
