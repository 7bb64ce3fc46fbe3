-- Rate and concurrency limits, shared by claim, finish, heartbeat, cancel and depths
-- (corral/scripts.py puts this text after the prelude). A task's limits are in its
-- record's `limit` field, written at enqueue in corral/limits.py's form:
--   <concurrency>|<rate count>|<rate period ms>|<limit id>   (0: no such limit)
-- Each limit's state lives under the queue's prefix, named by its id:
--   lim:c:<id>  zset  ids holding a concurrency slot, scored by lease deadline
--   lim:w:<id>  list  ids waiting for a slot, in order (state stays queued)
--   lim:r:<id>  string  the rate limit's theoretical arrival time (GCRA), in ms
-- and `limited` (zset) holds every id a limit holds back, for the depths.
local LIMITED = KEYS[20]
-- A task deferred by its rate limit gets a reserved time; claimed later than this past
-- it (workers were away), its slot is gone and it takes a new one, so that a backlog
-- of reserved tasks cannot run as one burst.
local RATE_GRACE_MS = 250
-- Waiters moved back to the ready list per released slot, at most (bounded work).
local MAX_WAKES = 100

local function parse_limit(spec)
  if not spec then return nil end
  local conc, count, period_ms, limit_id = string.match(spec, '^(%d+)|(%d+)|(%d+)|(.+)$')
  if not conc then return nil end
  return {conc = tonumber(conc), count = tonumber(count), period_ms = tonumber(period_ms),
    id = limit_id}
end
local function slots_key(limit) return PREFIX .. 'lim:c:' .. limit.id end
local function waiting_key(limit) return PREFIX .. 'lim:w:' .. limit.id end

-- One claim call looks each limit up once: its slots taken and its rate's clock are
-- kept here and the clock is written back by limits_flush (bounded work per task).
local limit_states = {}
local function limit_state(spec, now_ms)
  local state = limit_states[spec]
  if state ~= nil then return state end
  local limit = parse_limit(spec)
  state = false
  if limit then
    state = {limit = limit}
    if limit.conc > 0 then
      state.slots = slots_key(limit)
      redis.call('ZREMRANGEBYSCORE', state.slots, '-inf', now_ms) -- leases that ran out
      state.taken = redis.call('ZCARD', state.slots)
    end
    if limit.count > 0 then
      state.rate_key = PREFIX .. 'lim:r:' .. limit.id
      state.tat = tonumber(redis.call('GET', state.rate_key)) or 0
      state.interval_ms = limit.period_ms / limit.count
    end
  end
  limit_states[spec] = state
  return state
end

-- GCRA with no burst: one task per period / count (more per ms only within one ms). True when the task may run now;
-- else it is deferred to the scheduled set at the time reserved for it.
local function rate_admit(id, record, state, reserved, now_ms)
  if reserved and now_ms <= (tonumber(reserved) or 0)
      + math.max(state.interval_ms, RATE_GRACE_MS) then
    return true -- its time was reserved when it was deferred: already paid for
  end
  local tat = math.max(state.tat, now_ms)
  state.tat = tat + state.interval_ms
  state.dirty = true
  -- Redis's clock has whole milliseconds: a rate of more than one per ms may use the
  -- rest of the current one (else one claim call could admit only one task).
  local at = tat - math.max(0, 1 - state.interval_ms)
  if at <= now_ms then return true end
  redis.call('HSET', record, 'state', STATE_SCHEDULED, 'limit_at', tostring(at))
  redis.call('ZADD', SCHEDULED, at, id)
  redis.call('ZADD', LIMITED, at, id)
  return false
end

-- Whether a queued task just popped may run now under its limits (taking its slot
-- until deadline_ms); else it is parked: waiting for a slot, or deferred by its rate.
-- Neither counts as an attempt. A spec that does not parse limits nothing.
-- `reserved` is the record's limit_at: set while a limit holds the task back.
local function limit_admit(id, spec, reserved, now_ms, deadline_ms)
  local state = limit_state(spec, now_ms)
  if not state then return true end
  local record = task_key(id)
  if state.slots and state.taken >= state.limit.conc then
    redis.call('RPUSH', waiting_key(state.limit), id)
    redis.call('ZADD', LIMITED, now_ms, id)
    if not reserved then redis.call('HSET', record, 'limit_at', 'waiting') end
    return false
  end
  if state.rate_key and not rate_admit(id, record, state, reserved, now_ms) then
    return false
  end
  if state.slots then
    redis.call('ZADD', state.slots, deadline_ms, id)
    state.taken = state.taken + 1
  end
  if reserved then
    redis.call('HDEL', record, 'limit_at')
    redis.call('ZREM', LIMITED, id)
  end
  return true
end

-- The end of a claim call: store each rate limit's clock, kept as long as it matters.
local function limits_flush(now_ms)
  for _, state in pairs(limit_states) do
    if state and state.dirty then
      redis.call('SET', state.rate_key, tostring(state.tat), 'PX',
        math.max(1, math.ceil(state.tat - now_ms)))
    end
  end
end

-- A held task's lease was renewed until deadline_ms: so is its slot.
local function limit_renew(id, spec, deadline_ms)
  local limit = parse_limit(spec)
  if limit and limit.conc > 0 then
    redis.call('ZADD', slots_key(limit), 'XX', deadline_ms, id)
  end
end

-- The task ended its attempt (or its lease ran out): free its slot and move waiters
-- into the free slots' places at the head of their ready lists. Returns true when
-- one was moved (the caller publishes a wake-up).
local function limit_release(id, spec, now_ms)
  local limit = parse_limit(spec)
  if not limit or limit.conc == 0 then return false end
  local slots = slots_key(limit)
  redis.call('ZREM', slots, id)
  local waiting = waiting_key(limit)
  if redis.call('LLEN', waiting) == 0 then return false end
  redis.call('ZREMRANGEBYSCORE', slots, '-inf', now_ms)
  local free = math.min(limit.conc - redis.call('ZCARD', slots), MAX_WAKES)
  local moved, popped = 0, 0
  while moved < free and popped < MAX_WAKES do
    local next_id = redis.call('LPOP', waiting)
    if not next_id then break end
    popped = popped + 1
    local f = redis.call('HMGET', task_key(next_id), 'state', 'prio')
    if f[1] == STATE_QUEUED then
      redis.call('LPUSH', ready_list(f[2]), next_id)
      moved = moved + 1
    else -- cancelled while it waited, or its record is gone
      redis.call('ZREM', LIMITED, next_id)
      redis.call('SREM', CANCELLED, next_id)
    end
  end
  return moved > 0
end
