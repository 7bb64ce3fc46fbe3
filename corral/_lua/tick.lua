-- Enqueue the due ticks of one periodic task, each tick exactly once however many
-- workers (and the operator) call this for the same tick: a tick is enqueued only when
-- it is later than the schedule's last tick, which moves forward with it.
-- KEYS from FIRST_OWN_KEY: the schedules hash, the last-ticks hash, then the record key
-- of each tick's task. ARGV[2] schedule name, ARGV[3] task name, ARGV[4] payload,
-- ARGV[5] priority, ARGV[6] limits ('' for none), ARGV[7..] pairs: tick_ms, task id
-- (oldest tick first).
-- Returns {last tick ms, Redis's clock ms, ids enqueued...}; last tick -1 when the
-- schedule is not registered (removed by a newer version of the app: not ticked).
local SCHEDULES, TICKS = KEYS[FIRST_OWN_KEY], KEYS[FIRST_OWN_KEY + 1]
local name, task, payload, priority = ARGV[2], ARGV[3], ARGV[4], priority_of(ARGV[5])
local limit = ARGV[6]
local now_ms = clock_ms()
if redis.call('HEXISTS', SCHEDULES, name) == 0 then return {-1, now_ms} end

local last_ms = tonumber(redis.call('HGET', TICKS, name))
if last_ms == nil then
  -- Registration sets the first last tick; if it is gone, ticks count from now.
  redis.call('HSET', TICKS, name, now_ms)
  return {now_ms, now_ms}
end
local reply, wake = {0, now_ms}, false
for i = 7, #ARGV, 2 do
  local tick_ms = tonumber(ARGV[i])
  -- A tick in the future (a caller whose clock runs ahead) waits for its time.
  if tick_ms and tick_ms > last_ms and tick_ms <= now_ms then
    local id = ARGV[i + 1]
    local record = KEYS[FIRST_OWN_KEY + 2 + (i - 7) / 2]
    local _, woke = enqueue_task(record, id, task, payload, priority, 0, '', limit, now_ms)
    redis.call('HSET', record, 'schedule', name, 'tick_ms', tick_ms)
    last_ms = tick_ms
    reply[#reply + 1] = id
    wake = wake or woke
  end
end
if #reply > 2 then redis.call('HSET', TICKS, name, last_ms) end
if wake then publish(WAKE_CHANNEL, '') end
reply[1] = last_ms
return reply
