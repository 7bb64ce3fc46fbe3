-- Claim up to ARGV[2] tasks for one worker in one atomic step: promote due
-- scheduled tasks, pop ids from the highest priority down (FIFO within one),
-- mark them prefetched and lease them until now + ARGV[3] ms (finish.lua marks each
-- running when the worker starts it). A task its rate or concurrency limit holds
-- back is deferred or set waiting instead (limits.lua).
-- No record keys: the ids are popped here.
-- ARGV[2] count, ARGV[3] lease_ms, ARGV[4] lease token prefix,
-- ARGV[5] dead_ttl_ms and ARGV[6] max_dead for what cannot run (see bury).
-- Returns {next_due_ms or -1, now_ms, then per task: id, name, payload, priority, ready_ms, attempts}.
local count, lease_ms, holder = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local dead_ttl_ms, max_dead = tonumber(ARGV[5]), tonumber(ARGV[6])
local now_ms = clock_ms()
local MAX_HELD_PER_CLAIM = 1000

local known_states = {[STATE_QUEUED] = true, [STATE_SCHEDULED] = true,
  [STATE_PREFETCHED] = true, [STATE_RUNNING] = true, [STATE_SUCCEEDED] = true, [STATE_FAILED] = true,
  [STATE_CANCELLED] = true, [STATE_DEAD] = true}

local due = redis.call('ZRANGEBYSCORE', SCHEDULED, '-inf', now_ms, 'LIMIT', 0, 1000)
if #due > 0 then
  for i = 1, #due do
    local record = task_key(due[i])
    local f = redis.call('HMGET', record, 'state', 'prio')
    if f[1] == STATE_SCHEDULED then
      redis.call('HSET', record, 'state', STATE_QUEUED)
      redis.call('RPUSH', ready_list(f[2]), due[i])
    end
  end
  redis.call('ZREM', SCHEDULED, unpack(due))
end

local function dead_letter(id, reason)
  local record = task_key(id)
  redis.call('HSET', record, 'reason', reason)
  bury(id, record, now_ms, dead_ttl_ms, max_dead)
end

local out = {-1, now_ms}
local leases = {}
local deadline_ms = now_ms + lease_ms
local claimed = 0
-- Tasks a limit held back in this call: bounded, so that a backlog its limits hold
-- back costs a bounded amount of work per claim.
local held = 0
for p = PRIORITIES, 1, -1 do
  while claimed < count and held < MAX_HELD_PER_CLAIM do
    local ids = redis.call('LPOP', KEYS[p], count - claimed)
    if not ids then break end
    for i = 1, #ids do
      local id = ids[i]
      local well_formed = #id <= 128 and string.match(id, '^[%w_.:-]+$') ~= nil
      if not well_formed then id = 'malformed-' .. redis.sha1hex(id) end
      local f = redis.pcall('HMGET', task_key(id), 'state', 'name', 'payload', 'ready_ms',
        'attempts', 'limit', 'limit_at')
      if f.err then
        -- The id's key is not a hash (written straight into Redis): treat it as malformed.
        well_formed = false
        id = 'malformed-' .. redis.sha1hex(id)
      end
      if not well_formed then
        -- Ids are made by clients as hex; anything else was written straight into the list.
        dead_letter(id, 'malformed task id in the ready list')
      elseif f[1] == STATE_QUEUED and f[6] and not limit_admit(id, f[6], f[7], now_ms,
          deadline_ms) then
        held = held + 1 -- a limit holds it back (limits.lua): not claimed, not an attempt
      elseif f[1] == STATE_QUEUED then
        -- A damaged count (nan, inf, negative, fractional) would break the lease token.
        local attempts = tonumber(f[5]) or 0
        if attempts ~= attempts or attempts < 0 or attempts > 1e9 then attempts = 0 end
        attempts = math.floor(attempts) + 1
        redis.call('HSET', task_key(id), 'state', STATE_PREFETCHED, 'attempts', attempts,
          'token', holder .. ':' .. attempts, 'started_ms', now_ms)
        leases[#leases + 1] = deadline_ms
        leases[#leases + 1] = id
        claimed = claimed + 1
        out[#out + 1] = id
        out[#out + 1] = f[2] or ''
        out[#out + 1] = f[3] or ''
        out[#out + 1] = p - 1
        out[#out + 1] = tonumber(f[4]) or now_ms
        out[#out + 1] = attempts
      elseif redis.call('SREM', CANCELLED, id) == 1 then
        -- Cancelled while queued (its record may have expired since): never runs. A
        -- waiter moved up for a free slot hands it on to the next (limits.lua).
        if f[6] and limit_release(id, f[6], now_ms) then publish(WAKE_CHANNEL, '') end
      elseif not f[1] or not known_states[f[1]] then
        -- An id with no task record (or a damaged one) was written straight into the
        -- list: keep it, with the reason.
        local reason = 'no task record for this id'
        if f[1] then reason = 'task record has an unknown state' end
        dead_letter(id, reason)
      end
      -- Any other state (already running, finished) is a stale copy of the id: drop it.
    end
  end
  if claimed >= count or held >= MAX_HELD_PER_CLAIM then break end
end
if #leases > 0 then redis.call('ZADD', LEASED, unpack(leases)) end
limits_flush(now_ms)

local first = redis.call('ZRANGE', SCHEDULED, 0, 0, 'WITHSCORES')
if first[2] then out[1] = tonumber(first[2]) end
return out
