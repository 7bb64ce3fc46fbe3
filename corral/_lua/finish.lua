-- Record the outcomes of a batch of claimed tasks in one atomic step.
-- KEYS[1..10] ready lists, KEYS[11] scheduled, KEYS[12] leased, KEYS[13] dead, KEYS[14] dedupe hash.
-- ARGV[1] key prefix, ARGV[2] done channel, ARGV[3] wake channel, then groups of five:
--   id, lease token, outcome, data, number
-- outcome: s succeeded (data result, number ttl_ms), f failed (data error, ttl_ms),
--          d dead (data error), c cancelled (data error or '', ttl_ms),
--          r retry (data error, number delay_ms), q requeue (number 1 to give the attempt back).
-- A task whose token no longer matches was taken over by another worker: it is left
-- alone and its id returned, so the caller can count the duplicate.
local prefix, done_channel, wake_channel = ARGV[1], ARGV[2], ARGV[3]
local scheduled, leased, dead, dedupe = KEYS[11], KEYS[12], KEYS[13], KEYS[14]
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local final_state = {s = 'succeeded', f = 'failed', d = 'dead', c = 'cancelled'}
local data_field = {s = 'result', f = 'error', d = 'error', c = 'error', r = 'error'}
local done, stale, released = {}, {}, {}
local wake = false

for i = 4, #ARGV, 5 do
  local id, token, outcome, data, number = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], tonumber(ARGV[i + 4])
  local task_key = prefix .. 't:' .. id
  local f = redis.call('HMGET', task_key, 'token', 'state', 'key', 'prio')
  if f[1] ~= token then
    stale[#stale + 1] = id
  else
    released[#released + 1] = id
    -- A cancel request wins over whatever the attempt ended with.
    if f[2] == 'cancelled' then
      outcome, data = 'c', ''
      if number == nil or number <= 0 then number = 86400000 end
    end
    redis.call('HDEL', task_key, 'token')
    if data_field[outcome] and data ~= '' then
      redis.call('HSET', task_key, data_field[outcome], data)
    end
    local state = final_state[outcome]
    if state then
      redis.call('HSET', task_key, 'state', state, 'finished_ms', now_ms)
      if outcome == 'd' then
        redis.call('RPUSH', dead, id)
      else
        redis.call('PEXPIRE', task_key, number)
      end
      if f[3] and redis.call('HGET', dedupe, f[3]) == id then redis.call('HDEL', dedupe, f[3]) end
      done[#done + 1] = id
    elseif outcome == 'r' then
      redis.call('HSET', task_key, 'state', 'scheduled', 'ready_ms', now_ms + number)
      redis.call('ZADD', scheduled, now_ms + number, id)
      wake = true
    else
      local p = tonumber(f[4]) or 0
      if p < 0 or p > 9 then p = 0 end
      redis.call('HSET', task_key, 'state', 'queued')
      if number == 1 then redis.call('HINCRBY', task_key, 'attempts', -1) end
      redis.call('LPUSH', KEYS[math.floor(p) + 1], id)
      wake = true
    end
  end
end
if #released > 0 then redis.call('ZREM', leased, unpack(released)) end
if #done > 0 then redis.call('PUBLISH', done_channel, table.concat(done, ' ')) end
if wake then redis.call('PUBLISH', wake_channel, '') end
return stale
