-- A worker's periodic upkeep of one queue, in one atomic step:
-- renew the leases it holds, refresh its registry entry, drop expired workers,
-- requeue tasks whose lease ran out (their worker died), forget expired dead-letter
-- entries and sample the backlog.
-- KEYS[FIRST_OWN_KEY] the worker's registry entry, then the record key of each held task.
-- ARGV[2] worker id, ARGV[3] lease_ms, ARGV[4] registry_ttl_ms, ARGV[5] cancelled ttl_ms,
-- ARGV[6] n = number of registry fields, then n field/value pairs, then id/token pairs held.
-- Returns {backlog, requeued count, {cancelled ids held}, {ids whose lease was lost}}.
local worker = ARGV[2]
local lease_ms, registry_ttl_ms = tonumber(ARGV[3]), tonumber(ARGV[4])
local cancelled_ttl_ms = tonumber(ARGV[5])
local now_ms = clock_ms()
local LEASE_EXPIRED = cjson.encode({type = 'LeaseExpired', traceback = '',
  message = 'its worker stopped renewing the lease (it stopped, or lost Redis); requeued'})

local n_fields = tonumber(ARGV[6])
local first_held = 7 + 2 * n_fields
local renew, cancelled, lost = {}, {}, {}
for i = first_held, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local f = redis.call('HMGET', KEYS[FIRST_OWN_KEY + 1 + (i - first_held) / 2], 'token', 'state',
    'limit')
  if f[1] == token then
    renew[#renew + 1] = now_ms + lease_ms
    renew[#renew + 1] = id
    if f[3] then limit_renew(id, f[3], now_ms + lease_ms) end
    if f[2] == STATE_CANCELLED then cancelled[#cancelled + 1] = id end
  else
    lost[#lost + 1] = id
  end
end
-- In slices: Lua's unpack() has a limit of a few thousand values.
for i = 1, #renew, 2000 do
  redis.call('ZADD', LEASED, 'XX', unpack(renew, i, math.min(i + 1999, #renew)))
end

local registry = KEYS[FIRST_OWN_KEY]
redis.call('ZADD', WORKERS, now_ms + registry_ttl_ms, worker)
if n_fields > 0 then redis.call('HSET', registry, unpack(ARGV, 7, 6 + 2 * n_fields)) end
redis.call('PEXPIRE', registry, registry_ttl_ms)
local gone = redis.call('ZRANGEBYSCORE', WORKERS, '-inf', now_ms)
for i = 1, #gone do redis.call('DEL', worker_key(gone[i])) end
if #gone > 0 then redis.call('ZREMRANGEBYSCORE', WORKERS, '-inf', now_ms) end

local expired = redis.call('ZRANGEBYSCORE', LEASED, '-inf', now_ms, 'LIMIT', 0, 1000)
local requeued, done, limits_woke = 0, {}, false
for i = 1, #expired do
  local id = expired[i]
  local record = task_key(id)
  local f = redis.call('HMGET', record, 'state', 'prio', 'key', 'limit', 'token', 'started_ms')
  redis.call('HDEL', record, 'token')
  if f[4] and limit_release(id, f[4], now_ms) then limits_woke = true end
  if CLAIMED[f[1]] then
    log_attempt(record, f[5], f[6], now_ms, 'lease expired', LEASE_EXPIRED)
    redis.call('HSET', record, 'state', STATE_QUEUED)
    redis.call('LPUSH', ready_list(f[2]), id)
    requeued = requeued + 1
  elseif f[1] == STATE_CANCELLED then
    redis.call('HSET', record, 'finished_ms', now_ms)
    retire(record, cancelled_ttl_ms)
    if f[3] and redis.call('HGET', DEDUPE, f[3]) == id then redis.call('HDEL', DEDUPE, f[3]) end
    done[#done + 1] = id
  end
end
if #expired > 0 then redis.call('ZREM', LEASED, unpack(expired)) end
if requeued > 0 or limits_woke then publish(WAKE_CHANNEL, '') end
if #done > 0 then publish(DONE_CHANNEL, table.concat(done, ' ')) end
forget_expired_dead(now_ms)

local backlog = redis.call('ZCOUNT', SCHEDULED, '-inf', now_ms) - redis.call('SCARD', CANCELLED)
for p = 1, PRIORITIES do backlog = backlog + redis.call('LLEN', KEYS[p]) end
return {math.max(0, backlog), requeued, cancelled, lost}
