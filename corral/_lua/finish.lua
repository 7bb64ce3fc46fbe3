-- Record the outcomes of a batch of claimed tasks in one atomic step.
-- KEYS from FIRST_OWN_KEY: the record key of each outcome, in order.
-- ARGV[2] max_dead (the dead-letter queue's maximum length), then groups of five:
--   id, lease token, outcome, data, number
-- A task whose token no longer matches was taken over by another worker: it is left
-- alone and its id returned, so the caller can count the duplicate.

-- The outcome codes (corral_worker.broker speaks the same letters) and, for each, what
-- `data` and `number` carry.
local SUCCEEDED = 's' -- data: result; number: result TTL in ms (0: keep nothing)
local FAILED = 'f'    -- data: error;  number: result TTL in ms
local DEAD = 'd'      -- data: error;  number: dead-letter TTL in ms (0: the default)
local CANCELLED = 'c' -- data: error or ''; number: result TTL in ms
local RETRY = 'r'     -- data: error;  number: delay in ms before the next attempt
local REQUEUE = 'q'   -- number: 1 to give the attempt back (it was never started)
-- Not an outcome: the task has started (sent with the outcomes, so that a start costs no
-- round trip of its own). number: ms since it started. Its lease stays held.
local STARTED = 'b'
local ATTEMPT_OUTCOME = {[SUCCEEDED] = STATE_SUCCEEDED, [FAILED] = STATE_FAILED,
  [DEAD] = STATE_DEAD, [CANCELLED] = STATE_CANCELLED, [RETRY] = 'retried', [REQUEUE] = 'requeued'}

local FINAL_STATE = {[SUCCEEDED] = STATE_SUCCEEDED, [FAILED] = STATE_FAILED,
  [CANCELLED] = STATE_CANCELLED}
local DATA_FIELD = {[SUCCEEDED] = 'result', [FAILED] = 'error', [DEAD] = 'error',
  [CANCELLED] = 'error', [RETRY] = 'error'}
local CARRIES_RESULT_TTL = {[SUCCEEDED] = true, [FAILED] = true, [CANCELLED] = true}

local max_dead = tonumber(ARGV[2])
local now_ms = clock_ms()
local done, stale, released = {}, {}, {}
local wake = false

for i = 3, #ARGV, 5 do
  local id, token, outcome, data, number = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], tonumber(ARGV[i + 4])
  local record = KEYS[FIRST_OWN_KEY + (i - 3) / 5]
  local f = redis.call('HMGET', record, 'token', 'state', 'key', 'prio', 'limit', 'started_ms')
  if outcome == STARTED then
    if f[1] == token and f[2] == STATE_PREFETCHED then
      redis.call('HSET', record, 'state', STATE_RUNNING, 'started_ms', now_ms - (number or 0))
    end
  elseif f[1] ~= token then
    stale[#stale + 1] = id
  else
    released[#released + 1] = id
    if f[5] and limit_release(id, f[5], now_ms) then wake = true end
    -- A cancel request wins over whatever the attempt ended with.
    if f[2] == STATE_CANCELLED then
      if not CARRIES_RESULT_TTL[outcome] then number = DEFAULT_RESULT_TTL_MS end
      outcome, data = CANCELLED, ''
    end
    redis.call('HDEL', record, 'token')
    -- A succeeded attempt has no history entry: the record's times, attempts and
    -- 'worker' (set below) describe it; an entry would be the one value over 64 bytes,
    -- turning a small record from a listpack into a hash table at twice the memory.
    -- A task given back (requeue, number 1) never ran.
    if outcome ~= SUCCEEDED and (outcome ~= REQUEUE or number ~= 1) then
      log_attempt(record, token, f[6], now_ms, ATTEMPT_OUTCOME[outcome], data)
    end
    if DATA_FIELD[outcome] and data ~= '' then
      redis.call('HSET', record, DATA_FIELD[outcome], data)
    end
    local state = FINAL_STATE[outcome]
    if state or outcome == DEAD then
      if outcome == DEAD then
        if number == nil or number <= 0 then number = DEFAULT_DEAD_TTL_MS end
        redis.call('HSET', record, 'finished_ms', now_ms)
        bury(id, record, now_ms, number, max_dead)
      else
        redis.call('HSET', record, 'state', state, 'finished_ms', now_ms,
          'worker', holder_of(token))
        retire(record, number or 0)
      end
      if f[3] and redis.call('HGET', DEDUPE, f[3]) == id then redis.call('HDEL', DEDUPE, f[3]) end
      done[#done + 1] = id
    elseif outcome == RETRY then
      redis.call('HSET', record, 'state', STATE_SCHEDULED, 'ready_ms', now_ms + number)
      redis.call('ZADD', SCHEDULED, now_ms + number, id)
      wake = true
    else -- REQUEUE
      redis.call('HSET', record, 'state', STATE_QUEUED)
      if number == 1 then redis.call('HINCRBY', record, 'attempts', -1) end
      redis.call('LPUSH', ready_list(f[4]), id)
      wake = true
    end
  end
end
if #released > 0 then redis.call('ZREM', LEASED, unpack(released)) end
if #done > 0 then publish(DONE_CHANNEL, table.concat(done, ' ')) end
if wake then publish(WAKE_CHANNEL, '') end
return stale
