-- Claim up to ARGV[2] tasks for one worker in one atomic step: promote due
-- scheduled tasks, pop ids from the highest priority down (FIFO within one),
-- mark them running and lease them until now + ARGV[3] ms.
-- KEYS[1..10] ready lists by priority, KEYS[11] scheduled, KEYS[12] leased, KEYS[13] dead.
-- ARGV[1] key prefix, ARGV[2] count, ARGV[3] lease_ms, ARGV[4] lease token prefix.
-- Returns {next_due_ms or -1, now_ms, then per task: id, name, payload, priority, ready_ms, attempts}.
local prefix, count, lease_ms, holder = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local scheduled, leased, dead = KEYS[11], KEYS[12], KEYS[13]
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local known_states = {queued = true, scheduled = true, running = true, succeeded = true,
  failed = true, cancelled = true, dead = true}

local function priority_of(value)
  local p = tonumber(value)
  if p == nil or p ~= p or p < 0 or p > 9 then return 0 end
  return math.floor(p)
end

local due = redis.call('ZRANGEBYSCORE', scheduled, '-inf', now_ms, 'LIMIT', 0, 1000)
if #due > 0 then
  for i = 1, #due do
    local task_key = prefix .. 't:' .. due[i]
    local f = redis.call('HMGET', task_key, 'state', 'prio')
    if f[1] == 'scheduled' then
      redis.call('HSET', task_key, 'state', 'queued')
      redis.call('RPUSH', KEYS[priority_of(f[2]) + 1], due[i])
    end
  end
  redis.call('ZREM', scheduled, unpack(due))
end

local out = {-1, now_ms}
local leases = {}
local deadline_ms = now_ms + lease_ms
local claimed = 0
for p = 10, 1, -1 do
  while claimed < count do
    local ids = redis.call('LPOP', KEYS[p], count - claimed)
    if not ids then break end
    for i = 1, #ids do
      local id = ids[i]
      local well_formed = #id <= 128 and string.match(id, '^[%w_.:-]+$') ~= nil
      if not well_formed then id = 'malformed-' .. redis.sha1hex(id) end
      local task_key = prefix .. 't:' .. id
      local f = redis.pcall('HMGET', task_key, 'state', 'name', 'payload', 'ready_ms', 'attempts')
      if f.err then
        -- The id's key is not a hash (written straight into Redis): treat it as malformed.
        well_formed = false
        id = 'malformed-' .. redis.sha1hex(id)
        task_key = prefix .. 't:' .. id
      end
      if not well_formed then
        -- Ids are made by clients as hex; anything else was written straight into the list.
        redis.call('HSET', task_key, 'state', 'dead', 'reason', 'malformed task id in the ready list',
          'dead_ms', now_ms)
        redis.call('RPUSH', dead, id)
      elseif f[1] == 'queued' then
        -- A damaged count (nan, inf, negative, fractional) would break the lease token.
        local attempts = tonumber(f[5]) or 0
        if attempts ~= attempts or attempts < 0 or attempts > 1e9 then attempts = 0 end
        attempts = math.floor(attempts) + 1
        redis.call('HSET', task_key, 'state', 'running', 'attempts', attempts,
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
      elseif not f[1] or not known_states[f[1]] then
        -- An id with no task record (or a damaged one) was written straight into the
        -- list: keep it, with the reason.
        local reason = 'no task record for this id'
        if f[1] then reason = 'task record has an unknown state' end
        redis.call('HSET', task_key, 'state', 'dead', 'reason', reason, 'dead_ms', now_ms)
        redis.call('RPUSH', dead, id)
      end
      -- Any other state (cancelled, already running) is a stale copy of the id: drop it.
    end
  end
  if claimed >= count then break end
end
if #leases > 0 then redis.call('ZADD', leased, unpack(leases)) end

local first = redis.call('ZRANGE', scheduled, 0, 0, 'WITHSCORES')
if first[2] then out[1] = tonumber(first[2]) end
return out
