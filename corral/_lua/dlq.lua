-- Dead-letter queue maintenance for one queue, atomically.
-- KEYS[1..10] ready lists, KEYS[11] dead list.
-- ARGV[1] key prefix, ARGV[2] 'requeue' or 'purge', ARGV[3] wake channel, then ids
-- (none: every dead task). Requeued tasks start again with a fresh attempt count.
-- Returns the number of tasks requeued or purged.
local prefix, op = ARGV[1], ARGV[2]
local dead = KEYS[11]
local ids = {}
if #ARGV > 3 then
  for i = 4, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  ids = redis.call('LRANGE', dead, 0, -1)
end
local n = 0
for i = 1, #ids do
  local id = ids[i]
  if redis.call('LREM', dead, 0, id) > 0 then
    local task_key = prefix .. 't:' .. id
    if op == 'purge' then
      redis.call('DEL', task_key)
      n = n + 1
    elseif redis.call('HEXISTS', task_key, 'payload') == 1 then
      local p = tonumber(redis.call('HGET', task_key, 'prio')) or 0
      if p < 0 or p > 9 then p = 0 end
      redis.call('HSET', task_key, 'state', 'queued', 'attempts', 0)
      redis.call('HDEL', task_key, 'error', 'reason', 'token')
      redis.call('RPUSH', KEYS[math.floor(p) + 1], id)
      n = n + 1
    else
      -- Nothing to run: it stays dead.
      redis.call('RPUSH', dead, id)
    end
  end
end
if op == 'requeue' and n > 0 then redis.call('PUBLISH', ARGV[3], '') end
return n
