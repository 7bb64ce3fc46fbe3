-- Shared by every script: corral/scripts.py puts this text (after the defaults) in front of each one,
-- that each rule below is written once.
--
-- KEYS of every script, in QueueKeys.script_keys order:
--   1..10 ready lists by priority 0..9, 11 scheduled, 12 leased, 13 dead,
--   14 de-duplication hash, 15 workers, 16 cancelled-while-queued set,
--   17 wake channel, 18 cancel channel, 19 done channel, 20 limited (limits.lua);
--   from FIRST_OWN_KEY on, the record keys the caller knows (one per id it passes).
-- ARGV[1] is '1' when the client talks to a Redis Cluster; the script's own
-- arguments start at ARGV[2].
local PRIORITIES = 10
local SCHEDULED, LEASED, DEAD, DEDUPE, WORKERS, CANCELLED =
  KEYS[11], KEYS[12], KEYS[13], KEYS[14], KEYS[15], KEYS[16]
local WAKE_CHANNEL, CANCEL_CHANNEL, DONE_CHANNEL = KEYS[17], KEYS[18], KEYS[19]
local FIRST_OWN_KEY = 21

-- Records of ids a script reads from Redis itself (popped, due, expired, listed) cannot
-- be passed in advance: their keys are built on the queue's prefix, which is taken from
-- a key in KEYS, never from ARGV. They share the queue's hash tag, hence its slot.
local PREFIX = string.sub(SCHEDULED, 1, #SCHEDULED - #'scheduled')
local function task_key(id) return PREFIX .. 't:' .. id end
local function worker_key(id) return PREFIX .. 'w:' .. id end

-- A priority as stored, made safe: anything but a number 0..9 counts as 0.
local function priority_of(value)
  local p = tonumber(value)
  if p == nil or p ~= p or p < 0 or p > PRIORITIES - 1 then return 0 end
  return math.floor(p)
end
local function ready_list(priority) return KEYS[priority_of(priority) + 1] end

-- Redis's clock in milliseconds: every time a script stores comes from here.
local function clock_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- On a Redis 7+ Cluster, wake-ups are shard messages: they stay on the queue's shard
-- instead of being broadcast to every node. Subscribers match (corral/channels.py).
local SHARDED = ARGV[1] == '1' and (redis.REDIS_VERSION_NUM or 0) >= 0x070000
local function publish(channel, message)
  if SHARDED then
    redis.call('SPUBLISH', channel, message)
  else
    redis.call('PUBLISH', channel, message)
  end
end

-- The states of a record (corral/states.py). Prefetched: claimed by a worker that has
-- not started it yet (no free slot); it turns running when the worker says it started.
local STATE_QUEUED, STATE_SCHEDULED, STATE_RUNNING = 'queued', 'scheduled', 'running'
local STATE_PREFETCHED = 'prefetched'
local CLAIMED = {[STATE_PREFETCHED] = true, [STATE_RUNNING] = true}
local STATE_SUCCEEDED, STATE_FAILED, STATE_CANCELLED, STATE_DEAD =
  'succeeded', 'failed', 'cancelled', 'dead'

-- A record that reached a final state: its payload is not needed any more; with a
-- TTL of 0 nothing is kept at all.
local function retire(key, ttl_ms)
  redis.call('HDEL', key, 'payload')
  redis.call('PEXPIRE', key, math.max(0, ttl_ms))
end

-- Put a record in the dead-letter queue until now + ttl_ms (the zset's score), then
-- hold the queue to its maximum length by dropping the entries closest to expiry.
local function bury(id, key, now_ms, ttl_ms, max_dead)
  ttl_ms = math.max(1, ttl_ms)
  redis.call('HSET', key, 'state', STATE_DEAD, 'dead_ms', now_ms)
  redis.call('PEXPIRE', key, ttl_ms)
  redis.call('ZADD', DEAD, now_ms + ttl_ms, id)
  local excess = redis.call('ZCARD', DEAD) - max_dead
  if excess > 0 then
    local evicted = redis.call('ZPOPMIN', DEAD, math.min(excess, 100))
    for i = 1, #evicted, 2 do redis.call('DEL', task_key(evicted[i])) end
  end
end

-- Append one ended attempt to the record's history (corral/records.py reads it): field
-- 'attempt:<seq>' holds a JSON object; only the last ATTEMPTS_KEPT stay. A succeeded
-- attempt has no entry: the record's own fields (and 'worker') describe it. The worker is
-- the lease token's holder ('<holder>:<attempt number>'); `error` is the error as the
-- worker encoded it (its traceback already capped), or ''.
local function holder_of(token) return string.match(token or '', '^(.*):%d+$') or '' end
local function log_attempt(record, token, started_ms, now_ms, outcome, error)
  local holder, n = string.match(token or '', '^(.*):(%d+)$')
  local seq = redis.call('HINCRBY', record, 'attempt_seq', 1)
  redis.call('HSET', record, 'attempt:' .. seq, cjson.encode({
    n = tonumber(n) or 0, worker = holder or '', started_ms = tonumber(started_ms) or 0,
    finished_ms = now_ms, outcome = outcome, error = error or ''}))
  if seq > ATTEMPTS_KEPT then redis.call('HDEL', record, 'attempt:' .. (seq - ATTEMPTS_KEPT)) end
end

-- Drop dead-letter entries whose records have expired (a bounded number per call).
local function forget_expired_dead(now_ms)
  local expired = redis.call('ZRANGEBYSCORE', DEAD, '-inf', now_ms, 'LIMIT', 0, 500)
  if #expired > 0 then redis.call('ZREM', DEAD, unpack(expired)) end
end

-- Store and queue one new task (the record layout every script reads); with a
-- de-duplication key, a live task with that key stands for it instead. Returns the id
-- that stands for the task, and whether waiting workers need a wake-up.
local LIVE = {[STATE_QUEUED] = true, [STATE_SCHEDULED] = true, [STATE_PREFETCHED] = true,
  [STATE_RUNNING] = true}
local function enqueue_task(record, id, name, payload, priority, delay_ms, key, limit, now_ms)
  if key ~= '' then
    local other = redis.call('HGET', DEDUPE, key)
    if other and LIVE[redis.call('HGET', task_key(other), 'state')] then
      return other, false
    end
  end
  local ready_ms = now_ms + delay_ms
  local state = STATE_QUEUED
  if delay_ms > 0 then state = STATE_SCHEDULED end
  redis.call('HSET', record, 'name', name, 'payload', payload, 'prio', priority,
    'state', state, 'enq_ms', now_ms, 'ready_ms', ready_ms, 'attempts', 0)
  local wake = false
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
  -- The task's rate and concurrency limits, as corral/limits.py writes them.
  if limit ~= '' then redis.call('HSET', record, 'limit', limit) end
  return id, wake
end
