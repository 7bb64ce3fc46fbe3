-- A worker's periodic upkeep of one queue, in one atomic step:
-- renew the leases it holds, refresh its registry entry, drop expired workers,
-- requeue tasks whose lease ran out (their worker died) and sample the backlog.
-- KEYS[1..10] ready lists, KEYS[11] scheduled, KEYS[12] leased, KEYS[13] workers zset,
-- KEYS[14] dedupe hash.
-- ARGV[1] key prefix, ARGV[2] worker id, ARGV[3] lease_ms, ARGV[4] registry_ttl_ms,
-- ARGV[5] wake channel, ARGV[6] done channel, ARGV[7] cancelled ttl_ms,
-- ARGV[8] n = number of registry fields, then n field/value pairs, then id/token pairs held.
-- Returns {backlog, requeued count, {cancelled ids held}, {ids whose lease was lost}}.
local prefix, worker = ARGV[1], ARGV[2]
local lease_ms, registry_ttl_ms = tonumber(ARGV[3]), tonumber(ARGV[4])
local wake_channel, done_channel, cancelled_ttl_ms = ARGV[5], ARGV[6], tonumber(ARGV[7])
local scheduled, leased, workers, dedupe = KEYS[11], KEYS[12], KEYS[13], KEYS[14]
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local n_fields = tonumber(ARGV[8])
local first_held = 9 + 2 * n_fields
local renew, cancelled, lost = {}, {}, {}
for i = first_held, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local f = redis.call('HMGET', prefix .. 't:' .. id, 'token', 'state')
  if f[1] == token then
    renew[#renew + 1] = now_ms + lease_ms
    renew[#renew + 1] = id
    if f[2] == 'cancelled' then cancelled[#cancelled + 1] = id end
  else
    lost[#lost + 1] = id
  end
end
-- In slices: Lua's unpack() has a limit of a few thousand values.
for i = 1, #renew, 2000 do
  redis.call('ZADD', leased, 'XX', unpack(renew, i, math.min(i + 1999, #renew)))
end

local worker_key = prefix .. 'w:' .. worker
redis.call('ZADD', workers, now_ms + registry_ttl_ms, worker)
if n_fields > 0 then redis.call('HSET', worker_key, unpack(ARGV, 9, 8 + 2 * n_fields)) end
redis.call('PEXPIRE', worker_key, registry_ttl_ms)
local gone = redis.call('ZRANGEBYSCORE', workers, '-inf', now_ms)
for i = 1, #gone do redis.call('DEL', prefix .. 'w:' .. gone[i]) end
if #gone > 0 then redis.call('ZREMRANGEBYSCORE', workers, '-inf', now_ms) end

local expired = redis.call('ZRANGEBYSCORE', leased, '-inf', now_ms, 'LIMIT', 0, 1000)
local requeued, done = 0, {}
for i = 1, #expired do
  local id = expired[i]
  local task_key = prefix .. 't:' .. id
  local f = redis.call('HMGET', task_key, 'state', 'prio', 'key')
  redis.call('HDEL', task_key, 'token')
  if f[1] == 'running' then
    local p = tonumber(f[2]) or 0
    if p < 0 or p > 9 then p = 0 end
    redis.call('HSET', task_key, 'state', 'queued')
    redis.call('LPUSH', KEYS[math.floor(p) + 1], id)
    requeued = requeued + 1
  elseif f[1] == 'cancelled' then
    redis.call('HSET', task_key, 'finished_ms', now_ms)
    redis.call('PEXPIRE', task_key, cancelled_ttl_ms)
    if f[3] and redis.call('HGET', dedupe, f[3]) == id then redis.call('HDEL', dedupe, f[3]) end
    done[#done + 1] = id
  end
end
if #expired > 0 then redis.call('ZREM', leased, unpack(expired)) end
if requeued > 0 then redis.call('PUBLISH', wake_channel, '') end
if #done > 0 then redis.call('PUBLISH', done_channel, table.concat(done, ' ')) end

local backlog = redis.call('ZCOUNT', scheduled, '-inf', now_ms)
for p = 1, 10 do backlog = backlog + redis.call('LLEN', KEYS[p]) end
return {backlog, requeued, cancelled, lost}
